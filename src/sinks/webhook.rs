//! Placeholder.
use std::time::Duration;

use super::{Delivery, Outcome, Sink, SinkBuildError};
use crate::config::WebhookSinkConfig;

/// The webhook sink.
#[derive(Debug)]
pub struct WebhookSink;

impl WebhookSink {
    /// Builds it.
    pub fn new(
        _name: &str,
        _config: &WebhookSinkConfig,
        _timeout: Duration,
    ) -> Result<WebhookSink, SinkBuildError> {
        todo!()
    }
}

impl Sink for WebhookSink {
    fn kind(&self) -> &'static str {
        "webhook"
    }
    async fn deliver(&self, _delivery: &Delivery) -> Outcome {
        todo!()
    }
}
