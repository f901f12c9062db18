//! The nats sink through the real binary against a real `nats-server -js` on loopback:
//! events land in a JetStream stream with the rendered subject, the original body and
//! `Nats-Msg-Id` = sink, source and delivery id; a re-publish (no acknowledgement came) is dropped by the
//! stream's duplicate window; a subject no stream listens on dead-letters with the reason.

mod common;

use async_nats::jetstream::{self, consumer, stream};
use std::collections::HashSet;

use common::nats::NatsServer;
use common::*;
use futures_util::StreamExt as _;

const SECRET: &str = "nats-test-secret";

fn config(nats_url: &str, subject: &str, timeout: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.stream]
kind = "nats"
url = "{nats_url}"
subject = "{subject}"
timeout = "{timeout}"
retry = {{ max_attempts = 50, initial = "20ms", max = "100ms" }}

[[routes]]
from = "github"
to = ["stream"]
"#
    )
}

async fn send(relay: &Relay, event: &str, delivery: &str, body: &[u8]) -> String {
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, event, delivery, body),
        body.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.id()
}

async fn add_stream(
    js: &jetstream::Context,
    name: &str,
    subject: &str,
    no_ack: bool,
) -> stream::Stream {
    js.create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![subject.to_string()],
        no_ack,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Reads `n` messages from the start of `stream`, each awaited with a timeout.
async fn read(stream: &stream::Stream, n: usize) -> Vec<jetstream::Message> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages reached the stream", out.len()))
            .expect("the message stream ended")
            .unwrap();
        out.push(message);
    }
    out
}

#[tokio::test]
async fn events_arrive_in_the_stream_with_subject_body_and_msg_id() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("js"));
    let js = nats.jetstream().await;
    let mut hooks = add_stream(&js, "HOOKS", "hooks.>", false).await;
    let relay = Relay::start(
        dir.path(),
        &config(&nats.url, "hooks.{{ source }}.{{ event_type }}", "5s"),
    );
    let bodies: [&[u8]; 2] = [br#"{"ref":"refs/heads/main"}"#, br#"{"action":"opened"}"#];
    let first = send(&relay, "push", "d-1", bodies[0]).await;
    let second = send(&relay, "pull_request", "d-2", bodies[1]).await;
    let got = read(&hooks, 2).await;
    let mut got: Vec<(String, Vec<u8>, String, String, String)> = got
        .iter()
        .map(|m| {
            let h = m.headers.as_ref().expect("headers");
            let get = |k: &str| h.get(k).map(|v| v.as_str().to_string()).unwrap_or_default();
            assert_eq!(get("Hookrelay-Source"), "github");
            (
                m.subject.to_string(),
                m.payload.to_vec(),
                get("Hookrelay-Event-Id"),
                get("Nats-Msg-Id"),
                get("Hookrelay-Event-Type"),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (
            "hooks.github.push".to_string(),
            bodies[0].to_vec(),
            first,
            "stream:github:d-1".to_string(),
            "push".to_string(),
        ),
        (
            "hooks.github.pull_request".to_string(),
            bodies[1].to_vec(),
            second,
            "stream:github:d-2".to_string(),
            "pull_request".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    // The delivery is recorded with the stream's sequence as its message id.
    let line = relay.wait_for_log("\"message_id\":\"HOOKS:").await;
    assert!(line.contains("delivered"), "{line}");
    assert_eq!(hooks.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn a_republish_without_an_ack_is_dropped_by_the_duplicate_window() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("js"));
    let js = nats.jetstream().await;
    // A stream that stores but never acknowledges: every attempt looks like a crash or a
    // lost ack to the relay, which publishes the same event again.
    let mut quiet = add_stream(&js, "QUIET", "quiet.>", true).await;
    let relay = Relay::start(
        dir.path(),
        &config(&nats.url, "quiet.{{ source }}", "300ms"),
    );
    let id = send(&relay, "push", "d-1", b"{\"n\":1}").await;
    // Two attempts ended without an ack, so the event was published at least three times.
    let deadline = std::time::Instant::now() + WAIT;
    while relay
        .logs()
        .iter()
        .filter(|l| l.contains("will retry") && l.contains("acknowledgement"))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            relay.logs().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = read(&quiet, 1).await;
    let headers = got[0].headers.as_ref().unwrap();
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        "stream:github:d-1"
    );
    assert_eq!(headers.get("Hookrelay-Event-Id").unwrap().as_str(), id);
    assert_eq!(quiet.info().await.unwrap().state.messages, 1);
}

#[tokio::test]
async fn a_subject_no_stream_listens_on_dead_letters_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("js"));
    let js = nats.jetstream().await;
    add_stream(&js, "HOOKS", "hooks.>", false).await;
    let relay = Relay::start(
        dir.path(),
        &config(&nats.url, "elsewhere.{{ source }}", "5s"),
    );
    let id = send(&relay, "push", "d-1", b"{}").await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(line.contains(&id), "{line}");
    assert!(
        line.contains("no JetStream stream listens on subject \\\"elsewhere.github\\\""),
        "{line}"
    );
    // Dead-lettered at the first attempt: no stream for a subject is not retried.
    assert!(line.contains("\"attempt\":1"), "{line}");
}

#[tokio::test]
async fn publishes_are_in_flight_together_up_to_the_sinks_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(&dir.path().join("js"));
    let js = nats.jetstream().await;
    // The stream stores but never acknowledges, so every publish stays in flight until its
    // timeout. Serial publishing would put one message in the stream per 30 s timeout.
    let quiet = add_stream(&js, "QUIET", "quiet.>", true).await;
    let relay = Relay::start(
        dir.path(),
        &config(&nats.url, "quiet.{{ source }}", "30s")
            .replace("timeout = \"30s\"", "timeout = \"30s\"\nconcurrency = 16"),
    );
    let mut sent = HashSet::new();
    for i in 0..16 {
        send(
            &relay,
            "push",
            &format!("d-{i}"),
            format!("{{\"n\":{i}}}").as_bytes(),
        )
        .await;
        sent.insert(format!("stream:github:d-{i}"));
    }
    let got: HashSet<String> = read(&quiet, 16)
        .await
        .iter()
        .map(|m| {
            m.headers
                .as_ref()
                .unwrap()
                .get("Nats-Msg-Id")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got, sent);
    // All sixteen reached the stream while the first attempt was still waiting for its ack.
    assert!(
        !relay.logs().iter().any(|l| l.contains("will retry")),
        "{}",
        relay.logs().join("\n")
    );
}
