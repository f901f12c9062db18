//! Scale-out, shown: two shared-nothing hookrelay instances (each its own store) publish to
//! one JetStream stream on a real `nats-server -js`. A sender spreads events over both, as a
//! round-robin load balancer would, and retries every request that got no 2xx through
//! whichever instance is up. Midway one instance is killed with SIGKILL and restarted on its
//! store. At the end the stream holds every acknowledged delivery exactly once, with its
//! body, whichever instance took it and however many times it was sent.
//!
//! What can go twice here, and what catches it: an event the killed instance committed but
//! never answered is published after its restart, and the sender's retry of it went to the
//! other instance, which gave it another event id; the stream's duplicate window drops one
//! of the two because `Nats-Msg-Id` is the sink, source and delivery id on both instances. The
//! test also makes that case for sure: it re-sends deliveries the first instance took to
//! the second one.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_nats::jetstream::{self, consumer, stream};
use common::admin::{admin_addr, wait_until};
use common::nats::NatsServer;
use common::*;
use futures_util::StreamExt as _;
use tokio::sync::watch;

const SECRET: &str = "scale-out-secret";
const ADMIN_TOKEN: &str = "scale-out-admin-token-0123456789";
/// Events sent while the instance is killed and restarted, then after it is back.
const BEFORE_AND_DURING: Range<usize> = 0..300;
const AFTER: Range<usize> = 300..400;
/// The instance is killed once it has acknowledged this many events.
const KILL_AFTER: usize = 60;
/// Requests in flight at once, as a busy sender has.
const SENDERS: usize = 8;

fn config() -> String {
    // `{{nats_url}}` is filled in per instance below; every instance has the same file, as
    // a deployment behind a load balancer would.
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "${{file:admin-token}}"

[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.stream]
kind = "nats"
url = "NATS_URL"
subject = "hooks.{{{{ source }}}}.{{{{ event_type }}}}"
timeout = "5s"
retry = {{ max_attempts = 50, initial = "20ms", max = "200ms" }}

[[routes]]
from = "github"
to = ["stream"]
"#
    )
}

fn body(i: usize) -> Vec<u8> {
    // Distinct and recognisable, with some bulk so the stream stores real payloads.
    format!(
        r#"{{"n":{i},"ref":"refs/heads/main","pad":"{}"}}"#,
        "x".repeat(400)
    )
    .into_bytes()
}

fn delivery(i: usize) -> String {
    format!("scale-{i}")
}

/// A round-robin load balancer over the instances that are up.
#[derive(Default)]
struct Balancer {
    addrs: Mutex<[Option<SocketAddr>; 2]>,
    next: AtomicUsize,
}

impl Balancer {
    fn set(&self, instance: usize, addr: Option<SocketAddr>) {
        self.addrs.lock().unwrap()[instance] = addr;
    }

    fn pick(&self) -> (usize, SocketAddr) {
        let addrs = *self.addrs.lock().unwrap();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..addrs.len())
            .map(|k| (start + k) % addrs.len())
            .find_map(|i| Some((i, addrs[i]?)))
            .expect("the other instance stays up")
    }
}

/// What the sender saw for one delivery.
#[derive(Debug, Default, Clone)]
struct Sent {
    /// Requests that got no 2xx (refused, cut off by the kill, or a 5xx).
    failures: usize,
    /// The event id of the answer that acknowledged it, and which instance gave it.
    acknowledged: Option<(String, usize)>,
}

/// Shared by the senders and the test.
struct Sender {
    balancer: Balancer,
    client: reqwest::Client,
    sent: Mutex<BTreeMap<usize, Sent>>,
    /// Acknowledgements per instance, watched by the test to time the kill.
    acks: [watch::Sender<usize>; 2],
}

impl Sender {
    /// Sends every delivery in `range` from [`SENDERS`] concurrent tasks, each retried until
    /// an instance acknowledges it (202, or 200 for a delivery it already has).
    async fn send_all(self: &Arc<Self>, range: Range<usize>) {
        let next = Arc::new(AtomicUsize::new(range.start));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..SENDERS {
            let sender = self.clone();
            let next = next.clone();
            let end = range.end;
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return;
                    }
                    sender.send_one(i).await;
                }
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.unwrap();
        }
    }

    async fn send_one(&self, i: usize) {
        let body = body(i);
        let headers = github_headers(SECRET, "push", &delivery(i), &body);
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(
                Instant::now() < deadline,
                "delivery {i} was not acknowledged in time"
            );
            let (instance, addr) = self.balancer.pick();
            let mut request = self
                .client
                .post(format!("http://{addr}/hooks/github"))
                .body(body.clone());
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let answer = match request.send().await {
                Ok(response) if response.status().is_success() => response
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()),
                _ => None,
            };
            let mut sent = self.sent.lock().unwrap();
            let entry = sent.entry(i).or_default();
            let Some(answer) = answer.as_ref().and_then(|a| a["id"].as_str()) else {
                // Refused (the instance is down), cut off by the kill, or over capacity: a
                // sender tries again, and the balancer may pick the other instance.
                entry.failures += 1;
                continue;
            };
            entry.acknowledged = Some((answer.to_string(), instance));
            self.acks[instance].send_modify(|n| *n += 1);
            return;
        }
    }
}

/// Starts an instance in `dir` on the shared config; returns it with its admin address.
async fn start(dir: &std::path::Path, nats_url: &str) -> (Relay, SocketAddr) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    let config = config().replace("NATS_URL", nats_url);
    let dir = dir.to_path_buf();
    let relay = tokio::task::spawn_blocking(move || Relay::start(&dir, &config))
        .await
        .unwrap();
    let admin = admin_addr(&relay).await;
    (relay, admin)
}

