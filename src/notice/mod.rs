//! Own-health notices: hookrelay's events about itself, from the internal source
//! `hookrelay` ([`NOTICE_SOURCE`]).
//!
//! A notice is an ordinary event: stored through [`Store::ingest`] (durable, listed by the
//! admin API), routed by the routes (`from = "hookrelay"`, `events = ["sink.*"]`) and
//! delivered with retries like any other. Its types ([`Kind`]): `sink.unhealthy`,
//! `sink.recovered`, `storage.unhealthy`, `storage.recovered`, `config.reload_failed`. Its
//! body is the small JSON object [`Notices`] documents and the README lists.
//!
//! Where they come from: `dispatch::health` raises the sink transitions, `storage` watches
//! the store's commits and free space, and whoever reloads the config calls
//! [`Notices::reload_failed`].
//!
//! Invariants:
//! - A notice about sink X is never routed to X: a failing sink cannot be told of its own
//!   failure, and its notices cannot feed its own queue.
//! - Per subject, at most one unhealthy notice (and the recovery that follows it) per
//!   `[notices] min_interval` (`limit`); the rest are counted in
//!   `hookrelay_notices_total{outcome="suppressed"}` and summarised in the next notice.
//! - Raising a notice never blocks or awaits: the caller (a delivery attempt, the store
//!   watcher) takes a std lock for a decision, and one task stores notices in the order they
//!   were raised. A notice the store refuses (it is failing) is logged at once and stored
//!   when the store takes writes again.
//! - A notice carries only names, counts, times and messages that are already secret-free
//!   (a `SinkError` message, a store error, config problems): never a URL, a secret or an
//!   event's body.

mod limit;
mod storage;

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::config::{ConfigError, NOTICE_SOURCE, NoticesConfig};
use crate::metrics::NoticeMetrics;
use crate::route::Router;
use crate::store::{Ingested, NewEvent, Store, StoreError};

use limit::{Limiter, Subject, Verdict};

/// The most config problems one `config.reload_failed` notice lists; the count says how many
/// more there were.
const MOST_ERRORS: usize = 20;
/// How long the notice task waits before storing again after the store refused a notice,
/// at first and at most.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MOST: Duration = Duration::from_secs(30);

/// A notice's type: its event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A sink's consecutive failures reached `[notices] failures`, or it dead-lettered.
    SinkUnhealthy,
    /// The first success after `SinkUnhealthy`.
    SinkRecovered,
    /// The store's commits fail, or its file system's free space is under `min_free`.
    StorageUnhealthy,
    /// Commits succeed and free space is back above `min_free`.
    StorageRecovered,
    /// A reload found problems in the config file; the old config keeps running.
    ReloadFailed,
}

impl Kind {
    /// Every type.
    pub const ALL: [Kind; 5] = [
        Kind::SinkUnhealthy,
        Kind::SinkRecovered,
        Kind::StorageUnhealthy,
        Kind::StorageRecovered,
        Kind::ReloadFailed,
    ];

    /// The event type, e.g. `sink.unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SinkUnhealthy => "sink.unhealthy",
            Kind::SinkRecovered => "sink.recovered",
            Kind::StorageUnhealthy => "storage.unhealthy",
            Kind::StorageRecovered => "storage.recovered",
            Kind::ReloadFailed => "config.reload_failed",
        }
    }
}

/// What is (or was) wrong with a sink or the store, as its trigger saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trouble {
    /// Unix milliseconds of the first failure of the run.
    pub since_ms: u64,
    /// Failed attempts (a sink) or failed commits (the store) in a row.
    pub failures: u32,
    /// The most recent failure's message, already free of secrets.
    pub last_error: Option<String>,
    /// Why it counts as unhealthy, in words (empty for a recovery).
    pub reason: String,
}

/// A notice ready to be stored.
#[derive(Debug)]
struct Notice {
    kind: Kind,
    /// The sink it is about, which it is never routed to.
    sink: Option<Arc<str>>,
    body: Bytes,
}

/// The handle the triggers raise notices through; cheap to clone.
///
/// The body of every notice is a JSON object with `type` (the event type), `instance` (the
/// relay's name), `time` (RFC 3339, when it was raised), `reason` (in words) and
/// `suppressed` (notices of this subject held back by `min_interval` since the last one);
/// then by type: `sink` or `store` (the subject), `since`, `consecutive_failures` and
/// `last_error` (unhealthy and recovered), `recovered_after_s` (recovered), `free_bytes` and
/// `min_free_bytes` (storage, when space is low), `config` and `errors` (reload failed).
#[derive(Clone)]
pub struct Notices {
    inner: Arc<Inner>,
}

