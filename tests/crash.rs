//! The durability contract under `kill -9`: every acknowledged event is delivered after a
//! restart, even when the process dies with all its deliveries still pending.

mod common;

use std::collections::HashSet;

use common::*;

const SECRET: &str = "crash-test-secret";

#[tokio::test]
async fn kill_9_with_deliveries_pending_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // The receiver is down while events come in: every delivery stays pending.
    let parked = Receiver::start().await;
    let receiver_addr = parked.stop();
    let config = format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.receiver]
kind = "webhook"
url = "http://{receiver_addr}/hook"
retry = {{ max_attempts = 50, initial = "50ms", max = "100ms" }}

[[routes]]
from = "github"
to = ["receiver"]
"#
    );
    let relay = Relay::start(dir.path(), &config);
    let url = relay.hook_url("github");
    let mut acknowledged = HashSet::new();
    let mut sends = Vec::new();
    for i in 0..40 {
        let url = url.clone();
        sends.push(tokio::spawn(async move {
            let body = format!("{{\"n\":{i}}}");
            post(
                &url,
                &github_headers(SECRET, "push", &format!("crash-{i}"), body.as_bytes()),
                body,
            )
            .await
        }));
    }
    for send in sends {
        let reply = send.await.unwrap();
        assert_eq!(reply.status, 202);
        acknowledged.insert(reply.id());
    }
    let config_path = relay.kill9();

    let mut receiver = Receiver::start_on(receiver_addr, Vec::new()).await;
    let _relay = Relay::start_with_file(dir.path(), &config_path);
    let mut delivered = HashSet::new();
    while delivered.len() < acknowledged.len() {
        let got = receiver.next().await;
        delivered.insert(got.header("webhook-id").to_string());
    }
    assert_eq!(delivered, acknowledged);
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_exit_code_0() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let relay = Relay::start(
        dir.path(),
        &format!(
            "[sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n\n[sinks.r]\nkind = \"webhook\"\nurl = \"{}\"\n\n[[routes]]\nfrom = \"github\"\nto = [\"r\"]\n",
            receiver.url()
        ),
    );
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "t-1", b"{}"),
        "{}",
    )
    .await;
    assert_eq!(reply.status, 202);
    let status = relay.terminate();
    assert_eq!(status.code(), Some(0));
}
