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
//! what is left. The `Message-ID` is derived from the event id and the sink's name, the same
//! on every attempt, so a mail system can drop a duplicate after a retry, and only then.
//!
//! Answers: a 2xx reply delivered; a permanent rejection (5xx) is never retried; a transient
//! one (4xx), a timeout and any connection or TLS failure retry. A retry after some
//! recipients took the mail and others refused it for now goes to those others only. One pooled connection per
//! sink. The password never appears in an error or a log line.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{
    Certificate, CertificateStore, Identity, Tls, TlsParameters,
};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::Digest;
use uuid::Uuid;

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
    settled: Mutex<Settled>,
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
            settled: Mutex::default(),
        })
    }

    fn settled(&self) -> MutexGuard<'_, Settled> {
        // Held only for a map update: a panic elsewhere leaves it whole.
        self.settled.lock().unwrap_or_else(PoisonError::into_inner)
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
            .message_id(Some(message_id(delivery.event.id, &self.name, domain)));
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
                Outcome::Failed(SinkError::new(None, format!("cannot build the mail: {e}")))
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
        let event = delivery.event.id;
        let raw = message.formatted();
        let done = self.settled().done(event);
        let left: Vec<Address> = message
            .envelope()
            .to()
            .iter()
            .filter(|to| !done.contains(to))
            .cloned()
            .collect();
        let Ok(envelope) = Envelope::new(message.envelope().from().cloned(), left) else {
            // Every recipient took the mail in earlier attempts (the outcome that said so
            // was not the last word: the others were retried).
            self.settled().forget(event);
            return delivered();
        };
        let earlier = !done.is_empty();
        let sent =
            tokio::time::timeout(self.timeout, self.send(&envelope, &raw, event, earlier)).await;
        let Ok(sent) = sent else {
            // Recipients that took the mail before the timeout stay settled. No answer
            // within the timeout: the server is out of reach, as for the webhook sinks.
            return Outcome::Retry {
                after: None,
                error: SinkError::unreachable(format!(
                    "timed out after {}; raise [sinks.{}] timeout if the SMTP server is slow",
                    humantime::format_duration(self.timeout),
                    self.name
                )),
            };
        };
        match sent {
            Sent::Done => {
                self.settled().forget(event);
                tracing::debug!(sink = %self.name, "mail accepted");
                delivered()
            }
            Sent::Partly { later } => Outcome::Retry {
                after: None,
                error: SinkError::new(
                    None,
                    format!(
                        "the SMTP server refused the mail for now to {later}; the other \
                         recipients have it (a retry goes to these only)"
                    ),
                ),
            },
            Sent::Failed(err) => {
                let outcome = classify(&self.name, &err, self.may_want_client_cert);
                if !matches!(outcome, Outcome::Retry { .. }) {
                    self.settled().forget(event);
                }
                outcome
            }
        }
    }
}

fn delivered() -> Outcome {
    Outcome::Delivered {
        status: None,
        message_id: None,
    }
}

/// How one attempt's sending ended.
enum Sent {
    /// Every recipient it went to took the mail, or refused it for good while another
    /// recipient took it (in this attempt or an earlier one; logged, by address).
    Done,
    /// Some recipients refused the mail for now and the others are settled: retry, for
    /// those only. `later` names them, with the server's answers.
    Partly { later: String },
    /// No recipient has taken the mail yet: this error decides (a temporary one first, so
    /// the mail is retried).
    Failed(lettre::transport::smtp::Error),
}

impl SmtpSink {
    /// Sends `raw` to the recipients of `envelope` in one transaction, or to each in its own
    /// once that was refused; `earlier` when other recipients took this event's mail in an
    /// earlier attempt.
    async fn send(&self, envelope: &Envelope, raw: &[u8], event: Uuid, earlier: bool) -> Sent {
        match self.transport.send_raw(envelope, raw).await {
            Ok(_) => Sent::Done,
            // One refused recipient (a stale address, a full mailbox) fails the whole
            // transaction: send to each alone, so it does not stop the mail for all.
            Err(err) if (err.is_permanent() || err.is_transient()) && envelope.to().len() > 1 => {
                self.send_to_each(envelope, raw, err, event, earlier).await
            }
            // The last recipient left of a mail others took in earlier attempts.
            Err(err) if err.is_permanent() && earlier => {
                self.warn_refused(&[refusal(&envelope.to()[0], &err)], 0);
                Sent::Done
            }
            Err(err) if err.is_transient() && earlier => Sent::Partly {
                later: refusal(&envelope.to()[0], &err),
            },
            Err(err) => Sent::Failed(err),
        }
    }

    /// Sends `raw` to each recipient of `envelope` in its own transaction, after `first`
    /// refused the whole list. Each one that takes the mail, or refuses it for good, is
    /// settled for `event` at once, so a retry (even after a timeout) does not send to it.
    async fn send_to_each(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        first: lettre::transport::smtp::Error,
        event: Uuid,
        earlier: bool,
    ) -> Sent {
        let mut delivered = 0;
        let mut refused = Vec::new();
        let mut later = Vec::new();
        let mut temporary = None;
        for to in envelope.to() {
            let Ok(alone) = Envelope::new(envelope.from().cloned(), vec![to.clone()]) else {
                continue;
            };
            match self.transport.send_raw(&alone, raw).await {
                Ok(_) => {
                    delivered += 1;
                    self.settled().settle(event, to);
                }
                Err(err) if err.is_permanent() => {
                    refused.push(refusal(to, &err));
                    self.settled().settle(event, to);
                }
                Err(err) => {
                    later.push(refusal(to, &err));
                    temporary = Some(err);
                }
            }
        }
        if delivered == 0 && !earlier {
            if temporary.is_none() {
                // Refused for good by all: a dead letter, nothing left to remember.
                self.settled().forget(event);
            }
            // Retried when any refusal was temporary, then without those refused for good.
            return Sent::Failed(temporary.unwrap_or(first));
        }
        if !refused.is_empty() {
            self.warn_refused(&refused, delivered);
        }
        if later.is_empty() {
            Sent::Done
        } else {
            Sent::Partly {
                later: later.join(", "),
            }
        }
    }

