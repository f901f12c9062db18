//! The e-mail sink (`kind = "smtp"`): one mail per event through an SMTP server, with lettre
//! over rustls (`tls = "starttls"` required, `"implicit"` from the first byte, or `"none"`).
//! Trust and the client certificate come from the sink's [`Outbound`] like every HTTP
//! sink's (`[tls] ca_file`, the sink's `ca_file`, `client_cert`, `client_key`); a failed
//! handshake is explained in the same words (`http::handshake_failure`). SMTP never goes
//! through a proxy.
//!
//! The mail is `multipart/alternative`: a plain-text part and an HTML part rendered from the
//! same template (escaped for each), CRLF line endings. The subject is rendered as plain text
//! and folded onto one line, so an event cannot add a header (`\r\nBcc: …`); lettre encodes
//! what is left. The `Message-ID` is derived from the event id, the same on every attempt,
//! so a mail system can drop a duplicate after a retry.
//!
//! Answers: a 2xx reply delivered; a permanent rejection (5xx) is never retried; a transient
//! one (4xx), a timeout and any connection or TLS failure retry. One pooled connection per
//! sink. The password never appears in an error or a log line.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Identity, Tls, TlsParameters,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::chat;
use super::http::{Peer, handshake_failure};
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{Outbound, SmtpSinkConfig, SmtpTls};
use crate::template::{DEFAULT_SUBJECT, Target, Template, one_line};

/// Idle pooled connections are closed after this long (servers drop them at about 5 min).
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest subject sent, in characters.
const MAX_SUBJECT: usize = 200;
/// The other end of the sink's connection, for the words of a failed handshake.
const SERVER: Peer = Peer {
    noun: "SMTP server",
    address_key: "host",
};

/// Sends mail through one SMTP server.
pub struct SmtpSink {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// TLS is on and no client certificate is set: a server that hangs up during the
    /// handshake probably wanted one.
    may_want_client_cert: bool,
    /// Bounds a whole send: lettre's own timeout covers only the TCP connect, so a server
    /// that accepts and never greets (or stalls mid-transaction) would hold the slot until
    /// dispatch's backstop.
    timeout: Duration,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Template,
    text: Template,
    html: Template,
}

impl fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSink")
            .field("name", &self.name)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Builds the sink: its transport (no connection yet) and compiled templates; trust and
    /// the client certificate come from `outbound`.
    pub fn new(
        name: &str,
        config: &SmtpSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<SmtpSink, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        // lettre is built without a default crypto provider; installing one twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(name, &config.host, outbound)?),
            SmtpTls::Implicit => Tls::Wrapper(tls_parameters(name, &config.host, outbound)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .tls(tls)
            .port(config.port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(1).idle_timeout(POOL_IDLE));
        if let Some((user, password)) = &config.credentials {
            let password = String::from_utf8(password.expose().to_vec())
                .map_err(|_| fail(format!("[sinks.{name}] password is not UTF-8 text")))?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let mailbox = |text: &str, key: &str| {
            Mailbox::from_str(text)
                .map_err(|e| fail(format!("[sinks.{name}] {key} is not a mail address ({e})")))
        };
        let message = config.template.as_ref();
        Ok(SmtpSink {
            name: name.to_string(),
            transport: builder.build(),
            may_want_client_cert: config.tls != SmtpTls::None && outbound.identity.is_none(),
            timeout,
            from: mailbox(&config.from, "from")?,
            to: config
                .to
                .iter()
                .map(|t| mailbox(t, "to"))
                .collect::<Result<_, _>>()?,
            subject: chat::compile(
                name,
                config.subject.as_ref(),
                DEFAULT_SUBJECT,
                Target::Plain,
            )?,
            text: chat::message_template(name, message, Target::Plain)?,
            html: chat::message_template(name, message, Target::Html)?,
        })
    }

    fn message(&self, delivery: &Delivery) -> Result<Message, Outcome> {
        let event = chat::context(delivery);
        let subject = chat::render(&self.subject, &event)?;
        let subject = crate::template::cut(&one_line(&subject), MAX_SUBJECT);
        let text = crlf(chat::render(&self.text, &event)?.trim());
        let html = chat::render(&self.html, &event)?;
        let html = crlf(&format!(
            "<!DOCTYPE html>\n<html><body>\n<div style=\"font-family: sans-serif; white-space: pre-wrap\">{}</div>\n</body></html>\n",
            html.trim()
        ));
        let domain = self.from.email.domain();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .header(AutoSubmitted)
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{domain}>",
                delivery.event_id.hyphenated()
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| {
                Outcome::Failed(SinkError {
                    status: None,
                    message: format!("cannot build the mail: {e}"),
                })
            })
    }
}

