//! Own-health notices through the real binary: a failing sink is reported at another sink as
//! `sink.unhealthy` and then `sink.recovered`, never at the failing sink itself even when a
//! route sends every notice to every sink; a flapping sink yields one pair of notices and a
//! count of the rest; a store whose file system runs low on space is reported and its
//! recovery too (on a size-limited tmpfs); and `/hooks/hookrelay` takes nothing from outside.
//!
//! A store whose *commits* fail cannot store the notice that says so until it works again;
//! that path is covered by the unit tests of `store::health` and `notice::storage`, and the
//! disk-full behaviour itself by `tests/disk_full.rs`.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::admin::{admin_addr, call, wait_until};
use common::faults::Tmpfs;
use common::*;
use serde_json::Value;

const SECRET: &str = "notices-test-secret";
const ADMIN_TOKEN: &str = "notices-test-admin-token-0123456789";

/// A relay with a GitHub source routed to `audit`, a second sink `chat`, every notice routed
/// to both sinks, and an admin listener. `notices` is the `[notices]` section's body.
fn start(dir: &Path, audit: &Receiver, chat: &Receiver, notices: &str) -> Relay {
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[notices]
instance = "relay-test"
{notices}

[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.audit]
kind = "webhook"
url = "{}"
concurrency = 1
retry = {{ max_attempts = 20, initial = "10ms", max = "20ms" }}

[sinks.chat]
kind = "webhook"
url = "{}"

[[routes]]
from = "github"
to = ["audit"]

# Every notice to every sink: a notice about a sink must still never reach that sink.
[[routes]]
from = "hookrelay"
to = ["audit", "chat"]
"#,
        audit.url(),
        chat.url()
    );
    Relay::start(dir, &config)
}

async fn send(relay: &Relay, delivery: &str) -> String {
    let body = format!("{{\"delivery\":\"{delivery}\"}}");
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.id()
}

/// The next request at `receiver`, which must be a notice; its body as JSON.
async fn next_notice(receiver: &mut Receiver) -> Value {
    let got = receiver.next().await;
    let body: Value = serde_json::from_slice(&got.body).expect("a notice's body is JSON");
    assert!(
        body["type"].is_string(),
        "not a notice: {}",
        String::from_utf8_lossy(&got.body)
    );
    body
}

/// The notices stored so far (newest first), from the admin API.
async fn stored_notices(admin: SocketAddr) -> Vec<Value> {
    let reply = call(
        admin,
        "GET",
        "/api/events?source=hookrelay",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["events"].as_array().unwrap().clone()
}

/// The sinks an event was queued for, from the admin API.
async fn sinks_of(admin: SocketAddr, id: &str) -> Vec<String> {
    let reply = call(
        admin,
        "GET",
        &format!("/api/events/{id}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sink"].as_str().unwrap().to_string())
        .collect()
}

/// The value of one series in the Prometheus text.
fn series(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn a_failing_sink_is_reported_elsewhere_then_its_recovery_and_never_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut audit = Receiver::with_script(vec![
        Answer::status(503),
        Answer::status(503),
        Answer::status(503),
    ])
    .await;
    let mut chat = Receiver::start().await;
    let relay = start(
        dir.path(),
        &audit,
        &chat,
        "failures = 3\nmin_interval = \"1h\"",
    );
    let admin = admin_addr(&relay).await;
    let id = send(&relay, "push-1").await;

    let unhealthy = next_notice(&mut chat).await;
    assert_eq!(unhealthy["type"], "sink.unhealthy", "{unhealthy:#}");
    assert_eq!(unhealthy["sink"], "audit");
    assert_eq!(unhealthy["consecutive_failures"], 3);
    assert_eq!(unhealthy["reason"], "3 failed attempts in a row");
    assert_eq!(
        unhealthy["last_error"],
        "receiver answered 503 Service Unavailable"
    );
    assert_eq!(unhealthy["suppressed"], 0);
    assert_eq!(unhealthy["instance"], "relay-test");
    for time in ["since", "time"] {
        let text = unhealthy[time].as_str().unwrap();
        assert!(
            humantime::parse_rfc3339(text).is_ok(),
            "{time} is not RFC 3339: {text}"
        );
    }

    let recovered = next_notice(&mut chat).await;
    assert_eq!(recovered["type"], "sink.recovered", "{recovered:#}");
    assert_eq!(recovered["sink"], "audit");
    assert_eq!(recovered["consecutive_failures"], 3);
    assert_eq!(recovered["since"], unhealthy["since"]);
    assert!(recovered["recovered_after_s"].is_u64(), "{recovered:#}");

    // audit saw its own event four times (three failures, then the success), and nothing
    // else: both notices were stored with chat as their only sink.
    for attempt in 1..=4 {
        let got = audit.next().await;
        assert_eq!(got.header("webhook-id"), id, "attempt {attempt}");
    }
    let stored = stored_notices(admin).await;
    let types: Vec<&str> = stored
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["sink.recovered", "sink.unhealthy"]);
    for notice in &stored {
        assert_eq!(
            sinks_of(admin, notice["id"].as_str().unwrap()).await,
            ["chat"],
            "a notice about audit is never queued for audit"
        );
    }
}

