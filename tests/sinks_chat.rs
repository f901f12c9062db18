//! The chat sinks through the real binary, against loopback servers that check the request
//! shape each service documents and answer as the service does: Slack's incoming webhooks
//! and `chat.postMessage`, Discord's channel webhooks, Teams Workflows webhooks; their
//! rate limits and permanent errors; and hostile event fields rendered harmlessly.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const SECRET: &str = "chat-test-secret";
/// Every field an event controls is set to this in the hostile tests.
const EVIL: &str = "<!channel> @everyone <script>x</script> [click](https://evil.example) *b*\r\nBcc: victim@example.com";

fn config(sink: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

{sink}
retry = {{ max_attempts = 3, initial = "50ms", max = "100ms" }}

[[routes]]
from = "github"
to = ["chat"]
"#
    )
}

fn push(pusher: &str, message: &str) -> String {
    json!({
        "ref": "refs/heads/main",
        "compare": "https://github.com/octo/app/compare/a...b",
        "pusher": {"name": pusher},
        "repository": {"name": "app", "full_name": "octo/app", "html_url": "https://github.com/octo/app"},
        "commits": [{"id": "0123456789abcdef", "message": message,
                     "url": "https://github.com/octo/app/commit/0123456789abcdef",
                     "author": {"name": pusher}}],
    })
    .to_string()
}

async fn send(relay: &Relay, delivery: &str, body: &str) {
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
}

fn json_of(got: &Received) -> Value {
    assert_eq!(got.method, "POST");
    assert!(
        got.header("content-type").starts_with("application/json"),
        "{:?}",
        got.headers
    );
    serde_json::from_slice(&got.body).expect("a JSON body")
}

/// Every string in a JSON document, joined: what a person could end up reading.
fn all_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(all_text).collect::<Vec<_>>().join("\n"),
        Value::Object(map) => map.values().map(all_text).collect::<Vec<_>>().join("\n"),
        _ => String::new(),
    }
}

#[tokio::test]
async fn slack_incoming_webhook_gets_text_and_blocks_with_hostile_fields_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut slack = Receiver::with_script(vec![Answer::status(200).with_body("ok")]).await;
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"slack\"\nurl = \"{}\"",
            slack.url()
        )),
    );
    send(&relay, "s-1", &push(EVIL, EVIL)).await;
    let got = slack.next().await;
    let body = json_of(&got);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("*&lt;!channel&gt; @everyone &lt;script&gt;"),
        "{text}"
    );
    assert!(
        text.contains("<https://github.com/octo/app|octo/app>"),
        "{text}"
    );
    let blocks = body["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= 50);
    for block in blocks {
        assert_eq!(block["type"], "section");
        assert_eq!(block["text"]["type"], "mrkdwn");
        assert!(block["text"]["text"].as_str().unwrap().chars().count() <= 3000);
    }
    assert_eq!(body["unfurl_links"], false);
    let everything = all_text(&body);
    assert!(!everything.contains("<!channel>"), "{everything}");
    assert!(!everything.contains("<script>"), "{everything}");
    assert!(!everything.contains("<https://evil"), "{everything}");
    relay.wait_for_log("delivered").await;
}

#[tokio::test]
async fn slack_incoming_webhook_waits_on_429_and_dead_letters_a_gone_channel() {
    let dir = tempfile::tempdir().unwrap();
    let mut slack = Receiver::with_script(vec![
        Answer::status(429).with_header("retry-after", "1"),
        Answer::status(200).with_body("ok"),
        Answer::status(404).with_body("channel_not_found"),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"slack\"\nurl = \"{}\"\nconcurrency = 1",
            slack.url()
        )),
    );
    send(&relay, "s-2", &push("mona", "one")).await;
    let first = slack.next().await;
    let second = slack.next().await;
    assert_eq!(first.body, second.body, "the retry sends the same message");
    assert!(
        second.at - first.at >= Duration::from_millis(900),
        "Retry-After: 1 was not honoured: {:?}",
        second.at - first.at
    );
    relay.wait_for_log("delivered").await;
    send(&relay, "s-3", &push("mona", "two")).await;
    slack.next().await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(line.contains("channel_not_found"), "{line}");
    assert!(!line.contains(&slack.url()), "the URL is a secret: {line}");
}

