//! The HTTP client every HTTP sink uses, built from the sink's [`Outbound`] settings (trusted
//! CAs, client certificate, proxy), and the words for its transport failures.
//!
//! One client per sink: it owns the sink's connection pool. Every HTTP sink kind builds its
//! client with [`client`] and explains a failed request with [`transport_error`], so trust,
//! mTLS, proxies, timeouts and redirects behave the same for all of them.
//!
//! Invariants: certificate verification is never switched off; a failed handshake says
//! which certificate problem it was and which key fixes it (`ca_file`, `client_cert`).
//! Redirects are never followed (a redirect would re-send a body somewhere the operator
//! never named). Messages never carry a URL: reqwest errors do, so messages are built from
//! the error's causes only.

use std::error::Error as StdError;
use std::time::Duration;

use rustls::{AlertDescription, CertificateError};

use super::{Outcome, SinkBuildError, SinkError};
use crate::config::{Outbound, Proxy};

/// Idle keep-alive connections to a receiver are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// TCP keep-alive probes, so a receiver that vanished is noticed on a pooled connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Builds the HTTP client of sink `sink`; `timeout` bounds one whole request.
pub fn client(
    sink: &str,
    outbound: &Outbound,
    timeout: Duration,
) -> Result<reqwest::Client, SinkBuildError> {
    let fail = |message: String| SinkBuildError {
        sink: sink.to_string(),
        message,
    };
    // reqwest is built without a default crypto provider; installing one twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_keepalive(TCP_KEEPALIVE)
        .user_agent(concat!("hookrelay/", env!("CARGO_PKG_VERSION")));
    let roots = outbound
        .roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            fail(format!(
                "a ca_file certificate is unusable: {}",
                innermost(&e)
            ))
        })?;
    // A minimal container image may have no CA certificates at all: a sink that posts over
    // plain HTTP needs none, so the client is built with only the configured ones, and an
    // HTTPS receiver's handshake then says what to install.
    let system_roots = outbound.system_roots && system_roots_present();
    builder = match (system_roots, roots.is_empty()) {
        (true, true) => builder,
        (true, false) => builder.tls_certs_merge(roots),
        (false, _) => builder.tls_certs_only(roots),
    };
    if let Some(identity) = &outbound.identity {
        // The error never quotes the PEM: reqwest reports only what kind of item is missing.
        let identity = reqwest::Identity::from_pem(identity.pem()).map_err(|e| {
            fail(format!(
                "client_cert and client_key cannot be used: {}",
                innermost(&e)
            ))
        })?;
        builder = builder.identity(identity);
    }
    builder = match &outbound.proxy {
        // curl's `NO_PROXY=*` means no proxy for any host; reqwest applies `*` to host
        // names only, so a receiver given by IP address would still go through the proxy.
        Proxy::FromEnvironment if no_proxy_for_any_host() => builder.no_proxy(),
        // reqwest reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY when no proxy is given.
        Proxy::FromEnvironment => builder,
        Proxy::Direct => builder.no_proxy(),
        Proxy::Url(url) => {
            let proxy = reqwest::Proxy::all(url.as_str()).map_err(|e| {
                fail(format!(
                    "proxy cannot be used: {}; fix [sinks.{sink}] proxy or [server] proxy",
                    innermost(&e.without_url())
                ))
            })?;
            builder.proxy(proxy)
        }
    };
    builder.build().map_err(|e| {
        let cause = innermost(&e.without_url());
        let hint = if cause.contains("No CA certificates") {
            "; install the system's CA certificates (Debian: ca-certificates) or set [tls] \
             ca_file"
        } else {
            ""
        };
        fail(format!("cannot start the HTTP client: {cause}{hint}"))
    })
}

/// Whether this machine has CA certificates to trust (read once; a warning if not).
fn system_roots_present() -> bool {
    static PRESENT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PRESENT.get_or_init(|| {
        let present = !rustls_native_certs::load_native_certs().certs.is_empty();
        if !present {
            tracing::warn!(
                "this machine has no CA certificates: sinks can post to http:// receivers, and \
                 to https:// ones only with [tls] ca_file; install them (Debian: ca-certificates)"
            );
        }
        present
    })
}

/// Whether `NO_PROXY` (else `no_proxy`, the order reqwest reads them in) is `*`.
fn no_proxy_for_any_host() -> bool {
    ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
        .is_some_and(|value| value.trim() == "*")
}

/// A `407` comes from a proxy on the way, not from the receiver (which never asks for proxy
/// credentials): an operator's fix, retried, not a refusal of the event to dead-letter.
pub fn proxy_refused(sink: &str, status: http::StatusCode) -> Result<(), Outcome> {
    if status != http::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return Ok(());
    }
    Err(Outcome::Retry {
        after: None,
        error: SinkError::new(
            Some(status.as_u16()),
            format!(
                "the proxy on the way answered 407 Proxy Authentication Required: give it \
                 credentials as http://user:password@host:port in [sinks.{sink}] proxy, \
                 [server] proxy or HTTP_PROXY"
            ),
        ),
    })
}

