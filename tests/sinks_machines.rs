//! The machine-readable sinks through the real binary: `dependency-track` against a
//! loopback server that checks each request as Dependency-Track would and answers as it
//! does; `guac` into a folder and into a real S3-compatible server (moto); `archive` read
//! back from its files, rotation included.

mod common;

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::moto::Moto;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "machines-test-secret";
const FAST_RETRY: &str = r#"retry = { max_attempts = 5, initial = "20ms", max = "50ms" }"#;

fn config(sink: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.out]
concurrency = 1
{FAST_RETRY}
{sink}

[[routes]]
from = "github"
to = ["out"]
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

/// Waits until `n` log lines contain `needle`; returns them in order.
async fn wait_for_lines(relay: &Relay, needle: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let lines: Vec<String> = relay
            .logs()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} log lines containing {needle:?}; log:\n{}",
            lines.len(),
            relay.logs().join("\n")
        );
        // Log lines arrive through a pipe with no notification to await; poll like
        // `Relay::wait_for_log` does.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn sbom(name: &str) -> Value {
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {"component": {"name": name, "version": "1.2.3", "type": "library"}},
        "components": [{"type": "library", "name": "serde", "version": "1.0.0"}]
    })
}

fn dtrack(receiver: &Receiver, extra: &str) -> String {
    config(&format!(
        "kind = \"dependency-track\"\nurl = \"{}\"\napi_key = \"odt_test-key\"\n{extra}",
        format_args!("http://{}", receiver.addr)
    ))
}

#[tokio::test]
async fn dependency_track_gets_a_put_with_the_base64_bom_and_templated_project() {
    let dir = tempfile::tempdir().unwrap();
    let token = "3a6ba4a9-1b3c-4b8e-9c6f-0d6e1f0a2b7c";
    let mut receiver = Receiver::with_script(vec![
        Answer::status(200)
            .with_header("content-type", "application/json")
            .with_body(&format!("{{\"token\":\"{token}\"}}")),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &dtrack(
            &receiver,
            "project_name = \"{{ source }}-{{ body.sbom.metadata.component.name }}\"\n\
             project_version = \"{{ event_type }}\"\nauto_create = true\npointer = \"/sbom\"",
        ),
    );
    let bom = sbom("shop");
    let body = serde_json::to_vec(&json!({"action": "published", "sbom": bom})).unwrap();
    send(&relay, "release", "dt-1", &body).await;

    let got = receiver.next().await;
    assert_eq!(got.method, "PUT");
    assert_eq!(got.path, "/api/v1/bom");
    assert_eq!(got.header("x-api-key"), "odt_test-key");
    assert_eq!(got.header("content-type"), "application/json");
    let sent: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(sent["projectName"], "github-shop");
    assert_eq!(sent["projectVersion"], "release");
    assert_eq!(sent["autoCreate"], true);
    assert!(sent.get("project").is_none());
    let decoded = BASE64.decode(sent["bom"].as_str().unwrap()).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), bom);

    // The upload token is recorded as the delivery's message id.
    let line = relay.wait_for_log("\"delivered\"").await;
    assert!(line.contains(token), "the token is recorded: {line}");
}

#[tokio::test]
async fn dependency_track_gets_a_large_bom_as_multipart_post_to_a_project_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::with_script(vec![
        Answer::status(200).with_body("{\"token\":\"5f1e6c0a-0000-4000-8000-000000000001\"}"),
    ])
    .await;
    let project = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let relay = Relay::start(
        dir.path(),
        &dtrack(&receiver, &format!("project = \"{project}\"")),
    );
    // Past the 20,000,000 base64 characters Dependency-Track takes in a JSON string.
    let mut bom = sbom("big");
    bom["metadata"]["component"]["description"] = Value::String("x".repeat(15_100_000));
    let body = serde_json::to_vec(&bom).unwrap();
    send(&relay, "release", "dt-big", &body).await;

    let got = receiver.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/api/v1/bom");
    assert_eq!(got.header("x-api-key"), "odt_test-key");
    let content_type = got.header("content-type");
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart/form-data with a boundary");
    let parts = multipart_parts(&got.body, boundary);
    let names: Vec<&str> = parts.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(names, ["project", "bom"]);
    assert_eq!(parts[0].2, project.as_bytes());
    assert_eq!(parts[1].1.as_deref(), Some("bom.json"));
    assert_eq!(parts[1].2, &body[..], "the BOM goes as is, not base64");
    relay.wait_for_log("\"delivered\"").await;
}

