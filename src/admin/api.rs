//! The admin routes' handlers: health, readiness, metrics, and the JSON API.
//!
//! Store reads are blocking and run on the blocking pool; writes (replays) go through the
//! store's group commit. Times are RFC 3339 strings in UTC with milliseconds. Lists are
//! newest first and paged by cursor: pass a page's `next` back as `before`.
//!
//! Invariant: nothing here writes a sink URL, a configured secret, or an unmasked secret or
//! signature header into an answer or a log line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Admin, HeaderMask, OPENAPI, Route, View, json_error, respond};
use crate::config::SinkConfig;
use crate::sinks::{AnySink, Outcome, Sink};
use crate::store::{
    AttemptView, DeliveryState, EventQuery, EventStatus, Replayed, Store, StoreError, StoredEvent,
};

type Answer = Response<Full<Bytes>>;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: usize = 50;
const LARGEST_LIMIT: usize = 500;
/// Dead letters moved per transaction by a bulk replay: small, so ingest never waits long.
const REPLAY_BATCH: usize = 500;
/// How long `/readyz` waits for a commit before calling the store not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed past a sink's own timeout for a test delivery.
const TEST_MARGIN: Duration = Duration::from_secs(2);

/// Answers an authorized request for `route`; `/metrics` in OpenMetrics when `openmetrics`
/// (the request accepts it), else in the Prometheus text format.
pub(super) async fn answer(
    admin: &Admin,
    view: &View,
    route: Route,
    params: &HashMap<&'static str, String>,
    query: &HashMap<String, String>,
    openmetrics: bool,
) -> Answer {
    let result = match route {
        Route::Healthz => Ok(ok(json!({ "status": "ok" }))),
        Route::Readyz => Ok(readyz(admin).await),
        Route::Metrics => metrics(admin, openmetrics).await,
        Route::OpenApi => Ok(respond(
            StatusCode::OK,
            "application/json",
            OPENAPI.to_string(),
        )),
        Route::Events => events(admin, query).await,
        Route::Event => event(admin, view, &params["id"]).await,
        Route::ReplayEvent => replay_event(admin, view, &params["id"], query).await,
        Route::Sinks => sinks(admin, view).await,
        Route::DeadLetters => dead_letters(admin, view, &params["sink"], query).await,
        Route::ReplayDeadLetters => replay_dead_letters(admin, view, &params["sink"], query).await,
        Route::TestSink => test_sink(view, &params["sink"]).await,
        Route::Reload => reload(admin).await,
    };
    result.unwrap_or_else(ApiError::into_answer)
}

fn ok(body: Value) -> Answer {
    respond(StatusCode::OK, "application/json", body.to_string())
}

/// A refused or failed request: its status and a message saying what to do.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn into_answer(self) -> Answer {
        json_error(self.status, &self.message)
    }
}

fn bad_request(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn store_failed(err: &StoreError) -> ApiError {
    tracing::error!(error = %err, "admin: store request failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store could not answer: {err}"),
    )
}

/// Runs a blocking store read on the blocking pool.
async fn read<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(store_failed(&err)),
        Err(err) => Err(store_failed(&StoreError::Read(err.to_string()))),
    }
}

fn time(ms: u64) -> String {
    super::time::format_ms(ms)
}

fn limit(query: &HashMap<String, String>) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=LARGEST_LIMIT).contains(&n) => Ok(n),
            _ => Err(bad_request(&format!(
                "limit: expected a number from 1 to {LARGEST_LIMIT}"
            ))),
        },
    }
}

fn event_id(text: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|_| bad_request(&format!("{what}: expected an event id (a UUID)")))
}

fn cursor(query: &HashMap<String, String>) -> Result<Option<Uuid>, ApiError> {
    query
        .get("before")
        .map(|text| event_id(text, "before"))
        .transpose()
}

/// The configured sink of this name, or a `404`.
fn sink_config<'a>(view: &'a View, name: &str) -> Result<&'a SinkConfig, ApiError> {
    view.sinks.iter().find(|s| s.name == name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no sink of this name in the configuration",
        )
    })
}

fn enabled_sink<'a>(view: &'a View, name: &str) -> Result<&'a SinkConfig, ApiError> {
    let sink = sink_config(view, name)?;
    if !sink.enabled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the sink is disabled (enabled = false): it takes no new deliveries; set enabled = true first",
        ));
    }
    Ok(sink)
}

async fn readyz(admin: &Admin) -> Answer {
    if admin.is_stopping() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is stopping: it takes no new events and is finishing the deliveries in flight",
        );
    }
    match tokio::time::timeout(READY_TIMEOUT, admin.store.ping()).await {
        Ok(Ok(())) => ok(json!({ "status": "ready", "store": "writable", "config": "loaded" })),
        Ok(Err(err)) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the store cannot commit: {err}"),
        ),
        Err(_) => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the store did not commit within 5s",
        ),
    }
}