/// Describes a request that got no answer (connect, TLS, timeout, proxy), without the URL;
/// `timeout` is the sink's, named when it ran out.
pub fn transport_error(sink: &str, err: reqwest::Error, timeout: Duration) -> SinkError {
    let err = err.without_url();
    let message = if err.is_timeout() {
        format!(
            "timed out after {}; raise [sinks.{sink}] timeout if the receiver is slow",
            humantime::format_duration(timeout)
        )
    } else if let Some(handshake) = handshake_failure(sink, RECEIVER, &err) {
        handshake
    } else if err.is_connect() {
        format!("could not connect: {}", innermost(&err))
    } else {
        format!("request failed: {}", innermost(&err))
    };
    SinkError::unreachable(message)
}

/// The rustls error somewhere in `err`'s chain. `io::Error` hides the error it wraps from
/// `source()` (it displays it instead), and connectors wrap io errors in io errors, so each
/// one is opened by hand.
pub(super) fn tls_cause<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Who is on the other end of a handshake, so a failure names it and the key that says
/// where it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    /// What the operator calls it: "receiver", "SMTP server".
    pub noun: &'static str,
    /// The sink key that holds its host name: `url`, `host`.
    pub address_key: &'static str,
}

/// The other end of an HTTP sink's request.
const RECEIVER: Peer = Peer {
    noun: "receiver",
    address_key: "url",
};

/// "TLS handshake failed: …" when a rustls error is somewhere in `err`'s chain: what the
/// certificate problem is and which key of sink `sink` fixes it. `None` for any other error.
pub(super) fn handshake_failure(
    sink: &str,
    peer: Peer,
    err: &(dyn StdError + 'static),
) -> Option<String> {
    tls_cause(err).map(|tls| format!("TLS handshake failed: {}", explain_tls(sink, peer, tls)))
}

/// What a handshake failure means for the operator, and which key fixes it.
pub(super) fn explain_tls(sink: &str, peer: Peer, err: &rustls::Error) -> String {
    let Peer { noun, address_key } = peer;
    let add_ca = if system_roots_present() {
        format!(
            "if the {noun}'s certificate comes from your own CA, add that CA's certificate \
             (PEM) with ca_file in [sinks.{sink}] or in [tls]"
        )
    } else {
        format!(
            "this machine has no CA certificates: install them (Debian: ca-certificates), or \
             add the CA's certificate (PEM) with ca_file in [sinks.{sink}] or in [tls]"
        )
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the {noun}'s certificate is not signed by a trusted certificate authority \
                 (unknown issuer); {add_ca}"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the {noun}'s certificate is not valid for the host name it was reached \
                     at ({err}); use a host name the certificate lists in [sinks.{sink}] \
                     {address_key}, or have the certificate reissued"
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the {noun}'s certificate has expired ({err}); the {noun} must renew it")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!(
                    "the {noun}'s certificate is not valid yet ({err}); check this machine's \
                     clock"
                )
            }
            CertificateError::BadEncoding | CertificateError::BadSignature => {
                format!("the {noun}'s certificate is malformed or badly signed ({err}); {add_ca}")
            }
            _ => format!("the {noun}'s certificate was rejected ({err}); {add_ca}"),
        },
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) => format!(
            "the {noun} refused the connection ({err}); it probably requires a client \
             certificate: set client_cert and client_key in [sinks.{sink}]"
        ),
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied,
        ) => format!(
            "the {noun} did not accept the client certificate, or wanted one and got none \
             (some servers say {err} for both); set client_cert and client_key in \
             [sinks.{sink}], signed by a CA the {noun} trusts"
        ),
        other => format!("{other}"),
    }
}

/// The most specific cause in an error's chain: the one that says what actually failed
/// ("Connection refused").
pub(super) fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut last: &(dyn StdError + 'static) = err;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_issuer_names_the_key_to_set() {
        let message = explain_tls(
            "audit",
            RECEIVER,
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert!(message.contains("unknown issuer"), "{message}");
        assert!(message.contains("ca_file in [sinks.audit]"), "{message}");
    }

    #[test]
    fn a_required_client_certificate_names_the_keys_to_set() {
        let message = explain_tls(
            "audit",
            RECEIVER,
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert!(
            message.contains("client_cert and client_key in [sinks.audit]"),
            "{message}"
        );
    }

    #[test]
    fn a_rustls_error_is_found_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert_eq!(
            tls_cause(&io),
            Some(&rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))
        );
        let nested = std::io::Error::other(io);
        assert_eq!(
            tls_cause(&nested),
            Some(&rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))
        );
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(tls_cause(&plain), None);
    }

    #[test]
    fn a_client_without_proxy_or_extra_roots_builds() {
        let outbound = Outbound {
            proxy: Proxy::Direct,
            ..Outbound::default()
        };
        client("audit", &outbound, Duration::from_secs(1)).unwrap();
    }
}
