//! Sinks: where events go. One file per kind; each turns a [`Delivery`] into a request and
//! the answer into an [`Outcome`].
//!
//! Invariant: a sink decides *whether* a failure is worth retrying (and honours the delay a
//! receiver asks for); dispatch alone decides *when*. Sinks know nothing of the store.

pub mod archive;
mod chat;
pub mod dependency_track;
pub mod discord;
pub mod guac;
pub mod http;
pub mod machine;
pub mod nats;
pub mod redact;
pub mod slack;
pub mod smtp;
pub mod teams;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::{SinkConfig, SinkKind};
use crate::store::StoredEvent;

/// One event on its way to one sink.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stored event: its id (stable across retries and replays: the idempotency key),
    /// source, event type, delivery id, kept headers (secrets dropped at ingress), content
    /// type, acceptance time and body, byte for byte. Shared with the other sinks' deliveries
    /// of the same event, so an attempt copies none of it.
    pub event: Arc<StoredEvent>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The event summary, for sinks that render messages ([`AnySink::renders_messages`]);
    /// `None` for the others, which never pay for parsing the body.
    pub summary: Option<Arc<crate::summary::Summary>>,
}

/// What went wrong in one attempt, as recorded and logged (never a URL or secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// A short human-readable reason.
    pub message: String,
    /// No answer came back at all (no connection, no TLS session, nothing within the
    /// timeout): the receiver, not this one event, is out of reach, so dispatch holds the
    /// whole sink instead of spending every queued delivery's attempts on it.
    pub unreachable: bool,
}

impl SinkError {
    /// A failure with the receiver's status when it answered, or one found before or
    /// without sending (`None`): the receiver is not out of reach.
    pub fn new(status: Option<u16>, message: String) -> SinkError {
        SinkError {
            status,
            unreachable: false,
            message,
        }
    }

    /// An attempt that got no answer at all (see `unreachable`).
    pub fn unreachable(message: String) -> SinkError {
        SinkError {
            status: None,
            unreachable: true,
            message,
        }
    }
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered {
        /// HTTP status, for sinks that speak HTTP.
        status: Option<u16>,
        /// The id the service gave the message (Slack's `ts`), when it gives one.
        message_id: Option<String>,
    },
    /// Worth trying again; `after` is the delay the receiver asked for, if any.
    Retry {
        after: Option<Duration>,
        error: SinkError,
    },
    /// Will never succeed as is: dead-letter it.
    Failed(SinkError),
    /// Nothing for this sink in the event (say, no SBOM in it): done, not retried, and the
    /// reason recorded with the attempt.
    Skipped {
        /// Why, naming what was looked for.
        reason: String,
    },
}