/// Splits a multipart body into (field name, file name, content).
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<(String, Option<String>, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let text = unsafe_latin1(body);
    let mut parts = Vec::new();
    let mut sections: Vec<&str> = text.split(delimiter.as_str()).collect();
    assert_eq!(sections.remove(0), "", "the body starts with the boundary");
    assert_eq!(
        sections.pop(),
        Some("--\r\n"),
        "the body ends with the closing boundary"
    );
    for section in sections {
        let section = section
            .strip_prefix("\r\n")
            .expect("CRLF after the boundary");
        let section = section
            .strip_suffix("\r\n")
            .expect("CRLF before the boundary");
        let (head, content) = section.split_once("\r\n\r\n").expect("headers, blank line");
        let disposition = head
            .lines()
            .find(|l| l.starts_with("Content-Disposition: form-data;"))
            .expect("a form-data disposition");
        let attr = |key: &str| {
            disposition
                .split(&format!("{key}=\""))
                .nth(1)
                .map(|rest| rest.split('"').next().unwrap().to_string())
        };
        parts.push((
            attr("name").unwrap(),
            attr("filename"),
            content.chars().map(|c| c as u8).collect(),
        ));
    }
    parts
}

/// Bytes as chars one to one, so splitting never fails on non-UTF-8 content.
fn unsafe_latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

#[tokio::test]
async fn dependency_track_refusals_are_permanent_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::with_script(vec![
        Answer::status(401).with_body("The principal does not have permission to create project."),
        Answer::status(400).with_header("content-type", "application/problem+json").with_body(
            r#"{"status":400,"title":"The uploaded BOM is invalid","detail":"Schema validation failed"}"#,
        ),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &dtrack(
            &receiver,
            "project_name = \"shop\"\nproject_version = \"1\"\nauto_create = true",
        ),
    );
    let body = serde_json::to_vec(&sbom("shop")).unwrap();
    send(&relay, "release", "dt-401", &body).await;
    receiver.next().await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(line.contains("401"), "{line}");
    assert!(
        line.contains("does not have permission to create project"),
        "{line}"
    );
    assert!(
        line.contains("PROJECT_CREATION_UPLOAD"),
        "says what to fix: {line}"
    );
    assert!(!line.contains("odt_test-key"), "never the key: {line}");

    send(&relay, "release", "dt-400", &body).await;
    receiver.next().await;
    let lines = wait_for_lines(&relay, "dead-lettered", 2).await;
    assert!(lines[1].contains("400"), "{}", lines[1]);
    assert!(
        lines[1].contains("Schema validation failed"),
        "{}",
        lines[1]
    );
    // Neither was tried again: a third event is the next request.
    send(&relay, "release", "dt-next", &body).await;
    let third = receiver.next().await;
    assert_eq!(third.method, "PUT");
    relay.wait_for_log("\"delivered\"").await;
}