#[tokio::test]
async fn slack_web_api_posts_to_the_templated_channel_and_records_the_ts() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = Receiver::with_script(vec![
        Answer::status(200)
            .with_header("content-type", "application/json")
            .with_body(r#"{"ok":true,"channel":"C1","ts":"1700000000.000100"}"#),
        Answer::status(200)
            .with_header("retry-after", "1")
            .with_body(r#"{"ok":false,"error":"ratelimited"}"#),
        Answer::status(200).with_body(r#"{"ok":true,"ts":"1700000000.000200"}"#),
        Answer::status(200).with_body(r#"{"ok":false,"error":"not_in_channel"}"#),
    ])
    .await;
    let base = api.url().trim_end_matches("/hook").to_string();
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"slack\"\ntoken = \"xoxb-test-token\"\napi_url = \"{base}\"\n\
             channel = \"#{{{{ body.repository.name }}}}\"\nconcurrency = 1"
        )),
    );
    send(&relay, "a-1", &push("mona", "one")).await;
    let got = api.next().await;
    assert_eq!(got.path, "/chat.postMessage");
    assert_eq!(got.header("authorization"), "Bearer xoxb-test-token");
    let body = json_of(&got);
    assert_eq!(body["channel"], "#app");
    assert!(body["text"].as_str().unwrap().contains("pushed 1 commit"));
    let line = relay.wait_for_log("1700000000.000100").await;
    assert!(line.contains("delivered"), "{line}");

    // ok:false ratelimited is retried after Retry-After.
    send(&relay, "a-2", &push("mona", "two")).await;
    let limited = api.next().await;
    let again = api.next().await;
    assert!(again.at - limited.at >= Duration::from_millis(900));
    relay.wait_for_log("1700000000.000200").await;

    // ok:false not_in_channel is permanent.
    send(&relay, "a-3", &push("mona", "three")).await;
    api.next().await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(line.contains("not_in_channel"), "{line}");
    assert!(!line.contains("xoxb-test-token"), "{line}");
}

#[tokio::test]
async fn discord_gets_an_embed_that_pings_nobody_and_obeys_its_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut discord = Receiver::with_script(vec![
        Answer::status(429)
            .with_header("content-type", "application/json")
            .with_body(
                r#"{"message":"You are being rate limited.","retry_after":0.6,"global":false}"#,
            ),
        Answer::status(200)
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-reset-after", "1.0")
            .with_body(r#"{"id":"112233445566778899"}"#),
        Answer::status(204),
        Answer::status(404).with_body(r#"{"message":"Unknown Webhook","code":10015}"#),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"discord\"\nurl = \"{}\"\nusername = \"hookrelay\"\nconcurrency = 1",
            discord.url()
        )),
    );
    send(&relay, "d-1", &push(EVIL, EVIL)).await;
    let limited = discord.next().await;
    let body = json_of(&limited);
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    assert_eq!(body["username"], "hookrelay");
    let embed = &body["embeds"][0];
    let title = embed["title"].as_str().unwrap();
    assert!(title.chars().count() <= 256, "{title}");
    assert!(embed["description"].as_str().unwrap().chars().count() <= 4096);
    let everything = all_text(&body);
    assert!(everything.contains("pushed 1 commit"), "{everything}");
    assert!(!everything.contains("@everyone"), "{everything}");
    // Markdown is read in the description: there the event's text stays escaped. Discord
    // shows a title as written, escapes included, so the title holds the event's own text,
    // which is no link there.
    let description = embed["description"].as_str().unwrap();
    assert!(
        !description.contains("[click](https://evil"),
        "{description}"
    );
    assert!(!description.contains("<script>"), "{description}");
    assert!(
        title.starts_with("<!channel> @\u{200B}everyone <script>x</script> [click]"),
        "{title}"
    );
    assert_eq!(embed["url"], "https://github.com/octo/app", "{embed}");

    let delivered = discord.next().await;
    assert!(delivered.at - limited.at >= Duration::from_millis(500));
    relay.wait_for_log("112233445566778899").await;

    // The bucket was empty: the next message waits for its reset.
    send(&relay, "d-2", &push("mona", "two")).await;
    let paced = discord.next().await;
    assert!(
        paced.at - delivered.at >= Duration::from_millis(900),
        "X-RateLimit-Reset-After was not honoured: {:?}",
        paced.at - delivered.at
    );

    send(&relay, "d-3", &push("mona", "three")).await;
    discord.next().await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(line.contains("404"), "{line}");
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_in_the_workflows_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let mut teams = Receiver::with_script(vec![
        Answer::status(202),
        Answer::status(400).with_body("Bad payload"),
        Answer::status(301).with_header("location", "https://elsewhere.example/hook"),
    ])
    .await;
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"teams\"\nurl = \"{}\"\nconcurrency = 1",
            teams.url()
        )),
    );
    send(&relay, "t-1", &push(EVIL, EVIL)).await;
    let body = json_of(&teams.next().await);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["contentUrl"], Value::Null);
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(card["body"][0]["type"], "TextBlock");
    let everything = all_text(card);
    assert!(!everything.contains("[click](https://evil"), "{everything}");
    assert!(everything.contains("\\[click\\]"), "{everything}");
    relay.wait_for_log("delivered").await;

    send(&relay, "t-2", &push("mona", "two")).await;
    teams.next().await;
    let line = relay.wait_for_log("dead-lettered").await;
    assert!(
        line.contains("400") && line.contains("Bad payload"),
        "{line}"
    );

    // A moved workflow: the URL is what to fix, not the card.
    send(&relay, "t-3", &push("mona", "three")).await;
    teams.next().await;
    let line = relay.wait_for_log("301 Moved Permanently").await;
    assert!(line.contains("dead-lettered"), "{line}");
    assert!(
        line.contains("The URL redirects elsewhere: set [sinks.chat] url to the final address"),
        "{line}"
    );
}

