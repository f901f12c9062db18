//! Metrics: the Prometheus registry and the handles the parts count with.
//!
//! Every handle is created once per source and per sink (at start, and by a reload for a
//! name it adds), so the hot path only
//! bumps an atomic counter: ingress never looks a label set up or takes a lock. Histograms
//! (delivery latency, commit latency, batch size) take one uncontended lock per observation,
//! which happens once per delivery attempt or per store batch, never per ingested request.
//!
//! Invariant: a leaf. It imports no other part; the parts import it. Label values are names
//! from the config and fixed outcome codes, never anything a sender or receiver chose, so
//! every series is bounded by the config.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Config;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of [`classic`]'s output: Prometheus' text format 0.0.4, for the
/// scrapers and tools (`promtool check metrics`) that read no OpenMetrics.
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics (Prometheus' own scrapes do).
pub fn accepts_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// [`Metrics::render`]'s OpenMetrics text in the Prometheus text format 0.0.4: a counter's
/// `TYPE` and `HELP` name its `_total` samples, an info metric is a gauge named `_info`,
/// and the OpenMetrics-only lines (`# UNIT`, `# EOF`, `_created` samples, exemplars) are
/// left out.
pub fn classic(openmetrics: &str) -> String {
    // Each family's classic name suffix and type, from its `TYPE` line (which OpenMetrics
    // writes after `HELP`).
    let families: std::collections::HashMap<&str, (&str, &str)> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .map(|(name, kind)| {
            let classic = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            (name, classic)
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        let meta = ["# TYPE ", "# HELP "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        if let Some((prefix, rest)) = meta {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            let (suffix, kind) = families.get(name).copied().unwrap_or(("", "untyped"));
            let text = if prefix == "# TYPE " { kind } else { text };
            out.push_str(&format!("{prefix}{name}{suffix} {text}\n"));
            continue;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or("");
        if line.starts_with("# UNIT ") || line == "# EOF" || sample_name.ends_with("_created") {
            continue;
        }
        out.push_str(line.split(" # ").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// What became of one request to `/hooks/{source}`: the `outcome` label of
/// `hookrelay_events_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Stored and queued (`202`).
    Accepted,
    /// A re-sent delivery; nothing new queued (`200`).
    Duplicate,
    /// Missing, malformed or wrong signature or token, or a stale timestamp (`401`).
    Unauthorized,
    /// The source needs a JSON body and it is not JSON (`400`).
    MalformedJson,
    /// Larger than `max_body` (`413`).
    TooLarge,
    /// The body did not arrive within `body_timeout` (`408`).
    BodyTimeout,
    /// The body could not be read (`400`).
    BodyError,
    /// Not a POST (`405`).
    MethodNotAllowed,
    /// The store could not commit (`503`).
    StoreFailed,
    /// No enabled source of that name (`404`); counted with `source=""`.
    UnknownSource,
    /// Refused because request bodies in memory reached `[server] max_buffered` (`503`).
    Busy,
}

impl EventOutcome {
    /// Every outcome, in declaration order: `outcome as usize` indexes it.
    pub const ALL: [EventOutcome; 11] = [
        EventOutcome::Accepted,
        EventOutcome::Duplicate,
        EventOutcome::Unauthorized,
        EventOutcome::MalformedJson,
        EventOutcome::TooLarge,
        EventOutcome::BodyTimeout,
        EventOutcome::BodyError,
        EventOutcome::MethodNotAllowed,
        EventOutcome::StoreFailed,
        EventOutcome::UnknownSource,
        EventOutcome::Busy,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Unauthorized => "unauthorized",
            EventOutcome::MalformedJson => "malformed_json",
            EventOutcome::TooLarge => "too_large",
            EventOutcome::BodyTimeout => "body_timeout",
            EventOutcome::BodyError => "body_error",
            EventOutcome::MethodNotAllowed => "method_not_allowed",
            EventOutcome::StoreFailed => "store_failed",
            EventOutcome::UnknownSource => "unknown_source",
            EventOutcome::Busy => "busy",
        }
    }
}

/// How one delivery attempt ended: the `outcome` label of `hookrelay_deliveries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The sink took it.
    Delivered,
    /// Failed; another attempt is scheduled. Not a loss.
    Retrying,
    /// Failed for good; now a dead letter. A loss until replayed.
    DeadLettered,
    /// Nothing to send for this sink (e.g. no SBOM in the event); done, not a loss.
    Skipped,
}

impl DeliveryOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered => "delivered",
            DeliveryOutcome::Retrying => "retrying",
            DeliveryOutcome::DeadLettered => "dead_lettered",
            DeliveryOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    sink: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// One source's request counters, one per [`EventOutcome`]; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SourceCounters {
    counters: Arc<[Counter; EventOutcome::ALL.len()]>,
}

impl SourceCounters {
    /// Counts one request: a single relaxed atomic add.
    pub fn inc(&self, outcome: EventOutcome) {
        self.counters[outcome as usize].inc();
    }
}

/// One sink's delivery metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct SinkMetrics {
    delivered: Counter,
    retrying: Counter,
    dead_lettered: Counter,
    skipped: Counter,
    latency: Histogram,
}

impl SinkMetrics {
    /// Handles not registered anywhere: for dispatch run without a registry.
    pub fn detached() -> SinkMetrics {
        SinkMetrics {
            delivered: Counter::default(),
            retrying: Counter::default(),
            dead_lettered: Counter::default(),
            skipped: Counter::default(),
            latency: Histogram::new(latency_buckets()),
        }
    }

    /// Counts one attempt and its duration in seconds.
    pub fn attempt(&self, outcome: DeliveryOutcome, seconds: f64) {
        match outcome {
            DeliveryOutcome::Delivered => self.delivered.inc(),
            DeliveryOutcome::Retrying => self.retrying.inc(),
            DeliveryOutcome::DeadLettered => self.dead_lettered.inc(),
            DeliveryOutcome::Skipped => self.skipped.inc(),
        };
        self.latency.observe(seconds);
    }
}

/// The store writer's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    commit_seconds: Histogram,
    batch_ops: Histogram,
}

impl Default for StoreMetrics {
    /// Handles not registered anywhere: for a store opened without a registry.
    fn default() -> StoreMetrics {
        StoreMetrics {
            commit_seconds: Histogram::new(latency_buckets()),
            batch_ops: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
        }
    }
}

impl StoreMetrics {
    /// Records one committed batch: its operations and how long the commit took.
    pub fn batch(&self, ops: usize, seconds: f64) {
        self.batch_ops.observe(ops as f64);
        self.commit_seconds.observe(seconds);
    }
}

/// How a configuration reload ended: the `outcome` label of `hookrelay_config_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new file was checked and is now running.
    Success,
    /// The new file was refused; the previous configuration keeps running.
    Failure,
}