async fn metrics(admin: &Admin, openmetrics: bool) -> Result<Answer, ApiError> {
    let metrics = admin.metrics.clone();
    // Rendering reads the store for the queue gauges: off the async workers.
    let text = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .map_err(|e| store_failed(&StoreError::Read(e.to_string())))?;
    Ok(if openmetrics {
        respond(StatusCode::OK, crate::metrics::CONTENT_TYPE, text)
    } else {
        let classic = crate::metrics::classic(&text);
        respond(
            StatusCode::OK,
            crate::metrics::CLASSIC_CONTENT_TYPE,
            classic,
        )
    })
}

async fn events(admin: &Admin, query: &HashMap<String, String>) -> Result<Answer, ApiError> {
    let status = match query.get("status") {
        None => None,
        Some(text) => Some(EventStatus::parse(text).ok_or_else(|| {
            bad_request("status: expected one of dead, pending, delivered, unrouted")
        })?),
    };
    let filter = EventQuery {
        before: cursor(query)?,
        source: query.get("source").cloned(),
        event_type: query.get("event_type").cloned(),
        status,
        limit: limit(query)?,
    };
    let page = read(&admin.store, move |s| s.recent_events(&filter)).await?;
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| {
            json!({
                "id": e.id.to_string(),
                "source": e.source,
                "event_type": e.event_type,
                "delivery_id": e.delivery_id,
                "received_at": time(e.received_at_ms),
                "size": e.size,
                "status": e.status.as_str(),
            })
        })
        .collect();
    Ok(ok(json!({
        "events": events,
        "next": page.next.map(|id| id.to_string()),
    })))
}

async fn event(admin: &Admin, view: &View, id: &str) -> Result<Answer, ApiError> {
    let id = event_id(id, "id")?;
    let Some((event, deliveries, attempts)) =
        read(&admin.store, move |s| s.event_detail(id)).await?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no such event (it may have passed retention)",
        ));
    };
    Ok(ok(event_document(
        &view.mask,
        &event,
        &deliveries,
        &attempts,
    )))
}

/// One event as the API and `hookrelay events show` print it: fields, headers (masked),
/// body, where each delivery stands and every attempt.
pub fn event_document(
    mask: &HeaderMask,
    event: &StoredEvent,
    deliveries: &[(String, DeliveryState)],
    attempts: &[AttemptView],
) -> Value {
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|(sink, state)| match state {
            DeliveryState::Queued { due_ms } => {
                json!({ "sink": sink, "state": "queued", "due_at": time(*due_ms) })
            }
            DeliveryState::Dead { at_ms, reason } => json!({
                "sink": sink,
                "state": "dead",
                "dead_at": at_ms.map(time),
                "reason": reason,
            }),
            DeliveryState::Delivered => json!({ "sink": sink, "state": "delivered" }),
        })
        .collect();
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "sink": a.sink,
                "number": a.number,
                "started_at": time(a.record.started_ms),
                "duration_ms": a.record.duration_ms,
                "status": a.record.status,
                "error": a.record.error,
                "message_id": a.record.message_id,
                "outcome": match a.record.outcome {
                    crate::store::AttemptOutcome::Delivered => "delivered",
                    crate::store::AttemptOutcome::Retrying => "retrying",
                    crate::store::AttemptOutcome::DeadLettered => "dead_lettered",
                    crate::store::AttemptOutcome::Skipped => "skipped",
                },
                "replay": a.replay,
            })
        })
        .collect();
    let mut body = event_json(mask, event);
    body["deliveries"] = Value::Array(deliveries);
    body["attempts"] = Value::Array(attempts);
    body
}

/// An event's fields, headers (masked) and body.
fn event_json(mask: &HeaderMask, event: &StoredEvent) -> Value {
    let headers: Vec<Value> = event
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if mask.masked(&event.source, name) {
                "***".to_string()
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            json!({ "name": name, "value": shown })
        })
        .collect();
    let (body, encoding) = match std::str::from_utf8(&event.body) {
        Ok(text) => (text.to_string(), "utf-8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&event.body),
            "base64",
        ),
    };
    json!({
        "id": event.id.to_string(),
        "source": &*event.source,
        "event_type": event.event_type,
        "delivery_id": event.delivery_id,
        "content_type": event.content_type,
        "received_at": time(event.received_at_ms),
        "headers": headers,
        "body": body,
        "body_encoding": encoding,
    })
}