#[tokio::test]
async fn a_dead_letter_makes_a_sink_unhealthy_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Receiver::with_script(vec![Answer::status(410)]).await;
    let mut chat = Receiver::start().await;
    // failures = 5 is never reached: the one failure dead-letters.
    let relay = start(dir.path(), &audit, &chat, "failures = 5");
    send(&relay, "gone-1").await;
    let unhealthy = next_notice(&mut chat).await;
    assert_eq!(unhealthy["type"], "sink.unhealthy", "{unhealthy:#}");
    assert_eq!(unhealthy["consecutive_failures"], 1);
    assert_eq!(
        unhealthy["reason"],
        "a delivery became a dead letter after 1 failed attempt in a row"
    );
}

#[tokio::test]
async fn a_flapping_sink_yields_one_pair_of_notices_and_a_count_of_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    // Every other attempt fails: with failures = 1 each answer flips the sink's health.
    let flaps = 4;
    let script = (0..flaps)
        .flat_map(|_| [Answer::status(503), Answer::status(204)])
        .collect();
    let mut audit = Receiver::with_script(script).await;
    let mut chat = Receiver::start().await;
    let relay = start(
        dir.path(),
        &audit,
        &chat,
        "failures = 1\nmin_interval = \"1h\"",
    );
    let admin = admin_addr(&relay).await;
    for n in 0..flaps {
        send(&relay, &format!("flap-{n}")).await;
    }
    for _ in 0..2 * flaps {
        audit.next().await;
    }

    // Each of the 2 × 4 transitions was either stored or held back.
    let held = (2 * flaps - 2) as f64;
    let suppressed =
        |kind: &str| format!("hookrelay_notices_total{{type=\"{kind}\",outcome=\"suppressed\"}}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = call(admin, "GET", "/metrics", Some(ADMIN_TOKEN)).await.text;
        let count = |name: &str| series(&text, name).unwrap_or(0.0);
        let held_now = count(&suppressed("sink.unhealthy")) + count(&suppressed("sink.recovered"));
        if held_now == held {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{held_now} notices held back, expected {held}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    let first = next_notice(&mut chat).await;
    let second = next_notice(&mut chat).await;
    assert_eq!(
        (first["type"].as_str(), second["type"].as_str()),
        (Some("sink.unhealthy"), Some("sink.recovered"))
    );
    let stored = wait_until(
        admin,
        "/api/events?source=hookrelay",
        ADMIN_TOKEN,
        "two notices stored",
        |page| page["events"].as_array().is_some_and(|e| e.len() >= 2),
    )
    .await;
    assert_eq!(
        stored["events"].as_array().unwrap().len(),
        2,
        "one unhealthy/recovered pair per min_interval: {stored:#}"
    );
    let text = call(admin, "GET", "/metrics", Some(ADMIN_TOKEN)).await.text;
    assert_eq!(
        series(
            &text,
            "hookrelay_notices_total{type=\"sink.unhealthy\",outcome=\"stored\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn low_free_space_on_the_store_is_reported_and_so_is_its_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("store"), "16m");
    // Ballast leaves less free space than min_free; deleting it brings it back.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 12 << 20]).unwrap();
    let audit = Receiver::start().await;
    let mut chat = Receiver::start().await;
    let relay = start(
        dir.path(),
        &audit,
        &chat,
        "min_free = \"8MiB\"\ncheck_interval = \"50ms\"",
    );

    let unhealthy = next_notice(&mut chat).await;
    assert_eq!(unhealthy["type"], "storage.unhealthy", "{unhealthy:#}");
    assert_eq!(unhealthy["min_free_bytes"], 8 << 20);
    assert!(
        unhealthy["free_bytes"].as_u64().unwrap() < 8 << 20,
        "{unhealthy:#}"
    );
    assert!(
        unhealthy["store"]
            .as_str()
            .unwrap()
            .ends_with("hookrelay.redb"),
        "{unhealthy:#}"
    );
    let reason = unhealthy["reason"].as_str().unwrap();
    assert!(
        reason.contains("free on the store's file system, under [notices] min_free 8.0 MiB"),
        "{reason}"
    );

    std::fs::remove_file(&ballast).unwrap();
    let recovered = next_notice(&mut chat).await;
    assert_eq!(recovered["type"], "storage.recovered", "{recovered:#}");
    assert_eq!(recovered["since"], unhealthy["since"]);
    drop(relay);
}

#[tokio::test]
async fn the_notice_source_cannot_be_posted_to_or_configured() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Receiver::start().await;
    let chat = Receiver::start().await;
    let relay = start(dir.path(), &audit, &chat, "");
    let body = b"{\"type\":\"sink.unhealthy\",\"sink\":\"audit\"}";
    let reply = post(
        &relay.hook_url("hookrelay"),
        &[("content-type", "application/json".to_string())],
        body.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 404, "{:?}", reply.json);

    let config = dir.path().join("reserved.toml");
    std::fs::write(&config, "[sources.hookrelay]\nkind = \"none\"\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "reserved.toml:1:10: sources.hookrelay: \"hookrelay\" is reserved for hookrelay's own notices"
        ),
        "{stderr}"
    );
}