/// A destination for deliveries.
pub trait Sink {
    /// The `kind` string of this sink.
    fn kind(&self) -> &'static str;
    /// Makes one attempt. Must finish within the sink's timeout.
    fn deliver(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// Any sink, built from its config: its kind's sink, and the secrets masked in what its
/// receiver answers (see `redact`).
#[derive(Debug)]
pub struct AnySink {
    kind: KindSink,
    redactor: redact::Redactor,
}

/// Every sink kind, behind one enum that delegates.
#[derive(Debug)]
enum KindSink {
    /// `kind = "webhook"`.
    Webhook(webhook::WebhookSink),
    /// `kind = "dependency-track"`.
    DependencyTrack(dependency_track::DependencyTrackSink),
    /// `kind = "guac"`.
    Guac(guac::GuacSink),
    /// `kind = "archive"`.
    Archive(archive::ArchiveSink),
    /// `kind = "slack"`.
    Slack(slack::SlackSink),
    /// `kind = "discord"`.
    Discord(discord::DiscordSink),
    /// `kind = "teams"`.
    Teams(teams::TeamsSink),
    /// `kind = "smtp"` (boxed: its transport and three templates make it the largest).
    Smtp(Box<smtp::SmtpSink>),
    /// `kind = "nats"`.
    Nats(Box<nats::NatsSink>),
}

impl AnySink {
    /// Builds the sink for its validated configuration.
    pub fn new(config: &SinkConfig) -> Result<AnySink, SinkBuildError> {
        Ok(AnySink {
            kind: KindSink::new(config)?,
            redactor: redact::Redactor::new(config),
        })
    }

    /// Whether this sink renders templates, and so wants the event summary computed.
    pub fn renders_messages(&self) -> bool {
        self.kind.renders_messages()
    }
}

impl Sink for AnySink {
    fn kind(&self) -> &'static str {
        self.kind.kind()
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        self.redactor.outcome(self.kind.deliver(delivery).await)
    }
}

impl KindSink {
    fn new(config: &SinkConfig) -> Result<KindSink, SinkBuildError> {
        match &config.kind {
            SinkKind::Webhook(w) => Ok(KindSink::Webhook(webhook::WebhookSink::new(
                &config.name,
                w,
                &config.outbound,
                config.timeout,
            )?)),
            SinkKind::DependencyTrack(c) => Ok(KindSink::DependencyTrack(
                dependency_track::DependencyTrackSink::new(
                    &config.name,
                    c,
                    &config.outbound,
                    config.timeout,
                )?,
            )),
            SinkKind::Guac(c) => Ok(KindSink::Guac(guac::GuacSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?)),
            SinkKind::Slack(c) => Ok(KindSink::Slack(slack::SlackSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?)),
            SinkKind::Archive(c) => Ok(KindSink::Archive(archive::ArchiveSink::new(
                &config.name,
                c,
            )?)),
            SinkKind::Discord(c) => Ok(KindSink::Discord(discord::DiscordSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?)),
            SinkKind::Teams(c) => Ok(KindSink::Teams(teams::TeamsSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?)),
            SinkKind::Smtp(c) => Ok(KindSink::Smtp(Box::new(smtp::SmtpSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?))),
            SinkKind::Nats(c) => Ok(KindSink::Nats(Box::new(nats::NatsSink::new(
                &config.name,
                c,
                &config.outbound,
                config.timeout,
            )?))),
        }
    }
}

impl KindSink {
    fn renders_messages(&self) -> bool {
        matches!(
            self,
            KindSink::Slack(_)
                | KindSink::Discord(_)
                | KindSink::Teams(_)
                | KindSink::Smtp(_)
                | KindSink::DependencyTrack(_)
                | KindSink::Nats(_)
        )
    }
}

impl Sink for KindSink {
    fn kind(&self) -> &'static str {
        match self {
            KindSink::Webhook(s) => s.kind(),
            KindSink::DependencyTrack(s) => s.kind(),
            KindSink::Guac(s) => s.kind(),
            KindSink::Archive(s) => s.kind(),
            KindSink::Slack(s) => s.kind(),
            KindSink::Discord(s) => s.kind(),
            KindSink::Teams(s) => s.kind(),
            KindSink::Smtp(s) => s.kind(),
            KindSink::Nats(s) => s.kind(),
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        match self {
            KindSink::Webhook(s) => s.deliver(delivery).await,
            KindSink::DependencyTrack(s) => s.deliver(delivery).await,
            KindSink::Guac(s) => s.deliver(delivery).await,
            KindSink::Archive(s) => s.deliver(delivery).await,
            KindSink::Slack(s) => s.deliver(delivery).await,
            KindSink::Discord(s) => s.deliver(delivery).await,
            KindSink::Teams(s) => s.deliver(delivery).await,
            KindSink::Smtp(s) => s.deliver(delivery).await,
            KindSink::Nats(s) => s.deliver(delivery).await,
        }
    }
}

/// Builds every configured sink, enabled or not, without sending anything, and returns
/// what would stop one from starting (a template that does not compile, say): what
/// `hookrelay check` reports. Call inside a tokio runtime.
pub fn check(sinks: &[SinkConfig]) -> Vec<SinkBuildError> {
    sinks
        .iter()
        .filter_map(|config| AnySink::new(config).err())
        .collect()
}

/// The source name of `hookrelay test-sink`'s message; not a valid source name (`:`), so no
/// real event can pass for a test, yet valid wherever a source name goes: a NATS subject
/// (no space), a header, a file name.
pub const TEST_SOURCE: &str = "hookrelay:test-sink";

/// The clearly labelled message `hookrelay test-sink` sends: templates see `test = true`.
pub fn test_delivery() -> Delivery {
    let now_ms = crate::clock::now_ms();
    Delivery {
        event: Arc::new(StoredEvent {
            id: Uuid::now_v7(),
            source: Arc::from(TEST_SOURCE),
            event_type: Some("hookrelay.test".to_string()),
            delivery_id: None,
            headers: Vec::new(),
            content_type: Some("application/json".to_string()),
            received_at_ms: now_ms,
            body: Bytes::from_static(b"{\"hookrelay\":\"test message\"}"),
        }),
        summary: None,
        attempt: 1,
    }
}

/// A sink could not be built (for example, its HTTP client failed to start).
#[derive(Debug, thiserror::Error)]
#[error("sink \"{sink}\": {message}")]
pub struct SinkBuildError {
    /// Sink name.
    pub sink: String,
    /// What went wrong and what to do.
    pub message: String,
}
