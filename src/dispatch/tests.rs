//! Dispatch across reloads: which workers [`Dispatcher::reconfigure`] keeps, replaces and
//! stops, and that no queued delivery is lost or reset on the way.

use std::time::Duration;

use super::*;
use crate::config::Rate;
use crate::sinks::webhook::test_receiver::{Answer, Receiver, WAIT};

use super::test_support::{SINK, ingest, open_store, policy, sink_config};

fn sink(url: String) -> SinkConfig {
    sink_config(url, policy(5, 10, 20), None, Duration::from_secs(5))
}

/// Reconfigures `dispatcher` to run `sinks`, building them as a reload does.
fn reconfigure(dispatcher: &mut Dispatcher, sinks: &[SinkConfig]) {
    let built = build(sinks).expect("the sinks build");
    dispatcher.reconfigure(sinks, &[], built, None, WAIT);
}

fn lane(dispatcher: &Dispatcher) -> &Lane {
    dispatcher.lanes.get(SINK).expect("the sink has a lane")
}

#[tokio::test]
async fn a_changed_sink_keeps_its_limiter_while_its_rate_is_the_same() {
    let (_dir, store) = open_store();
    let mut receiver = Receiver::start(Vec::new()).await;
    let mut config = sink(receiver.url());
    // One delivery an hour: after the first, the limiter has no cell left for an hour.
    config.rate = Some(Rate {
        count: 1,
        per: Duration::from_secs(3600),
        burst: 1,
    });
    let mut dispatcher = Dispatcher::start(store.clone(), std::slice::from_ref(&config)).unwrap();
    let id = ingest(&store, 1).await;
    assert_eq!(receiver.next().await.header("webhook-id"), id.to_string());
    let spent = lane(&dispatcher)
        .limiter
        .clone()
        .expect("a rate-limited sink");
    assert!(spent.check().is_err(), "the hour's only cell was taken");

    // Another setting changes: a new worker, the same (still spent) limiter.
    config.timeout = Duration::from_secs(7);
    reconfigure(&mut dispatcher, std::slice::from_ref(&config));
    let kept = lane(&dispatcher).limiter.clone().unwrap();
    assert!(Arc::ptr_eq(&spent, &kept), "the limiter was replaced");
    assert!(kept.check().is_err(), "the limiter was reset");

    // The rate changes: a fresh limiter at that rate.
    config.rate = Some(Rate {
        count: 2,
        per: Duration::from_secs(3600),
        burst: 1,
    });
    reconfigure(&mut dispatcher, std::slice::from_ref(&config));
    let fresh = lane(&dispatcher).limiter.clone().unwrap();
    assert!(!Arc::ptr_eq(&spent, &fresh));
    assert!(fresh.check().is_ok(), "a new rate starts with its burst");
    dispatcher.shutdown(WAIT).await;
    store.close().await;
}

#[tokio::test]
async fn a_reload_keeps_the_wait_the_receiver_asked_for() {
    let (_dir, store) = open_store();
    let mut receiver =
        Receiver::start(vec![Answer::status(503).header("retry-after", "600")]).await;
    let mut config = sink(receiver.url());
    let mut dispatcher = Dispatcher::start(store.clone(), std::slice::from_ref(&config)).unwrap();
    ingest(&store, 1).await;
    receiver.next().await;
    let hold = lane(&dispatcher).hold.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let until = loop {
        if let Some(until) = hold.until() {
            break until;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 503 set no hold"
        );
        // The worker records the answer after the receiver has sent it.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(until > tokio::time::Instant::now() + Duration::from_secs(590));

    // Another setting changes: a new worker, under the same hold (it was a fresh one before,
    // and the queue went out at once).
    config.timeout = Duration::from_secs(7);
    reconfigure(&mut dispatcher, std::slice::from_ref(&config));
    let kept = lane(&dispatcher).hold.clone();
    assert!(Arc::ptr_eq(&hold, &kept), "the hold was replaced");
    assert_eq!(kept.until(), Some(until));
    dispatcher.shutdown(WAIT).await;
    assert_eq!(store.queue_len(SINK).unwrap(), 1, "still waiting");
    store.close().await;
}

#[tokio::test]
async fn an_unchanged_sink_keeps_its_worker_and_a_changed_one_moves_to_its_new_settings() {
    let (_dir, store) = open_store();
    let mut first = Receiver::start(Vec::new()).await;
    let mut second = Receiver::start(Vec::new()).await;
    let config = sink(first.url());
    let mut dispatcher = Dispatcher::start(store.clone(), std::slice::from_ref(&config)).unwrap();
    let task = lane(&dispatcher).task.as_ref().unwrap().id();

    reconfigure(&mut dispatcher, std::slice::from_ref(&config));
    assert_eq!(lane(&dispatcher).task.as_ref().unwrap().id(), task);
    let id = ingest(&store, 1).await;
    assert_eq!(first.next().await.header("webhook-id"), id.to_string());

    reconfigure(&mut dispatcher, &[sink(second.url())]);
    assert_ne!(lane(&dispatcher).task.as_ref().unwrap().id(), task);
    let id = ingest(&store, 2).await;
    assert_eq!(second.next().await.header("webhook-id"), id.to_string());
    dispatcher.shutdown(WAIT).await;
    assert_eq!(store.queue_len(SINK).unwrap(), 0);
    store.close().await;
}

#[tokio::test]
async fn a_removed_or_paused_sink_keeps_its_queue_until_it_runs_again() {
    let (_dir, store) = open_store();
    let mut receiver = Receiver::start(Vec::new()).await;
    let config = sink(receiver.url());
    let mut dispatcher = Dispatcher::start(store.clone(), std::slice::from_ref(&config)).unwrap();

    reconfigure(&mut dispatcher, &[]);
    assert_eq!(dispatcher.running(), 0);
    let while_removed = ingest(&store, 1).await;
    let mut paused = config.clone();
    paused.paused = true;
    reconfigure(&mut dispatcher, std::slice::from_ref(&paused));
    assert_eq!(dispatcher.running(), 0);
    let while_paused = ingest(&store, 2).await;
    assert_eq!(store.queue_len(SINK).unwrap(), 2);

    reconfigure(&mut dispatcher, std::slice::from_ref(&config));
    assert_eq!(dispatcher.running(), 1);
    let mut got = vec![
        receiver.next().await.header("webhook-id").to_string(),
        receiver.next().await.header("webhook-id").to_string(),
    ];
    got.sort();
    let mut want = vec![while_removed.to_string(), while_paused.to_string()];
    want.sort();
    assert_eq!(got, want);
    dispatcher.shutdown(WAIT).await;
    assert_eq!(store.queue_len(SINK).unwrap(), 0);
    store.close().await;
}
