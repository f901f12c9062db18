//! The durability contract under repeated `kill -9`, the way a power cut meets it: the real
//! binary takes concurrent signed (and forged) events while two sinks receive, one of them
//! failing now and then, and is killed with SIGKILL at a random moment — inside a group
//! commit, a delivery, or the retention pass that runs at every start — then restarted on the
//! same file. At the end:
//!
//! - every event answered `2xx` was delivered to every sink its routes name, at least once;
//! - every sender retry of a request whose answer was lost (the kill cut the connection) is
//!   answered `202` or `200` (duplicate), never an error, and then counts as acknowledged;
//! - nothing answered `401` reached a sink or was stored: its delivery id is new afterwards;
//! - the redb file reopened cleanly after every kill (the relay restarted on it), and after
//!   the final clean stop it opens with empty queues, no dead letters, and every event still
//!   there (not yet purged by retention) byte for byte as sent.
//!
//! `CRASH_CYCLES` sets the number of kills (3 by default, the suite's short version);
//! `CRASH_SEED` replays a run's kill moments. The long run, in `RELIABILITY.md`:
//! `CRASH_CYCLES=20 cargo test --release --test crash_cycles -- --nocapture`.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "crash-cycles-secret";
/// Concurrent senders.
const SENDERS: usize = 8;
/// How long after a start the kill may come: long enough to reach steady load, short
/// enough that many kills land in the startup retention pass and the first commits.
const MAX_KILL_DELAY_MS: u64 = 600;

/// The event types sent, and the sinks their routes name.
const TYPES: [(&str, &[&str]); 3] = [
    ("push", &["a", "b"]),
    ("release.published", &["b"]),
    ("issues", &["a"]),
];

/// The whole file: retention is one second, so the pass that runs at every start purges
/// what earlier cycles delivered, and kills land in it.
fn config(a: &Receiver, b: &Receiver) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[storage]
path = "store/hookrelay.redb"
retention = "1s"

[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.a]
kind = "webhook"
url = "{}"
concurrency = 4
retry = {{ max_attempts = 1000, initial = "10ms", max = "200ms" }}

[sinks.b]
kind = "webhook"
url = "{}"
concurrency = 4
retry = {{ max_attempts = 1000, initial = "10ms", max = "200ms" }}

[[routes]]
from = "github"
events = ["push", "issues"]
to = ["a"]

[[routes]]
from = "github"
events = ["push", "release*"]
to = ["b"]
"#,
        a.url(),
        b.url()
    )
}

/// A tiny xorshift: reproducible kill moments from one printed seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A request whose answer the kill cut off: the sender will send it again.
#[derive(Clone)]
struct Unanswered {
    delivery: String,
    event_type: &'static str,
    body: String,
}

/// What the senders learned.
#[derive(Default)]
struct Ledger {
    /// Event id → (body, sinks it must reach).
    acknowledged: HashMap<String, (String, &'static [&'static str])>,
    unanswered: Vec<Unanswered>,
    /// Delivery ids refused with 401, to be sent signed later.
    forged: Vec<String>,
    /// How many forged requests were refused in all.
    refused: usize,
    /// How many signed requests the kills cut off before their answer.
    cut: usize,
    /// Statuses other than 2xx/401 (must stay empty).
    unexpected: Vec<String>,
    sent: usize,
}

enum Sent {
    Answered(u16, Option<String>),
    Cut,
}

async fn send(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    delivery: &str,
    event_type: &str,
    body: &str,
) -> Sent {
    let mut request = client.post(url).body(body.to_owned());
    for (name, value) in github_headers(secret, event_type, delivery, body.as_bytes()) {
        request = request.header(name, value);
    }
    let Ok(response) = request.send().await else {
        return Sent::Cut;
    };
    let status = response.status().as_u16();
    let Ok(text) = response.text().await else {
        return Sent::Cut;
    };
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from));
    Sent::Answered(status, id)
}

