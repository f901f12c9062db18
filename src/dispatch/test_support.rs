//! Helpers shared by dispatch's unit tests: a webhook sink config pointed at a loopback
//! receiver, a store in a temp dir, and events queued for that sink.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::config::{Rate, RetryPolicy, SinkConfig, SinkKind, StorageConfig, WebhookSinkConfig};
use crate::store::{EventId, Ingested, NewEvent, Store};

pub(crate) const SINK: &str = "receiver";

pub(crate) fn policy(max_attempts: u32, initial_ms: u64, max_ms: u64) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial: Duration::from_millis(initial_ms),
        max: Duration::from_millis(max_ms),
    }
}

pub(crate) fn sink_config(
    url: String,
    retry: RetryPolicy,
    rate: Option<Rate>,
    timeout: Duration,
) -> SinkConfig {
    SinkConfig {
        name: SINK.to_string(),
        enabled: true,
        paused: false,
        rate,
        concurrency: 4,
        retry,
        timeout,
        outbound: Default::default(),
        kind: SinkKind::Webhook(WebhookSinkConfig {
            url,
            signing_keys: Vec::new(),
            headers: Vec::new(),
        }),
    }
}

/// A store in its own temp dir (kept alive by the returned guard).
pub(crate) fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StorageConfig {
        path: dir.path().join("hookrelay.redb"),
        retention: Duration::from_secs(3600),
    })
    .unwrap();
    (dir, store)
}

pub(crate) async fn ingest(store: &Store, n: usize) -> EventId {
    let event = NewEvent {
        source: Arc::from("github"),
        event_type: Some("push".to_string()),
        delivery_id: Some(format!("delivery-{n}")),
        content_type: Some("application/json".to_string()),
        headers: Vec::new(),
        body: Bytes::from(format!("{{\"n\":{n}}}")),
        sinks: vec![Arc::from(SINK)],
    };
    match store.ingest(event).await.unwrap() {
        Ingested::Accepted(id) => id,
        Ingested::Duplicate(id) => panic!("{id} is a duplicate"),
    }
}
