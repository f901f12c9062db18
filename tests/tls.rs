//! TLS and proxies as a site with its own CA meets them, through the real binary: a private
//! CA (made here with rcgen) signs every certificate; the receiver trusts only that CA and
//! demands a client certificate; a proxy tunnels with CONNECT; senders reach hookrelay over
//! HTTPS, and its certificate is renewed while they keep sending.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::tls::*;
use common::*;

const SECRET: &str = "tls-test-secret";

/// A GitHub source routed to one webhook sink with `sink_extra` keys.
fn config(url: &str, sink_extra: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{url}"
retry = {{ max_attempts = 3, initial = "50ms", max = "100ms" }}
{sink_extra}

[[routes]]
from = "github"
to = ["receiver"]
"#
    )
}

async fn send(url: &str, client: &reqwest::Client, delivery: &str) -> reqwest::Response {
    let body = format!("{{\"delivery\":\"{delivery}\"}}");
    let mut request = client.post(url).body(body.clone());
    for (name, value) in github_headers(SECRET, "push", delivery, body.as_bytes()) {
        request = request.header(name, value);
    }
    request.send().await.expect("request to hookrelay")
}

#[tokio::test]
async fn a_webhook_sink_with_ca_file_and_a_client_certificate_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    let client_cert = ca.issue(dir.path(), "relay-client");
    let mut receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver.url(),
            "ca_file = \"ca.pem\"\nclient_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"",
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), "mtls-1").await;
    assert_eq!(reply.status(), 202);
    let got = receiver.next().await;
    assert_eq!(&got.request.body[..], b"{\"delivery\":\"mtls-1\"}");
    assert_eq!(got.client_certificate, Some(client_cert));
    relay.wait_for_log("delivered").await;
}

#[tokio::test]
async fn the_tls_section_ca_file_is_trusted_by_every_sink() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let mut receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let relay = Relay::start(
        dir.path(),
        &format!(
            "[tls]\nca_file = \"ca.pem\"\nuse_system_roots = false\n{}",
            config(
                &receiver.url(),
                "client_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"",
            )
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), "global-ca-1").await;
    assert_eq!(reply.status(), 202);
    receiver.next().await;
}

#[tokio::test]
async fn without_ca_file_the_delivery_fails_naming_the_certificate_problem_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let relay = Relay::start(
        dir.path(),
        &config(
            &receiver.url(),
            "client_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"",
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), "no-ca-1").await;
    assert_eq!(reply.status(), 202);
    let line = relay.wait_for_log("delivery failed; will retry").await;
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(
        line.contains("ca_file in [sinks.receiver] or in [tls]"),
        "{line}"
    );
    assert!(!line.contains(&receiver.url()), "the URL leaked: {line}");
}

#[tokio::test]
async fn without_a_client_certificate_the_refusal_names_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    let receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let relay = Relay::start(dir.path(), &config(&receiver.url(), "ca_file = \"ca.pem\""));
    let reply = send(&relay.hook_url("github"), &client(), "no-client-cert-1").await;
    assert_eq!(reply.status(), 202);
    let line = relay.wait_for_log("delivery failed; will retry").await;
    assert!(
        line.contains("client_cert and client_key in [sinks.receiver]"),
        "{line}"
    );
}

#[tokio::test]
async fn a_delivery_goes_through_the_configured_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let mut receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let mut proxy = ConnectProxy::start().await;
    let relay = Relay::start_with_server(
        dir.path(),
        &format!("proxy = \"{}\"", proxy.url()),
        &config(
            &receiver.url(),
            "ca_file = \"ca.pem\"\nclient_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"",
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), "proxied-1").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(
        proxy.next_target().await,
        format!("127.0.0.1:{}", receiver.addr.port())
    );
    let got = receiver.next().await;
    assert_eq!(&got.request.body[..], b"{\"delivery\":\"proxied-1\"}");
}

/// Starts the relay with `HTTPS_PROXY` pointing at `proxy` and `NO_PROXY` set to `no_proxy`.
fn relay_behind_env_proxy(
    dir: &std::path::Path,
    proxy: &ConnectProxy,
    no_proxy: &str,
    config: &str,
) -> Relay {
    let path = dir.join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = \"store/hookrelay.redb\"\n\n{config}"
        ),
    )
    .unwrap();
    let url = proxy.url();
    Relay::start_with_file_and_env(
        dir,
        &path,
        &[
            ("HTTPS_PROXY", &url),
            ("https_proxy", &url),
            ("NO_PROXY", no_proxy),
            ("no_proxy", no_proxy),
        ],
    )
}

#[tokio::test]
async fn https_proxy_from_the_environment_is_used_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let mut receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let mut proxy = ConnectProxy::start().await;
    let relay = relay_behind_env_proxy(
        dir.path(),
        &proxy,
        "",
        &config(
            &receiver.url(),
            "ca_file = \"ca.pem\"\nclient_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"",
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), "env-proxied-1").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(
        proxy.next_target().await,
        format!("127.0.0.1:{}", receiver.addr.port())
    );
    receiver.next().await;
}

