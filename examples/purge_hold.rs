//! How long retention holds the store writer, and what an ingest waits while it runs.
//!
//! Fills a fresh store with `EVENTS` expired 1 KiB events (every tenth still pending for a
//! sink, so it must be kept), then keeps a steady ingest load running while one retention
//! pass removes the rest in steps of `STEP` events, as the relay's retention task does. It
//! prints the writer's commit durations (from its `committed batch` trace events) and the
//! ingest latency before and during the pass, then the time of a second pass, which the
//! sweep's cursor makes skip the kept events.
//!
//! ```sh
//! cargo run --release --example purge_hold [EVENTS] [STEP]    # defaults: 200000 512
//! ```
//! Not a benchmark for the record: run it on a quiet machine for figures.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hookrelay::config::StorageConfig;
use hookrelay::store::{NewEvent, Store};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Concurrent ingests while filling: enough to form large group commits.
const FILL_IN_FLIGHT: usize = 512;
/// Tasks ingesting one event after another during the measured phases.
const LOAD_TASKS: usize = 8;

/// Phases whose figures are kept apart.
const BEFORE: usize = 0;
const DURING: usize = 1;
const AFTER: usize = 2;

/// One histogram per phase, in microseconds.
struct Phased {
    phase: AtomicUsize,
    by_phase: [Mutex<Histogram<u64>>; 3],
}

impl Phased {
    fn new() -> Phased {
        let h = || Mutex::new(Histogram::new(3).expect("3 significant figures is valid"));
        Phased {
            phase: AtomicUsize::new(BEFORE),
            by_phase: [h(), h(), h()],
        }
    }

    fn record(&self, us: u64) {
        let phase = self.phase.load(Ordering::Relaxed);
        let _ = self.by_phase[phase].lock().unwrap().record(us.max(1));
    }

    fn line(&self, phase: usize) -> String {
        let h = self.by_phase[phase].lock().unwrap();
        format!(
            "n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        )
    }
}

/// Collects the writer's `committed batch` durations.
struct Commits(Arc<Phased>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Commits {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        struct Elapsed(Option<u64>);
        impl tracing::field::Visit for Elapsed {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "elapsed_us" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if !event.metadata().target().starts_with("hookrelay::store") {
            return;
        }
        let mut elapsed = Elapsed(None);
        event.record(&mut elapsed);
        if let Some(us) = elapsed.0 {
            self.0.record(us);
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn event(n: usize, sinks: &[&str]) -> NewEvent {
    NewEvent {
        source: Arc::from("bench"),
        event_type: Some("push".into()),
        delivery_id: Some(format!("d-{n}")),
        content_type: Some("application/json".into()),
        headers: Vec::new(),
        body: Bytes::from(vec![b'x'; 1024]),
        sinks: sinks.iter().map(|s| Arc::from(*s)).collect(),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(200_000, |a| a.parse().expect("EVENTS"));
    let step: usize = args.next().map_or(512, |a| a.parse().expect("STEP"));
    let commits = Arc::new(Phased::new());
    tracing_subscriber::registry()
        .with(Commits(commits.clone()))
        .init();

    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&StorageConfig {
        path: dir.path().join("purge.redb"),
        retention: Duration::from_secs(1),
    })
    .expect("open the store");

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..events {
        if tasks.len() >= FILL_IN_FLIGHT {
            tasks.join_next().await.unwrap().unwrap();
        }
        let store = store.clone();
        let sinks: &[&str] = if n % 10 == 0 { &["kept"] } else { &[] };
        tasks.spawn(async move { store.ingest(event(n, sinks)).await.unwrap() });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let cutoff_ms = now_ms() + 1;
    println!(
        "filled {events} events ({} kept for a pending delivery) in {:.1}s; file {} MiB",
        events / 10,
        started.elapsed().as_secs_f64(),
        store.file_size().unwrap() >> 20
    );
    // Only the load's figures from here on: the fill's commits are not what is measured.
    for h in &commits.by_phase {
        h.lock().unwrap().reset();
    }
    // Past the cutoff's millisecond, so the load's events are all newer than it.
    while now_ms() <= cutoff_ms {
        tokio::task::yield_now().await;
    }

    let ingests = Arc::new(Phased::new());
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..LOAD_TASKS)
        .map(|lane| {
            let (store, ingests, stop) = (store.clone(), ingests.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = events + lane * 10_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    store.ingest(event(n, &[])).await.unwrap();
                    ingests.record(t.elapsed().as_micros() as u64);
                    n += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    for p in [&commits, &ingests] {
        p.phase.store(DURING, Ordering::Relaxed);
    }
    let pass_started = Instant::now();
    let (mut steps, mut removed, mut looked, mut longest) = (0, 0, 0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let s = store.purge(cutoff_ms, step).await.unwrap();
        longest = longest.max(t.elapsed());
        steps += 1;
        removed += s.removed;
        looked += s.looked;
        if s.done {
            break;
        }
        tokio::task::yield_now().await;
    }
    let pass_time = pass_started.elapsed();
    for p in [&commits, &ingests] {
        p.phase.store(AFTER, Ordering::Relaxed);
    }
    let t = Instant::now();
    let second = store.purge(cutoff_ms, step).await.unwrap();
    let second_time = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    println!(
        "pass: {removed} removed, {looked} looked at, {steps} steps of {step} in {:.2}s; \
         longest step round trip {:.2}ms",
        pass_time.as_secs_f64(),
        longest.as_secs_f64() * 1000.0
    );
    println!(
        "second pass: looked at {}, removed {}, done={} in {:.2}ms",
        second.looked,
        second.removed,
        second.done,
        second_time.as_secs_f64() * 1000.0
    );
    for (name, phase) in [
        ("before the pass", BEFORE),
        ("during the pass", DURING),
        ("after the pass", AFTER),
    ] {
        println!("writer commits {name}: {}", commits.line(phase));
        println!("ingest latency {name}: {}", ingests.line(phase));
    }
    println!(
        "file {} MiB after the pass",
        store.file_size().unwrap() >> 20
    );
    store.close().await;
}
