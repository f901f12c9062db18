//! The NATS JetStream sink (`kind = "nats"`): publishes each event's original body to a
//! subject rendered from the event, with headers naming the event, and waits for the
//! stream's publish acknowledgement.
//!
//! Invariants:
//! - `Delivered` only on the stream's acknowledgement. `Nats-Msg-Id` is the same for every
//!   publish of one delivery (`msg_id`), so a re-publish (a retry after a lost ack, a
//!   replay, a crash before the outcome was stored, the sender's retry through another
//!   instance) inside the stream's duplicate window is acknowledged as a duplicate and not
//!   stored twice.
//! - One connection per sink, made at the first delivery (a NATS server that is down never
//!   stops the relay from starting; deliveries retry) and kept: the client reconnects by
//!   itself. Concurrent deliveries share it.
//! - No acknowledgement, a timeout, a lost connection or "no responders" while a stream does
//!   listen on the subject is `Retry`; no stream for the subject, a subject that cannot be
//!   published to, or a message over the server's size limit is `Failed` with the reason.
//! - Messages name the subject and the stream, never a server URL or a credential.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use async_nats::{ConnectErrorKind, HeaderMap, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::OnceCell;

use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{NatsAuth, NatsSinkConfig, Outbound};
use crate::template::{EventContext, Target, Template};

/// Header carrying hookrelay's event id.
pub const HEADER_EVENT_ID: &str = "Hookrelay-Event-Id";
/// Header carrying the source's name.
pub const HEADER_SOURCE: &str = "Hookrelay-Source";
/// Header carrying the sender's event type, when known.
pub const HEADER_EVENT_TYPE: &str = "Hookrelay-Event-Type";
/// The other end of the sink's connection, for the words of a failed handshake.
const NATS_SERVER: super::http::Peer = super::http::Peer {
    noun: "NATS server",
    address_key: "url",
};
/// Longest subject accepted: far beyond any sensible one, well below the protocol's limits.
const LONGEST_SUBJECT: usize = 1024;

/// Publishes events to NATS JetStream.
pub struct NatsSink {
    name: Arc<str>,
    servers: Vec<String>,
    subject: Template,
    auth: NatsAuth,
    tls: Option<rustls::ClientConfig>,
    timeout: Duration,
    context: OnceCell<jetstream::Context>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Servers and credentials stay out of debug output.
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Compiles the subject template and the TLS settings; connects at the first delivery.
    pub fn new(
        name: &str,
        config: &NatsSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<NatsSink, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        let subject = Template::compile(&config.subject.text, Target::Plain, &config.subject.at)
            .map_err(|e| fail(e.to_string()))?;
        Ok(NatsSink {
            name: Arc::from(name),
            servers: config.servers.clone(),
            subject,
            auth: config.auth.clone(),
            tls: tls_config(outbound).map_err(fail)?,
            timeout,
            context: OnceCell::new(),
        })
    }

    /// The JetStream context, connecting first if this is the first use.
    async fn context(&self) -> Result<&jetstream::Context, String> {
        self.context
            .get_or_try_init(|| async {
                let mut options = match &self.auth {
                    NatsAuth::None => async_nats::ConnectOptions::new(),
                    NatsAuth::UserPassword { user, password } => {
                        async_nats::ConnectOptions::with_user_and_password(
                            user.clone(),
                            text(password.expose()),
                        )
                    }
                    NatsAuth::Token(token) => {
                        async_nats::ConnectOptions::with_token(text(token.expose()))
                    }
                    NatsAuth::NKey(seed) => {
                        async_nats::ConnectOptions::with_nkey(text(seed.expose()).trim().into())
                    }
                    NatsAuth::Creds(creds) => {
                        async_nats::ConnectOptions::with_credentials(&text(creds.expose()))
                            .map_err(|e| format!("the creds_file cannot be used: {e}"))?
                    }
                };
                options = options
                    .name(format!("hookrelay sink {}", self.name))
                    .connection_timeout(self.timeout)
                    .request_timeout(Some(self.timeout))
                    // Keep reconnecting for as long as the relay runs.
                    .max_reconnects(None);
                if let Some(tls) = &self.tls {
                    options = options.tls_client_config(tls.clone());
                }
                if self.servers.iter().any(|s| s.starts_with("tls://")) {
                    options = options.require_tls(true);
                }
                let addrs = self
                    .servers
                    .iter()
                    .map(|s| s.parse::<async_nats::ServerAddr>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "a server URL cannot be parsed".to_string())?;
                let client = options
                    .connect(addrs)
                    .await
                    .map_err(|e| format!("cannot connect to NATS: {}", self.connect_error(&e)))?;
                Ok(jetstream::ContextBuilder::new()
                    .timeout(self.timeout)
                    .build(client))
            })
            .await
    }

