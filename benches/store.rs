//! Criterion bench of the store's group commit: N concurrent `Store::ingest` calls of a
//! 1 KiB event with one sink each, for N = 1, 32, 256, in events/s.
//!
//! Each call is durable (`Durability::Immediate`) before it returns, as in production. The N
//! callers submit at once; the writer takes whatever is queued when it wakes, so N callers
//! may share one commit or a few: that is the behaviour being measured, not one fixed
//! batch size. Every event has a unique delivery id, so the dedup index is written and never
//! short-cuts a commit. The redb file lives in a temp dir and grows over the run, as a live
//! relay's does between retention passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hookrelay::config::StorageConfig;
use hookrelay::store::{Ingested, NewEvent, Store};

/// Concurrent callers per iteration.
const CALLERS: [usize; 3] = [1, 32, 256];

fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&StorageConfig {
        path: dir.path().join("bench.redb"),
        retention: Duration::from_secs(7 * 24 * 3600),
    })
    .expect("open the store");
    let source: Arc<str> = Arc::from("github");
    let sink: Arc<str> = Arc::from("audit");
    let body = Bytes::from(vec![b'x'; 1024]);
    let deliveries = Arc::new(AtomicU64::new(0));
    let event = move |delivery: u64| NewEvent {
        source: source.clone(),
        event_type: Some("push".into()),
        delivery_id: Some(format!("bench-{delivery:016x}")),
        content_type: Some("application/json".into()),
        headers: vec![
            ("x-github-event".into(), b"push".to_vec()),
            ("content-type".into(), b"application/json".to_vec()),
        ],
        body: body.clone(),
        sinks: vec![sink.clone()],
    };

    let mut group = c.benchmark_group("store_group_commit");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for callers in CALLERS {
        group.throughput(Throughput::Elements(callers as u64));
        group.bench_with_input(
            BenchmarkId::new("ingest_1KiB_1sink", callers),
            &callers,
            |b, &callers| {
                b.iter(|| {
                    runtime.block_on(async {
                        let mut tasks = tokio::task::JoinSet::new();
                        for _ in 0..callers {
                            let store = store.clone();
                            let event = event(deliveries.fetch_add(1, Ordering::Relaxed));
                            tasks.spawn(async move { store.ingest(event).await });
                        }
                        while let Some(joined) = tasks.join_next().await {
                            let ingested = joined.expect("ingest task").expect("ingest commits");
                            assert!(
                                matches!(ingested, Ingested::Accepted(_)),
                                "unique ids never dedup"
                            );
                        }
                    })
                })
            },
        );
    }
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
