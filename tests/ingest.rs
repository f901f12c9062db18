//! Ingest through the real binary: statuses for good and bad input, dedup, routing.

mod common;

use common::*;

const SECRET: &str = "It's a Secret to Everybody";

fn config(receiver: &Receiver) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sources.off]
kind = "github"
secret = "x"
enabled = false

[sinks.receiver]
kind = "webhook"
url = "{}"
concurrency = 1

[[routes]]
from = "github"
events = ["push", "release*"]
to = ["receiver"]
"#,
        receiver.url()
    )
}

#[tokio::test]
async fn a_signed_event_is_acknowledged_and_delivered_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let body = "{\"ref\":\"refs/heads/main\",\"note\":\"caf\u{e9} \u{1F680}\"}\n";
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "delivery-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    let id = reply.id();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id is a UUID: {id}");
    // One log line, naming the sender's delivery id beside the event id.
    let line = relay.wait_for_log("accepted event").await;
    assert!(
        line.contains(r#""delivery_id":"delivery-1""#) && line.contains(&id),
        "{line}"
    );

    let got = receiver.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(&got.body[..], body.as_bytes());
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("webhook-id"), id);
    assert_eq!(got.header("x-hookrelay-source"), "github");
    assert_eq!(got.header("x-hookrelay-event-type"), "push");
    let ts: i64 = got.header("webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - ts).abs() < 60, "timestamp {ts} is about now ({now})");

    // Product settings pages often add a trailing slash or a query string to the URL.
    for (suffix, delivery) in [("/", "delivery-2"), ("?from=nexus", "delivery-3")] {
        let url = format!("{}{suffix}", relay.hook_url("github"));
        let headers = github_headers(SECRET, "push", delivery, body.as_bytes());
        let reply = post(&url, &headers, body).await;
        assert_eq!(reply.status, 202, "{url}: {:?}", reply.json);
        assert_eq!(receiver.next().await.header("webhook-id"), reply.id());
    }
    let two_slashes = format!("{}//", relay.hook_url("github"));
    assert_eq!(post(&two_slashes, &[], body).await.status, 404);

    // A compressed body is relayed as it came, with the encoding that makes it readable.
    let gzipped: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03 compressed bytes";
    let mut headers = github_headers(SECRET, "push", "delivery-gz", gzipped);
    headers.push(("content-encoding", "gzip".to_string()));
    let reply = post(&relay.hook_url("github"), &headers, gzipped).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    let got = receiver.next().await;
    assert_eq!(&got.body[..], gzipped);
    assert_eq!(got.header("content-encoding"), "gzip");
}

#[tokio::test]
async fn a_body_that_arrives_in_pieces_is_stored_and_delivered_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let body: Vec<u8> = (0..900u32).map(|i| b'a' + (i % 26) as u8).collect();
    let signature = github_signature(SECRET, &body);
    for (n, chunked) in [false, true].into_iter().enumerate() {
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_string()
        } else {
            format!("Content-Length: {}", body.len())
        };
        let head = format!(
            "POST /hooks/github HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{framing}\r\n\
             X-GitHub-Event: push\r\nX-GitHub-Delivery: pieces-{n}\r\n\
             X-Hub-Signature-256: {signature}\r\n\r\n"
        );
        let mut stream = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // Pieces of different sizes, each flushed and given time to be read on its own.
        for piece in [&body[..1], &body[1..300], &body[300..301], &body[301..]] {
            if chunked {
                stream
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await
                    .unwrap();
            }
            stream.write_all(piece).await.unwrap();
            if chunked {
                stream.write_all(b"\r\n").await.unwrap();
            }
            stream.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if chunked {
            stream.write_all(b"0\r\n\r\n").await.unwrap();
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 202"),
            "chunked {chunked}: {answer}"
        );
        assert_eq!(receiver.next().await.body, body, "chunked {chunked}");
    }
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let url = relay.hook_url("github");
    let body = b"{\"zen\":\"bad\"}";

    let wrong_secret = post(
        &url,
        &github_headers("not the secret", "push", "d-bad", body),
        &body[..],
    )
    .await;
    assert_eq!(wrong_secret.status, 401);
    let reason = wrong_secret.json["error"].as_str().unwrap();
    assert!(
        reason.starts_with("X-Hub-Signature-256 does not match")
            && reason.contains("give the sender the secret set in the relay's configuration"),
        "the answer names the header and what to do: {reason}"
    );

    let mut tampered = github_headers(SECRET, "push", "d-tampered", body);
    tampered[3].1 = github_signature(SECRET, b"{\"zen\":\"other\"}");
    assert_eq!(post(&url, &tampered, &body[..]).await.status, 401);

    let missing: Vec<_> = github_headers(SECRET, "push", "d-missing", body)
        .into_iter()
        .filter(|(n, _)| *n != "x-hub-signature-256")
        .collect();
    let missing = post(&url, &missing, &body[..]).await;
    assert_eq!(missing.status, 401);
    assert!(
        missing.json["error"]
            .as_str()
            .unwrap()
            .starts_with("no X-Hub-Signature-256 header"),
        "{}",
        missing.json
    );

    let mut garbage = github_headers(SECRET, "push", "d-garbage", body);
    garbage[3].1 = "sha256=zz-not-hex".into();
    let garbage = post(&url, &garbage, &body[..]).await;
    assert_eq!(garbage.status, 401);
    assert_eq!(
        garbage.json["error"],
        "X-Hub-Signature-256 is not a signature of the form \
         sha256=<64 hex digits of the HMAC-SHA256 of the body>"
    );

    // The refused deliveries left no trace: the first thing the receiver sees is the good one,
    // and the refused delivery id is not remembered as a duplicate.
    let good = post(&url, &github_headers(SECRET, "push", "d-bad", b"{}"), "{}").await;
    assert_eq!(good.status, 202);
    assert_eq!(&receiver.next().await.body[..], b"{}");

    let logs = relay.logs().join("\n");
    assert!(
        logs.contains("bad_signature") && logs.contains("X-Hub-Signature-256 does not match"),
        "refusals are logged with their reason"
    );
    assert!(!logs.contains(SECRET), "the secret never reaches the log");
    assert!(!logs.contains("zen"), "bodies never reach the log");
}

