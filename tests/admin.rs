//! The admin API through the real binary: the token on every route but `/healthz`, every
//! documented operation answering as its OpenAPI document says, secrets never shown, a dead
//! letter replayed once its sink recovers, a test delivery, and metrics after traffic.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::admin::{AdminReply, admin_addr, call, call_accepting, wait_until};
use common::*;
use serde_json::Value;

const GITHUB_SECRET: &str = "admin-test-github-secret";
const NEXUS_SECRET: &str = "admin-test-nexus-secret";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN_TOKEN: &str = "admin-test-token-0123456789abcdef";
/// A secret in the sink's URL: URLs are never shown.
const URL_SECRET: &str = "url-secret-5f1c0e";

/// Starts the relay with an admin listener, a GitHub source, an HMAC source whose signature
/// header is its own, and one webhook sink pointing at `receiver`.
async fn start(dir: &Path, receiver: &Receiver) -> (Relay, SocketAddr) {
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "${{file:admin-token}}"

[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sources.nexus]
kind = "hmac"
header = "X-Nexus-Sig"
algorithm = "sha256"
secret = "{NEXUS_SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{}?token={URL_SECRET}"
signing_secret = "{SIGNING}"
concurrency = 1
retry = {{ max_attempts = 2, initial = "10ms", max = "20ms" }}

[[routes]]
from = ["github", "nexus"]
to = ["receiver"]
"#,
        receiver.url()
    );
    let relay = Relay::start(dir, &config);
    let addr = admin_addr(&relay).await;
    (relay, addr)
}