#[tokio::test]
async fn a_broken_template_is_reported_by_check_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        "[sinks.chat]\nkind = \"slack\"\nurl = \"https://hooks.slack.example/x\"\ntemplate = \"{{ body.ref|nosuch }}\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:4:12: sinks.chat.template: ", path.display()))
            && stderr.contains("unknown filter"),
        "{stderr}"
    );
    // Worded like the config loader's own summary line.
    assert!(
        stderr.ends_with(&format!("\n\n1 error in {}\n", path.display())),
        "{stderr}"
    );
    // `serve` refuses it the same way, as a config error, before it creates a store.
    let store = dir.path().join("store");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"{}\"\n\
             [sinks.chat]\nkind = \"slack\"\nurl = \"https://hooks.slack.example/x\"\n\
             template = \"{{{{ body.ref|nosuch }}}}\"\n",
            store.join("hookrelay.redb").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sinks.chat.template"), "{stderr}");
    assert!(
        !store.exists(),
        "serve created the store before refusing the config"
    );
}

#[tokio::test]
async fn test_sink_sends_a_labelled_message_and_reports_the_sinks_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut slack = Receiver::with_script(vec![
        Answer::status(200).with_body("ok"),
        Answer::status(404).with_body("channel_not_found"),
    ])
    .await;
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[sinks.chat]\nkind = \"slack\"\nurl = \"{}\"\n",
            slack.url()
        ),
    )
    .unwrap();
    let run = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["test-sink", "chat", "--config"])
            .arg(&path)
            .output()
    };
    let ok = run().await.unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("test message delivered, status 200"),
        "{ok:?}"
    );
    let body = json_of(&slack.next().await);
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("hookrelay test message"),
        "{body}"
    );

    let refused = run().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("channel_not_found"),
        "{stderr}"
    );
    assert!(!stderr.contains(&slack.url()), "{stderr}");

    // A sink that is not in the file is a command-line error.
    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["test-sink", "chta", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("the sinks are: chat"),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn an_artifact_upload_message_names_repository_component_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut teams = Receiver::start().await;
    let relay = Relay::start(
        dir.path(),
        &format!(
            "[sources.nexus]\nkind = \"nexus\"\nsecret = \"nexus-secret\"\n\n\
             [sinks.chat]\nkind = \"teams\"\nurl = \"{}\"\n\n\
             [[routes]]\nfrom = \"nexus\"\nto = [\"chat\"]\n",
            teams.url()
        ),
    );
    let body = common::presets::sample("nexus-component.json");
    let headers =
        common::presets::nexus("nexus-secret", "rm:repository:component", "nx-up-1", &body);
    let reply = post(&relay.hook_url("nexus"), &headers, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    let card = json_of(&teams.next().await);
    let text = all_text(&card["attachments"][0]["content"]);
    // The built-in message reads the event summary that the Nexus preset derives.
    for needle in ["releases", "com.example:demo-app", "1.4.2"] {
        assert!(
            text.contains(needle),
            "{needle} missing from the message:\n{text}"
        );
    }
}

/// Regression: a line break in an event's field (here the pusher's name and the repository)
/// split the built-in message's headline, so the Discord embed title and the Teams card
/// title ended mid-sentence and the rest fell into the body as a line of its own.
#[tokio::test]
async fn regression_a_newline_in_an_event_field_does_not_split_the_headline() {
    let dir = tempfile::tempdir().unwrap();
    let mut discord = Receiver::with_script(vec![Answer::status(204)]).await;
    let relay = Relay::start(
        dir.path(),
        &config(&format!(
            "[sinks.chat]\nkind = \"discord\"\nurl = \"{}\"",
            discord.url()
        )),
    );
    let body = json!({
        "ref": "refs/heads/main",
        "pusher": {"name": "mona\nlisa"},
        "repository": {"full_name": "octo/app\r\n\u{2028}fake line", "html_url": "https://github.com/octo/app"},
        "commits": [],
    })
    .to_string();
    send(&relay, "nl-1", &body).await;
    let embed = json_of(&discord.next().await)["embeds"][0].clone();
    let title = embed["title"].as_str().unwrap();
    assert_eq!(
        title, "mona lisa pushed 0 commits to main of octo/app fake line",
        "{embed}"
    );
    assert_eq!(embed["url"], "https://github.com/octo/app", "{embed}");
    let description = embed["description"].as_str().unwrap_or("");
    assert!(!description.contains("fake line"), "{embed}");
}
