//! HTTPS for ingress (`[server] tls`): the rustls server configuration (TLS 1.2 and 1.3;
//! HTTP/2 and HTTP/1.1 offered by ALPN; client certificates required when
//! `client_ca_file` is set), and its renewal without a restart.
//!
//! The certificate, key and client CA files are read again on SIGHUP (the relay's one
//! hangup handler, which also reloads the config, calls [`TlsIngress::reload`]) and when
//! any of them changes (their size, modification time or inode, polled every [`POLL`]), so a renewed
//! certificate is served from the next connection on; connections already open keep the
//! session they negotiated.
//!
//! Invariants: a new set of files replaces the current one only as a whole, and only once
//! it has been read and checked (the key belongs to the certificate); anything less keeps
//! the current set serving and logs why. The plain-HTTP path never comes here.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::{ServerTls, check_key_pair, not_after, read_certificates, read_private_key};

/// How often the files are checked for a change. Renewal tools rewrite them at most a few
/// times a year; a few `stat` calls every few seconds cost nothing.
pub const POLL: Duration = Duration::from_secs(5);

/// The TLS side of ingress: the acceptor for new connections, replaceable at run time.
pub struct TlsIngress {
    files: ServerTls,
    current: RwLock<TlsAcceptor>,
    /// What the files looked like when last read, to notice a change.
    seen: Mutex<Vec<Option<Stamp>>>,
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl TlsIngress {
    /// Reads and checks the files; the error names the file and what is wrong with it.
    pub fn load(files: &ServerTls) -> Result<TlsIngress, String> {
        let seen = stamps(files);
        let (acceptor, not_after) = acceptor(files)?;
        warn_if_expiring(files, not_after);
        Ok(TlsIngress {
            files: files.clone(),
            current: RwLock::new(acceptor),
            seen: Mutex::new(seen),
        })
    }

    /// The acceptor for a new connection (cheap: it shares the configuration).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the files again and, if they are good, serves them from the next connection
    /// on; otherwise keeps the current ones and logs why. `trigger` says what asked.
    pub fn reload(&self, trigger: &str) {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamps(&self.files);
        match acceptor(&self.files) {
            Ok((acceptor, not_after)) => {
                warn_if_expiring(&self.files, not_after);
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = acceptor;
                tracing::info!(
                    trigger,
                    cert_file = %self.files.cert_file.display(),
                    "reloaded the TLS certificate"
                );
            }
            Err(reason) => tracing::warn!(
                trigger,
                error = %reason,
                "kept the current TLS certificate: the new files cannot be used; fix them, \
                 then save them again or send SIGHUP"
            ),
        }
    }

    /// True when a file differs from when it was last read.
    fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != stamps(&self.files)
    }
}

/// Reloads `tls` whenever its files change, until the task is aborted.
pub async fn watch(tls: Arc<TlsIngress>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if tls.changed() {
            tls.reload("files changed");
        }
    }
}

/// What to tell the operator about the end of the certificate in `files`, if anything: it
/// has expired (senders that check certificates refuse it), or it will within two weeks.
pub fn expiry_warning(files: &ServerTls, not_after: Option<SystemTime>) -> Option<String> {
    crate::config::expiry_warning(
        &format!("the certificate in \"{}\"", files.cert_file.display()),
        not_after,
        "senders that check certificates refuse it",
        "renew it and save the files again",
    )
}

/// The end of the validity of the certificate in `files` (the leaf), as `check` shows it.
pub fn certificate_end(files: &ServerTls) -> Result<Option<SystemTime>, String> {
    Ok(read_certificates(&files.cert_file)?
        .first()
        .and_then(|c| not_after(c)))
}

fn warn_if_expiring(files: &ServerTls, not_after: Option<SystemTime>) {
    if let Some(warning) = expiry_warning(files, not_after) {
        tracing::warn!("{warning}");
    }
}

/// Builds the acceptor from the files as they are now, with the leaf's `notAfter`.
fn acceptor(files: &ServerTls) -> Result<(TlsAcceptor, Option<SystemTime>), String> {
    let chain = read_certificates(&files.cert_file)?;
    let not_after = chain.first().and_then(|c| not_after(c));
    let key = read_private_key(&files.key_file)?;
    check_key_pair(&chain, &key, &files.cert_file, &files.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("\"{}\": unusable CA certificate: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("\"{}\": {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("\"{}\": {e}", files.cert_file.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), not_after))
}

fn stamps(files: &ServerTls) -> Vec<Option<Stamp>> {
    let mut paths: Vec<&Path> = vec![&files.cert_file, &files.key_file];
    paths.extend(files.client_ca_file.as_deref());
    paths.into_iter().map(stamp).collect()
}

/// The file's stamp, following symbolic links (Kubernetes swaps a link to renew a secret);
/// `None` while it cannot be read.
fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::expiry::tests::certificate_ending;

    fn files() -> ServerTls {
        ServerTls {
            cert_file: "cert.pem".into(),
            key_file: "key.pem".into(),
            client_ca_file: None,
        }
    }

    #[test]
    fn an_expired_or_expiring_certificate_gets_a_warning_naming_its_file() {
        let expired = not_after(&certificate_ending(2020, 5, 17));
        let warning = expiry_warning(&files(), expired).expect("expired");
        assert_eq!(
            warning,
            "the certificate in \"cert.pem\" expired at 2020-05-17T00:00:00Z: senders that \
             check certificates refuse it; renew it and save the files again"
        );
        let later = Some(SystemTime::now() + Duration::from_secs(90 * 24 * 3600));
        assert_eq!(expiry_warning(&files(), later), None);
    }
}
