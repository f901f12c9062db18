//! The `smtp` sink through the real binary against a real SMTP server (`aiosmtpd`): the
//! mail's headers and both parts, CRLF line endings, a hostile event that tries to add a
//! `Bcc:` header or markup, a permanent 550 that dead-letters, a transient 451 that retries.

mod common;

use common::smtp::SmtpServer;
use common::*;
use serde_json::json;

const SECRET: &str = "smtp-test-secret";

fn config(port: u16) -> String {
    let sink = |name: &str, to: &str| {
        format!(
            "[sinks.{name}]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"hookrelay <relay@example.com>\"\nto = [\"{to}\"]\n\
             retry = {{ max_attempts = 3, initial = \"50ms\", max = \"100ms\" }}\n"
        )
    };
    format!(
        "[sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n\n{}\n{}\n{}\n\
         [[routes]]\nfrom = \"github\"\nto = [\"mail\", \"mail-reject\", \"mail-busy\"]\n",
        sink("mail", "Team <team@example.com>"),
        sink("mail-reject", "reject@example.com"),
        sink("mail-busy", "busy@example.com"),
    )
}

#[tokio::test]
async fn a_mail_has_both_parts_and_hostile_fields_cannot_add_headers_or_markup() {
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path(), &config(server.port));
    let evil = "mona\r\nBcc: victim@example.com <script>alert(1)</script>";
    let body = json!({
        "ref": "refs/heads/main",
        "compare": "https://github.com/octo/app/compare/a...b",
        "pusher": {"name": evil},
        "repository": {"full_name": format!("octo/app\r\nBcc: victim@example.com"), "html_url": "https://github.com/octo/app"},
        "commits": [{"id": "0123456789abcdef", "message": "Fix <b>it</b>",
                     "url": "https://github.com/octo/app/commit/0123456789abcdef",
                     "author": {"name": "Mona"}}],
    })
    .to_string();
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "m-1", body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202);
    let event_id = reply.id();

    // The good sink's mail, and the busy one's after its 451.
    let mut mails = [server.next(), server.next()];
    mails.sort_by_key(|m| m["rcpt_tos"][0].as_str().unwrap_or("").to_string());
    let (busy, mail) = (&mails[0], &mails[1]);
    assert_eq!(busy["rcpt_tos"], json!(["busy@example.com"]));
    assert_eq!(
        mail["rcpt_tos"],
        json!(["team@example.com"]),
        "no Bcc recipient"
    );
    assert_eq!(mail["mail_from"], "relay@example.com");

    let headers = &mail["headers"];
    assert_eq!(headers["from"], "hookrelay <relay@example.com>");
    assert_eq!(headers["to"], "Team <team@example.com>");
    assert_eq!(
        headers["message-id"],
        format!("<{event_id}.mail@example.com>"),
        "the Message-ID is stable per event and sink"
    );
    assert_eq!(
        busy["headers"]["message-id"],
        format!("<{event_id}.mail-busy@example.com>"),
        "another sink's mail of the same event is another message"
    );
    assert_eq!(
        headers["auto-submitted"], "auto-generated",
        "out-of-office responders leave it alone"
    );
    let names: Vec<&str> = mail["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(!names.contains(&"bcc"), "{names:?}");
    let subject = headers["subject"].as_str().unwrap();
    assert_eq!(
        subject, "[github] push in octo/app Bcc: victim@example.com",
        "the subject is one line"
    );
    assert_eq!(mail["content_type"], "multipart/alternative");
    assert_eq!(mail["crlf_only"], true, "every line ends with CRLF");

    let text = mail["parts"]["text/plain"].as_str().unwrap();
    assert!(
        text.contains("pushed 1 commit to main of octo/app"),
        "{text}"
    );
    assert!(
        text.contains("Fix <b>it</b>"),
        "plain text shows the text as is: {text}"
    );
    let html = mail["parts"]["text/html"].as_str().unwrap();
    assert!(
        html.contains("<a href=\"https://github.com/octo/app\">"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script"),
        "{html}"
    );
    assert!(html.contains("Fix &lt;b&gt;it&lt;/b&gt;"), "{html}");

    let line = relay.wait_for_log("dead-lettered").await;
    assert!(
        line.contains("mail-reject") && line.contains("550"),
        "{line}"
    );
}

/// One `smtp` sink `mail` to the recipients `to`, tried `max_attempts` times, that every
/// `github` event goes to.
fn one_mail_sink(port: u16, to: &[&str], max_attempts: u32) -> String {
    format!(
        "[sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n\n\
         [sinks.mail]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"hookrelay <relay@example.com>\"\nto = {to:?}\n\
         retry = {{ max_attempts = {max_attempts}, initial = \"50ms\", max = \"100ms\" }}\n\n\
         [[routes]]\nfrom = \"github\"\nto = [\"mail\"]\n"
    )
}

/// Posts a signed `ping` with delivery id `delivery`, and checks it is accepted.
async fn send_ping(relay: &Relay, delivery: &str, zen: &str) {
    let body = format!("{{\"zen\":\"{zen}\"}}");
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "ping", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202);
}