async fn replay_event(
    admin: &Admin,
    view: &View,
    id: &str,
    query: &HashMap<String, String>,
) -> Result<Answer, ApiError> {
    let id = event_id(id, "id")?;
    let mut skipped = Vec::new();
    let targets: Vec<Arc<str>> = match query.get("sink") {
        Some(name) => vec![Arc::from(enabled_sink(view, name)?.name.as_str())],
        None => {
            let Some((_, deliveries, _)) = read(&admin.store, move |s| s.event_detail(id)).await?
            else {
                return Err(ApiError::new(StatusCode::NOT_FOUND, "no such event"));
            };
            // Its sinks that still exist and are enabled; others are reported as skipped.
            let mut targets = Vec::new();
            for (sink, _) in &deliveries {
                match view.sinks.iter().find(|s| s.name == *sink) {
                    Some(config) if config.enabled => targets.push(Arc::from(sink.as_str())),
                    Some(_) => skipped.push(json!({
                        "sink": sink, "result": "skipped", "reason": "the sink is disabled (enabled = false)"
                    })),
                    None => skipped.push(json!({
                        "sink": sink, "result": "skipped", "reason": "the sink is no longer in the configuration"
                    })),
                }
            }
            targets
        }
    };
    let results = admin
        .store
        .replay(id, targets.clone())
        .await
        .map_err(|e| store_failed(&e))?;
    if results.contains(&Replayed::NoSuchEvent) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such event"));
    }
    let sinks: Vec<Value> = targets
        .iter()
        .zip(&results)
        .map(|(sink, result)| {
            let result = match result {
                Replayed::Queued => "queued",
                Replayed::AlreadyQueued => "already_queued",
                Replayed::NoSuchEvent => "no_such_event",
            };
            json!({ "sink": &**sink, "result": result })
        })
        .chain(skipped)
        .collect();
    tracing::info!(event_id = %id, sinks = sinks.len(), "admin: replay requested");
    Ok(ok(json!({ "event_id": id.to_string(), "sinks": sinks })))
}

async fn sinks(admin: &Admin, view: &View) -> Result<Answer, ApiError> {
    let configured: Vec<String> = view.sinks.iter().map(|s| s.name.clone()).collect();
    // Configured sinks, then those removed from the config whose queue or dead letters the
    // store still holds: they resume if a sink of the same name comes back.
    let (stats, removed) = read(&admin.store, move |s| {
        let removed: Vec<String> = s
            .sinks_with_entries()?
            .into_iter()
            .filter(|name| !configured.contains(name))
            .collect();
        let names: Vec<&str> = configured
            .iter()
            .chain(&removed)
            .map(String::as_str)
            .collect();
        Ok((s.sink_stats_recent(&names)?, removed))
    })
    .await?;
    let mut stats = stats.into_iter();
    let now = crate::clock::now_ms();
    let mut list: Vec<Value> = view
        .sinks
        .iter()
        .zip(stats.by_ref())
        .map(|(sink, stats)| {
            let health = admin.health.get(&sink.name).unwrap_or_default();
            let state = if !sink.enabled {
                "disabled"
            } else if sink.paused {
                "paused"
            } else if health.consecutive_failures > 0 {
                "failing"
            } else {
                "healthy"
            };
            json!({
                "name": sink.name,
                "kind": sink_kind(sink),
                "state": state,
                "failing_since": health.failing_since_ms.map(time),
                "held_until": health.held_until_ms.filter(|until| *until > now).map(time),
                "consecutive_failures": health.consecutive_failures,
                "last_error": health.last_error,
                "last_error_at": health.last_error_ms.map(time),
                "last_delivered_at": health.last_delivered_ms.map(time),
                "queue_depth": stats.queued,
                "oldest_queued_at": stats.oldest_queued_ms.map(time),
                "dead_letters": stats.dead,
            })
        })
        .collect();
    list.extend(removed.iter().zip(stats).map(|(name, stats)| {
        let health = admin.health.get(name).unwrap_or_default();
        json!({
            "name": name,
            "kind": null,
            "state": "removed",
            "failing_since": null,
            "held_until": null,
            "consecutive_failures": 0,
            "last_error": health.last_error,
            "last_error_at": health.last_error_ms.map(time),
            "last_delivered_at": health.last_delivered_ms.map(time),
            "queue_depth": stats.queued,
            "oldest_queued_at": stats.oldest_queued_ms.map(time),
            "dead_letters": stats.dead,
        })
    }));
    Ok(ok(json!({ "sinks": list })))
}

