//! Retention through the real binary: with `retention = "1s"` and a steady stream of events,
//! expired events leave the API, the store file stops growing (redb reuses the pages retention
//! frees), an event whose delivery is pending or dead-lettered stays whatever its age, and a
//! dead letter replayed and delivered is removed by a later pass.
//!
//! The bound on the file is generous and counts bytes, not time. redb grows its file by
//! doubling it; once it has kept its size over four passes (it then holds about one
//! retention's worth of events), the stream sends twice the file's size again. Without retention all of that
//! must fit, so the file would have to double twice; with retention it may double once at
//! most (measured: it does not grow at all, 35 MB while 150 MB more were sent).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::admin::{admin_addr, call, wait_until};
use common::*;

const GITHUB_SECRET: &str = "retention-test-github-secret";
const TOKEN: &str = "retention-test-admin-token";
/// Concurrent senders of the steady stream.
const LANES: usize = 4;
/// Body of each steady event: big enough that the stream writes megabytes quickly.
const BODY_BYTES: usize = 16 * 1024;
/// How long the stream may take to send what the test needs, before it fails.
const LOAD_DEADLINE: Duration = Duration::from_secs(90);

fn config(ok: &Receiver, broken: &Receiver, held: &Receiver) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[storage]
path = "store/hookrelay.redb"
retention = "1s"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sinks.ok]
kind = "webhook"
url = "{}"

[sinks.broken]
kind = "webhook"
url = "{}"
retry = {{ max_attempts = 1 }}

[sinks.held]
kind = "webhook"
url = "{}"
paused = true

[[routes]]
from = "github"
events = ["push"]
to = ["ok"]

[[routes]]
from = "github"
events = ["dead"]
to = ["broken"]

[[routes]]
from = "github"
events = ["held"]
to = ["held"]
"#,
        ok.url(),
        broken.url(),
        held.url()
    )
}

async fn send(relay: &Relay, event: &str, delivery: &str, body: &str) -> String {
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(GITHUB_SECRET, event, delivery, body.as_bytes()),
        body.to_string(),
    )
    .await;
    assert_eq!(reply.status, 202, "{event} {delivery}: {}", reply.json);
    reply.id()
}

/// One lane of the steady stream: push events one after another until `stop`, adding each
/// accepted body's size to `sent`.
async fn stream(relay_url: String, lane: usize, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let body = format!(
        r#"{{"ref":"refs/heads/main","pad":"{}"}}"#,
        "x".repeat(BODY_BYTES)
    );
    let signature = github_signature(GITHUB_SECRET, body.as_bytes());
    // One client per lane: building one per request (as `post` does) costs more than the
    // request itself in a debug build, and the stream would not be steady.
    let client = client();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let delivery = format!("s-{lane}-{n}");
        let response = client
            .post(&relay_url)
            .header("content-type", "application/json")
            .header("x-github-event", "push")
            .header("x-github-delivery", &delivery)
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await
            .expect("request to hookrelay");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 202, "{delivery}: {text}");
        sent.fetch_add(body.len() as u64, Ordering::Relaxed);
        n += 1;
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn passes_that_removed(relay: &Relay) -> usize {
    relay
        .logs()
        .iter()
        .filter(|l| l.contains("retention removed expired events"))
        .count()
}

