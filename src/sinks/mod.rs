//! Sinks: where events go. One file per kind; each turns a [`Delivery`] into a request and
//! the answer into an [`Outcome`].
//!
//! Invariant: a sink decides *whether* a failure is worth retrying (and honours the delay a
//! receiver asks for); dispatch alone decides *when*. Sinks know nothing of the store.

pub mod http;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;

use crate::config::{SinkConfig, SinkKind};

/// One event on its way to one sink.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's id; stable across retries and replays (the idempotency key).
    pub event_id: Uuid,
    /// Source name.
    pub source: Arc<str>,
    /// The sender's event type, when known.
    pub event_type: Option<String>,
    /// The request's `Content-Type`, when it had one.
    pub content_type: Option<String>,
    /// When hookrelay accepted the event, in Unix milliseconds.
    pub received_at_ms: u64,
    /// The original body, byte for byte.
    pub body: Bytes,
    /// 1 for the first attempt.
    pub attempt: u32,
}

/// What went wrong in one attempt, as recorded and logged (never a URL or secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// A short human-readable reason.
    pub message: String,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver took it.
    Delivered {
        /// HTTP status, for sinks that speak HTTP.
        status: Option<u16>,
    },
    /// Worth trying again; `after` is the delay the receiver asked for, if any.
    Retry {
        after: Option<Duration>,
        error: SinkError,
    },
    /// Will never succeed as is: dead-letter it.
    Failed(SinkError),
}

/// A destination for deliveries.
pub trait Sink {
    /// The `kind` string of this sink.
    fn kind(&self) -> &'static str;
    /// Makes one attempt. Must finish within the sink's timeout.
    fn deliver(&self, delivery: &Delivery) -> impl Future<Output = Outcome> + Send;
}

/// Every sink kind, behind one enum that delegates.
#[derive(Debug)]
pub enum AnySink {
    /// `kind = "webhook"`.
    Webhook(webhook::WebhookSink),
}

impl AnySink {
    /// Builds the sink for its validated configuration.
    pub fn new(config: &SinkConfig) -> Result<AnySink, SinkBuildError> {
        match &config.kind {
            SinkKind::Webhook(w) => Ok(AnySink::Webhook(webhook::WebhookSink::new(
                &config.name,
                w,
                &config.outbound,
                config.timeout,
            )?)),
        }
    }
}

impl Sink for AnySink {
    fn kind(&self) -> &'static str {
        match self {
            AnySink::Webhook(s) => s.kind(),
        }
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        match self {
            AnySink::Webhook(s) => s.deliver(delivery).await,
        }
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
