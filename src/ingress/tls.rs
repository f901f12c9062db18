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

use crate::config::{ServerTls, check_key_pair, read_certificates, read_private_key};

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

/// How long before its end a certificate is worth a warning: renewal tools act a month
/// ahead, so one this close has missed its renewal.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// What to tell the operator about the end of the certificate in `files`, if anything: it
/// has expired (senders that check certificates refuse it), or it will within two weeks.
/// Expiry is a warning, not an error: refusing to start would not serve anyone better.
pub fn expiry_warning(files: &ServerTls, not_after: Option<SystemTime>) -> Option<String> {
    let end = not_after?;
    let shown = humantime::format_rfc3339_seconds(end);
    let cert = files.cert_file.display();
    match end.duration_since(SystemTime::now()) {
        Err(_) => Some(format!(
            "the certificate in \"{cert}\" expired at {shown}: senders that check certificates \
             refuse it; renew it and save the files again"
        )),
        Ok(left) if left < EXPIRY_WARNING => Some(format!(
            "the certificate in \"{cert}\" expires at {shown}, in {}: renew it",
            humantime::format_duration(Duration::from_secs(left.as_secs() / 3600 * 3600))
        )),
        Ok(_) => None,
    }
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

/// A certificate's `notAfter`, read from its DER (RFC 5280 §4.1): the certificate and
/// its TBSCertificate are sequences; after the optional `[0]` version come the serial
/// number, the signature algorithm and the issuer, then the validity with `notBefore` and
/// `notAfter`. `None` for anything else: the warning is a courtesy, not a check.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (certificate, _) = der_item(der, Some(0x30))?;
    let (tbs, _) = der_item(certificate, Some(0x30))?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_item(rest, None)?.1;
    }
    for _ in 0..3 {
        rest = der_item(rest, None)?.1;
    }
    let (validity, _) = der_item(rest, Some(0x30))?;
    let after_start = der_item(validity, None)?.1;
    let tag = *after_start.first()?;
    let (time, _) = der_item(after_start, Some(tag))?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    // UTCTime is YYMMDDHHMMSS (years 1950-2049), GeneralizedTime YYYYMMDDHHMMSS.
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: u32 = text[..2].parse().ok()?;
            format!("{}{text}", if yy < 50 { "20" } else { "19" })
        }
        (0x18, 14) => text.to_string(),
        _ => return None,
    };
    if !full.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// One DER item at the start of `input` (of tag `want`, when given): its content and what
/// follows it.
fn der_item(input: &[u8], want: Option<u8>) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if want.is_some_and(|w| w != tag) {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
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

    /// A self-signed certificate valid until `year`-`month`-`day`, as DER.
    fn certificate_ending(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn files() -> ServerTls {
        ServerTls {
            cert_file: "cert.pem".into(),
            key_file: "key.pem".into(),
            client_ca_file: None,
        }
    }

    #[test]
    fn not_after_is_read_from_utc_and_generalized_times() {
        // rcgen writes UTCTime up to 2049 and GeneralizedTime from 2050 (RFC 5280).
        for (y, m, d, want) in [
            (2020, 5, 17, "2020-05-17T00:00:00Z"),
            (2049, 12, 31, "2049-12-31T00:00:00Z"),
            (2051, 2, 3, "2051-02-03T00:00:00Z"),
        ] {
            let end = not_after(&certificate_ending(y, m, d)).expect("a notAfter");
            assert_eq!(humantime::format_rfc3339_seconds(end).to_string(), want);
        }
        assert_eq!(not_after(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(not_after(b""), None);
    }

    #[test]
    fn an_expired_or_expiring_certificate_gets_a_warning() {
        let expired = not_after(&certificate_ending(2020, 5, 17));
        let warning = expiry_warning(&files(), expired).expect("expired");
        assert!(
            warning.contains("expired at 2020-05-17T00:00:00Z"),
            "{warning}"
        );
        let soon = Some(SystemTime::now() + Duration::from_secs(3 * 24 * 3600 + 600));
        let warning = expiry_warning(&files(), soon).expect("soon");
        assert!(
            warning.contains("expires at") && warning.contains("in 3days"),
            "{warning}"
        );
        let later = Some(SystemTime::now() + Duration::from_secs(90 * 24 * 3600));
        assert_eq!(expiry_warning(&files(), later), None);
        assert_eq!(expiry_warning(&files(), None), None);
    }
}