struct Inner {
    failures: u32,
    instance: String,
    /// Read for each notice stored; replaced whole by a config reload.
    router: RwLock<Arc<Router>>,
    /// A std Mutex: held for one decision, never across an await.
    limiter: Mutex<Limiter>,
    queue: mpsc::UnboundedSender<Notice>,
    metrics: NoticeMetrics,
    store_path: String,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("instance", &self.inner.instance)
            .field("failures", &self.inner.failures)
            .finish_non_exhaustive()
    }
}

/// The notices' background tasks; stopped by [`NoticeTasks::stop`] or when dropped.
pub struct NoticeTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl NoticeTasks {
    /// Stops storing notices and watching the store. A notice raised but not yet stored is
    /// dropped (it is in the log).
    pub fn stop(self) {
        // Drop aborts.
    }
}

impl Drop for NoticeTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Notices {
    /// Starts the task that stores notices and the one that watches the store's health and
    /// free space. Call inside a tokio runtime.
    pub fn start(
        store: Store,
        router: Router,
        config: &NoticesConfig,
        metrics: NoticeMetrics,
    ) -> (Notices, NoticeTasks) {
        for kind in Kind::ALL {
            metrics.register(kind.as_str());
        }
        let (queue, pending) = mpsc::unbounded_channel();
        let notices = Notices {
            inner: Arc::new(Inner {
                failures: config.failures.max(1),
                instance: config.instance.clone().unwrap_or_else(host_name),
                router: RwLock::new(Arc::new(router)),
                limiter: Mutex::new(Limiter::new(config.min_interval)),
                queue,
                metrics,
                store_path: store.path().display().to_string(),
            }),
        };
        let storer = tokio::spawn(store_notices(
            Arc::downgrade(&notices.inner),
            store.clone(),
            pending,
        ));
        let watcher = tokio::spawn(storage::watch(
            notices.clone(),
            store.clone(),
            config.min_free,
            config.check_interval,
        ));
        (
            notices,
            NoticeTasks {
                tasks: vec![storer, watcher],
            },
        )
    }

    /// Consecutive failed attempts that make a sink unhealthy (`[notices] failures`).
    pub fn failures(&self) -> u32 {
        self.inner.failures
    }

    /// Routes the notices stored from now on with `router` (after a config reload).
    pub fn set_router(&self, router: Router) {
        *self.inner.router.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(router);
    }

    /// A sink became unhealthy.
    pub fn sink_unhealthy(&self, sink: &str, trouble: Trouble) {
        let subject = Subject::Sink(Arc::from(sink));
        let verdict = self
            .limiter()
            .unhealthy(&subject, trouble.clone(), Instant::now());
        self.unhealthy(Kind::SinkUnhealthy, subject, trouble, verdict, Map::new());
    }

    /// A sink that was unhealthy delivered again at `now_ms`; `trouble` is the run of
    /// failures that ended.
    pub fn sink_recovered(&self, sink: &str, trouble: Trouble, now_ms: u64) {
        let subject = Subject::Sink(Arc::from(sink));
        let verdict = self.limiter().recovered(&subject);
        self.recovered(Kind::SinkRecovered, subject, trouble, now_ms, verdict);
    }

    /// A config reload failed with `errors`; the old config keeps running.
    pub fn reload_failed(&self, errors: &ConfigError) {
        let verdict = self.limiter().once(&Subject::Config, Instant::now());
        let problems = errors.problems();
        let listed: Vec<String> = problems
            .iter()
            .take(MOST_ERRORS)
            .map(|p| {
                let at = if p.line > 0 {
                    format!("{}:{}:{}", errors.origin(), p.line, p.column)
                } else {
                    errors.origin().to_string()
                };
                match p.key.as_str() {
                    "" => format!("{at}: {}", p.message),
                    key => format!("{at}: {key}: {}", p.message),
                }
            })
            .collect();
        let n = problems.len();
        let mut fields = Map::new();
        fields.insert("config".into(), json!(errors.origin()));
        fields.insert("errors".into(), json!(listed));
        fields.insert("error_count".into(), json!(n));
        let s = if n == 1 { "" } else { "s" };
        let reason = format!(
            "{n} problem{s} in {}; the previous configuration keeps running",
            errors.origin()
        );
        // The reload itself logs the problems; this line says a notice follows.
        tracing::info!(
            notice = Kind::ReloadFailed.as_str(),
            problems = n,
            "{reason}"
        );
        match verdict {
            Verdict::Send { suppressed } => {
                self.send(Kind::ReloadFailed, None, &reason, suppressed, fields)
            }
            Verdict::Hold { .. } => self.held(Kind::ReloadFailed),
        }
    }