#[tokio::test]
async fn dependency_track_retries_server_errors_and_skips_events_without_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::with_script(vec![
        Answer::status(503),
        Answer::status(200).with_body("{\"token\":\"t\"}"),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &dtrack(
            &receiver,
            "project = \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"",
        ),
    );
    // A push carries no SBOM: skipped, with the reason logged, and nothing sent.
    send(&relay, "push", "dt-push", br#"{"ref":"refs/heads/main"}"#).await;
    let line = relay.wait_for_log("skipped").await;
    assert!(line.contains("no CycloneDX BOM"), "{line}");

    let body = serde_json::to_vec(&sbom("shop")).unwrap();
    send(&relay, "release", "dt-503", &body).await;
    let first = receiver.next().await;
    let second = receiver.next().await;
    assert_eq!(first.body, second.body, "the retry sends the same upload");
    assert_eq!(second.path, "/api/v1/bom");
    relay.wait_for_log("\"delivered\"").await;
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn guac_writes_one_file_per_document_into_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &config("kind = \"guac\"\npath = \"inbox\"\npointer = [\"/sbom\", \"/attestations\"]"),
    );
    let statement = json!({"_type": "https://in-toto.io/Statement/v1", "subject": []});
    let body = serde_json::to_vec(&json!({
        "sbom": sbom("shop"),
        "attestations": [statement, {"payloadType": "application/vnd.in-toto+json"}]
    }))
    .unwrap();
    let id = send(&relay, "release", "guac-1", &body).await;
    relay.wait_for_log("\"delivered\"").await;

    let inbox = dir.path().join("inbox");
    assert_eq!(
        files(&inbox),
        [
            format!("{id}-0.json"),
            format!("{id}-1-0.json"),
            format!("{id}-1-1.json")
        ]
    );
    let read = |name: String| -> Value {
        serde_json::from_slice(&std::fs::read(inbox.join(name)).unwrap()).unwrap()
    };
    assert_eq!(read(format!("{id}-0.json")), sbom("shop"));
    assert_eq!(read(format!("{id}-1-0.json")), statement);
    // Temp files live outside the watched folder and none is left behind.
    assert!(files(&dir.path().join(".inbox.hookrelay-tmp")).is_empty());

    // An event with no document is skipped, and writes nothing.
    send(&relay, "push", "guac-2", br#"{"ref":"main"}"#).await;
    let line = relay.wait_for_log("skipped").await;
    assert!(line.contains("nothing at /sbom, /attestations"), "{line}");
    assert_eq!(files(&inbox).len(), 3);
}

#[tokio::test]
async fn guac_puts_one_object_per_document_into_s3() {
    let moto = Moto::start();
    moto.create_bucket("guac-inbox").await;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "kind = \"guac\"\nbucket = \"guac-inbox\"\nprefix = \"sboms/\"\nendpoint = \"{}\"\n\
             region = \"eu-west-1\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"s3cr3t\"\n\
             pointer = \"/sbom\"\nencoding = \"base64\"",
            moto.url
        )),
    );
    let bom = serde_json::to_vec(&sbom("shop")).unwrap();
    let body = serde_json::to_vec(&json!({"sbom": BASE64.encode(&bom)})).unwrap();
    let id = send(&relay, "release", "s3-1", &body).await;
    relay.wait_for_log("\"delivered\"").await;

    let key = format!("sboms/{id}-0.json");
    assert_eq!(moto.keys("guac-inbox").await, std::slice::from_ref(&key));
    assert_eq!(moto.get("guac-inbox", &key, "AKIDTEST").await.unwrap(), bom);
}

#[tokio::test]
async fn guac_dead_letters_when_the_bucket_does_not_exist() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "kind = \"guac\"\nbucket = \"missing-bucket\"\nendpoint = \"{}\"\n\
             access_key_id = \"AKIDTEST\"\nsecret_access_key = \"s3cr3t\"",
            moto.url
        )),
    );
    send(
        &relay,
        "release",
        "s3-404",
        &serde_json::to_vec(&sbom("x")).unwrap(),
    )
    .await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(
        line.contains("404") && line.contains("NoSuchBucket"),
        "{line}"
    );
    assert!(!line.contains("s3cr3t"), "{line}");
}

#[tokio::test]
async fn archive_appends_every_event_as_a_json_line_and_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &config("kind = \"archive\"\npath = \"archive\"\nmax_file_size = \"1KiB\""),
    );
    let mut sent = Vec::new();
    for i in 0..6 {
        let body = format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(200));
        let id = send(&relay, "push", &format!("arch-{i}"), body.as_bytes()).await;
        sent.push((id, body));
    }
    wait_for_lines(&relay, "\"delivered\"", 6).await;
    let archive = dir.path().join("archive");
    let (names, others): (Vec<String>, Vec<String>) = files(&archive)
        .into_iter()
        .partition(|n| n.starts_with("events-"));
    // The running sink holds the folder's lock file: one writer per folder.
    assert_eq!(others, [".hookrelay-archive.lock"]);
    assert!(names.len() >= 2, "rotated at 1KiB: {names:?}");
    let mut lines = Vec::new();
    for name in &names {
        let text = std::fs::read_to_string(archive.join(name)).unwrap();
        assert!(text.len() <= 1024, "{name} is {} bytes", text.len());
        assert!(text.ends_with('\n'));
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert_eq!(lines.len(), 6);
    for (line, (id, body)) in lines.iter().zip(&sent) {
        assert_eq!(line["id"], id.as_str());
        assert_eq!(line["source"], "github");
        assert_eq!(line["event_type"], "push");
        assert!(line["delivery_id"].as_str().unwrap().starts_with("arch-"));
        assert_eq!(line["body_encoding"], "utf-8");
        assert_eq!(line["body"], body.as_str());
        assert!(line["received_at"].as_str().unwrap().ends_with('Z'));
        let headers = line["headers"].as_array().unwrap();
        assert!(
            headers
                .iter()
                .any(|h| h[0] == "x-github-event" && h[1] == "push"),
            "{headers:?}"
        );
    }
}