/// Sends one event through a relay whose environment names an HTTPS proxy, with `NO_PROXY`
/// set to `no_proxy` and `extra` in the sink, and checks it reached the receiver (given by
/// IP address, 127.0.0.1) without the proxy.
async fn assert_delivered_directly(no_proxy: &str, extra: &str, delivery: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let mut receiver = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    assert!(receiver.url().starts_with("https://127.0.0.1:"));
    let mut proxy = ConnectProxy::start().await;
    let relay = relay_behind_env_proxy(
        dir.path(),
        &proxy,
        no_proxy,
        &config(
            &receiver.url(),
            &format!(
                "ca_file = \"ca.pem\"\nclient_cert = \"relay-client.pem\"\nclient_key = \"relay-client.key\"\n{extra}"
            ),
        ),
    );
    let reply = send(&relay.hook_url("github"), &client(), delivery).await;
    assert_eq!(reply.status(), 202);
    receiver.next().await;
    // Through the proxy, the CONNECT would have come before the delivery could arrive.
    assert_eq!(proxy.try_target(), None);
}

#[tokio::test]
async fn proxy_none_connects_directly_whatever_the_environment_says() {
    assert_delivered_directly("", "proxy = \"none\"", "direct-1").await;
}

#[tokio::test]
async fn no_proxy_star_connects_directly_also_to_a_receiver_given_by_ip_address() {
    assert_delivered_directly("*", "", "no-proxy-star-1").await;
}

#[tokio::test]
async fn https_ingress_answers_a_signed_event_over_http2_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.issue(dir.path(), "server");
    let sink = Receiver::start().await;
    let relay = Relay::start_with_server(
        dir.path(),
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\" }",
        &config(&sink.url(), ""),
    );
    let url = relay.https_hook_url("github");
    let h2 = https_client(&[&ca.pem], None).build().unwrap();
    let reply = send(&url, &h2, "https-h2").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.version(), http::Version::HTTP_2);
    let h1 = https_client(&[&ca.pem], None).http1_only().build().unwrap();
    let reply = send(&url, &h1, "https-h1").await;
    assert_eq!(reply.status(), 202);
    assert_eq!(reply.version(), http::Version::HTTP_11);
    // A bad signature is refused over TLS as over plain HTTP.
    let reply = h1
        .post(&url)
        .header("x-github-event", "push")
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    // A sender set up with http:// for this HTTPS listener is told so in plain HTTP, and
    // the relay still serves HTTPS afterwards.
    let plain = url.replacen("https://", "http://", 1);
    let reply = reqwest::Client::new()
        .post(&plain)
        .header("x-github-event", "push")
        .body("{\"zen\":\"plain\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(
        reply.text().await.unwrap().contains("send to https://"),
        "the answer names the fix"
    );
    relay.wait_for_log("plain_http_on_https").await;
    assert_eq!(send(&url, &h1, "https-after-plain").await.status(), 202);
}

#[tokio::test]
async fn client_ca_file_makes_senders_present_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "server");
    ca.issue(dir.path(), "sender");
    let sink = Receiver::start().await;
    let relay = Relay::start_with_server(
        dir.path(),
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\", client_ca_file = \"ca.pem\" }",
        &config(&sink.url(), ""),
    );
    let url = relay.https_hook_url("github");
    let anonymous = https_client(&[&ca.pem], None).build().unwrap();
    let body = "{}";
    let mut request = anonymous.post(&url).body(body);
    for (name, value) in github_headers(SECRET, "push", "anon", body.as_bytes()) {
        request = request.header(name, value);
    }
    assert!(
        request.send().await.is_err(),
        "a sender without a certificate got in"
    );
    relay.wait_for_log("tls_handshake_failed").await;
    let identity = identity_pem(dir.path(), "sender");
    let known = https_client(&[&ca.pem], Some(&identity)).build().unwrap();
    assert_eq!(send(&url, &known, "with-cert").await.status(), 202);
}

/// Sends events over new connections (so each one sees the certificate served at that
/// moment) until told to stop; counts answers and failures.
struct Sender {
    stop: Arc<AtomicBool>,
    accepted: tokio::sync::watch::Receiver<usize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Sender {
    fn start(url: String, client: reqwest::Client) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let (count, accepted) = tokio::sync::watch::channel(0usize);
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!("{{\"n\":{n}}}");
                    let mut request = client.post(&url).body(body.clone());
                    let delivery = format!("renewal-{n}");
                    for (name, value) in github_headers(SECRET, "push", &delivery, body.as_bytes())
                    {
                        request = request.header(name, value);
                    }
                    match request.send().await {
                        Ok(r) if r.status() == 202 => count.send_modify(|n| *n += 1),
                        Ok(r) => failures.push(format!("request {n}: status {}", r.status())),
                        Err(e) => failures.push(format!("request {n}: {e:?}")),
                    }
                }
                failures
            })
        };
        Sender {
            stop,
            accepted,
            task,
        }
    }

    /// Waits until `more` further events were accepted.
    async fn wait_for(&self, more: usize) {
        let mut accepted = self.accepted.clone();
        let target = *accepted.borrow() + more;
        tokio::time::timeout(WAIT, accepted.wait_for(|n| *n >= target))
            .await
            .expect("the sender stalled")
            .expect("the sender stopped");
    }

    async fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// A relay serving `dir/server.pem` (from `old`), and a sender trusting `old` and `new`.