fn type_sinks(event_type: &str) -> &'static [&'static str] {
    TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, s)| *s)
        .expect("a known event type")
}

/// Sends what earlier cycles left unanswered, and the forged delivery ids signed; both
/// must be answered now that nothing kills the relay mid-request.
async fn resend(url: &str, ledger: &Mutex<Ledger>) {
    let client = client();
    let (unanswered, forged) = {
        let mut l = ledger.lock().unwrap();
        (
            std::mem::take(&mut l.unanswered),
            std::mem::take(&mut l.forged),
        )
    };
    for u in unanswered {
        match send(&client, url, SECRET, &u.delivery, u.event_type, &u.body).await {
            Sent::Answered(202 | 200, Some(id)) => {
                let mut l = ledger.lock().unwrap();
                l.acknowledged
                    .insert(id, (u.body.clone(), type_sinks(u.event_type)));
            }
            Sent::Answered(status, _) => ledger
                .lock()
                .unwrap()
                .unexpected
                .push(format!("re-sent delivery {} answered {status}", u.delivery)),
            Sent::Cut => panic!("re-sending {} failed with the relay up", u.delivery),
        }
    }
    for delivery in forged {
        let body = format!("{{\"forged_then_signed\":\"{delivery}\"}}");
        match send(&client, url, SECRET, &delivery, "push", &body).await {
            // 202, not 200: the forged request with this delivery id left no trace.
            Sent::Answered(202, Some(id)) => {
                ledger
                    .lock()
                    .unwrap()
                    .acknowledged
                    .insert(id, (body, type_sinks("push")));
            }
            Sent::Answered(status, _) => ledger.lock().unwrap().unexpected.push(format!(
                "delivery id {delivery}, refused with 401 before, now answered {status} (200 would mean the forged request was stored)"
            )),
            Sent::Cut => panic!("sending {delivery} failed with the relay up"),
        }
    }
}