/// Waits until the instance's queue for the stream is empty, with nothing dead-lettered.
async fn drained(admin: SocketAddr) {
    wait_until(
        admin,
        "/api/sinks",
        ADMIN_TOKEN,
        "every delivery done",
        |j| j["sinks"][0]["queue_depth"] == 0 && j["sinks"][0]["dead_letters"] == 0,
    )
    .await;
}

/// Every message in the stream, read from the start.
async fn read_all(stream: &stream::Stream, n: usize) -> Vec<jetstream::Message> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages could be read", out.len()))
            .expect("the message stream ended")
            .unwrap();
        out.push(message);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_one_killed_and_restarted_put_every_acknowledged_event_in_the_stream_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("js"));
    let js = nats.jetstream().await;
    let mut hooks = js
        .create_stream(stream::Config {
            name: "HOOKS".to_string(),
            subjects: vec!["hooks.>".to_string()],
            ..Default::default()
        })
        .await
        .unwrap();

    let dirs = [dir.path().join("a"), dir.path().join("b")];
    let (first, _) = start(&dirs[0], &nats.url).await;
    let (second, second_admin) = start(&dirs[1], &nats.url).await;
    let sender = Arc::new(Sender {
        balancer: Balancer::default(),
        client: client(),
        sent: Mutex::new(BTreeMap::new()),
        acks: [watch::channel(0).0, watch::channel(0).0],
    });
    sender.balancer.set(0, Some(first.addr));
    sender.balancer.set(1, Some(second.addr));

    // Send; once the first instance has acknowledged KILL_AFTER events, it is killed with
    // requests in flight and restarted on the same store. The balancer learns of the dead
    // instance only after the kill, as a real one would.
    let mut first_acks = sender.acks[0].subscribe();
    let kill_and_restart = async {
        tokio::time::timeout(WAIT, first_acks.wait_for(|n| *n >= KILL_AFTER))
            .await
            .expect("the first instance acknowledged events in time")
            .unwrap();
        let killed_at = *first_acks.borrow();
        first.kill9();
        sender.balancer.set(0, None);
        let (restarted, admin) = start(&dirs[0], &nats.url).await;
        sender.balancer.set(0, Some(restarted.addr));
        (restarted, admin, killed_at)
    };
    let ((), (restarted, restarted_admin, killed_at)) =
        tokio::join!(sender.send_all(BEFORE_AND_DURING), kill_and_restart);
    // Both instances take traffic again.
    let before_after = *sender.acks[0].borrow();
    sender.send_all(AFTER).await;
    assert!(
        *sender.acks[0].borrow() > before_after,
        "the restarted instance acknowledged nothing"
    );

    // A sender whose answer was lost retries through the other instance, which has not
    // seen the delivery (dedup is per instance) and accepts it under a new event id. The
    // first copy is in the stream by then, so the stream's copy is the acknowledged one.
    drained(restarted_admin).await;
    let resent: Vec<usize> = sender
        .sent
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, s)| s.acknowledged.as_ref().is_some_and(|(_, at)| *at == 0))
        .map(|(i, _)| *i)
        .take(10)
        .collect();
    assert_eq!(resent.len(), 10);
    for &i in &resent {
        let body = body(i);
        let reply = post(
            &second.hook_url("github"),
            &github_headers(SECRET, "push", &delivery(i), &body),
            body,
        )
        .await;
        assert_eq!(
            reply.status, 202,
            "the other instance takes delivery {i} as new"
        );
    }

    drained(restarted_admin).await;
    drained(second_admin).await;
    let sent = sender.sent.lock().unwrap().clone();
    let total = AFTER.end;
    assert_eq!(sent.len(), total);
    let count = hooks.info().await.unwrap().state.messages;
    let messages = read_all(&hooks, total).await;
    assert_eq!(
        count, total as u64,
        "the stream holds {count} messages for {total} deliveries"
    );

    let mut seen = HashSet::new();
    for message in &messages {
        let headers = message.headers.as_ref().expect("headers");
        let msg_id = headers.get("Nats-Msg-Id").expect("Nats-Msg-Id").as_str();
        let i: usize = msg_id
            .strip_prefix("stream:github:scale-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected Nats-Msg-Id {msg_id}"));
        assert!(seen.insert(i), "delivery {i} is in the stream twice");
        assert_eq!(message.payload.as_ref(), body(i), "body of delivery {i}");
        assert_eq!(message.subject.as_str(), "hooks.github.push");
        let event_id = headers.get("Hookrelay-Event-Id").unwrap().as_str();
        let entry = &sent[&i];
        let (acknowledged, _) = entry.acknowledged.as_ref().expect("acknowledged");
        if entry.failures == 0 {
            // Sent once, acknowledged at once: the very event the sender was told about.
            assert_eq!(event_id, acknowledged, "event id of delivery {i}");
        } else {
            // The copy in the stream may come from the instance that was killed before it
            // answered; either way it is this delivery, once.
            uuid::Uuid::parse_str(event_id).unwrap();
        }
    }
    assert_eq!(seen.len(), total);
    let cut_off = sent.values().filter(|s| s.failures > 0).count();
    eprintln!(
        "scale-out: first instance killed after {killed_at} acknowledgements; \
         {cut_off} deliveries needed a retry"
    );
    drop(restarted);
    drop(second);
}
