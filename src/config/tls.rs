//! TLS and proxy settings: the trust, client certificate and proxy of every outbound
//! connection (`[tls]`, `[server] proxy`, and each sink's `ca_file`, `client_cert`,
//! `client_key`, `proxy`), and the HTTPS ingress (`[server] tls`).
//!
//! Outbound settings are merged here, once, into one [`Outbound`] per sink, so a sink builds
//! its client from that alone: `[tls] ca_file` plus the sink's own `ca_file`; the sink's
//! `proxy`, else `[server] proxy`, else the environment (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `NO_PROXY`).
//!
//! Invariants: every certificate and key file named in the config is read and checked while
//! loading, so `hookrelay check` finds a missing file, a file with no certificate, or a key
//! that does not belong to its certificate. A private key is only ever held as [`Secret`]; a
//! proxy URL (it may carry credentials) never appears in a message or in `Debug` output.
//! There is deliberately no way to switch certificate verification off: the fix for an
//! unknown issuer is `ca_file`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use toml::Spanned;

use super::Secret;
use super::raw::{RawServerTls, RawSink, RawTls};
use super::validate::{StandIn, Validator};

/// How one sink reaches its receiver: whom it trusts, which certificate it presents, and
/// through which proxy. The same for every sink kind that speaks HTTP.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    /// Trusted CA certificates besides (or, without `system_roots`, instead of) the
    /// system's: `[tls] ca_file`, then the sink's own `ca_file`.
    pub roots: Vec<CertificateDer<'static>>,
    /// Whether the operating system's trusted roots count too (`[tls] use_system_roots`).
    pub system_roots: bool,
    /// The client certificate and key (mTLS), when the sink sets `client_cert`.
    pub identity: Option<ClientIdentity>,
    /// Where connections go first.
    pub proxy: Proxy,
}

impl Default for Outbound {
    /// System roots only, no client certificate, proxies from the environment.
    fn default() -> Outbound {
        Outbound {
            roots: Vec::new(),
            system_roots: true,
            identity: None,
            proxy: Proxy::FromEnvironment,
        }
    }
}

/// A client certificate chain and its private key, as one PEM document.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientIdentity {
    pem: Secret,
    cert_file: PathBuf,
    not_after: Option<SystemTime>,
}

impl ClientIdentity {
    /// The certificate chain (leaf first) then the private key, PEM-encoded. Holds the key:
    /// never log it.
    pub fn pem(&self) -> &[u8] {
        self.pem.expose()
    }

    /// What to tell the operator if the certificate has expired or ends within two weeks.
    pub fn expiry_warning(&self) -> Option<String> {
        super::expiry_warning(
            &format!("the client certificate in \"{}\"", self.cert_file.display()),
            self.not_after,
            "receivers that ask for a client certificate refuse the connection",
            "renew it, then reload the relay (SIGHUP)",
        )
    }
}

/// Which proxy outbound connections use.
#[derive(Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (either case), as curl reads them.
    FromEnvironment,
    /// `proxy = "none"`: connect directly, whatever the environment says.
    Direct,
    /// `proxy = "http://host:port"`: every connection goes through this proxy (HTTPS by
    /// `CONNECT`); the environment is ignored. May carry credentials: never log it.
    Url(String),
}

// By hand: a proxy URL may carry a user name and password.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::FromEnvironment => f.write_str("FromEnvironment"),
            Proxy::Direct => f.write_str("Direct"),
            Proxy::Url(_) => f.write_str("Url(***)"),
        }
    }
}

/// `[server] tls`: serve HTTPS. The files are re-read on SIGHUP and when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf certificate.
    pub key_file: PathBuf,
    /// When set, senders must present a client certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

/// Reads every certificate in a PEM file; at least one must be there.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("\"{}\" is not valid PEM ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "\"{}\" holds no certificate; it must contain one or more \
             \"-----BEGIN CERTIFICATE-----\" blocks",
            path.display()
        ));
    }
    Ok(certs)
}