    /// The store became unhealthy; `extra` adds the storage fields.
    fn storage_unhealthy(&self, trouble: Trouble, extra: Map<String, Value>) {
        let verdict = self
            .limiter()
            .unhealthy(&Subject::Store, trouble.clone(), Instant::now());
        self.unhealthy(
            Kind::StorageUnhealthy,
            Subject::Store,
            trouble,
            verdict,
            extra,
        );
    }

    /// The store is healthy again at `now_ms`; `trouble` is what ended.
    fn storage_recovered(&self, trouble: Trouble, now_ms: u64) {
        let verdict = self.limiter().recovered(&Subject::Store);
        self.recovered(
            Kind::StorageRecovered,
            Subject::Store,
            trouble,
            now_ms,
            verdict,
        );
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.inner.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unhealthy(
        &self,
        kind: Kind,
        subject: Subject,
        trouble: Trouble,
        verdict: Verdict,
        extra: Map<String, Value>,
    ) {
        let about = describe(&subject);
        // A transition held back by the interval is counted in the next notice; one line per
        // dead letter or flap would flood the log (1,500 lines for 14 notices in a soak run).
        if matches!(verdict, Verdict::Send { .. }) {
            tracing::warn!(
                notice = kind.as_str(),
                subject = %about,
                consecutive_failures = trouble.failures,
                last_error = trouble.last_error.as_deref().unwrap_or(""),
                "{about} is unhealthy: {}",
                trouble.reason
            );
        } else {
            tracing::debug!(notice = kind.as_str(), subject = %about, "{about} is unhealthy: {}", trouble.reason);
        }
        match verdict {
            Verdict::Send { suppressed } => {
                self.send_trouble(kind, &subject, &trouble, suppressed, extra)
            }
            Verdict::Hold { settle_at } => {
                self.held(kind);
                if let Some(at) = settle_at {
                    self.settle_later(subject, at, extra);
                }
            }
        }
    }

    fn recovered(
        &self,
        kind: Kind,
        subject: Subject,
        trouble: Trouble,
        now_ms: u64,
        verdict: Verdict,
    ) {
        let after = Duration::from_millis(now_ms.saturating_sub(trouble.since_ms));
        let about = describe(&subject);
        if matches!(verdict, Verdict::Send { .. }) {
            tracing::info!(
                notice = kind.as_str(),
                subject = %about,
                recovered_after_s = after.as_secs(),
                "{about} recovered"
            );
        } else {
            tracing::debug!(notice = kind.as_str(), subject = %about, "{about} recovered");
        }
        match verdict {
            Verdict::Send { suppressed } => {
                let mut fields = trouble_fields(&subject, &self.inner.store_path, &trouble);
                fields.insert("recovered_after_s".into(), json!(after.as_secs()));
                let reason = format!(
                    "working again after {}",
                    humantime::format_duration(Duration::from_secs(after.as_secs()))
                );
                self.send(kind, sink_of(&subject), &reason, suppressed, fields);
            }
            Verdict::Hold { .. } => self.held(kind),
        }
    }

    fn send_trouble(
        &self,
        kind: Kind,
        subject: &Subject,
        trouble: &Trouble,
        suppressed: u32,
        extra: Map<String, Value>,
    ) {
        let mut fields = trouble_fields(subject, &self.inner.store_path, trouble);
        fields.extend(extra);
        self.send(kind, sink_of(subject), &trouble.reason, suppressed, fields);
    }

    /// At the end of a window with a held transition: report the subject if it is still in
    /// trouble (see `limit`).
    fn settle_later(&self, subject: Subject, at: Instant, extra: Map<String, Value>) {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let Some(inner) = inner.upgrade() else { return };
            let notices = Notices { inner };
            let late = notices.limiter().settle(&subject, Instant::now());
            if let Some((trouble, suppressed)) = late {
                let kind = match subject {
                    Subject::Store => Kind::StorageUnhealthy,
                    _ => Kind::SinkUnhealthy,
                };
                notices.send_trouble(kind, &subject, &trouble, suppressed, extra);
            }
        });
    }

    fn held(&self, kind: Kind) {
        self.inner.metrics.count(kind.as_str(), "suppressed", 1);
        tracing::debug!(
            notice = kind.as_str(),
            "notice held back by [notices] min_interval; it is counted in the next one"
        );
    }

    /// Builds the body and queues the notice for storing.
    fn send(
        &self,
        kind: Kind,
        sink: Option<Arc<str>>,
        reason: &str,
        suppressed: u32,
        fields: Map<String, Value>,
    ) {
        let mut body = Map::new();
        body.insert("type".into(), json!(kind.as_str()));
        body.extend(fields);
        body.insert("reason".into(), json!(reason));
        body.insert("suppressed".into(), json!(suppressed));
        body.insert("instance".into(), json!(self.inner.instance));
        body.insert("time".into(), json!(rfc3339(now_ms())));
        let body =
            serde_json::to_vec(&Value::Object(body)).expect("a JSON value always serializes");
        // The receiver lives as long as the storing task; after shutdown there is no one
        // to tell, and the log line above stays.
        let _ = self.inner.queue.send(Notice {
            kind,
            sink,
            body: Bytes::from(body),
        });
    }
}