/// The `kind` as written in the file.
fn sink_kind(sink: &SinkConfig) -> &'static str {
    use crate::config::SinkKind;
    match &sink.kind {
        SinkKind::Webhook(_) => "webhook",
        SinkKind::Slack(_) => "slack",
        SinkKind::Discord(_) => "discord",
        SinkKind::Teams(_) => "teams",
        SinkKind::Smtp(_) => "smtp",
        SinkKind::DependencyTrack(_) => "dependency-track",
        SinkKind::Guac(_) => "guac",
        SinkKind::Archive(_) => "archive",
        SinkKind::Nats(_) => "nats",
    }
}

async fn dead_letters(
    admin: &Admin,
    view: &View,
    sink: &str,
    query: &HashMap<String, String>,
) -> Result<Answer, ApiError> {
    let name = match sink_config(view, sink) {
        Ok(config) => config.name.clone(),
        // A removed sink's dead letters stay readable while the store holds them.
        Err(not_configured) => {
            let stored = read(&admin.store, |s| s.sinks_with_entries()).await?;
            if !stored.iter().any(|name| name == sink) {
                return Err(not_configured);
            }
            sink.to_string()
        }
    };
    let before = cursor(query)?;
    let limit = limit(query)?;
    let (letters, next) = read(&admin.store, move |s| {
        s.dead_letter_page(&name, before, limit)
    })
    .await?;
    let list: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({
                "event_id": d.event_id.to_string(),
                "dead_at": time(d.at_ms),
                "attempts": d.attempts,
                "reason": d.reason,
            })
        })
        .collect();
    Ok(ok(json!({
        "sink": sink,
        "dead_letters": list,
        "next": next.map(|id| id.to_string()),
    })))
}

async fn replay_dead_letters(
    admin: &Admin,
    view: &View,
    sink: &str,
    query: &HashMap<String, String>,
) -> Result<Answer, ApiError> {
    let name: Arc<str> = Arc::from(enabled_sink(view, sink)?.name.as_str());
    let since_ms = match query.get("since") {
        None => 0,
        Some(text) => super::time::parse_ms(text).ok_or_else(|| {
            bad_request("since: expected an RFC 3339 time such as 2024-05-01T12:00:00Z")
        })?,
    };
    let replayed = admin
        .store
        .replay_dead(name.clone(), since_ms, REPLAY_BATCH)
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(sink = %name, replayed, "admin: dead letters replayed");
    Ok(ok(json!({ "sink": &*name, "replayed": replayed })))
}

async fn test_sink(view: &View, sink: &str) -> Result<Answer, ApiError> {
    let config = sink_config(view, sink)?;
    let built = AnySink::new(config).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the sink could not be built: {e}"),
        )
    })?;
    // The same clearly labelled message as `hookrelay test-sink`: event type
    // `hookrelay.test`, a source no real event can have; nothing is stored.
    let delivery = crate::sinks::test_delivery();
    let id = delivery.event.id;
    let started = std::time::Instant::now();
    let limit = config.timeout + TEST_MARGIN;
    let outcome = tokio::time::timeout(limit, built.deliver(&delivery)).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    let (result, status, error, message_id) = match outcome {
        Err(_) => (
            "failed",
            None,
            Some("no outcome within the sink's timeout".to_string()),
            None,
        ),
        Ok(Outcome::Delivered { status, message_id }) => ("delivered", status, None, message_id),
        Ok(Outcome::Retry { error, .. }) => {
            ("failed_retriable", error.status, Some(error.message), None)
        }
        Ok(Outcome::Failed(error)) => ("failed", error.status, Some(error.message), None),
        Ok(Outcome::Skipped { reason }) => ("skipped", None, Some(reason), None),
    };
    tracing::info!(sink = %config.name, outcome = result, "admin: test delivery");
    Ok(ok(json!({
        "sink": config.name,
        "event_id": id.to_string(),
        "outcome": result,
        "status": status,
        "error": error,
        "message_id": message_id,
        "duration_ms": duration_ms,
    })))
}

/// `POST /api/reload`: reads and checks the file, then runs it, or keeps the running config
/// and answers every problem as a `file:line:col: key: message` line.
async fn reload(admin: &Admin) -> Result<Answer, ApiError> {
    let Some(handle) = &admin.reload else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this relay was not started from a configuration file, so there is none to reload",
        ));
    };
    match handle.reload(crate::reload::Trigger::Api).await {
        Ok(report) => Ok(ok(report.to_json())),
        Err(crate::reload::ReloadError::Invalid { file, problems }) => Ok(respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            "application/json",
            json!({
                "error": format!(
                    "{file}: the new configuration has {} problem(s); the running configuration is kept. Fix the file and reload again.",
                    problems.len()
                ),
                "problems": problems,
            })
            .to_string(),
        )),
        Err(crate::reload::ReloadError::Stopping) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the relay is shutting down; nothing was reloaded",
        )),
    }
}
