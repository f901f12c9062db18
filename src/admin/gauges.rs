//! Gauges read from the store at scrape time: queue depth, oldest queued event's age and
//! dead letters per sink, and the store file's size.
//!
//! The sinks are the configured ones ([`GaugedSinks`], replaced by a reload) plus any the
//! store still holds entries for: a sink removed from the config keeps its queue, and its
//! depth stays visible.
//!
//! Reading them at scrape time keeps them exact and costs nothing between scrapes; a scrape
//! counts every queued entry and dead letter (one read transaction, never waiting on the
//! writer). If the store cannot be read the gauges are left out of that scrape and a
//! warning is logged, rather than failing `/metrics` as a whole.

use std::sync::Arc;

use arc_swap::ArcSwap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// The configured sink names the gauges report; shared with whoever applies a reload.
#[derive(Debug, Clone, Default)]
pub struct GaugedSinks(Arc<ArcSwap<Vec<String>>>);

impl GaugedSinks {
    /// Reports these sinks from the next scrape on.
    pub fn set(&self, names: Vec<String>) {
        self.0.store(Arc::new(names));
    }
}

/// The store-backed gauges of every configured sink, and of every sink with stored entries.
pub struct StoreGauges {
    store: Store,
    sinks: GaugedSinks,
}

impl std::fmt::Debug for StoreGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreGauges")
            .field("sinks", &self.sinks.0.load())
            .finish()
    }
}

impl StoreGauges {
    /// Gauges for `sinks`, read from `store` at each scrape.
    pub fn new(store: Store, sinks: GaugedSinks) -> StoreGauges {
        StoreGauges { store, sinks }
    }
}

impl Collector for StoreGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Ok(size) = self.store.file_size() {
            let gauge = ConstGauge::new(size as i64);
            let metric = encoder.encode_descriptor(
                "store_file_size",
                "Size of the redb file",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?;
            gauge.encode(metric)?;
        }
        let mut names: Vec<String> = self.sinks.0.load().to_vec();
        match self.store.sinks_with_entries() {
            Ok(stored) => names.extend(stored),
            Err(err) => {
                tracing::warn!(error = %err, "metrics: cannot list the sinks the store holds entries for");
            }
        }
        names.sort_unstable();
        names.dedup();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let stats = match self.store.sink_stats_recent(&names) {
            Ok(stats) => stats,
            Err(err) => {
                tracing::warn!(error = %err, "metrics: cannot read queue figures; left out of this scrape");
                return Ok(());
            }
        };
        let now_ms = crate::clock::now_ms();
        {
            let mut metric = encoder.encode_descriptor(
                "queue_depth",
                "Deliveries queued per sink (due or not, in flight included)",
                None,
                MetricType::Gauge,
            )?;
            for (sink, s) in names.iter().zip(&stats) {
                ConstGauge::new(s.queued as i64).encode(metric.encode_family(&SinkLabel {
                    sink: sink.to_string(),
                })?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "queue_oldest_age",
                "Age of the oldest event still queued for the sink; 0 when its queue is empty",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for (sink, s) in names.iter().zip(&stats) {
                let age = s
                    .oldest_queued_ms
                    .map_or(0.0, |ms| now_ms.saturating_sub(ms) as f64 / 1000.0);
                ConstGauge::new(age).encode(metric.encode_family(&SinkLabel {
                    sink: sink.to_string(),
                })?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "dead_letters",
            "Dead letters held per sink (falls when they are replayed)",
            None,
            MetricType::Gauge,
        )?;
        for (sink, s) in names.iter().zip(&stats) {
            ConstGauge::new(s.dead as i64).encode(metric.encode_family(&SinkLabel {
                sink: sink.to_string(),
            })?)?;
        }
        Ok(())
    }
}
