//! No secret ever leaves in a log line, in what a sink receives, or in an admin API answer:
//! a run that takes every path (accepted, duplicate, every kind of refusal, a failing sink
//! retried, a dead letter, a test message, the admin API's reads and its error answers,
//! shutdown) is searched for every configured secret, signing key, admin token and secret
//! in a sink URL, in every form a careless line could print it (as written, the `whsec_`
//! key's base64, its bytes in hex).

mod common;

use base64::Engine;

use common::admin::{admin_addr, call};
use common::*;

const GITHUB: &str = "gh-secret-7f3a9c";
const TOKEN: &str = "token-secret-51d2e8";
const GITLAB_TOKEN: &str = "gitlab-token-0b4c61";
/// Inbound Standard Webhooks key and outbound signing key.
const WHSEC_IN: &str = "whsec_c2VjcmV0LWluYm91bmQtMTIzNDU2Nzg=";
const WHSEC_OUT: &str = "whsec_c2VjcmV0LW91dGJvdW5kLTg3NjU0MzIx";
const ADMIN_TOKEN: &str = "admin-token-9e27c4";
/// A credential in a sink's URL, as some receivers take it.
const URL_SECRET: &str = "url-secret-3a8d17";

fn forms(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_string()];
    if let Some(encoded) = secret.strip_prefix("whsec_") {
        forms.push(encoded.to_string());
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        forms.push(hex::encode(&key));
        forms.push(String::from_utf8_lossy(&key).into_owned());
    }
    forms
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_delivery_or_admin_answer() {
    let dir = tempfile::tempdir().unwrap();
    // The good sink fails once, then takes everything; the bad one refuses for good.
    let mut good = Receiver::with_script(vec![Answer::status(503)]).await;
    let mut bad = Receiver::with_script(vec![Answer::status(400); 10]).await;
    // A small max_body, so the oversized body is written whole before the 413 (a large one
    // meets a closed socket instead).
    let relay = Relay::start_with_server(
        dir.path(),
        "max_body = \"1KiB\"",
        &format!(
            r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[sources.github]
kind = "github"
secret = "{GITHUB}"

[sources.token]
kind = "token"
header = "X-Api-Token"
secret = "{TOKEN}"
event_type = {{ pointer = "/type" }}

[sources.gitlab]
kind = "gitlab"
token = "{GITLAB_TOKEN}"

[sources.standard]
kind = "standard"
secret = "{WHSEC_IN}"

[sinks.good]
kind = "webhook"
url = "{}?key={URL_SECRET}"
signing_secret = "{WHSEC_OUT}"
retry = {{ max_attempts = 5, initial = "10ms", max = "50ms" }}

[sinks.bad]
kind = "webhook"
url = "{}"
signing_secret = "{WHSEC_OUT}"

[[routes]]
from = ["github", "token", "gitlab", "standard"]
to = ["good"]

[[routes]]
from = "github"
events = ["release"]
to = ["bad"]
"#,
            good.url(),
            bad.url()
        ),
    );
    let body = br#"{"type":"push","id":"1"}"#;
    let mut sent = Vec::new();
    let mut expect = |reply: Reply, status: u16, what: &str| {
        assert_eq!(reply.status, status, "{what}: {:?}", reply.json);
        sent.push(what.to_string());
    };

    // GitHub: accepted, duplicate, wrong secret, a release the bad sink dead-letters.
    let url = relay.hook_url("github");
    expect(
        post(&url, &github_headers(GITHUB, "push", "g1", body), &body[..]).await,
        202,
        "github",
    );
    expect(
        post(&url, &github_headers(GITHUB, "push", "g1", body), &body[..]).await,
        200,
        "duplicate",
    );
    expect(
        post(&url, &github_headers(TOKEN, "push", "g2", body), &body[..]).await,
        401,
        "github wrong secret",
    );
    expect(
        post(
            &url,
            &github_headers(GITHUB, "release", "g3", body),
            &body[..],
        )
        .await,
        202,
        "release",
    );
    // Token source: the right token, a wrong one, the GitHub secret sent as a token.
    let url = relay.hook_url("token");
    expect(
        post(&url, &[("x-api-token", TOKEN.to_string())], &body[..]).await,
        202,
        "token",
    );
    expect(
        post(&url, &[("x-api-token", format!("{TOKEN}x"))], &body[..]).await,
        401,
        "token wrong",
    );
    expect(
        post(&url, &[("x-api-token", GITHUB.to_string())], &body[..]).await,
        401,
        "token other",
    );
    expect(
        post(&url, &[("x-api-token", TOKEN.to_string())], "not json").await,
        400,
        "token bad json",
    );
    // GitLab token, right and wrong.
    let url = relay.hook_url("gitlab");
    let gitlab = |token: &str| {
        vec![
            ("x-gitlab-token", token.to_string()),
            ("x-gitlab-event", "Push Hook".to_string()),
        ]
    };
    expect(
        post(&url, &gitlab(GITLAB_TOKEN), &body[..]).await,
        202,
        "gitlab",
    );
    expect(
        post(&url, &gitlab(&GITLAB_TOKEN[1..]), &body[..]).await,
        401,
        "gitlab wrong",
    );
    // Standard Webhooks: good, signed with the outbound key instead, stale.
    let url = relay.hook_url("standard");
    let now = unix_now();
    expect(
        post(
            &url,
            &standard_headers(WHSEC_IN, "msg_1", now, body),
            &body[..],
        )
        .await,
        202,
        "standard",
    );
    expect(
        post(
            &url,
            &standard_headers(WHSEC_OUT, "msg_2", now, body),
            &body[..],
        )
        .await,
        401,
        "standard wrong key",
    );
    expect(
        post(
            &url,
            &standard_headers(WHSEC_IN, "msg_3", now - 3600, body),
            &body[..],
        )
        .await,
        401,
        "standard stale",
    );
    // Unknown source, oversized body.
    expect(
        post(&relay.hook_url("nope"), &[], &body[..]).await,
        404,
        "unknown source",
    );
    let huge = vec![b'x'; 2 << 10];
    expect(
        post(
            &relay.hook_url("github"),
            &github_headers(GITHUB, "push", "g4", &huge),
            huge,
        )
        .await,
        413,
        "too large",
    );

    // Five events reach the good sink (one retried after its 503), one is dead-lettered.
    let mut received = Vec::new();
    for _ in 0..6 {
        received.push(good.next().await);
    }
    received.push(bad.next().await);
    relay.wait_for_log("dead-lettered").await;

    // Every admin API answer: each read, each event, a test message, and the refusals.
    let admin = admin_addr(&relay).await;
    let mut answers = Vec::new();
    let mut ask = async |method: &str, path: &str, token: Option<&str>, status: u16| {
        let reply = call(admin, method, path, token).await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.text);
        answers.push((format!("{method} {path}"), reply.text.clone()));
        reply
    };
    let list = ask("GET", "/api/events?limit=100", Some(ADMIN_TOKEN), 200).await;
    let events = list.json()["events"].as_array().unwrap().clone();
    // The relay's own notices (a sink turning unhealthy) are listed beside them.
    let accepted = events.iter().filter(|e| e["source"] != "hookrelay").count();
    assert_eq!(accepted, 5, "every accepted event is listed: {}", list.text);
    for event in &events {
        let id = event["id"].as_str().unwrap();
        ask("GET", &format!("/api/events/{id}"), Some(ADMIN_TOKEN), 200).await;
    }
    ask("GET", "/api/sinks", Some(ADMIN_TOKEN), 200).await;
    ask(
        "GET",
        "/api/sinks/good/dead-letters",
        Some(ADMIN_TOKEN),
        200,
    )
    .await;
    let dead = ask("GET", "/api/sinks/bad/dead-letters", Some(ADMIN_TOKEN), 200).await;
    assert!(
        dead.text.contains("400"),
        "the dead letter names its error: {}",
        dead.text
    );
    ask("POST", "/api/sinks/bad/test", Some(ADMIN_TOKEN), 200).await;
    ask("POST", "/api/sinks/good/test", Some(ADMIN_TOKEN), 200).await;
    ask("GET", "/metrics", Some(ADMIN_TOKEN), 200).await;
    ask("GET", "/readyz", Some(ADMIN_TOKEN), 200).await;
    ask("GET", "/api/openapi.json", Some(ADMIN_TOKEN), 200).await;
    ask("GET", "/api/events", None, 401).await;
    ask("GET", "/api/events", Some(&ADMIN_TOKEN[1..]), 401).await;
    ask("GET", "/api/events", Some(GITHUB), 401).await;
    ask("GET", "/api/events/not-an-id", Some(ADMIN_TOKEN), 400).await;
    ask(
        "GET",
        "/api/events/00000000-0000-7000-8000-000000000000",
        Some(ADMIN_TOKEN),
        404,
    )
    .await;
    ask(
        "GET",
        "/api/sinks/nope/dead-letters",
        Some(ADMIN_TOKEN),
        404,
    )
    .await;
    ask("GET", "/api/nope", Some(ADMIN_TOKEN), 404).await;
    ask("DELETE", "/api/sinks", Some(ADMIN_TOKEN), 405).await;

    let logs = relay.logs();
    assert_eq!(relay.terminate().code(), Some(0));

    for secret in [
        GITHUB,
        TOKEN,
        GITLAB_TOKEN,
        WHSEC_IN,
        WHSEC_OUT,
        ADMIN_TOKEN,
        URL_SECRET,
    ] {
        for form in forms(secret) {
            for line in &logs {
                assert!(
                    !line.contains(&form),
                    "a form of a secret is in the log: {line}"
                );
            }
            for (request, text) in &answers {
                assert!(
                    !text.contains(&form),
                    "a form of a secret is in the admin answer to {request}: {text}"
                );
            }
            for got in &received {
                for (name, value) in &got.headers {
                    assert!(
                        !String::from_utf8_lossy(value.as_bytes()).contains(&form),
                        "a form of a secret was sent to a sink in {name}"
                    );
                }
            }
        }
    }
    assert!(
        logs.len() > sent.len(),
        "the run logged its paths: {logs:#?}"
    );
}