/// One sender: signed events of every type, and now and then a forged one, until `stop`.
async fn sender(
    url: String,
    cycle: usize,
    lane: usize,
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let client = client();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let delivery = format!("c{cycle}-l{lane}-{n}");
        if n % 5 == 2 {
            // Forged: must be refused and leave nothing.
            let body = format!("{{\"forged\":\"{delivery}\"}}");
            match send(&client, &url, "not-the-secret", &delivery, "push", &body).await {
                Sent::Answered(401, _) => {
                    let mut l = ledger.lock().unwrap();
                    l.refused += 1;
                    l.forged.push(delivery);
                }
                Sent::Answered(status, _) => ledger
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("forged {delivery} answered {status}")),
                // Whether it was refused is unknown: it must still never arrive anywhere,
                // which the receivers check; its delivery id is not reused.
                Sent::Cut => return,
            }
            continue;
        }
        let event_type = TYPES[n % TYPES.len()].0;
        let body = format!(
            "{{\"delivery\":\"{delivery}\",\"pad\":\"{}\"}}",
            "x".repeat(n % 700)
        );
        let sent = send(&client, &url, SECRET, &delivery, event_type, &body).await;
        let mut l = ledger.lock().unwrap();
        l.sent += 1;
        match sent {
            Sent::Answered(202, Some(id)) => {
                l.acknowledged.insert(id, (body, type_sinks(event_type)));
            }
            Sent::Answered(status, _) => l
                .unexpected
                .push(format!("{delivery} answered {status} on first send")),
            Sent::Cut => {
                l.cut += 1;
                l.unanswered.push(Unanswered {
                    delivery,
                    event_type,
                    body,
                });
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_repeated_kill_9() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .map(|v| v.parse().expect("CRASH_CYCLES is a number"))
        .unwrap_or(3);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("CRASH_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash cycles: {cycles}, CRASH_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    // Sink a refuses about one delivery in seven, so retries are in flight at kill time too.
    let script = (0..100_000)
        .map(|i| Answer::status(if i % 7 == 3 { 503 } else { 204 }))
        .collect();
    let mut a = Receiver::with_script(script).await;
    let mut b = Receiver::start().await;
    let config_path = dir.path().join("hookrelay.toml");
    std::fs::write(&config_path, config(&a, &b)).unwrap();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut retention_passes = 0;

    for cycle in 0..cycles {
        let relay = Relay::start_with_file(dir.path(), &config_path);
        resend(&relay.hook_url("github"), &ledger).await;
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..SENDERS)
            .map(|lane| {
                tokio::spawn(sender(
                    relay.hook_url("github"),
                    cycle,
                    lane,
                    stop.clone(),
                    ledger.clone(),
                ))
            })
            .collect();
        // The random moment: the kill's timing is the thing under test, not a wait.
        tokio::time::sleep(Duration::from_millis(rng.below(MAX_KILL_DELAY_MS))).await;
        retention_passes += relay
            .logs()
            .iter()
            .filter(|l| l.contains("retention removed"))
            .count();
        relay.kill9();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.await.unwrap();
        }
    }

    // The last start: everything left is answered and delivered.
    let relay = Relay::start_with_file(dir.path(), &config_path);
    resend(&relay.hook_url("github"), &ledger).await;
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    assert!(
        ledger.unexpected.is_empty(),
        "unexpected answers: {:#?}",
        ledger.unexpected
    );
    let mut missing: HashMap<&str, HashSet<String>> = HashMap::new();
    for (id, (_, sinks)) in &ledger.acknowledged {
        for sink in *sinks {
            missing.entry(sink).or_default().insert(id.clone());
        }
    }
    let mut deliveries = 0usize;
    for (name, receiver) in [("a", &mut a), ("b", &mut b)] {
        let want = missing.entry(name).or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !want.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(got) = receiver.next_within(left).await else {
                panic!(
                    "sink {name} never got {} acknowledged events (seed {seed}), e.g. {:?}",
                    want.len(),
                    want.iter().take(3).collect::<Vec<_>>()
                );
            };
            deliveries += 1;
            assert!(
                !String::from_utf8_lossy(&got.body).contains("\"forged\""),
                "a forged event reached sink {name} (seed {seed})"
            );
            want.remove(got.header("webhook-id"));
        }
    }
    // Deliveries still arriving (duplicates, retried events) are checked for forgeries too.
    for (name, receiver) in [("a", &mut a), ("b", &mut b)] {
        while let Some(got) = receiver.next_within(Duration::from_millis(200)).await {
            deliveries += 1;
            assert!(
                !String::from_utf8_lossy(&got.body).contains("\"forged\""),
                "a forged event reached sink {name} (seed {seed})"
            );
        }
    }
    assert_eq!(relay.terminate().code(), Some(0));

    let store = hookrelay::store::Store::open(&hookrelay::config::StorageConfig {
        path: dir.path().join("store/hookrelay.redb"),
        retention: Duration::from_secs(3600),
    })
    .expect("the redb file opens after the final stop");
    for sink in ["a", "b"] {
        assert_eq!(store.queue_len(sink).unwrap(), 0, "sink {sink}'s queue");
        assert!(store.dead_letters(sink).unwrap().is_empty(), "sink {sink}");
    }
    let mut present = 0;
    for (id, (body, _)) in &ledger.acknowledged {
        let id = uuid::Uuid::parse_str(id).unwrap();
        if let Some(event) = store.event(id).unwrap() {
            present += 1;
            assert_eq!(&event.body[..], body.as_bytes(), "event {id}");
        }
    }
    store.close().await;
    eprintln!(
        "crash cycles: {cycles} kills, {} signed requests sent, {} acknowledged ({} of them re-sent after their answer was cut off), {} forged refused, \
         {deliveries} deliveries received, {present} events still stored (retention purged \
         the rest after delivery), {retention_passes} retention passes seen before a kill, 0 lost",
        ledger.sent,
        ledger.acknowledged.len(),
        ledger.cut,
        ledger.refused,
    );
}