async fn send_github(relay: &Relay, delivery: &str, body: &str) -> Reply {
    post(
        &relay.hook_url("github"),
        &github_headers(GITHUB_SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await
}

async fn send_nexus(relay: &Relay, body: &str) -> Reply {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(NEXUS_SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    post(
        &relay.hook_url("nexus"),
        &[
            ("content-type", "application/json".to_string()),
            ("x-nexus-sig", signature),
        ],
        body,
    )
    .await
}

async fn get(addr: SocketAddr, path: &str) -> AdminReply {
    call(addr, "GET", path, Some(ADMIN_TOKEN)).await
}

async fn openapi(addr: SocketAddr) -> Value {
    let reply = get(addr, "/api/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

/// Every (method, path template) the document lists.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn every_route_but_healthz_needs_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (relay, addr) = start(dir.path(), &receiver).await;
    let id = send_github(&relay, "auth-1", "{}").await.id();
    let doc = openapi(addr).await;
    for (method, template) in operations(&doc) {
        let path = template.replace("{id}", &id).replace("{sink}", "receiver");
        for token in [None, Some("wrong-token-0123456789abcdef"), Some("")] {
            let reply = call(addr, &method, &path, token).await;
            if path == "/healthz" {
                assert_eq!(reply.status, 200, "{method} {path}: {}", reply.text);
            } else {
                assert_eq!(
                    reply.status, 401,
                    "{method} {path} with {token:?}: {}",
                    reply.text
                );
                assert!(
                    !reply.text.contains(&id),
                    "a 401 tells nothing: {}",
                    reply.text
                );
            }
        }
    }
    // Load balancers probe with HEAD; the auth scheme's case is free (RFC 9110).
    let head = call(addr, "HEAD", "/healthz", None).await;
    assert_eq!((head.status, head.text.as_str()), (200, ""));
    assert_eq!(call(addr, "HEAD", "/readyz", None).await.status, 401);
    for scheme in ["bearer", "BEARER"] {
        let lower = reqwest::Client::new()
            .get(format!("http://{addr}/api/sinks"))
            .header("authorization", format!("{scheme} {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(lower.status(), 200, "{scheme}");
    }
    // Unknown paths and wrong methods are told apart, and never served.
    assert_eq!(get(addr, "/api/nothing").await.status, 404);
    assert_eq!(
        call(addr, "DELETE", "/api/sinks", Some(ADMIN_TOKEN))
            .await
            .status,
        405
    );
}

/// Resolves a `$ref` into the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => value,
    }
}

/// Checks that `json` has every property `schema` requires, recursively into arrays'
/// items and objects' properties.
fn check_required(doc: &Value, schema: &Value, json: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required {
            let name = name.as_str().unwrap();
            assert!(
                json.get(name).is_some(),
                "{at}: missing required {name:?} in {json:#}"
            );
        }
    }
    if let (Some(properties), Some(object)) = (
        schema.get("properties").and_then(Value::as_object),
        json.as_object(),
    ) {
        for (name, sub) in properties {
            if let Some(value) = object.get(name) {
                check_required(doc, sub, value, &format!("{at}.{name}"));
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), json.as_array()) {
        for (i, value) in array.iter().enumerate() {
            check_required(doc, items, value, &format!("{at}[{i}]"));
        }
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (relay, addr) = start(dir.path(), &receiver).await;
    let id = send_github(&relay, "doc-1", "{\"a\":1}").await.id();
    let doc = openapi(addr).await;
    let operations = operations(&doc);
    assert!(operations.len() >= 11, "{operations:?}");
    for (method, template) in operations {
        let path = template.replace("{id}", &id).replace("{sink}", "receiver");
        let reply = call(addr, &method, &path, Some(ADMIN_TOKEN)).await;
        let responses = &doc["paths"][&template][method.to_lowercase()]["responses"];
        let documented = responses.get(reply.status.to_string()).unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {} which is not documented: {}",
                reply.status, reply.text
            )
        });
        assert_eq!(reply.status, 200, "{method} {path}: {}", reply.text);
        let documented = resolve(&doc, documented);
        let contents = documented["content"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {template}: no documented content"));
        let (media, content) = contents
            .iter()
            .find(|(media, _)| reply.content_type.starts_with(media.as_str()))
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path}: content type {} but {:?} documented",
                    reply.content_type,
                    contents.keys().collect::<Vec<_>>()
                )
            });
        if media == "application/json" {
            check_required(&doc, &content["schema"], &reply.json(), &path);
        }
    }
    // The documented error answers hold too.
    let missing = "/api/events/00000000-0000-7000-8000-000000000000";
    assert_eq!(get(addr, missing).await.status, 404);
    assert_eq!(get(addr, "/api/events/not-a-uuid").await.status, 400);
    assert_eq!(get(addr, "/api/events?status=lost").await.status, 400);
    assert_eq!(get(addr, "/api/events?limit=0").await.status, 400);
    assert_eq!(get(addr, "/api/sinks/nope/dead-letters").await.status, 404);
    let bad_since = call(
        addr,
        "POST",
        "/api/sinks/receiver/dead-letters/replay?since=yesterday",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(bad_since.status, 400, "{}", bad_since.text);
}