/// The PEM label of a PKCS#8 key under a passphrase, which rustls cannot read.
const ENCRYPTED_KEY: &[u8] = b"-----BEGIN ENCRYPTED PRIVATE KEY-----";

/// Reads the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM file.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound
            if bytes
                .windows(ENCRYPTED_KEY.len())
                .any(|w| w == ENCRYPTED_KEY) =>
        {
            format!(
                "\"{}\" holds an encrypted private key, which hookrelay cannot use without its \
                 passphrase: write it out unencrypted (openssl pkey -in KEY -out KEY.plain) and \
                 keep that file readable only by the relay",
                path.display()
            )
        }
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "\"{}\" holds no private key; it must contain a \"-----BEGIN PRIVATE KEY-----\" \
             (or RSA / EC PRIVATE KEY) block",
            path.display()
        ),
        // The parser's message quotes lines of the file: never for a key.
        _ => format!("\"{}\" is not a valid PEM private key", path.display()),
    })
}

/// Checks that `key` is the private key of the first certificate of `chain`.
pub fn check_key_pair(
    chain: &[CertificateDer<'static>],
    key: &PrivateKeyDer<'static>,
    cert_file: &Path,
    key_file: &Path,
) -> Result<(), String> {
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain.to_vec(), key.clone_key(), &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "the key in \"{}\" does not belong to the first certificate in \"{}\"; give the \
             key and certificate of one pair (the leaf certificate first)",
            key_file.display(),
            cert_file.display()
        )),
        // webpki reads only X.509 version 3: say so rather than blame the key.
        Err(e) if format!("{e:?}").contains("UnsupportedCertVersion") => Err(format!(
            "the first certificate in \"{}\" is X.509 version 1, which TLS refuses; issue a \
             version 3 certificate (with openssl, give `x509 -req` an -extfile with at least \
             basicConstraints or subjectAltName)",
            cert_file.display()
        )),
        Err(e) => Err(format!(
            "cannot use the key in \"{}\" with \"{}\": {e}",
            key_file.display(),
            cert_file.display()
        )),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read \"{}\": {e}", path.display()))
}