async fn renewal_setup(dir: &std::path::Path, old: &Ca, new: &Ca) -> (Relay, Sender, Receiver) {
    old.issue(dir, "server");
    new.issue(dir, "renewed");
    let sink = Receiver::start().await;
    let relay = Relay::start_with_server(
        dir,
        "tls = { cert_file = \"server.pem\", key_file = \"server.key\" }",
        &config(&sink.url(), ""),
    );
    // A new connection per request: each handshake shows the certificate of the moment.
    let client = https_client(&[&old.pem, &new.pem], None)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let sender = Sender::start(relay.https_hook_url("github"), client);
    sender.wait_for(3).await;
    (relay, sender, sink)
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_sighup_with_no_refused_request() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (relay, sender, _sink) = renewal_setup(dir.path(), &old, &new).await;
    let before = served_certificate(relay.addr, &[&old.pem]).await;
    renew(dir.path(), "renewed", "server");
    relay.hangup();
    relay
        .wait_for_log_with(&["reloaded the TLS certificate", "SIGHUP"])
        .await;
    let after = served_certificate(relay.addr, &[&new.pem]).await;
    assert_ne!(before, after);
    sender.wait_for(3).await;
    let failures = sender.finish().await;
    assert!(failures.is_empty(), "refused during renewal: {failures:?}");
}

#[tokio::test]
async fn a_renewed_certificate_is_picked_up_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (relay, sender, _sink) = renewal_setup(dir.path(), &old, &new).await;
    renew(dir.path(), "renewed", "server");
    relay
        .wait_for_log_with(&["reloaded the TLS certificate", "files changed"])
        .await;
    served_certificate(relay.addr, &[&new.pem]).await;
    let failures = sender.finish().await;
    assert!(failures.is_empty(), "refused during renewal: {failures:?}");
}

#[tokio::test]
async fn a_bad_new_key_keeps_the_old_certificate_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (relay, sender, _sink) = renewal_setup(dir.path(), &old, &new).await;
    // The renewed key without its certificate: a pair that does not match.
    std::fs::copy(
        dir.path().join("renewed.key"),
        dir.path().join("server.key"),
    )
    .unwrap();
    relay.hangup();
    let line = relay
        .wait_for_log_with(&["kept the current TLS certificate", "SIGHUP"])
        .await;
    assert!(line.contains("does not belong"), "{line}");
    served_certificate(relay.addr, &[&old.pem]).await;
    sender.wait_for(3).await;
    let failures = sender.finish().await;
    assert!(
        failures.is_empty(),
        "refused after a bad renewal: {failures:?}"
    );
}

/// A minimal container image (debian:stable-slim) has no CA certificates: a relay whose
/// sinks post over plain HTTP must still start and deliver, and one posting over HTTPS with
/// a `ca_file` still trusts that CA.
#[tokio::test]
async fn a_machine_without_ca_certificates_still_delivers_over_http_and_to_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let no_certificates = dir.path().join("no-certificates");
    std::fs::create_dir(&no_certificates).unwrap();
    let ca = Ca::new("Site CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(dir.path(), "receiver");
    ca.issue(dir.path(), "relay-client");
    let mut plain = Receiver::start().await;
    let mut private = TlsReceiver::start(dir.path(), "receiver", &ca.pem).await;
    let path = dir.path().join("hookrelay.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[storage]
path = "store/hookrelay.redb"

[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.plain]
kind = "webhook"
url = "{}"

[sinks.private]
kind = "webhook"
url = "{}"
ca_file = "ca.pem"
client_cert = "relay-client.pem"
client_key = "relay-client.key"

[[routes]]
from = "github"
to = ["plain", "private"]
"#,
            plain.url(),
            private.url()
        ),
    )
    .unwrap();
    let empty = no_certificates.to_str().unwrap();
    let relay = Relay::start_with_file_and_env(
        dir.path(),
        &path,
        &[
            ("SSL_CERT_FILE", "/nonexistent/ca.pem"),
            ("SSL_CERT_DIR", empty),
        ],
    );
    relay.wait_for_log("no CA certificates").await;
    let reply = send(&relay.hook_url("github"), &client(), "no-ca-1").await;
    assert_eq!(reply.status(), 202);
    plain.next().await;
    private.next().await;
}