#[tokio::test]
async fn no_answer_or_log_line_shows_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    // The two events are taken; the test delivery is refused by a receiver that echoes the
    // request's URL, token and all, as error pages do.
    let receiver = Receiver::with_script(vec![
        Answer::status(204),
        Answer::status(204),
        Answer::status(500).with_body(&format!("cannot handle POST /?token={URL_SECRET}")),
    ])
    .await;
    let (relay, addr) = start(dir.path(), &receiver).await;
    let body = "{\"ref\":\"refs/heads/main\"}";
    let headers = github_headers(GITHUB_SECRET, "push", "mask-1", body.as_bytes());
    let signature = headers
        .iter()
        .find(|(n, _)| *n == "x-hub-signature-256")
        .unwrap()
        .1
        .clone();
    let github = post(&relay.hook_url("github"), &headers, body).await.id();
    let nexus = send_nexus(&relay, "{\"nexus\":true}").await.id();
    wait_until(
        addr,
        "/api/events",
        ADMIN_TOKEN,
        "both events delivered",
        |j| {
            j["events"]
                .as_array()
                .is_some_and(|e| e.len() == 2 && e.iter().all(|e| e["status"] == "delivered"))
        },
    )
    .await;

    let mut answers = Vec::new();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/openapi.json",
        "/api/events",
        "/api/sinks",
        "/api/sinks/receiver/dead-letters",
    ] {
        answers.push((path.to_string(), get(addr, path).await.text));
    }
    for id in [&github, &nexus] {
        let path = format!("/api/events/{id}");
        let reply = get(addr, &path).await;
        assert_eq!(reply.status, 200);
        answers.push((path, reply.text));
    }
    let test = call(addr, "POST", "/api/sinks/receiver/test", Some(ADMIN_TOKEN)).await;
    assert!(
        test.text.contains("cannot handle POST /?***"),
        "the echo is kept, its secret masked: {}",
        test.text
    );
    answers.push(("test".into(), test.text));

    let signing_key = SIGNING.trim_start_matches("whsec_");
    let secrets = [
        GITHUB_SECRET,
        NEXUS_SECRET,
        SIGNING,
        signing_key,
        ADMIN_TOKEN,
        URL_SECRET,
        signature.as_str(),
    ];
    for (path, text) in &answers {
        for secret in secrets {
            assert!(!text.contains(secret), "{path} shows {secret:?}: {text}");
        }
    }
    for line in relay.logs() {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "a log line shows {secret:?}: {line}"
            );
        }
    }

    // The signature headers are there, masked; the event's other headers and body are not.
    let shown = get(addr, &format!("/api/events/{github}")).await.json();
    let header = |json: &Value, name: &str| {
        json["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .map(|h| h["value"].as_str().unwrap().to_string())
    };
    assert_eq!(
        header(&shown, "x-hub-signature-256").as_deref(),
        Some("***")
    );
    assert_eq!(header(&shown, "x-github-event").as_deref(), Some("push"));
    assert_eq!(shown["body"], body);
    let nexus_shown = get(addr, &format!("/api/events/{nexus}")).await.json();
    assert_eq!(header(&nexus_shown, "x-nexus-sig").as_deref(), Some("***"));
}