    /// Why a connection failed, and which of the sink's keys fixes it.
    fn connect_error(&self, e: &async_nats::ConnectError) -> String {
        let sink = &self.name;
        // A refused certificate surfaces as an I/O error holding the rustls one.
        if let Some(tls) = super::http::tls_cause(e) {
            return format!(
                "TLS handshake failed: {}",
                super::http::explain_tls(sink, NATS_SERVER, tls)
            );
        }
        match e.kind() {
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                match &self.auth {
                    NatsAuth::None => format!(
                        "the server requires credentials; set username and password, token, \
                         nkey or creds_file in [sinks.{sink}]"
                    ),
                    NatsAuth::UserPassword { user, .. } => format!(
                        "the server refused user \"{}\" with this password; fix [sinks.{sink}] \
                         username and password",
                        user.escape_debug()
                    ),
                    NatsAuth::Token(_) => {
                        format!("the server refused the token; fix [sinks.{sink}] token")
                    }
                    NatsAuth::NKey(_) => format!(
                        "the server refused the NKey; fix [sinks.{sink}] nkey (a user seed whose \
                         public key the server lists)"
                    ),
                    NatsAuth::Creds(_) => format!(
                        "the server refused the creds file's user; fix [sinks.{sink}] creds_file \
                         (a user of an account the server trusts)"
                    ),
                }
            }
            ConnectErrorKind::TimedOut => format!(
                "no answer within the sink's timeout ({}); check [sinks.{sink}] url, or raise \
                 its timeout",
                humantime::format_duration(self.timeout)
            ),
            ConnectErrorKind::Tls => format!(
                "TLS failed ({}); check [sinks.{sink}] url (tls:// needs a server with TLS), \
                 ca_file, client_cert and client_key, or [tls] ca_file",
                super::http::innermost(e)
            ),
            ConnectErrorKind::Dns => {
                format!("the host name does not resolve; check [sinks.{sink}] url")
            }
            ConnectErrorKind::ServerParse => {
                format!("a server URL cannot be parsed; fix [sinks.{sink}] url")
            }
            _ => format!(
                "no server answered ({}); check [sinks.{sink}] url and that NATS is up",
                super::http::innermost(e)
            ),
        }
    }

    /// "No responders" means no stream took the message: none listens on the subject (for
    /// good), or its stream has no leader right now (for a while). The stream list tells.
    async fn no_responders(&self, js: &jetstream::Context, subject: &str) -> Outcome {
        use async_nats::jetstream::context::GetStreamByNameErrorKind as Kind;
        match js.stream_by_subject(subject).await {
            Err(e) if e.kind() == Kind::NotFound => failed(format!(
                "no JetStream stream listens on subject \"{subject}\"; add the subject to a \
                 stream (e.g. nats stream add --subjects 'hooks.>') or fix [sinks.{}] subject",
                self.name
            )),
            Ok(stream) => unreachable(format!(
                "stream \"{stream}\" did not answer for subject \"{subject}\" (no responders); \
                 is JetStream up?"
            )),
            Err(_) => unreachable(format!(
                "JetStream did not answer for subject \"{subject}\" (no responders); is \
                 JetStream enabled and up?"
            )),
        }
    }
}

