//! The `smtp` sink over TLS as a site with its own CA meets it, through the real binary
//! against a real SMTP server (`aiosmtpd`): STARTTLS required before any mail, and TLS from
//! the first byte, each with a certificate from a private CA (rcgen). With the CA (the
//! sink's `ca_file` or `[tls] ca_file`) and, where the server asks, a client certificate,
//! the mail is delivered; without them the log names the certificate problem and the key
//! that fixes it, in the HTTP sinks' words.

mod common;

use common::smtp::SmtpServer;
use common::tls::Ca;
use common::*;
use serde_json::json;

const SECRET: &str = "smtp-tls-test-secret";

/// One `smtp` sink on 127.0.0.1:`port` with `tls`, sending to `to`, plus `extra` keys.
fn sink(name: &str, port: u16, tls: &str, to: &str, extra: &str) -> String {
    format!(
        "[sinks.{name}]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{tls}\"\n\
         from = \"hookrelay <relay@example.com>\"\nto = [\"{to}\"]\n\
         retry = {{ max_attempts = 3, initial = \"50ms\", max = \"100ms\" }}\n{extra}\n"
    )
}

/// A GitHub source routed to every sink in `sinks`.
fn config(head: &str, sinks: &[String], names: &[&str]) -> String {
    let to = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{head}\n[sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n\n{}\n\
         [[routes]]\nfrom = \"github\"\nto = [{to}]\n",
        sinks.concat()
    )
}

async fn push(relay: &Relay, delivery: &str) {
    let body = json!({
        "ref": "refs/heads/main",
        "pusher": {"name": "mona"},
        "repository": {"full_name": "octo/app", "html_url": "https://github.com/octo/app"},
        "commits": [],
    })
    .to_string();
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await;
    assert_eq!(reply.status, 202);
}

#[tokio::test]
async fn starttls_delivers_with_the_site_ca_and_a_client_certificate_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "mail-server");
    ca.issue(dir.path(), "relay-client");
    let server = SmtpServer::start_tls(false, dir.path(), "mail-server", Some(&ca_file));
    let port = server.port;
    let client = "client_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"";
    let sinks = [
        sink(
            "trusted",
            port,
            "starttls",
            "team@example.com",
            &format!("ca_file = \"ca.pem\"\n{client}"),
        ),
        sink("untrusted", port, "starttls", "nobody@example.com", client),
    ];
    let relay = Relay::start(dir.path(), &config("", &sinks, &["trusted", "untrusted"]));
    push(&relay, "tls-1").await;

    let mail = server.next();
    assert_eq!(mail["rcpt_tos"], json!(["team@example.com"]));
    assert_eq!(
        mail["headers"]["subject"], "[github] push in octo/app",
        "{mail}"
    );

    let line = relay
        .wait_for_log_with(&["delivery failed", "untrusted"])
        .await;
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert!(
        line.contains("the SMTP server's certificate is not signed by a trusted certificate authority (unknown issuer)"),
        "{line}"
    );
    assert!(
        line.contains("ca_file in [sinks.untrusted] or in [tls]"),
        "{line}"
    );
}

#[tokio::test]
async fn starttls_without_the_client_certificate_the_server_demands_names_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    let ca_file = ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "mail-server");
    let server = SmtpServer::start_tls(false, dir.path(), "mail-server", Some(&ca_file));
    let sinks = [sink(
        "anonymous",
        server.port,
        "starttls",
        "team@example.com",
        "ca_file = \"ca.pem\"",
    )];
    let relay = Relay::start(dir.path(), &config("", &sinks, &["anonymous"]));
    push(&relay, "tls-2").await;
    let line = relay
        .wait_for_log_with(&["delivery failed", "anonymous"])
        .await;
    // aiosmtpd (Python's ssl) hangs up without the TLS alert that would say why.
    assert!(
        line.contains(
            "the SMTP server closed the connection during or right after the TLS handshake"
        ),
        "{line}"
    );
    assert!(
        line.contains("set client_cert and client_key in [sinks.anonymous]"),
        "{line}"
    );
}

#[tokio::test]
async fn implicit_tls_delivers_with_the_ca_of_the_tls_section() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "mail-server");
    let server = SmtpServer::start_tls(true, dir.path(), "mail-server", None);
    let sinks = [sink(
        "mail",
        server.port,
        "implicit",
        "team@example.com",
        "",
    )];
    let relay = Relay::start(
        dir.path(),
        &config("[tls]\nca_file = \"ca.pem\"\n", &sinks, &["mail"]),
    );
    push(&relay, "tls-3").await;
    let mail = server.next();
    assert_eq!(mail["rcpt_tos"], json!(["team@example.com"]));
    assert_eq!(mail["content_type"], "multipart/alternative");
}

#[tokio::test]
async fn implicit_tls_without_the_ca_is_refused_with_the_key_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.issue(dir.path(), "mail-server");
    let server = SmtpServer::start_tls(true, dir.path(), "mail-server", None);
    let sinks = [sink(
        "mail",
        server.port,
        "implicit",
        "team@example.com",
        "",
    )];
    let relay = Relay::start(dir.path(), &config("", &sinks, &["mail"]));
    push(&relay, "tls-4").await;
    let line = relay.wait_for_log_with(&["delivery failed", "mail"]).await;
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(
        line.contains("ca_file in [sinks.mail] or in [tls]"),
        "{line}"
    );
}