#[tokio::test]
async fn a_dead_letter_is_replayed_once_the_sink_recovers() {
    let dir = tempfile::tempdir().unwrap();
    // The first answer dead-letters at once (a 4xx is not retried); later ones succeed.
    let mut receiver =
        Receiver::with_script(vec![Answer::status(410).with_body("gone for now")]).await;
    let (relay, addr) = start(dir.path(), &receiver).await;
    let id = send_github(&relay, "dlq-1", "{\"n\":1}").await.id();
    assert_eq!(receiver.next().await.header("webhook-id"), id);

    let sinks = wait_until(addr, "/api/sinks", ADMIN_TOKEN, "a dead letter", |j| {
        j["sinks"][0]["dead_letters"] == 1
    })
    .await;
    let sink = &sinks["sinks"][0];
    assert_eq!(sink["state"], "failing", "{sink:#}");
    assert!(sink["failing_since"].is_string(), "{sink:#}");
    assert!(
        sink["last_error"].as_str().unwrap().contains("410"),
        "{sink:#}"
    );
    let dead = get(addr, "/api/sinks/receiver/dead-letters").await.json();
    assert_eq!(dead["dead_letters"][0]["event_id"], id.as_str());
    let dead_events = get(addr, "/api/events?status=dead").await.json();
    assert_eq!(dead_events["events"][0]["id"], id.as_str());

    // The receiver answers 204 from now on: replay the sink's dead letters.
    let replay = call(
        addr,
        "POST",
        "/api/sinks/receiver/dead-letters/replay?since=2000-01-01T00:00:00Z",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    assert_eq!(replay.json()["replayed"], 1);
    let again = receiver.next().await;
    assert_eq!(
        again.header("webhook-id"),
        id,
        "a replay keeps the webhook-id"
    );
    assert_eq!(again.header("x-hookrelay-attempt"), "2");

    let path = format!("/api/events/{id}");
    let event = wait_until(addr, &path, ADMIN_TOKEN, "delivered after replay", |j| {
        j["deliveries"][0]["state"] == "delivered"
    })
    .await;
    let attempts: Vec<(u64, &str, bool)> = event["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["number"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["replay"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        vec![(1, "dead_lettered", false), (2, "delivered", true)]
    );
    // Counts may be up to a second old (they are counted at most once a second).
    let sinks = wait_until(
        addr,
        "/api/sinks",
        ADMIN_TOKEN,
        "no dead letter left",
        |j| j["sinks"][0]["dead_letters"] == 0,
    )
    .await;
    assert_eq!(sinks["sinks"][0]["state"], "healthy");

    // One event can be replayed to one sink on demand, again with the same webhook-id.
    let one = call(
        addr,
        "POST",
        &format!("/api/events/{id}/replay?sink=receiver"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.json()["sinks"][0]["result"], "queued");
    assert_eq!(receiver.next().await.header("webhook-id"), id);
    let unknown = call(
        addr,
        "POST",
        &format!("/api/events/{id}/replay?sink=nope"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(unknown.status, 404);

    // A sink that is disabled now is named as skipped, with why, not left out.
    let path = dir.path().join("hookrelay.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let disabled = text.replace("[sinks.receiver]\n", "[sinks.receiver]\nenabled = false\n");
    assert_ne!(disabled, text);
    std::fs::write(&path, disabled).unwrap();
    let reload = call(addr, "POST", "/api/reload", Some(ADMIN_TOKEN)).await;
    assert_eq!(reload.status, 200, "{}", reload.text);
    let all = call(
        addr,
        "POST",
        &format!("/api/events/{id}/replay"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        all.json()["sinks"],
        serde_json::json!([{"sink": "receiver", "result": "skipped", "reason": "the sink is disabled (enabled = false)"}])
    );
}

#[tokio::test]
async fn a_test_delivery_goes_through_the_real_sink() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let (_relay, addr) = start(dir.path(), &receiver).await;
    let reply = call(addr, "POST", "/api/sinks/receiver/test", Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let json = reply.json();
    assert_eq!(json["outcome"], "delivered");
    assert_eq!(json["status"], 204);
    let got = receiver.next().await;
    assert_eq!(got.header("x-hookrelay-event-type"), "hookrelay.test");
    assert_eq!(got.header("webhook-id"), json["event_id"].as_str().unwrap());
    assert!(got.headers.contains_key("webhook-signature"));
    // Nothing was stored.
    let events = get(addr, "/api/events").await.json();
    assert_eq!(events["events"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn metrics_count_traffic_with_bounded_labels() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let (relay, addr) = start(dir.path(), &receiver).await;
    send_github(&relay, "m-1", "{}").await;
    assert_eq!(send_github(&relay, "m-1", "{}").await.status, 200);
    let forged = post(
        &relay.hook_url("github"),
        &github_headers("wrong", "push", "m-2", b"{}"),
        "{}",
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(post(&relay.hook_url("nope"), &[], "{}").await.status, 404);
    receiver.next().await;
    let sinks = wait_until(addr, "/api/sinks", ADMIN_TOKEN, "delivered", |j| {
        j["sinks"][0]["last_delivered_at"].is_string()
    })
    .await;
    assert_eq!(sinks["sinks"][0]["queue_depth"], 0);

    // What Prometheus asks for: OpenMetrics.
    let prometheus =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let reply = call_accepting(addr, "GET", "/metrics", Some(ADMIN_TOKEN), Some(prometheus)).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .content_type
            .starts_with("application/openmetrics-text"),
        "{}",
        reply.content_type
    );
    assert!(reply.text.ends_with("# EOF\n"), "{}", reply.text);
    // Anything else (curl, other scrapers, promtool): the Prometheus text format.
    let classic = get(addr, "/metrics").await;
    assert_eq!(
        classic.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        classic
            .text
            .contains("# TYPE hookrelay_events_received_total counter\n")
            && classic.text.contains("# TYPE hookrelay_build_info gauge\n")
            && !classic.text.contains("# EOF")
            && !classic.text.contains("# UNIT"),
        "{}",
        classic.text
    );
    for text in [&classic.text, &reply.text] {
        assert!(
            text.contains(
                "hookrelay_events_received_total{source=\"github\",outcome=\"accepted\"} 1"
            ),
            "{text}"
        );
    }
    let text = reply.text;
    for line in [
        "hookrelay_events_received_total{source=\"github\",outcome=\"accepted\"} 1",
        "hookrelay_events_received_total{source=\"github\",outcome=\"duplicate\"} 1",
        "hookrelay_events_received_total{source=\"github\",outcome=\"unauthorized\"} 1",
        "hookrelay_events_received_total{source=\"\",outcome=\"unknown_source\"} 1",
        "hookrelay_deliveries_total{sink=\"receiver\",outcome=\"delivered\"} 1",
        "hookrelay_delivery_duration_seconds_count{sink=\"receiver\"} 1",
        "hookrelay_queue_depth{sink=\"receiver\"} 0",
        "hookrelay_queue_oldest_age_seconds{sink=\"receiver\"} 0",
        "hookrelay_dead_letters{sink=\"receiver\"} 0",
        "hookrelay_build_info{version=\"",
        "hookrelay_store_file_size_bytes ",
        "hookrelay_store_commit_duration_seconds_bucket{le=",
        "hookrelay_store_commit_batch_size_count ",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    // The unknown source's name is no label value: labels stay bounded.
    assert!(!text.contains("nope"), "{text}");
    let commits: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_store_commit_batch_size_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(commits >= 2.0, "an ingest and an attempt record: {commits}");
}

#[tokio::test]
async fn a_public_admin_listener_without_a_token_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(&path, "[admin]\nlisten = \"0.0.0.0:9090\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":2:10: admin.listen") && stderr.contains("admin.token"),
        "{stderr}"
    );
}

/// Sends `method path` to the admin listener with `headers` as given (no token).
async fn call_from_page(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> AdminReply {
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request to the admin API");
    let status = response.status().as_u16();
    AdminReply {
        status,
        content_type: String::new(),
        text: response.text().await.unwrap(),
    }
}

/// Without a token only loopback guards the API, and a web page in the operator's browser
/// reaches loopback too: another site's form or no-cors `fetch`, or a name of its own made
/// to point at 127.0.0.1 (DNS rebinding), must get nothing done and read nothing.
#[tokio::test]
async fn a_web_page_of_another_site_cannot_use_an_admin_api_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"

[sinks.receiver]
kind = "webhook"
url = "{}"
"#,
        receiver.url()
    );
    let relay = Relay::start(dir.path(), &config);
    let addr = admin_addr(&relay).await;
    let test = "/api/sinks/receiver/test";

    // Another site's page: a foreign Origin, or the browser's own word that it is cross-site.
    let foreign = call_from_page(addr, "POST", test, &[("origin", "http://127.0.0.1:9103")]).await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    assert!(foreign.text.contains("another site"), "{}", foreign.text);
    let cross_site = call_from_page(addr, "POST", test, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.text);
    let null_origin = call_from_page(addr, "POST", "/api/reload", &[("origin", "null")]).await;
    assert_eq!(null_origin.status, 403, "{}", null_origin.text);

    // A rebound name reads nothing, though health probes may use any name.
    let host = format!("attacker.example:{}", addr.port());
    let rebound = call_from_page(addr, "GET", "/api/events", &[("host", &host)]).await;
    assert_eq!(rebound.status, 403, "{}", rebound.text);
    assert!(rebound.text.contains("[admin] token"), "{}", rebound.text);
    let probe = call_from_page(addr, "GET", "/healthz", &[("host", &host)]).await;
    assert_eq!(probe.status, 200, "{}", probe.text);

    // The console's own origin, curl, and `localhost` still work.
    let own = format!("http://{addr}");
    let console = call_from_page(
        addr,
        "POST",
        test,
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(console.status, 200, "{}", console.text);
    let curl = call_from_page(addr, "POST", test, &[]).await;
    assert_eq!(curl.status, 200, "{}", curl.text);
    let by_localhost = format!("localhost:{}", addr.port());
    let local = call_from_page(addr, "GET", "/api/sinks", &[("host", &by_localhost)]).await;
    assert_eq!(local.status, 200, "{}", local.text);
    // A test delivery is sent before its answer: the two that were let through arrived.
    receiver.next().await;
    receiver.next().await;
}