impl ReloadOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadOutcome::Success => "success",
            ReloadOutcome::Failure => "failure",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoticeLabels {
    r#type: &'static str,
    outcome: &'static str,
}

/// Counts hookrelay's own notices by type and outcome (`stored`, `suppressed`); cheap to
/// clone. Notices are rare, so a label lookup per count is fine.
#[derive(Clone, Debug, Default)]
pub struct NoticeMetrics {
    family: Family<NoticeLabels, Counter>,
}

impl NoticeMetrics {
    /// Creates the series of a notice type at zero, so dashboards see them from the start.
    pub fn register(&self, kind: &'static str) {
        for outcome in ["stored", "suppressed"] {
            self.count(kind, outcome, 0);
        }
    }

    /// Adds `n` notices of `kind` with `outcome` (`stored` or `suppressed`).
    pub fn count(&self, kind: &'static str, outcome: &'static str, n: u64) {
        self.family
            .get_or_create(&NoticeLabels {
                r#type: kind,
                outcome,
            })
            .inc_by(n);
    }
}

/// 0.5 ms to about 65 s, doubling: covers an fsync and a slow receiver alike.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 18)
}

/// The registry and every handle, built from the config at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Per-source and per-sink handles: written at start and by reloads, read when a part
    /// takes its handles, never per request.
    sources: RwLock<HashMap<String, SourceCounters>>,
    unknown_source: SourceCounters,
    sinks: RwLock<HashMap<String, SinkMetrics>>,
    store: StoreMetrics,
    events: Family<EventLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    latency: Family<SinkLabel, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
    notices: NoticeMetrics,
}