#[tokio::test]
async fn one_refused_recipient_does_not_stop_the_mail_for_the_others() {
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &one_mail_sink(
            server.port,
            &["ops@example.com", "reject@example.com", "dev@example.com"],
            1,
        ),
    );
    send_ping(&relay, "m-mixed", "mixed recipients").await;
    // One transaction per recipient once the list was refused: the two good ones get it.
    let mut got = [server.next(), server.next()];
    got.sort_by_key(|m| m["rcpt_tos"][0].as_str().unwrap_or("").to_string());
    assert_eq!(got[0]["rcpt_tos"], json!(["dev@example.com"]));
    assert_eq!(got[1]["rcpt_tos"], json!(["ops@example.com"]));
    // Every copy still names all three in To:, as the one mail would have.
    assert!(
        got[0]["headers"]["to"]
            .as_str()
            .unwrap()
            .contains("reject@example.com")
    );
    let refused = relay.wait_for_log("refused some recipients for good").await;
    assert!(
        refused.contains("reject@example.com") && refused.contains("550"),
        "{refused}"
    );
    relay.wait_for_log("\"delivered\"").await;
}

#[tokio::test]
async fn a_full_mailbox_does_not_hold_the_mail_back_from_the_others() {
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &one_mail_sink(server.port, &["ops@example.com", "full@example.com"], 3),
    );
    send_ping(&relay, "m-full", "full mailbox").await;
    // Before, a 452 for one address failed the whole transaction on every attempt, and the
    // mail was dead-lettered without reaching anyone.
    assert_eq!(server.next()["rcpt_tos"], json!(["ops@example.com"]));
    // The full mailbox is retried alone until the attempts run out; the dead letter names
    // who never got the mail, and ops gets no second copy.
    let dead = relay.wait_for_log("dead-lettered").await;
    assert!(
        dead.contains("gave up after 3 attempts")
            && dead.contains("refused the mail for now to full@example.com")
            && dead.contains("452")
            && dead.contains("the other recipients have it")
            && !dead.contains("ops@example.com"),
        "{dead}"
    );
    assert!(
        server.try_next().is_none(),
        "a retry sent ops@example.com another copy"
    );
}

#[tokio::test]
async fn a_retry_after_a_temporary_refusal_goes_to_that_recipient_only() {
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(
        dir.path(),
        &one_mail_sink(
            server.port,
            &[
                "ops@example.com",
                "greylist@example.com",
                "reject@example.com",
            ],
            3,
        ),
    );
    send_ping(&relay, "m-busy", "greylisted").await;
    // First attempt: ops takes it, greylist answers 450, reject 550 (always).
    assert_eq!(server.next()["rcpt_tos"], json!(["ops@example.com"]));
    // The retry goes to greylist alone: not ops again, and not reject, refused for good.
    let second = server.next();
    assert_eq!(second["rcpt_tos"], json!(["greylist@example.com"]));
    assert!(
        second["headers"]["to"]
            .as_str()
            .unwrap()
            .contains("ops@example.com"),
        "the retried copy still names everyone in To:"
    );
    relay.wait_for_log("\"delivered\"").await;
    let logs = relay.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("refused some recipients for good")
                && l.contains("reject@example.com")),
        "{logs:#?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("for now to greylist@example.com") && l.contains("450")),
        "{logs:#?}"
    );
    assert!(server.try_next().is_none(), "one copy per recipient");
}

#[test]
fn test_sink_names_a_refused_recipient_while_the_others_get_the_test_mail() {
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[sinks.mail]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"relay@example.com\"\nto = [\"ops@example.com\", \"reject@example.com\"]\n",
            server.port
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
        .args(["test-sink", "mail", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("test message delivered"));
    // Before, nothing said that one recipient did not get it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused some recipients for good")
            && stderr.contains("reject@example.com"),
        "{stderr}"
    );
    assert_eq!(server.next()["rcpt_tos"], json!(["ops@example.com"]));
}