/// Lets the stream run until the file kept one size while four passes removed events;
/// returns that size. Fails the test after [`LOAD_DEADLINE`].
async fn plateau(relay: &Relay, store: &Path) -> u64 {
    let deadline = Instant::now() + LOAD_DEADLINE;
    let (mut passes, mut sizes) = (0, Vec::new());
    loop {
        let now = passes_that_removed(relay);
        if now > passes {
            passes = now;
            sizes.push(file_size(store));
            if let [.., a, b, c, d] = sizes[..]
                && a == b
                && b == c
                && c == d
            {
                return d;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the store file never kept its size over four retention passes: {sizes:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets the stream run until `done` holds; fails the test after [`LOAD_DEADLINE`].
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LOAD_DEADLINE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not so after {LOAD_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_ingest_keeps_the_store_bounded_and_keeps_pending_and_dead_events() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Receiver::start().await;
    // The first delivery fails for good (one attempt); the replay is delivered.
    let mut broken = Receiver::with_script(vec![Answer::status(500)]).await;
    let held = Receiver::start().await;
    let config_path = dir.path().join("hookrelay.toml");
    std::fs::write(&config_path, config(&ok, &broken, &held)).unwrap();
    let relay = Relay::start_with_file(dir.path(), &config_path);
    let admin = admin_addr(&relay).await;
    let store = dir.path().join("store/hookrelay.redb");

    let dead_id = send(&relay, "dead", "kept-dead", r#"{"n":1}"#).await;
    broken.next().await;
    wait_until(
        admin,
        &format!("/api/events/{dead_id}"),
        TOKEN,
        "dead-lettered",
        |e| e["deliveries"][0]["state"] == "dead",
    )
    .await;
    let held_id = send(&relay, "held", "kept-held", r#"{"n":2}"#).await;
    let first_id = send(&relay, "push", "first", r#"{"n":3}"#).await;

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let lanes: Vec<_> = (0..LANES)
        .map(|lane| {
            tokio::spawn(stream(
                relay.hook_url("github"),
                lane,
                stop.clone(),
                sent.clone(),
            ))
        })
        .collect();

    // Warm: the file kept its size over four passes that removed events; it then holds
    // about one retention's worth of events and the pages the passes free.
    let warm_size = plateau(&relay, &store).await;
    let warm_sent = sent.load(Ordering::Relaxed);
    until("twice the warm file size sent", || {
        sent.load(Ordering::Relaxed) - warm_sent >= 2 * warm_size
    })
    .await;
    let end_size = file_size(&store);
    stop.store(true, Ordering::Relaxed);
    for lane in lanes {
        lane.await.unwrap();
    }
    let total_sent = sent.load(Ordering::Relaxed);
    println!(
        "store file: {warm_size} bytes once warm, {end_size} at the end; bodies sent: \
         {warm_sent} bytes before warm, {total_sent} in all"
    );
    assert!(
        // One doubling (and its header pages) at most.
        end_size <= 2 * warm_size + (1 << 20),
        "the store file kept growing: {warm_size} bytes once warm, {end_size} after sending \
         {} more bytes of bodies ({total_sent} in all)",
        total_sent - warm_sent
    );

    // Expired events are gone; the pending and the dead-lettered one stay, whatever their age.
    let first = call(
        admin,
        "GET",
        &format!("/api/events/{first_id}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(
        first.status, 404,
        "an expired event is removed: {}",
        first.text
    );
    let dead = call(admin, "GET", &format!("/api/events/{dead_id}"), Some(TOKEN)).await;
    assert_eq!(
        dead.status, 200,
        "a dead letter keeps its event: {}",
        dead.text
    );
    assert_eq!(dead.json()["deliveries"][0]["state"], "dead");
    let pending = call(admin, "GET", &format!("/api/events/{held_id}"), Some(TOKEN)).await;
    assert_eq!(
        pending.status, 200,
        "a pending delivery keeps its event: {}",
        pending.text
    );
    assert_eq!(pending.json()["deliveries"][0]["state"], "queued");

    // The dead letter is replayed and delivered: a later pass removes its event.
    let replay = call(
        admin,
        "POST",
        "/api/sinks/broken/dead-letters/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    broken.next().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = call(admin, "GET", &format!("/api/events/{dead_id}"), Some(TOKEN)).await;
        if reply.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivered dead letter's event is still there: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = call(admin, "GET", &format!("/api/events/{held_id}"), Some(TOKEN)).await;
    assert_eq!(pending.status, 200, "still pending: {}", pending.text);
    assert!(relay.terminate().success());
}