impl Metrics {
    /// Registers every metric for the configured sources and sinks, all at zero, so a
    /// dashboard sees each series from the first scrape.
    pub fn new(config: &Config) -> Metrics {
        let mut registry = Registry::with_prefix("hookrelay");
        registry.register(
            "build",
            "hookrelay version; the value is always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );

        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_received",
            "Requests to /hooks/{source}, by source and outcome",
            events.clone(),
        );
        // Only the one outcome that can happen without a source is registered; the others
        // stay detached, so no always-zero series.
        let mut unknown: [Counter; EventOutcome::ALL.len()] = Default::default();
        unknown[EventOutcome::UnknownSource as usize] = events
            .get_or_create(&EventLabels {
                source: String::new(),
                outcome: EventOutcome::UnknownSource.as_str(),
            })
            .clone();
        let unknown_source = SourceCounters {
            counters: Arc::new(unknown),
        };

        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts, by sink and outcome (delivered, retrying, dead_lettered, skipped)",
            deliveries.clone(),
        );
        let latency = Family::<SinkLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "delivery_duration",
            "Time one delivery attempt took, by sink",
            Unit::Seconds,
            latency.clone(),
        );

        let store = StoreMetrics::default();
        registry.register_with_unit(
            "store_commit_duration",
            "Time one group commit took, fsync included",
            Unit::Seconds,
            store.commit_seconds.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Operations (ingests, attempt records, replays, purges) per group commit",
            store.batch_ops.clone(),
        );

        let notices = NoticeMetrics::default();
        registry.register(
            "notices",
            "hookrelay's own notices, by type and outcome (stored as events, or suppressed by [notices] min_interval)",
            notices.family.clone(),
        );

        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP or POST /api/reload), by outcome",
            reloads.clone(),
        );
        for outcome in [ReloadOutcome::Success, ReloadOutcome::Failure] {
            drop(reloads.get_or_create(&ReloadLabels {
                outcome: outcome.as_str(),
            }));
        }

        let metrics = Metrics {
            registry,
            sources: RwLock::default(),
            unknown_source,
            sinks: RwLock::default(),
            store,
            events,
            deliveries,
            latency,
            reloads,
            notices,
        };
        metrics.track(config);
        metrics
    }

    /// Registers, at zero, the series of every source and sink of `config` not yet known
    /// (a reload's new names). Series of names a reload removed stay: counters never go
    /// back, and a sink's queue may outlive its config.
    pub fn track(&self, config: &Config) {
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        for source in &config.sources {
            sources
                .entry(source.name.clone())
                .or_insert_with(|| SourceCounters {
                    counters: Arc::new(EventOutcome::ALL.map(|outcome| {
                        self.events
                            .get_or_create(&EventLabels {
                                source: source.name.clone(),
                                outcome: outcome.as_str(),
                            })
                            .clone()
                    })),
                });
        }
        drop(sources);
        let mut sinks = self.sinks.write().unwrap_or_else(|e| e.into_inner());
        for sink in &config.sinks {
            sinks.entry(sink.name.clone()).or_insert_with(|| {
                let counter = |outcome: DeliveryOutcome| {
                    self.deliveries
                        .get_or_create(&DeliveryLabels {
                            sink: sink.name.clone(),
                            outcome: outcome.as_str(),
                        })
                        .clone()
                };
                SinkMetrics {
                    delivered: counter(DeliveryOutcome::Delivered),
                    retrying: counter(DeliveryOutcome::Retrying),
                    dead_lettered: counter(DeliveryOutcome::DeadLettered),
                    skipped: counter(DeliveryOutcome::Skipped),
                    latency: self
                        .latency
                        .get_or_create(&SinkLabel {
                            sink: sink.name.clone(),
                        })
                        .clone(),
                }
            });
        }
    }

    /// Counts one configuration reload.
    pub fn reload(&self, outcome: ReloadOutcome) {
        self.reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Adds metrics read at scrape time (queue depths, file size), under the same prefix.
    pub fn add_collector(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// The counters of a configured source.
    pub fn source(&self, name: &str) -> SourceCounters {
        self.sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The counter for requests to no enabled source.
    pub fn unknown_source(&self) -> SourceCounters {
        self.unknown_source.clone()
    }

    /// The metrics of a configured sink (detached handles for any other name).
    pub fn sink(&self, name: &str) -> SinkMetrics {
        self.sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .unwrap_or_else(SinkMetrics::detached)
    }

    /// The store writer's metrics.
    pub fn store(&self) -> StoreMetrics {
        self.store.clone()
    }

    /// The own-health notices' counters.
    pub fn notices(&self) -> NoticeMetrics {
        self.notices.clone()
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]). May block: collectors
    /// read the store.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_text_names_counters_and_infos_by_their_samples() {
        let openmetrics = "# HELP hits Requests.\n# TYPE hits counter\nhits_total{a=\"b\"} 3\nhits_created 1.7e9\n\
                           # HELP build Build.\n# TYPE build info\nbuild_info{version=\"1\"} 1\n\
                           # HELP wait Seconds.\n# TYPE wait histogram\n# UNIT wait seconds\n\
                           wait_bucket{le=\"+Inf\"} 2 # {trace=\"x\"} 0.5\nwait_sum 1.5\nwait_count 2\n# EOF\n";
        assert_eq!(
            classic(openmetrics),
            "# HELP hits_total Requests.\n# TYPE hits_total counter\nhits_total{a=\"b\"} 3\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{version=\"1\"} 1\n\
             # HELP wait Seconds.\n# TYPE wait histogram\n\
             wait_bucket{le=\"+Inf\"} 2\nwait_sum 1.5\nwait_count 2\n"
        );
        assert!(accepts_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!accepts_openmetrics(Some("*/*")));
        assert!(!accepts_openmetrics(None));
    }

    fn config() -> Config {
        Config::parse(
            "[sources.github]\nkind = \"none\"\n[sinks.audit]\nkind = \"webhook\"\nurl = \"https://h/\"\n",
            "t",
        )
        .unwrap()
    }

    #[test]
    fn every_series_is_present_from_the_start_with_bounded_labels() {
        let metrics = Metrics::new(&config());
        let text = metrics.render();
        for line in [
            "hookrelay_build_info{version=\"",
            "hookrelay_events_received_total{source=\"github\",outcome=\"accepted\"} 0",
            "hookrelay_events_received_total{source=\"github\",outcome=\"too_large\"} 0",
            "hookrelay_events_received_total{source=\"\",outcome=\"unknown_source\"} 0",
            "hookrelay_deliveries_total{sink=\"audit\",outcome=\"dead_lettered\"} 0",
            "hookrelay_delivery_duration_seconds_count{sink=\"audit\"} 0",
            "hookrelay_store_commit_duration_seconds_count 0",
            "hookrelay_store_commit_batch_size_count 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert_eq!(
            text.matches("source=\"\"").count(),
            1,
            "only unknown_source is counted without a source:\n{text}"
        );
    }

    #[test]
    fn a_reload_adds_series_for_new_names_and_counts_itself() {
        let metrics = Metrics::new(&config());
        let text = metrics.render();
        assert!(
            text.contains("hookrelay_config_reloads_total{outcome=\"failure\"} 0"),
            "{text}"
        );
        let reloaded = Config::parse(
            "[sources.gitlab]\nkind = \"none\"\n[sinks.chat]\nkind = \"webhook\"\nurl = \"https://h/\"\n",
            "t",
        )
        .unwrap();
        let before = metrics.source("github");
        metrics.track(&reloaded);
        metrics.source("gitlab").inc(EventOutcome::Accepted);
        metrics
            .sink("chat")
            .attempt(DeliveryOutcome::Delivered, 0.01);
        // A handle taken before the reload still counts into the same series.
        before.inc(EventOutcome::Accepted);
        metrics.track(&reloaded);
        metrics.reload(ReloadOutcome::Success);
        let text = metrics.render();
        for line in [
            "hookrelay_events_received_total{source=\"gitlab\",outcome=\"accepted\"} 1",
            "hookrelay_events_received_total{source=\"github\",outcome=\"accepted\"} 1",
            "hookrelay_deliveries_total{sink=\"chat\",outcome=\"delivered\"} 1",
            "hookrelay_deliveries_total{sink=\"audit\",outcome=\"delivered\"} 0",
            "hookrelay_config_reloads_total{outcome=\"success\"} 1",
            "hookrelay_config_reloads_total{outcome=\"failure\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn outcomes_index_their_own_counter() {
        for (i, outcome) in EventOutcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i, "{outcome:?}");
        }
    }

    #[test]
    fn handles_count_into_their_own_series() {
        let metrics = Metrics::new(&config());
        metrics.source("github").inc(EventOutcome::Accepted);
        metrics.source("github").inc(EventOutcome::Accepted);
        metrics.source("github").inc(EventOutcome::Unauthorized);
        metrics.unknown_source().inc(EventOutcome::UnknownSource);
        metrics
            .sink("audit")
            .attempt(DeliveryOutcome::Retrying, 0.002);
        metrics.store().batch(3, 0.001);
        // Names not in the config count nowhere and add no series.
        metrics.source("other").inc(EventOutcome::Accepted);
        metrics
            .sink("other")
            .attempt(DeliveryOutcome::Delivered, 0.1);
        let text = metrics.render();
        for line in [
            "hookrelay_events_received_total{source=\"github\",outcome=\"accepted\"} 2",
            "hookrelay_events_received_total{source=\"github\",outcome=\"unauthorized\"} 1",
            "hookrelay_events_received_total{source=\"\",outcome=\"unknown_source\"} 1",
            "hookrelay_deliveries_total{sink=\"audit\",outcome=\"retrying\"} 1",
            "hookrelay_delivery_duration_seconds_count{sink=\"audit\"} 1",
            "hookrelay_store_commit_batch_size_sum 3.0",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("\"other\""), "{text}");
    }
}
