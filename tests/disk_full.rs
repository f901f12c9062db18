//! A full disk: the store lives on a small tmpfs. Once a commit fails for lack of space,
//! ingest answers `503` with `Retry-After`, the relay stays up, nothing of a refused event is
//! stored, deliveries already queued still go out, and ingest accepts again as soon as space
//! is freed — without a restart.
//!
//! The last point is the regression `a_full_disk_does_not_poison_the_store_until_restart`:
//! after an I/O error redb refuses every later transaction (`PreviousIo`) until the database
//! is reopened, so without the store reopening itself the relay answered 503 forever.

mod common;

use common::admin::{admin_addr, call};
use common::faults::Tmpfs;
use common::*;

const SECRET: &str = "disk-full-secret";

fn config(receiver_addr: std::net::SocketAddr) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.receiver]
kind = "webhook"
url = "http://{receiver_addr}/hook"
retry = {{ max_attempts = 1000, initial = "20ms", max = "100ms" }}

[[routes]]
from = "github"
to = ["receiver"]
"#
    )
}

async fn send(url: &str, delivery: &str, body: &[u8]) -> Reply {
    post(
        url,
        &github_headers(SECRET, "push", delivery, body),
        body.to_vec(),
    )
    .await
}

#[tokio::test]
async fn a_full_disk_does_not_poison_the_store_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("store"), "6m");
    // Ballast takes part of the disk now and is deleted later to free space.
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![7u8; 2 << 20]).unwrap();

    // The receiver is down while the disk fills: every accepted event stays queued.
    let receiver_addr = Receiver::start().await.stop();
    let relay = Relay::start(dir.path(), &config(receiver_addr));
    let url = relay.hook_url("github");

    // Bytes that do not compress, so the events themselves fill the disk: the down receiver
    // is held, not retried, and its few attempts' records would not.
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let body: Vec<u8> = (0..64 << 10)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..400 {
        let delivery = format!("fill-{i}");
        let reply = send(&url, &delivery, &body).await;
        match reply.status {
            202 => accepted.push(reply.id()),
            503 => {
                let retry_after = reply
                    .headers
                    .get("retry-after")
                    .expect("a 503 carries Retry-After");
                assert!(
                    retry_after.to_str().unwrap().parse::<u64>().unwrap() > 0,
                    "{retry_after:?}"
                );
                refused = Some(delivery);
                break;
            }
            other => panic!("unexpected status {other}: {:?}", reply.json),
        }
    }
    let refused = refused.expect("the 6 MiB disk never filled up");
    assert!(
        !accepted.is_empty(),
        "some events fit before the disk was full"
    );
    relay.wait_for_log("disk full (ENOSPC)").await;
    // The failed commit left redb refusing every transaction: the store reopened the file.
    relay.wait_for_log("store reopened").await;
    // Not ready: a commit of nothing would still fit, an event's does not.
    let admin = admin_addr(&relay).await;
    let ready = call(admin, "GET", "/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.text.contains("disk full"), "{}", ready.text);

    // Still up and still judging requests: a bad signature is 401, not 503.
    let forged = post(
        &url,
        &github_headers("wrong", "push", "forged", b"{}"),
        "{}",
    )
    .await;
    assert_eq!(forged.status, 401);

    // Deliveries already queued go out while the disk is still full.
    let mut receiver = Receiver::start_on(receiver_addr, Vec::new()).await;
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < accepted.len() {
        delivered.insert(receiver.next().await.header("webhook-id").to_string());
    }
    let accepted_set: std::collections::HashSet<_> = accepted.iter().cloned().collect();
    assert_eq!(delivered, accepted_set);

    // Free space: the refused event is accepted now, as new (not a duplicate: nothing of
    // it was stored), without restarting the relay.
    std::fs::remove_file(&ballast).unwrap();
    // Ready again once a probe as large as the refused batch fits, before any event came.
    let ready = call(admin, "GET", "/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let deadline = std::time::Instant::now() + WAIT;
    let again = loop {
        let reply = send(&url, &refused, &body).await;
        if reply.status != 503 || std::time::Instant::now() > deadline {
            break reply;
        }
        // The store reopens after the failed commit; a sender retries as Retry-After says,
        // the test a little faster.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(again.status, 202, "{:?}", again.json);
    // Deliveries whose outcome could not be recorded on the full disk come again (at least
    // once); the new event arrives among them.
    loop {
        let got = receiver.next().await;
        let id = got.header("webhook-id");
        if id == again.id() {
            break;
        }
        assert!(accepted_set.contains(id), "unknown event {id} delivered");
    }

    // A clean stop, and the file reopens with every acknowledged event in it.
    assert_eq!(relay.terminate().code(), Some(0));
    let store = hookrelay::store::Store::open(&hookrelay::config::StorageConfig {
        path: disk.path().join("hookrelay.redb"),
        retention: std::time::Duration::from_secs(3600),
    })
    .expect("the store reopens cleanly after the disk was full");
    for id in accepted.iter().chain(std::iter::once(&again.id())) {
        let id = uuid::Uuid::parse_str(id).unwrap();
        let event = store
            .event(id)
            .unwrap()
            .expect("acknowledged event is stored");
        assert_eq!(event.body.len(), body.len());
    }
    store.close().await;
}