impl Sink for NatsSink {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let subject = match self.subject.render(&EventContext::new(delivery)) {
            Ok(s) => s.trim().to_string(),
            Err(e) => {
                return failed(format!(
                    "the subject cannot be rendered for this event: {e}; fix [sinks.{}] subject",
                    self.name
                ));
            }
        };
        if let Err(why) = check_subject(&subject) {
            return failed(format!(
                "the subject rendered for this event, \"{}\", {why}; fix [sinks.{}] subject",
                subject.escape_debug(),
                self.name
            ));
        }
        let js = match tokio::time::timeout(self.timeout, self.context()).await {
            Ok(Ok(js)) => js,
            Ok(Err(message)) => return unreachable(message),
            Err(_) => {
                return unreachable(format!(
                    "cannot connect to NATS: no answer within the sink's timeout ({})",
                    humantime::format_duration(self.timeout)
                ));
            }
        };
        let publish = async {
            js.publish_with_headers(
                subject.clone(),
                headers(&self.name, delivery),
                delivery.event.body.clone(),
            )
            .await?
            .await
        };
        let result = match tokio::time::timeout(self.timeout, publish).await {
            Ok(r) => r,
            Err(_) => {
                return unreachable(format!(
                    "no publish acknowledgement within the sink's timeout ({})",
                    humantime::format_duration(self.timeout)
                ));
            }
        };
        match result {
            Ok(ack) => Outcome::Delivered {
                status: None,
                message_id: Some(format!("{}:{}", ack.stream, ack.sequence)),
            },
            Err(e) => match e.kind() {
                // The client reports a "no responders" status as StreamNotFound.
                PublishErrorKind::StreamNotFound => self.no_responders(js, &subject).await,
                PublishErrorKind::MaxPayloadExceeded => failed(format!(
                    "the event ({} bytes of body) is larger than the NATS server's \
                     max_payload; raise max_payload on the server",
                    delivery.event.body.len()
                )),
                PublishErrorKind::TimedOut => {
                    unreachable("no publish acknowledgement in time".into())
                }
                PublishErrorKind::BrokenPipe => {
                    unreachable("the connection to NATS was lost before the acknowledgement".into())
                }
                PublishErrorKind::Other => match std::error::Error::source(&e) {
                    // An error the stream answered with: a refusal for good (the message is
                    // over the stream's max_msg_size, the stream is sealed...).
                    Some(cause)
                        if cause
                            .downcast_ref::<async_nats::jetstream::Error>()
                            .is_some() =>
                    {
                        failed(format!("the stream refused the message: {cause}"))
                    }
                    _ => retry(format!("the publish failed: {e}")),
                },
                _ => retry(format!("the publish failed: {e}")),
            },
        }
    }
}

/// The stream's deduplication id: `{sink}:{source}:{delivery id}` when the sender gave a
/// delivery id, else `{sink}:{event id}`. Instances are shared-nothing, so a sender's retry
/// that reached another instance got another event id there; keyed like each instance's own
/// dedup (source and delivery id), the stream's duplicate window catches it across
/// instances. The sink's name keeps two sinks that publish one event to one stream (two
/// subjects) from being taken for duplicates of each other. Sink and source names hold no
/// `:`, so the parts cannot be confused.
fn msg_id(sink: &str, d: &Delivery) -> String {
    match &d.event.delivery_id {
        Some(delivery) => format!("{sink}:{}:{delivery}", d.event.source),
        None => format!("{sink}:{}", d.event.id.hyphenated()),
    }
}

/// The message's headers: the deduplication id and what names the event.
fn headers(sink: &str, d: &Delivery) -> HeaderMap {
    let id = d.event.id.hyphenated().to_string();
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, value(&msg_id(sink, d)));
    headers.insert(HEADER_EVENT_ID, id.as_str());
    headers.insert(HEADER_SOURCE, value(&d.event.source));
    if let Some(event_type) = &d.event.event_type {
        headers.insert(HEADER_EVENT_TYPE, value(event_type));
    }
    if let Some(content_type) = &d.event.content_type {
        headers.insert("Content-Type", value(content_type));
    }
    headers
}

/// A header value; line breaks (which would end the header) become spaces.
fn value(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    HeaderValue::from_str(&clean).expect("a value without CR or LF is valid")
}