/// The body fields of an unhealthy or recovered notice.
fn trouble_fields(subject: &Subject, store_path: &str, trouble: &Trouble) -> Map<String, Value> {
    let mut fields = Map::new();
    match subject {
        Subject::Sink(name) => fields.insert("sink".into(), json!(&**name)),
        Subject::Store | Subject::Config => fields.insert("store".into(), json!(store_path)),
    };
    fields.insert("since".into(), json!(rfc3339(trouble.since_ms)));
    fields.insert("consecutive_failures".into(), json!(trouble.failures));
    fields.insert("last_error".into(), json!(trouble.last_error));
    fields
}

fn sink_of(subject: &Subject) -> Option<Arc<str>> {
    match subject {
        Subject::Sink(name) => Some(name.clone()),
        Subject::Store | Subject::Config => None,
    }
}

/// The subject in words, for logs.
fn describe(subject: &Subject) -> String {
    match subject {
        Subject::Sink(name) => format!("sink \"{name}\""),
        Subject::Store => "the store".to_string(),
        Subject::Config => "the configuration".to_string(),
    }
}

/// Stores notices in the order they were raised, each routed by the current router minus
/// the sink it is about. A refusal by the store is retried with backoff, since the store's
/// own trouble is one of the things notices report.
async fn store_notices(
    inner: Weak<Inner>,
    store: Store,
    mut pending: mpsc::UnboundedReceiver<Notice>,
) {
    while let Some(notice) = pending.recv().await {
        let mut wait = RETRY_FIRST;
        loop {
            let Some(sinks) = inner.upgrade().map(|inner| route(&inner, &notice)) else {
                return;
            };
            let event = NewEvent {
                source: Arc::from(NOTICE_SOURCE),
                event_type: Some(notice.kind.as_str().to_string()),
                delivery_id: None,
                content_type: Some("application/json".to_string()),
                headers: Vec::new(),
                body: notice.body.clone(),
                sinks: sinks.clone(),
            };
            match store.ingest(event).await {
                Ok(Ingested::Accepted(id) | Ingested::Duplicate(id)) => {
                    if let Some(inner) = inner.upgrade() {
                        inner.metrics.count(notice.kind.as_str(), "stored", 1);
                    }
                    tracing::info!(
                        notice = notice.kind.as_str(),
                        event_id = %id,
                        sinks = sinks.len(),
                        "notice stored"
                    );
                    break;
                }
                Err(StoreError::Closed) => return,
                Err(err) => {
                    tracing::warn!(
                        notice = notice.kind.as_str(),
                        error = %err,
                        retry_in_s = wait.as_secs(),
                        "cannot store the notice yet; trying again"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETRY_MOST);
                }
            }
        }
    }
}

/// The sinks a notice goes to: its routes' sinks, never the sink it is about.
fn route(inner: &Inner, notice: &Notice) -> Vec<Arc<str>> {
    let router = inner
        .router
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut sinks = router.sinks_for(NOTICE_SOURCE, Some(notice.kind.as_str()), &notice.body);
    if let Some(about) = &notice.sink {
        sinks.retain(|sink| sink != about);
    }
    sinks
}

/// The relay's name when `[notices] instance` is not set: the kernel's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "hookrelay".to_string())
}

/// RFC 3339 in UTC, to the second.
fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}
