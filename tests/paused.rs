//! `paused = true` on a sink, through the real binary: events are still accepted and queued
//! for it, nothing is attempted, the admin API shows it `paused`, and once the pause is
//! lifted (a restart without it) the queue is delivered.

mod common;

use std::process::Command;

use common::admin::{admin_addr, call};
use common::*;

const GITHUB_SECRET: &str = "paused-test-github-secret";

fn config(receiver: &Receiver, paused: bool) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"

[storage]
path = "store/hookrelay.redb"

[admin]
listen = "127.0.0.1:0"

[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{}"
paused = {paused}

[[routes]]
from = "github"
to = ["receiver"]
"#,
        receiver.url()
    )
}

#[tokio::test]
async fn a_paused_sink_queues_without_delivering_until_the_pause_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    let mut receiver = Receiver::start().await;
    std::fs::write(&path, config(&receiver, true)).unwrap();

    let relay = Relay::start_with_file(dir.path(), &path);
    let admin = admin_addr(&relay).await;
    relay.wait_for_log("sink paused").await;
    let body = r#"{"ref":"refs/heads/main"}"#;
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(GITHUB_SECRET, "push", "p-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202);
    let id = reply.id();

    let sinks = call(admin, "GET", "/api/sinks", None).await.json();
    assert_eq!(sinks["sinks"][0]["state"], "paused", "{sinks}");
    assert_eq!(sinks["sinks"][0]["queue_depth"], 1, "{sinks}");
    assert!(relay.terminate().success());

    // A stopped relay has recorded every attempt it started: there is none.
    let shown = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["events", "show", &id, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let event: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(event["deliveries"][0]["state"], "queued", "{event}");
    assert_eq!(event["attempts"], serde_json::json!([]), "{event}");

    // The pause lifted, the queued event goes out.
    std::fs::write(&path, config(&receiver, false)).unwrap();
    let relay = Relay::start_with_file(dir.path(), &path);
    assert_eq!(receiver.next().await.header("webhook-id"), id);
    assert!(relay.terminate().success());
}
