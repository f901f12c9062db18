//! Delivery through the real binary: retries, dead letters, `Retry-After`, the rate limit,
//! and the outbound signature checked by an independent Standard Webhooks implementation.

mod common;

use std::time::Duration;

use common::*;

const SECRET: &str = "delivery-test-secret";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(receiver: &Receiver, sink_extra: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{}"
signing_secret = "{SIGNING}"
concurrency = 1
{sink_extra}

[[routes]]
from = "github"
to = ["receiver"]
"#,
        receiver.url()
    )
}

async fn send(relay: &Relay, delivery: &str, body: &str) -> String {
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.id()
}

#[tokio::test]
async fn server_errors_are_retried_until_the_receiver_takes_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::with_script(vec![Answer::status(503), Answer::status(500)]).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver,
            r#"retry = { max_attempts = 5, initial = "50ms", max = "200ms" }"#,
        ),
    );
    let id = send(&relay, "retry-1", "{\"a\":1}").await;
    for attempt in 1..=3 {
        let got = receiver.next().await;
        assert_eq!(
            got.header("webhook-id"),
            id,
            "attempt {attempt} keeps the id"
        );
        assert_eq!(got.header("x-hookrelay-attempt"), attempt.to_string());
        assert_eq!(&got.body[..], b"{\"a\":1}");
    }
    relay.wait_for_log("delivered").await;
}

#[tokio::test]
async fn a_client_error_is_dead_lettered_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver =
        Receiver::with_script(vec![Answer::status(400).with_body("bad payload")]).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver,
            r#"retry = { max_attempts = 5, initial = "10ms", max = "20ms" }"#,
        ),
    );
    let refused = send(&relay, "dead-1", "{\"a\":1}").await;
    assert_eq!(receiver.next().await.header("webhook-id"), refused);
    // The next event is the next request: the refused one was not tried again.
    let next = send(&relay, "dead-2", "{\"a\":2}").await;
    assert_eq!(receiver.next().await.header("webhook-id"), next);
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(
        line.contains("400"),
        "the dead letter names the status: {line}"
    );
}

#[tokio::test]
async fn retry_after_from_the_receiver_is_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver =
        Receiver::with_script(vec![Answer::status(429).with_header("retry-after", "2")]).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver,
            r#"retry = { max_attempts = 5, initial = "10ms", max = "20ms" }"#,
        ),
    );
    send(&relay, "ra-1", "{}").await;
    let first = receiver.next().await;
    let second = receiver.next().await;
    let waited = second.at - first.at;
    assert!(
        waited >= Duration::from_millis(1900),
        "the retry came {waited:?} after a 429 with Retry-After: 2"
    );
}

#[tokio::test]
async fn the_rate_holds_when_a_retry_after_wait_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver =
        Receiver::with_script(vec![Answer::status(429).with_header("retry-after", "1")]).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver,
            "rate = \"10/s\"\nburst = 1\nretry = { max_attempts = 5, initial = \"10ms\", max = \"20ms\" }",
        ),
    );
    for i in 0..4 {
        send(&relay, &format!("hold-{i}"), "{}").await;
    }
    let mut arrivals = Vec::new();
    for _ in 0..5 {
        arrivals.push(receiver.next().await.at);
    }
    // While the sink waited out the 429, its limiter refilled to its burst. Before, the
    // cell taken before the wait went out with the burst: two requests at once when the
    // wait ended, over the rate, to a receiver that had just said "too many".
    for pair in arrivals.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(80),
            "two deliveries {gap:?} apart at 10/s (arrivals {arrivals:?})"
        );
    }
}

#[tokio::test]
async fn the_rate_limit_spaces_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver, "rate = \"5/s\"\nburst = 1"));
    // A first delivery opens the connection, so connection setup does not blur the timing
    // of the ones measured.
    send(&relay, "rate-warm-up", "{}").await;
    receiver.next().await;
    for i in 0..6 {
        send(&relay, &format!("rate-{i}"), "{}").await;
    }
    let first = receiver.next().await.at;
    let mut last = first;
    for _ in 1..6 {
        last = receiver.next().await.at;
    }
    // Five more deliveries at 5 per second take at least a second, less a little slack for
    // the limiter's own rounding.
    assert!(
        last - first >= Duration::from_millis(950),
        "6 deliveries at 5/s took only {:?}",
        last - first
    );
}

#[tokio::test]
async fn the_outbound_signature_verifies_with_the_python_standardwebhooks_library() {
    let python = python::python_with(&["standardwebhooks"], &["standardwebhooks"]);
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver, ""));
    let body = "{\"text\":\"na\u{ef}ve \u{2603}\",\"n\":[1,2,3]}";
    let id = send(&relay, "sig-1", body).await;
    let got = receiver.next().await;
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
data = json.load(sys.stdin)
Webhook(data["secret"]).verify(data["body"].encode(), data["headers"])
print("verified")
"#;
    let input = serde_json::json!({
        "secret": SIGNING,
        "body": body,
        "headers": {
            "webhook-id": got.header("webhook-id"),
            "webhook-timestamp": got.header("webhook-timestamp"),
            "webhook-signature": got.header("webhook-signature"),
        },
    });
    let output = run_python(&python, script, &input.to_string());
    assert_eq!(output.trim(), "verified");
    assert_eq!(got.header("webhook-id"), id);
}

fn run_python(python: &std::path::Path, script: &str, stdin: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