/// Whether a rendered subject can be published to: dot-separated non-empty tokens, no
/// whitespace, no wildcards.
fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("is empty");
    }
    if subject.len() > LONGEST_SUBJECT {
        return Err("is longer than 1024 bytes");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    if tokens.iter().any(|t| t.is_empty()) {
        return Err(
            "has an empty token (two dots in a row, or a dot at an end; a value the \
                    template printed may be empty)",
        );
    }
    if tokens.iter().any(|t| *t == "*" || *t == ">") {
        return Err("contains a wildcard (* or >), which cannot be published to");
    }
    Ok(())
}

/// The rustls settings when the defaults (the system's roots, no client certificate) do
/// not do: extra roots, or a client certificate.
fn tls_config(outbound: &Outbound) -> Result<Option<rustls::ClientConfig>, String> {
    if outbound.roots.is_empty() && outbound.system_roots && outbound.identity.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    if outbound.system_roots {
        // Unreadable system certificates are skipped; the configured ones still count.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    for der in &outbound.roots {
        roots
            .add(der.clone())
            .map_err(|e| format!("a ca_file certificate is unusable: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match &outbound.identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let certs = CertificateDer::pem_slice_iter(identity.pem())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| "client_cert cannot be read".to_string())?;
            let key = PrivateKeyDer::from_pem_slice(identity.pem())
                .map_err(|_| "client_key cannot be read".to_string())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client_cert and client_key cannot be used: {e}"))?
        }
    };
    Ok(Some(config))
}

/// A secret's bytes as text (validated as UTF-8 where it matters; lossy otherwise).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn retry(message: String) -> Outcome {
    Outcome::Retry {
        after: None,
        error: SinkError::new(None, message),
    }
}

/// A retry because NATS or its JetStream did not answer at all: the whole sink waits.
fn unreachable(message: String) -> Outcome {
    Outcome::Retry {
        after: None,
        error: SinkError::unreachable(message),
    }
}

fn failed(message: String) -> Outcome {
    Outcome::Failed(SinkError::new(None, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_that_cannot_be_published_to_are_refused() {
        assert_eq!(check_subject("hooks.github.push"), Ok(()));
        assert!(check_subject("").is_err());
        assert!(
            check_subject("hooks..push")
                .unwrap_err()
                .contains("empty token")
        );
        assert!(check_subject("hooks.github.").is_err());
        assert!(check_subject("hooks.*").unwrap_err().contains("wildcard"));
        assert!(check_subject("hooks.>").is_err());
        assert!(
            check_subject("hooks.a b")
                .unwrap_err()
                .contains("whitespace")
        );
        // `test-sink`'s message goes out on the README's subject.
        let test = format!("hooks.{}.hookrelay.test", crate::sinks::TEST_SOURCE);
        assert_eq!(check_subject(&test), Ok(()));
    }

    #[test]
    fn headers_name_the_event_and_carry_the_dedup_id() {
        let mut d = super::super::test_delivery();
        std::sync::Arc::make_mut(&mut d.event).event_type = Some("push\r\nX: y".to_string());
        let h = headers("jetstream", &d);
        let id = d.event.id.hyphenated().to_string();
        assert_eq!(
            h.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(format!("jetstream:{id}").as_str())
        );
        std::sync::Arc::make_mut(&mut d.event).delivery_id = Some("72d3162e\r\n".to_string());
        let with_delivery = headers("jetstream", &d);
        assert_eq!(
            with_delivery.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(format!("jetstream:{}:72d3162e  ", super::super::TEST_SOURCE).as_str())
        );
        // Another sink publishing the same event is not its duplicate.
        assert_ne!(
            headers("copy", &d).get("Nats-Msg-Id"),
            with_delivery.get("Nats-Msg-Id")
        );
        assert_eq!(
            with_delivery.get(HEADER_EVENT_ID).map(|v| v.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            h.get(HEADER_EVENT_ID).map(|v| v.as_str()),
            Some(id.as_str())
        );
        assert_eq!(
            h.get(HEADER_SOURCE).map(|v| v.as_str()),
            Some(super::super::TEST_SOURCE)
        );
        assert_eq!(
            h.get(HEADER_EVENT_TYPE).map(|v| v.as_str()),
            Some("push  X: y")
        );
    }
}