impl Sink for SmtpSink {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let message = match self.message(delivery) {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        let envelope = message.envelope().clone();
        let raw = message.formatted();
        let sent = tokio::time::timeout(self.timeout, async {
            let all = self.transport.send_raw(&envelope, &raw).await;
            match all {
                // One refused recipient (a stale address, a full mailbox) fails the whole
                // transaction: send to each alone, so it does not stop the mail for all.
                Err(err)
                    if (err.is_permanent() || err.is_transient()) && envelope.to().len() > 1 =>
                {
                    Err(self.send_to_each(&envelope, &raw, err).await)
                }
                other => other.map(|_| ()).map_err(Fallback::Failed),
            }
        })
        .await;
        let Ok(sent) = sent else {
            return Outcome::Retry {
                after: None,
                error: SinkError {
                    status: None,
                    message: format!(
                        "timed out after {}; raise [sinks.{}] timeout if the SMTP server is slow",
                        humantime::format_duration(self.timeout),
                        self.name
                    ),
                },
            };
        };
        match sent {
            Ok(()) | Err(Fallback::Partly) => {
                tracing::debug!(sink = %self.name, "mail accepted");
                Outcome::Delivered {
                    status: None,
                    message_id: None,
                }
            }
            Err(Fallback::Failed(err)) => classify(&self.name, &err, self.may_want_client_cert),
        }
    }
}

/// How a send that needed one transaction per recipient ended.
enum Fallback {
    /// Some recipients took the mail and the others refused it (logged, by address).
    Partly,
    /// No recipient took it: this error decides (a temporary one first, so the mail is
    /// retried).
    Failed(lettre::transport::smtp::Error),
}

impl SmtpSink {
    /// Sends `raw` to each recipient of `envelope` in its own transaction, after `first`
    /// refused the whole list.
    async fn send_to_each(
        &self,
        envelope: &lettre::address::Envelope,
        raw: &[u8],
        first: lettre::transport::smtp::Error,
    ) -> Fallback {
        let mut delivered = 0;
        let mut refused = Vec::new();
        let mut later = Vec::new();
        let mut temporary = None;
        for to in envelope.to() {
            let Ok(alone) =
                lettre::address::Envelope::new(envelope.from().cloned(), vec![to.clone()])
            else {
                continue;
            };
            match self.transport.send_raw(&alone, raw).await {
                Ok(_) => delivered += 1,
                Err(err) if err.is_permanent() => {
                    refused.push(format!("{to} ({})", one_line(&err.to_string())));
                }
                Err(err) => {
                    later.push(format!("{to} ({})", one_line(&err.to_string())));
                    temporary = Some(err);
                }
            }
        }
        if delivered == 0 {
            // Retried whole when any refusal was temporary.
            return Fallback::Failed(temporary.unwrap_or(first));
        }
        // Some took it. Retrying would send those a copy per attempt, so the others are
        // named in the log instead: the operator sees who did not get this mail.
        if !refused.is_empty() {
            tracing::warn!(
                sink = %self.name,
                refused = %refused.join(", "),
                delivered_to = delivered,
                "the SMTP server refused some recipients for good; the mail went to the others. Remove them from [sinks.{}] to",
                self.name
            );
        }
        if !later.is_empty() {
            tracing::warn!(
                sink = %self.name,
                not_now = %later.join(", "),
                delivered_to = delivered,
                "the SMTP server refused some recipients for now (a full mailbox, greylisting); the mail went to the others, and these did not get it"
            );
        }
        Fallback::Partly
    }
}