/// Writes one DER item as a PEM block.
fn pem_block(label: &str, der: &[u8]) -> String {
    let encoded = BASE64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl Validator<'_> {
    /// `[tls]` and `[server] proxy`: the outbound settings every sink starts from.
    pub(super) fn outbound_defaults(
        &mut self,
        tls: Option<&RawTls>,
        proxy: Option<&Spanned<String>>,
    ) -> Option<Outbound> {
        let ca_file = tls.and_then(|t| t.ca_file.as_ref());
        let use_system_roots = tls.and_then(|t| t.use_system_roots.as_ref());
        let roots = match ca_file {
            None => Some(Vec::new()),
            Some(file) => self.certificates(file, "tls.ca_file"),
        };
        let system_roots = use_system_roots.is_none_or(|v| *v.get_ref());
        if let Some(flag) = use_system_roots
            && !system_roots
            && ca_file.is_none()
        {
            self.problem(
                flag.span(),
                "tls.use_system_roots",
                "is false but [tls] has no ca_file, so no server would be trusted; add \
                 ca_file = \"/path/to/ca.pem\" with your CA certificates",
            );
        }
        let proxy = match proxy {
            None => Some(Proxy::FromEnvironment),
            Some(p) => self.proxy(p, "server.proxy"),
        };
        Some(Outbound {
            roots: roots?,
            system_roots,
            identity: None,
            proxy: proxy?,
        })
    }

    /// A sink's own `ca_file`, `client_cert`, `client_key` and `proxy` on top of `base`.
    pub(super) fn sink_outbound(
        &mut self,
        raw: &RawSink,
        path: &str,
        base: &Outbound,
    ) -> Option<Outbound> {
        let key = |k: &str| format!("{path}.{k}");
        let extra = match &raw.ca_file {
            None => Some(Vec::new()),
            Some(file) => self.certificates(file, &key("ca_file")),
        };
        let identity = match (&raw.client_cert, &raw.client_key) {
            (None, None) => Some(None),
            (Some(cert), Some(private)) => self
                .identity(cert, private, &key("client_cert"), &key("client_key"))
                .map(Some),
            (Some(cert), None) => {
                self.problem(
                    cert.span(),
                    key("client_cert"),
                    "needs client_key too; add client_key = \"/path/to/client.key\" (the \
                     certificate's PEM private key)",
                );
                None
            }
            (None, Some(private)) => {
                self.problem(
                    private.span(),
                    key("client_key"),
                    "needs client_cert too; add client_cert = \"/path/to/client.pem\" (the \
                     PEM certificate this key belongs to)",
                );
                None
            }
        };
        let proxy = match &raw.proxy {
            None => Some(base.proxy.clone()),
            Some(p) => self.proxy(p, &key("proxy")),
        };
        let mut roots = base.roots.clone();
        roots.extend(extra?);
        Some(Outbound {
            roots,
            system_roots: base.system_roots,
            identity: identity?,
            proxy: proxy?,
        })
    }

    /// `[server] tls = { cert_file, key_file, client_ca_file }`, its files checked now.
    pub(super) fn server_tls(&mut self, raw: &Spanned<RawServerTls>) -> Option<ServerTls> {
        let body = raw.get_ref();
        let missing = |what: &str| {
            format!(
                "missing {what}; write tls = {{ cert_file = \"/path/to/cert.pem\", key_file = \
                 \"/path/to/key.pem\" }}"
            )
        };
        let (Some(cert), Some(key)) = (&body.cert_file, &body.key_file) else {
            let what = if body.cert_file.is_none() {
                "cert_file"
            } else {
                "key_file"
            };
            self.problem(raw.span(), "server.tls", missing(what));
            return None;
        };
        let cert_file = self.dir.join(cert.get_ref());
        let key_file = self.dir.join(key.get_ref());
        let chain = self.located(cert, "server.tls.cert_file", read_certificates(&cert_file));
        let private = self.located(key, "server.tls.key_file", read_private_key(&key_file));
        let client_ca_file = match &body.client_ca_file {
            None => Some(None),
            Some(file) => self
                .certificates(file, "server.tls.client_ca_file")
                .map(|_| Some(self.dir.join(file.get_ref()))),
        };
        let (chain, private) = (chain?, private?);
        if let Err(message) = check_key_pair(&chain, &private, &cert_file, &key_file) {
            self.problem(key.span(), "server.tls.key_file", message);
            return None;
        }
        Some(ServerTls {
            cert_file,
            key_file,
            client_ca_file: client_ca_file?,
        })
    }

    fn certificates(
        &mut self,
        file: &Spanned<String>,
        key: &str,
    ) -> Option<Vec<CertificateDer<'static>>> {
        let path = self.dir.join(file.get_ref());
        self.located(file, key, read_certificates(&path))
    }

    fn identity(
        &mut self,
        cert: &Spanned<String>,
        private: &Spanned<String>,
        cert_key: &str,
        key_key: &str,
    ) -> Option<ClientIdentity> {
        let cert_file = self.dir.join(cert.get_ref());
        let key_file = self.dir.join(private.get_ref());
        let chain = self.located(cert, cert_key, read_certificates(&cert_file));
        let key_der = self.located(private, key_key, read_private_key(&key_file));
        let (chain, key_der) = (chain?, key_der?);
        if let Err(message) = check_key_pair(&chain, &key_der, &cert_file, &key_file) {
            self.problem(private.span(), key_key, message);
            return None;
        }
        let label = match &key_der {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let mut pem = String::new();
        for c in &chain {
            pem.push_str(&pem_block("CERTIFICATE", c));
        }
        pem.push_str(&pem_block(label, key_der.secret_der()));
        Some(ClientIdentity {
            pem: Secret::new(pem),
            not_after: chain.first().and_then(|leaf| super::not_after(leaf)),
            cert_file,
        })
    }

    fn proxy(&mut self, value: &Spanned<String>, key: &str) -> Option<Proxy> {
        if value.get_ref() == "none" {
            return Some(Proxy::Direct);
        }
        let checked = self
            .resolve(value.get_ref(), StandIn::Url)
            .and_then(|bytes| {
                let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
                // url's parse errors describe the problem without echoing the input.
                let url = reqwest::Url::parse(&text).map_err(|e| {
                    format!(
                        "is not a valid proxy URL ({e}); write \"http://proxy.example:3128\", or \
                     \"none\" to connect directly"
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!(
                        "proxy scheme \"{}\" is not supported; write an http:// (or https://) \
                     proxy URL, or \"none\" to connect directly",
                        url.scheme()
                    ));
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err("has no host; write \"http://proxy.example:3128\"".to_string());
                }
                Ok(text)
            });
        self.located(value, key, checked.map(Proxy::Url))
    }

    /// Records `result`'s error at `value`'s span.
    fn located<T>(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        result: Result<T, String>,
    ) -> Option<T> {
        match result {
            Ok(t) => Some(t),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_block_wraps_at_64_columns() {
        let block = pem_block("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        let again = CertificateDer::pem_slice_iter(block.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(again[0].as_ref(), &[0u8; 60]);
    }

    #[test]
    fn an_encrypted_key_is_named_as_such_with_how_to_decrypt_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, pem_block("ENCRYPTED PRIVATE KEY", &[7u8; 48])).unwrap();
        let err = read_private_key(&path).unwrap_err();
        assert!(
            err.contains("holds an encrypted private key") && err.contains("openssl pkey"),
            "{err}"
        );
    }

    #[test]
    fn a_proxy_url_is_hidden_from_debug_output() {
        let proxy = Proxy::Url("http://user:pass@proxy:3128".into());
        assert_eq!(format!("{proxy:?}"), "Url(***)");
    }

    /// A CA and a leaf it signed, written as PEM files into `dir`: ca.pem, leaf.pem,
    /// leaf.key, and other.key (a key of no certificate here).
    fn write_pki(dir: &Path) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        let other = KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    }

    fn load(dir: &Path, text: &str) -> Result<super::super::Config, String> {
        let path = dir.join("hookrelay.toml");
        std::fs::write(&path, text).unwrap();
        super::super::Config::load(&path).map_err(|e| e.to_string())
    }

    const SINK: &str = "[sinks.audit]\nkind = \"webhook\"\nurl = \"https://audit.internal/\"\n";

    #[test]
    fn roots_merge_the_global_and_the_sink_ca_files() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let text = format!(
            "[tls]\nca_file = \"ca.pem\"\nuse_system_roots = false\n\n{SINK}\
             ca_file = \"leaf.pem\"\n\n[sinks.plain]\nkind = \"webhook\"\n\
             url = \"https://plain.internal/\"\n"
        );
        let config = load(dir.path(), &text).unwrap();
        let audit = &config.sinks[0].outbound;
        assert_eq!(audit.roots.len(), 2);
        assert!(!audit.system_roots);
        assert_eq!(config.sinks[1].outbound.roots.len(), 1);
    }

    #[test]
    fn no_system_roots_without_a_ca_file_is_refused_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path(), "[tls]\nuse_system_roots = false\n").unwrap_err();
        assert!(
            err.contains(
                "hookrelay.toml:2:20: tls.use_system_roots: is false but [tls] has no ca_file"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
        let text = format!("{SINK}ca_file = \"nowhere.pem\"\n\n[tls]\nca_file = \"empty.pem\"\n");
        let err = load(dir.path(), &text).unwrap_err();
        assert!(
            err.contains("hookrelay.toml:4:11: sinks.audit.ca_file: cannot read"),
            "{err}"
        );
        assert!(err.contains("nowhere.pem"), "{err}");
        assert!(
            err.contains("tls.ca_file: ") && err.contains("empty.pem\" holds no certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_client_certificate_needs_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let half = format!("{SINK}client_cert = \"leaf.pem\"\n");
        let err = load(dir.path(), &half).unwrap_err();
        assert!(
            err.contains("sinks.audit.client_cert: needs client_key too"),
            "{err}"
        );
        let wrong = format!("{SINK}client_cert = \"leaf.pem\"\nclient_key = \"other.key\"\n");
        let err = load(dir.path(), &wrong).unwrap_err();
        assert!(
            err.contains("sinks.audit.client_key: the key in") && err.contains("does not belong"),
            "{err}"
        );
        let right = format!("{SINK}client_cert = \"leaf.pem\"\nclient_key = \"leaf.key\"\n");
        let config = load(dir.path(), &right).unwrap();
        let pem = config.sinks[0].outbound.identity.as_ref().unwrap().pem();
        let text = std::str::from_utf8(pem).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        assert!(text.contains("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{config:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_version_1_certificate_is_named_as_such_not_blamed_on_its_key() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let (cert, key) = (fixtures.join("x509-v1.pem"), fixtures.join("x509-v1.key"));
        let chain = read_certificates(&cert).unwrap();
        let private = read_private_key(&key).unwrap();
        let err = check_key_pair(&chain, &private, &cert, &key).unwrap_err();
        assert!(
            err.contains("x509-v1.pem\" is X.509 version 1") && !err.contains("the key in"),
            "{err}"
        );
    }

    #[test]
    fn the_sink_proxy_overrides_the_server_proxy_which_overrides_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[server]\nproxy = \"http://proxy.internal:3128\"\n\n{SINK}\n\
             [sinks.direct]\nkind = \"webhook\"\nurl = \"https://d.internal/\"\nproxy = \"none\"\n"
        );
        let config = load(dir.path(), &text).unwrap();
        assert_eq!(
            config.sinks[0].outbound.proxy,
            Proxy::Url("http://proxy.internal:3128".into())
        );
        assert_eq!(config.sinks[1].outbound.proxy, Proxy::Direct);
        let config = load(dir.path(), SINK).unwrap();
        assert_eq!(config.sinks[0].outbound.proxy, Proxy::FromEnvironment);
    }

    #[test]
    fn a_bad_proxy_is_reported_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{SINK}proxy = \"socks5://user:hunter2@proxy:1080\"\n");
        let err = load(dir.path(), &text).unwrap_err();
        assert!(
            err.contains("sinks.audit.proxy: proxy scheme \"socks5\" is not supported"),
            "{err}"
        );
        // The excerpt shows the file's own line; the message itself never repeats the value.
        let message_line = err.lines().next().unwrap();
        assert!(!message_line.contains("hunter2"), "{err}");
    }

    #[test]
    fn server_tls_files_are_checked_and_resolved_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let ok = "[server]\ntls = { cert_file = \"leaf.pem\", key_file = \"leaf.key\", \
                  client_ca_file = \"ca.pem\" }\n";
        let config = load(dir.path(), ok).unwrap();
        let tls = config.server.tls.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("leaf.pem"));
        assert_eq!(tls.client_ca_file, Some(dir.path().join("ca.pem")));
        let mismatched = "[server]\ntls = { cert_file = \"leaf.pem\", key_file = \"other.key\" }\n";
        let err = load(dir.path(), mismatched).unwrap_err();
        assert!(err.contains("server.tls.key_file: the key in"), "{err}");
        let missing = "[server]\ntls = { cert_file = \"leaf.pem\" }\n";
        let err = load(dir.path(), missing).unwrap_err();
        assert!(err.contains("server.tls: missing key_file"), "{err}");
        let unknown = "[server]\ntls = { cert_file = \"leaf.pem\", key_file = \"leaf.key\", \
                       insecure = true }\n";
        let err = load(dir.path(), unknown).unwrap_err();
        assert!(err.contains("server.tls"), "{err}");
    }
}
