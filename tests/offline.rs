//! The offline commands through the real binary, as an operator meets them on a stopped
//! relay's store: refused while the relay runs, then `events list|show`, `dlq list`,
//! `export` (headers masked, no secret anywhere), and `replay` by sink, event and time
//! range, delivered with the same `webhook-id` when the relay starts again.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

const GITHUB_SECRET: &str = "offline-test-github-secret";
const SIGNING: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const URL_SECRET: &str = "offline-url-secret-77d1";

fn hookrelay(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run hookrelay")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs an offline command that must succeed; returns its standard output.
fn ok(config: &Path, args: &[&str]) -> String {
    let out = hookrelay(config, args);
    assert!(
        out.status.success(),
        "hookrelay {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn start(dir: &Path, receiver: &Receiver) -> Relay {
    let config = format!(
        r#"
[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{}?token={URL_SECRET}"
signing_secret = "{SIGNING}"
concurrency = 1
retry = {{ max_attempts = 1, initial = "10ms", max = "20ms" }}

[[routes]]
from = "github"
to = ["receiver"]
"#,
        receiver.url()
    );
    Relay::start(dir, &config)
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("hookrelay.toml")
}

/// Sends one GitHub push and returns its event id.
async fn send(relay: &Relay, delivery: &str) -> String {
    let body = format!(r#"{{"ref":"refs/heads/main","delivery":"{delivery}"}}"#);
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(GITHUB_SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.id()
}

/// Waits until one log line of `relay` holds every one of `parts`.
async fn wait_for_line(relay: &Relay, parts: &[&str]) {
    let deadline = std::time::Instant::now() + WAIT;
    while !relay
        .logs()
        .iter()
        .any(|line| parts.iter().all(|p| line.contains(p)))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {parts:?}; log:\n{}",
            relay.logs().join("\n")
        );
        // The log is read by a thread; polling it is the only way to await a line.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// No configured secret, and not the sink URL's token, in `text`.
fn assert_no_secret(text: &str) {
    for secret in [GITHUB_SECRET, SIGNING, URL_SECRET] {
        assert!(!text.contains(secret), "a secret leaked:\n{text}");
    }
}

#[tokio::test]
async fn offline_commands_read_and_requeue_a_stopped_relays_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_path(dir.path());
    let mut receiver = Receiver::with_script(vec![Answer::status(500), Answer::status(500)]).await;

    let relay = start(dir.path(), &receiver);
    let first = send(&relay, "d-1").await;
    receiver.next().await;
    wait_for_line(&relay, &["dead-lettered", &first]).await;
    let second = send(&relay, "d-2").await;
    receiver.next().await;
    wait_for_line(&relay, &["dead-lettered", &second]).await;

    // While the relay runs, its store is refused, pointing to the admin API.
    let refused = hookrelay(&config, &["events", "list"]);
    assert_eq!(refused.status.code(), Some(1));
    let message = stderr(&refused);
    assert!(
        message.contains("held by a running hookrelay") && message.contains("admin API"),
        "{message}"
    );
    assert!(relay.terminate().success());

    // events list: newest first, both dead. (`--source github` leaves out the relay's own
    // sink.unhealthy notice, an event of the source "hookrelay" since the first dead letter.)
    let list = ok(&config, &["events", "list", "--source", "github"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("ID"), "{list}");
    assert!(
        lines[1].starts_with(&second) && lines[1].contains("dead"),
        "{list}"
    );
    assert!(
        lines[2].starts_with(&first) && lines[2].contains("dead"),
        "{list}"
    );
    let one = ok(
        &config,
        &["events", "list", "--source", "github", "--limit", "1"],
    );
    assert!(
        one.contains(&format!(
            "more: hookrelay events list --before {second} --source github --limit 1 --config {}",
            config.display()
        )),
        "{one}"
    );
    let older = ok(
        &config,
        &["events", "list", "--source", "github", "--before", &second],
    );
    assert!(
        older.contains(&first) && !older.contains(&second),
        "{older}"
    );

    // events show: the API's document, signature masked, no secret.
    let shown = ok(&config, &["events", "show", &first]);
    assert_no_secret(&shown);
    let event: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(event["id"], first.as_str());
    assert_eq!(event["source"], "github");
    assert_eq!(event["deliveries"][0]["state"], "dead");
    assert_eq!(event["attempts"][0]["status"], 500);
    let signature = event["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "x-hub-signature-256")
        .expect("the signature header is kept, masked");
    assert_eq!(signature["value"], "***");

    // dlq list names both dead letters.
    let dlq = ok(&config, &["dlq", "list"]);
    assert!(
        dlq.contains(&first) && dlq.contains(&second) && dlq.contains("receiver"),
        "{dlq}"
    );
    assert_no_secret(&dlq);
    // One page at a time, newest first; the printed command shows the next page.
    let page = ok(
        &config,
        &["dlq", "list", "--sink", "receiver", "--limit", "1"],
    );
    assert!(page.contains(&second) && !page.contains(&first), "{page}");
    let next = page
        .lines()
        .find_map(|l| l.strip_prefix("more dead letters of receiver: "))
        .and_then(|rest| rest.split(" (or replay").next())
        .unwrap_or_else(|| panic!("no next-page command in {page}"));
    let words: Vec<&str> = next.split_whitespace().collect();
    assert_eq!(words[..3], ["hookrelay", "dlq", "list"], "{next}");
    let out = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(&words[1..])
        .output()
        .unwrap();
    let rest = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rest.contains(&first) && !rest.contains(&second) && !rest.contains("more dead letters"),
        "{rest}"
    );
    let unknown = hookrelay(&config, &["dlq", "list", "--sink", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("no sink \"nope\""),
        "{}",
        stderr(&unknown)
    );

    // export: one JSON document per line, oldest first.
    let exported = ok(&config, &["export", "--source", "github"]);
    assert_no_secret(&exported);
    let ids: Vec<String> = exported
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, vec![first.clone(), second.clone()]);
    let none = ok(&config, &["export", "--to", "2000-01-01T00:00:00Z"]);
    assert_eq!(none, "");
    // A mistyped source exports nothing, and says why on stderr.
    let typo = hookrelay(&config, &["export", "--source", "githb"]);
    assert!(typo.status.success() && stdout(&typo).is_empty());
    assert!(
        stderr(&typo).contains("no source \"githb\" in the configuration"),
        "{}",
        stderr(&typo)
    );
    // The relay's own notices are the built-in source "hookrelay": exported without a word.
    let notices = hookrelay(&config, &["export", "--source", "hookrelay"]);
    assert!(notices.status.success(), "{}", stderr(&notices));
    assert!(stderr(&notices).is_empty(), "{}", stderr(&notices));
    assert!(
        stdout(&notices).contains("sink.unhealthy"),
        "{}",
        stdout(&notices)
    );
    // A reader that stops reading (`| head`) is not a failure: the pipe is closed first.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["export", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let closed = child.wait_with_output().unwrap();
    assert_eq!(closed.status.code(), Some(0), "{}", stderr(&closed));

    // replay: the sink's dead letters, then an event already queued is left as it is.
    let replayed = ok(&config, &["replay", "--sink", "receiver"]);
    assert!(replayed.contains("2 dead letter(s) queued"), "{replayed}");
    let again = ok(&config, &["replay", "--event", &first]);
    assert!(again.contains("already queued"), "{again}");
    let pending = ok(&config, &["events", "list", "--status", "pending"]);
    assert!(
        pending.contains(&first) && pending.contains(&second),
        "{pending}"
    );

    // The relay sends them at its next start, with the events' own ids.
    let relay = Relay::start_with_file(dir.path(), &config);
    let mut got = vec![
        receiver.next().await.header("webhook-id").to_string(),
        receiver.next().await.header("webhook-id").to_string(),
    ];
    got.sort();
    let mut want = vec![first.clone(), second.clone()];
    want.sort();
    assert_eq!(got, want);
    wait_for_line(&relay, &["\"delivered\"", &first]).await;
    wait_for_line(&relay, &["\"delivered\"", &second]).await;
    assert!(relay.terminate().success());

    // A time range replays delivered events too, each once more, recorded as a replay.
    let ranged = ok(&config, &["replay", "--from", "2000-01-01T00:00:00Z"]);
    assert!(
        ranged.contains("2 event(s) found, 2 delivery(ies) queued"),
        "{ranged}"
    );
    // Again, before the relay has sent them: nothing new, and it says why.
    let again = ok(&config, &["replay", "--from", "2000-01-01T00:00:00Z"]);
    assert!(
        again.contains("2 event(s) found, 0 delivery(ies) queued (2 were queued already)"),
        "{again}"
    );
    let shown: Value = serde_json::from_str(&ok(&config, &["events", "show", &second])).unwrap();
    assert_eq!(shown["deliveries"][0]["state"], "queued");
    let replays: Vec<bool> = shown["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["replay"].as_bool().unwrap())
        .collect();
    assert_eq!(replays, vec![false, true]);
}

#[test]
fn offline_commands_explain_a_missing_store_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_path(dir.path());
    std::fs::write(
        &config,
        "[storage]\npath = \"store/hookrelay.redb\"\n\n[sources.github]\nkind = \"github\"\nsecret = \"s\"\n",
    )
    .unwrap();
    let missing = hookrelay(&config, &["events", "list"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no store at"),
        "{}",
        stderr(&missing)
    );
    assert!(
        !dir.path().join("store").exists(),
        "a read never creates a store"
    );

    // An empty file (a copy cut short) is said to be one, and left as it is.
    std::fs::create_dir(dir.path().join("store")).unwrap();
    let empty = dir.path().join("store/hookrelay.redb");
    std::fs::write(&empty, b"").unwrap();
    let listed = hookrelay(&config, &["events", "list"]);
    assert_eq!(listed.status.code(), Some(1));
    assert!(
        stderr(&listed).contains("is an empty file"),
        "{}",
        stderr(&listed)
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    std::fs::remove_dir_all(dir.path().join("store")).unwrap();

    let nothing = hookrelay(&config, &["replay"]);
    assert_eq!(nothing.status.code(), Some(2));
    // Bad values are usage errors, exit 2, like clap's own; checked before the store.
    let bad_time = hookrelay(&config, &["replay", "--from", "yesterday"]);
    assert_eq!(bad_time.status.code(), Some(2));
    let backwards = hookrelay(
        &config,
        &[
            "export",
            "--from",
            "2024-05-02T00:00:00Z",
            "--to",
            "2024-05-01T00:00:00Z",
        ],
    );
    assert_eq!(backwards.status.code(), Some(2));
    assert!(
        stderr(&backwards).contains("is before --from"),
        "{}",
        stderr(&backwards)
    );
    assert_eq!(
        hookrelay(&config, &["events", "show", "nonsense"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        hookrelay(&config, &["events", "list", "--status", "bogus"])
            .status
            .code(),
        Some(2)
    );
    assert!(
        stderr(&bad_time).contains("--from \"yesterday\": expected an RFC 3339 time"),
        "{}",
        stderr(&bad_time)
    );
    for command in ["events", "dlq", "replay", "export"] {
        let help = hookrelay(&config, &[command, "--help"]);
        assert!(help.status.success());
        assert!(
            stdout(&help).contains("open the store file directly"),
            "{command} --help:\n{}",
            stdout(&help)
        );
    }
}

#[test]
fn offline_commands_need_no_secret_the_relay_needs() {
    // As after `systemctl stop`: the service's credentials folder is gone, its environment
    // too. Only the store matters here.
    let dir = tempfile::tempdir().unwrap();
    let config = config_path(dir.path());
    std::fs::write(
        &config,
        "[storage]\npath = \"store/hookrelay.redb\"\n\n\
         [sources.github]\nkind = \"github\"\nsecret = \"${file:/run/credentials/gone/github}\"\n\n\
         [sources.std]\nkind = \"standard\"\nsecret = \"${env:HOOKRELAY_TEST_OFFLINE_UNSET}\"\n\n\
         [sinks.chat]\nkind = \"slack\"\nurl = \"${env:HOOKRELAY_TEST_OFFLINE_UNSET_URL}\"\n\n\
         [[routes]]\nfrom = \"github\"\nto = [\"chat\"]\n",
    )
    .unwrap();
    let listed = hookrelay(&config, &["events", "list"]);
    assert_eq!(listed.status.code(), Some(1), "{}", stderr(&listed));
    assert!(
        stderr(&listed).contains("no store at"),
        "the config loaded and the store was looked for: {}",
        stderr(&listed)
    );
    // The relay itself still needs every secret.
    let checked = hookrelay(&config, &["check"]);
    assert_eq!(checked.status.code(), Some(2));
    assert!(
        stderr(&checked).contains("HOOKRELAY_TEST_OFFLINE_UNSET"),
        "{}",
        stderr(&checked)
    );
}

/// Two sinks, each routed its own events: pushes to `pushes`, releases to `releases` (one
/// attempt, so a refusal is a dead letter). Without `releases`, the file as an operator
/// who removed that sink would leave it.
fn two_sinks(pushes: &Receiver, releases: Option<&Receiver>) -> String {
    let mut config = format!(
        r#"
[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sinks.pushes]
kind = "webhook"
url = "{}"

[[routes]]
from = "github"
events = ["push"]
to = ["pushes"]
"#,
        pushes.url()
    );
    if let Some(releases) = releases {
        config.push_str(&format!(
            r#"
[sinks.releases]
kind = "webhook"
url = "{}"
retry = {{ max_attempts = 1, initial = "10ms", max = "20ms" }}

[[routes]]
from = "github"
events = ["release"]
to = ["releases"]
"#,
            releases.url()
        ));
    }
    config
}

#[tokio::test]
async fn a_range_replay_to_one_sink_queues_only_that_sinks_events_and_removed_sinks_keep_their_dead_letters()
 {
    let dir = tempfile::tempdir().unwrap();
    let config = config_path(dir.path());
    let mut pushes = Receiver::start().await;
    let mut releases = Receiver::with_script(vec![Answer::status(500)]).await;
    let relay = Relay::start(dir.path(), &two_sinks(&pushes, Some(&releases)));
    for delivery in ["p-1", "p-2"] {
        send(&relay, delivery).await;
        pushes.next().await;
    }
    let body = r#"{"action":"published","release":{"tag_name":"v1"}}"#;
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(GITHUB_SECRET, "release", "r-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202);
    let release = reply.id();
    releases.next().await;
    wait_for_line(&relay, &["dead-lettered", &release]).await;
    assert!(relay.terminate().success());

    // The sink removed from the file: its dead letter is still listed, by name too.
    let text = std::fs::read_to_string(&config).unwrap();
    let kept = text.split("\n[sinks.releases]").next().unwrap();
    std::fs::write(&config, kept).unwrap();
    let listed = ok(&config, &["dlq", "list"]);
    assert!(
        listed.contains("releases") && listed.contains(&release),
        "{listed}"
    );
    let named = ok(&config, &["dlq", "list", "--sink", "releases"]);
    assert!(named.contains(&release), "{named}");

    // Back in the file: a range replay to it queues the release, not the two pushes.
    std::fs::write(&config, text).unwrap();
    let ranged = ok(
        &config,
        &[
            "replay",
            "--from",
            "2000-01-01T00:00:00Z",
            "--sink",
            "releases",
        ],
    );
    assert!(
        ranged.contains("1 event(s) found, 1 delivery(ies) queued"),
        "{ranged}"
    );
}

#[test]
fn a_limit_of_zero_is_refused_as_a_command_line_error() {
    for args in [
        &["events", "list", "--limit", "0"][..],
        &["dlq", "list", "--limit", "0"][..],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("must be at least 1"), "{args:?}: {stderr}");
    }
}