/// What an SMTP failure means; `may_want_client_cert` when TLS is on without a client
/// certificate.
fn classify(
    name: &str,
    err: &lettre::transport::smtp::Error,
    may_want_client_cert: bool,
) -> Outcome {
    let code = err.status().map(|c| c.to_string());
    let what = one_line(&err.to_string());
    let message = match (&code, handshake_failure(name, SERVER, err)) {
        (Some(code), _) => format!("SMTP server answered {code}: {what}"),
        (None, Some(handshake)) => handshake,
        // A server that demands a client certificate and gets none often hangs up with no
        // TLS alert to say why (TLS 1.3 checks the certificate after the client's handshake
        // is done; Python's and some other servers send no alert at all).
        (None, None) if may_want_client_cert && hung_up(err) => format!(
            "SMTP failed: the SMTP server closed the connection during or right after the \
             TLS handshake ({what}); if it requires a client certificate, set client_cert \
             and client_key in [sinks.{name}]"
        ),
        (None, None) => format!("SMTP failed: {what}"),
    };
    let error = SinkError {
        status: None,
        message,
    };
    if err.is_permanent() {
        Outcome::Failed(SinkError {
            message: format!(
                "{}; not retrying. Check [sinks.{name}] from, to and credentials.",
                error.message
            ),
            ..error
        })
    } else if err.is_client() {
        Outcome::Failed(error)
    } else {
        // 4xx, timeouts, TLS and connection failures.
        Outcome::Retry { after: None, error }
    }
}

/// The rustls settings of the connection to `host`: the system's roots unless `[tls]
/// use_system_roots = false`, every configured CA, and the client certificate.
fn tls_parameters(
    name: &str,
    host: &str,
    outbound: &Outbound,
) -> Result<TlsParameters, SinkBuildError> {
    let fail = |message: String| SinkBuildError {
        sink: name.to_string(),
        message,
    };
    let mut builder = TlsParameters::builder(host.to_string());
    if !outbound.system_roots {
        builder = builder.certificate_store(CertificateStore::None);
    }
    for der in &outbound.roots {
        let root = Certificate::from_der(der.to_vec())
            .map_err(|e| fail(format!("a ca_file certificate is unusable: {e}")))?;
        builder = builder.add_root_certificate(root);
    }
    if let Some(identity) = &outbound.identity {
        let pem = identity.pem();
        let chain = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| fail("client_cert cannot be read again".to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(fail("client_cert holds no certificate".to_string()));
        };
        if chain.len() > 1 {
            // lettre's rustls identity takes one DER certificate: intermediates are not sent.
            tracing::warn!(
                sink = %name,
                "client_cert holds a chain; the SMTP sink presents only the first \
                 (leaf) certificate, so the server must know its intermediate CAs"
            );
        }
        // The first argument is read as one DER certificate by lettre's rustls backend,
        // the second as PEM holding the private key (the first one found).
        let identity = Identity::from_pem(leaf.as_ref(), pem)
            .map_err(|_| fail("client_key cannot be used with client_cert".to_string()))?;
        builder = builder.identify_with(identity);
    }
    builder
        .build_rustls()
        .map_err(|e| fail(format!("cannot set up TLS for the SMTP server: {e}")))
}

/// Whether the peer closed the connection unexpectedly somewhere in `err`'s chain.
fn hung_up(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        next = e.source();
    }
    false
}

/// `text` with every line ending as CRLF.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// `Auto-Submitted: auto-generated` (RFC 3834): the mail is from a program, so
/// out-of-office responders and mailing lists do not answer it.
#[derive(Debug, Clone, Copy)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `tests/faults.rs` (a server that accepts and never greets): lettre's timeout
    /// covers only the TCP connect, so each attempt ran until dispatch's backstop
    /// (`timeout` + 2 s) and the failure named that figure, not the configured one.
    #[tokio::test]
    async fn regression_a_server_that_never_greets_is_cut_off_at_the_sinks_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                open.push(stream);
            }
        });
        let config = SmtpSinkConfig {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            credentials: None,
            from: "hookrelay <relay@example.com>".into(),
            to: vec!["team@example.com".into()],
            subject: None,
            template: None,
        };
        let timeout = Duration::from_millis(200);
        let sink = SmtpSink::new("mail", &config, &Outbound::default(), timeout).unwrap();
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            sink.deliver(&crate::sinks::test_delivery()),
        )
        .await
        .expect("the send ends on its own, not only at dispatch's backstop");
        let took = started.elapsed();
        held.abort();
        match outcome {
            Outcome::Retry { error, .. } => assert_eq!(
                error.message,
                "timed out after 200ms; raise [sinks.mail] timeout if the SMTP server is slow"
            ),
            other => panic!("a silent server is retried: {other:?}"),
        }
        assert!(
            took >= timeout && took < Duration::from_secs(1),
            "cut off at the sink's timeout: {took:?}"
        );
    }

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc\r\n");
        assert_eq!(crlf(""), "");
    }
}