    /// Names the recipients that refused the mail for good while others took it: retrying
    /// would not change their answer, so the operator hears it here.
    fn warn_refused(&self, refused: &[String], delivered_to: usize) {
        tracing::warn!(
            sink = %self.name,
            refused = %refused.join(", "),
            delivered_to,
            "the SMTP server refused some recipients for good; the mail went to the others. Remove them from [sinks.{}] to",
            self.name
        );
    }
}

/// `to` and the server's answer, for a log line or an attempt's error.
fn refusal(to: &Address, err: &lettre::transport::smtp::Error) -> String {
    format!("{to} ({})", one_line(&err.to_string()))
}

/// `<event id.sink@domain>`: the same on every attempt of one mail, and different for each
/// sink, whose mails differ (subject, template, recipients): a mail system that drops a
/// repeated Message-ID must not drop one sink's mail as a copy of another's. A sink name
/// with characters a Message-ID cannot hold (TOML allows quoted names) is replaced by a
/// digest of it.
fn message_id(event: Uuid, sink: &str, domain: &str) -> String {
    let plain = !sink.is_empty()
        && sink
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let tag = if plain {
        sink.to_owned()
    } else {
        let digest = sha2::Sha256::digest(sink.as_bytes());
        hex::encode(&digest[..8])
    };
    format!("<{}.{tag}@{domain}>", event.hyphenated())
}

/// Most events remembered with recipients settled while others are retried; past it the
/// oldest is forgotten, and its next attempt goes to every recipient again.
const MAX_REMEMBERED: usize = 10_000;

/// For events whose mail some recipients refused for now: the recipients done with it (took
/// it, or refused it for good), so a retry sends no one a second copy. In memory only: after
/// a restart or reload a retry goes to every recipient again. That is at least once, like
/// every sink, and the Message-ID is the same, so a mail system can drop the copy.
#[derive(Default)]
struct Settled {
    by_event: HashMap<Uuid, Vec<Address>>,
    /// `by_event`'s keys, oldest first.
    order: VecDeque<Uuid>,
}

impl Settled {
    fn done(&self, event: Uuid) -> Vec<Address> {
        self.by_event.get(&event).cloned().unwrap_or_default()
    }

    fn settle(&mut self, event: Uuid, to: &Address) {
        if !self.by_event.contains_key(&event) {
            if self.order.len() >= MAX_REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_event.remove(&oldest);
            }
            self.order.push_back(event);
        }
        let done = self.by_event.entry(event).or_default();
        if !done.contains(to) {
            done.push(to.clone());
        }
    }

    fn forget(&mut self, event: Uuid) {
        if self.by_event.remove(&event).is_some() {
            self.order.retain(|e| *e != event);
        }
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
        // No reply code: the server was never reached, or the connection or TLS failed.
        unreachable: code.is_none(),
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

    #[test]
    fn message_ids_differ_by_sink_and_hold_only_characters_a_message_id_allows() {
        let event = Uuid::from_u128(0x0123_4567_89ab_cdef);
        let plain = message_id(event, "team-mail_2", "example.com");
        assert_eq!(
            plain,
            "<00000000-0000-0000-0123-456789abcdef.team-mail_2@example.com>"
        );
        assert_ne!(plain, message_id(event, "ops-mail", "example.com"));
        // A quoted TOML name with a space and an `@`: a digest stands in for it.
        let odd = message_id(event, "ops mail@x", "example.com");
        let tag = odd
            .strip_prefix("<00000000-0000-0000-0123-456789abcdef.")
            .and_then(|rest| rest.strip_suffix("@example.com>"))
            .unwrap();
        assert_eq!(tag.len(), 16, "{odd}");
        assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{odd}");
        assert_ne!(odd, message_id(event, "ops mail@y", "example.com"));
    }

    #[test]
    fn settled_recipients_are_bounded_and_forgotten_once_the_mail_is_done() {
        let mut settled = Settled::default();
        let ops: Address = "ops@example.com".parse().unwrap();
        let dev: Address = "dev@example.com".parse().unwrap();
        let first = Uuid::from_u128(1);
        settled.settle(first, &ops);
        settled.settle(first, &ops);
        settled.settle(first, &dev);
        assert_eq!(settled.done(first), vec![ops.clone(), dev.clone()]);
        // The oldest event goes first once the bound is reached.
        for n in 2..=MAX_REMEMBERED as u128 + 1 {
            settled.settle(Uuid::from_u128(n), &ops);
        }
        assert!(settled.done(first).is_empty());
        assert_eq!(settled.done(Uuid::from_u128(2)), vec![ops.clone()]);
        assert_eq!(settled.by_event.len(), MAX_REMEMBERED);
        assert_eq!(settled.order.len(), MAX_REMEMBERED);
        settled.forget(Uuid::from_u128(2));
        assert!(settled.done(Uuid::from_u128(2)).is_empty());
        assert_eq!(settled.order.len(), MAX_REMEMBERED - 1);
    }

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
            Outcome::Retry { error, .. } => {
                assert_eq!(
                    error.message,
                    "timed out after 200ms; raise [sinks.mail] timeout if the SMTP server is slow"
                );
                assert!(
                    error.unreachable,
                    "no answer holds the sink like a refused connect"
                );
            }
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