#[tokio::test]
async fn unknown_disabled_wrong_method_and_oversized_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start_with_server(dir.path(), "max_body = \"1KiB\"", &config(&receiver));
    let client = client();

    let unknown = post(&relay.hook_url("nope"), &[], "{}").await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.json["error"]
            .as_str()
            .unwrap()
            .starts_with("no enabled source named \"nope\""),
        "{}",
        unknown.json
    );
    let disabled = post(&relay.hook_url("off"), &[], "{}").await;
    assert_eq!(disabled.status, 404);
    let root = client
        .post(format!("http://{}/", relay.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    // A sender given a wrong URL shows in the log.
    let wrong = relay.wait_for_log("not a webhook path").await;
    assert!(wrong.contains(r#""path":"/""#), "{wrong}");

    let get = client.get(relay.hook_url("github")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let refused = relay.wait_for_log("method_not_allowed").await;
    assert!(refused.contains(r#""method":"GET""#), "{refused}");

    let big = vec![b'x'; 1025];
    let declared = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "big-1", &big),
        big.clone(),
    )
    .await;
    assert_eq!(declared.status, 413);

    // Chunked, with no length announced: the limit still holds while reading.
    let status = raw_chunked_post(
        relay.addr,
        "/hooks/github",
        &[vec![b'x'; 600], vec![b'x'; 600]],
    )
    .await;
    assert_eq!(status, 413);

    // A body right at the limit is fine.
    let fits = vec![b'y'; 1024];
    let ok = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "fits", &fits),
        fits.clone(),
    )
    .await;
    assert_eq!(ok.status, 202);
    assert_eq!(receiver.next().await.body.len(), 1024);
}

/// Sends a chunked POST by hand and returns the status code of the answer.
async fn raw_chunked_post(addr: std::net::SocketAddr, path: &str, chunks: &[Vec<u8>]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=00\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        stream.write_all(chunk).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
    }
    // The server may answer and close before the terminating chunk; ignore write errors.
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test]
async fn a_resent_delivery_gets_the_first_id_and_is_not_fanned_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let url = relay.hook_url("github");
    let body = b"{\"n\":1}";
    let first = post(
        &url,
        &github_headers(SECRET, "push", "same-delivery", body),
        &body[..],
    )
    .await;
    assert_eq!(first.status, 202);
    let again = post(
        &url,
        &github_headers(SECRET, "push", "same-delivery", body),
        &body[..],
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.id(), first.id());
    assert_eq!(again.json["duplicate"], true);

    let other = post(
        &url,
        &github_headers(SECRET, "push", "other-delivery", b"{\"n\":2}"),
        "{\"n\":2}",
    )
    .await;
    assert_eq!(other.status, 202);
    assert_eq!(receiver.next().await.header("webhook-id"), first.id());
    assert_eq!(receiver.next().await.header("webhook-id"), other.id());
}

#[tokio::test]
async fn routes_match_event_types_by_glob() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let url = relay.hook_url("github");
    // Not routed: accepted and stored, but no sink wants it.
    let issue = post(
        &url,
        &github_headers(SECRET, "issues", "r-1", b"{\"e\":\"issues\"}"),
        "{\"e\":\"issues\"}",
    )
    .await;
    assert_eq!(issue.status, 202);
    let release = post(
        &url,
        &github_headers(SECRET, "release_published", "r-2", b"{\"e\":\"release\"}"),
        "{\"e\":\"release\"}",
    )
    .await;
    assert_eq!(release.status, 202);
    let push = post(
        &url,
        &github_headers(SECRET, "push", "r-3", b"{\"e\":\"push\"}"),
        "{\"e\":\"push\"}",
    )
    .await;
    assert_eq!(push.status, 202);
    assert_eq!(&receiver.next().await.body[..], b"{\"e\":\"release\"}");
    assert_eq!(&receiver.next().await.body[..], b"{\"e\":\"push\"}");
}

#[tokio::test]
async fn stalled_clients_are_cut_off_by_the_timeouts() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let relay = Relay::start_with_server(
        dir.path(),
        "header_timeout = \"1s\"\nbody_timeout = \"1s\"",
        &config(&receiver),
    );

    // Headers that never finish: the connection is closed.
    let mut stalled = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    stalled
        .write_all(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stalled.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a client stalled in its headers is disconnected"
    );

    // A body that never finishes: 408.
    let mut slow = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    slow.write_all(
        b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"partial\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, slow.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
