//! Every verification scheme through the real server: the good request is accepted and
//! delivered with its event type; bad ones get 401 (or 400 for a body that must be JSON).

mod common;

use common::*;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_WHSEC: &str = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBmb3IgdGVzdHM=";

fn config(receiver: &Receiver) -> String {
    format!(
        r#"
[sources.gitlab]
kind = "gitlab"
token = ["old-token", "gitlab-token"]
signing_token = "{WHSEC}"

[sources.gitlab-plain]
kind = "gitlab"
token = "plain-token"

[sources.standard]
kind = "standard"
secret = ["{OTHER_WHSEC}", "{WHSEC}"]
tolerance = "5m"

[sources.nexus]
kind = "hmac"
header = "X-Nexus-Webhook-Signature"
algorithm = "sha1"
encoding = "hex"
secret = "nexus-secret"
event_type = {{ header = "X-Nexus-Webhook-Id" }}
delivery_id = {{ header = "X-Nexus-Webhook-Delivery" }}

[sources.prefixed]
kind = "hmac"
header = "X-Signature"
algorithm = "sha512"
encoding = "base64"
prefix = "sha512="
secret = "prefixed-secret"
event_type = {{ pointer = "/event/kind" }}
delivery_id = {{ pointer = "/id" }}

[sources.token]
kind = "token"
header = "X-Api-Token"
secret = "token-secret"

[sources.open]
kind = "none"
event_type = {{ pointer = "/type" }}

[sinks.receiver]
kind = "webhook"
url = "{}"
concurrency = 1

[[routes]]
from = ["gitlab", "gitlab-plain", "standard", "nexus", "prefixed", "token", "open"]
to = ["receiver"]
"#,
        receiver.url()
    )
}

fn hmac_hex_sha1(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn hmac_b64_sha512(secret: &str, body: &[u8]) -> String {
    use base64::Engine;
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn with(
    mut headers: Vec<(&'static str, String)>,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    headers.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
    headers
}

#[tokio::test]
async fn gitlab_needs_its_token_and_its_signature_when_both_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let url = relay.hook_url("gitlab");
    let body = b"{\"object_kind\":\"push\"}";
    let now = unix_now();
    let signed = standard_headers(WHSEC, "idem-1", now, body);
    let good = with(
        signed.clone(),
        &[
            ("x-gitlab-token", "gitlab-token"),
            ("x-gitlab-event", "Push Hook"),
            ("idempotency-key", "idem-1"),
        ],
    );
    let reply = post(&url, &good, &body[..]).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    let got = receiver.next().await;
    assert_eq!(got.header("x-hookrelay-event-type"), "Push Hook");
    assert!(
        got.headers.get("x-gitlab-token").is_none(),
        "the token is never forwarded"
    );

    let wrong_token = with(
        signed.clone(),
        &[("x-gitlab-token", "nope"), ("x-gitlab-event", "Push Hook")],
    );
    assert_eq!(post(&url, &wrong_token, &body[..]).await.status, 401);
    let unsigned = vec![("x-gitlab-token", "gitlab-token".to_string())];
    assert_eq!(post(&url, &unsigned, &body[..]).await.status, 401);
    let tampered = with(signed, &[("x-gitlab-token", "gitlab-token")]);
    assert_eq!(
        post(&url, &tampered, &b"{\"object_kind\":\"tag\"}"[..])
            .await
            .status,
        401
    );

    // Token only: the rotated-out token still works while it is listed.
    let plain = relay.hook_url("gitlab-plain");
    let ok = post(
        &plain,
        &[
            ("x-gitlab-token", "plain-token".into()),
            ("x-gitlab-event", "Tag Push Hook".into()),
        ],
        "{}",
    )
    .await;
    assert_eq!(ok.status, 202);
    assert_eq!(
        receiver.next().await.header("x-hookrelay-event-type"),
        "Tag Push Hook"
    );
}

#[tokio::test]
async fn standard_webhooks_accepts_any_listed_key_and_refuses_stale_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let url = relay.hook_url("standard");
    let body = b"{\"type\":\"invoice.paid\",\"data\":{}}";
    let reply = post(
        &url,
        &standard_headers(WHSEC, "msg_1", unix_now(), body),
        &body[..],
    )
    .await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    assert_eq!(
        receiver.next().await.header("x-hookrelay-event-type"),
        "invoice.paid"
    );

    let stale = post(
        &url,
        &standard_headers(WHSEC, "msg_2", unix_now() - 600, body),
        &body[..],
    )
    .await;
    assert_eq!(stale.status, 401);
    let future = post(
        &url,
        &standard_headers(WHSEC, "msg_3", unix_now() + 600, body),
        &body[..],
    )
    .await;
    assert_eq!(future.status, 401);
    let unknown_key = "whsec_c29tZSBvdGhlciBrZXkgbm9ib2R5IGNvbmZpZ3VyZWQ=";
    let wrong = post(
        &url,
        &standard_headers(unknown_key, "msg_4", unix_now(), body),
        &body[..],
    )
    .await;
    assert_eq!(wrong.status, 401);
    let not_json = b"type=invoice.paid";
    let bad_json = post(
        &url,
        &standard_headers(WHSEC, "msg_5", unix_now(), not_json),
        &not_json[..],
    )
    .await;
    assert_eq!(bad_json.status, 400);
}

#[tokio::test]
async fn hmac_sources_read_signature_event_and_delivery_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));

    let body = b"{\"repositoryName\":\"maven-releases\"}";
    let nexus = vec![
        (
            "x-nexus-webhook-signature",
            hmac_hex_sha1("nexus-secret", body),
        ),
        ("x-nexus-webhook-id", "rm:repository:component".to_string()),
        ("x-nexus-webhook-delivery", "nx-1".to_string()),
    ];
    let first = post(&relay.hook_url("nexus"), &nexus, &body[..]).await;
    assert_eq!(first.status, 202, "{:?}", first.json);
    assert_eq!(
        receiver.next().await.header("x-hookrelay-event-type"),
        "rm:repository:component"
    );
    let again = post(&relay.hook_url("nexus"), &nexus, &body[..]).await;
    assert_eq!(again.status, 200, "the delivery header drives dedup");

    let mut bad = nexus.clone();
    bad[0].1 = hmac_hex_sha1("wrong", body);
    assert_eq!(
        post(&relay.hook_url("nexus"), &bad, &body[..]).await.status,
        401
    );

    let body = b"{\"id\":42,\"event\":{\"kind\":\"artifact.uploaded\"}}";
    let prefixed = vec![(
        "x-signature",
        format!("sha512={}", hmac_b64_sha512("prefixed-secret", body)),
    )];
    let reply = post(&relay.hook_url("prefixed"), &prefixed, &body[..]).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    assert_eq!(
        receiver.next().await.header("x-hookrelay-event-type"),
        "artifact.uploaded"
    );
    assert_eq!(
        post(&relay.hook_url("prefixed"), &prefixed, &body[..])
            .await
            .status,
        200,
        "JSON id 42 drives dedup"
    );
    let unprefixed = vec![("x-signature", hmac_b64_sha512("prefixed-secret", body))];
    assert_eq!(
        post(&relay.hook_url("prefixed"), &unprefixed, &body[..])
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn token_and_none_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &config(&receiver));
    let ok = post(
        &relay.hook_url("token"),
        &[("x-api-token", "token-secret".into())],
        "{\"t\":1}",
    )
    .await;
    assert_eq!(ok.status, 202);
    let got = receiver.next().await;
    assert_eq!(&got.body[..], b"{\"t\":1}");
    assert!(got.headers.get("x-api-token").is_none());
    assert_eq!(
        post(
            &relay.hook_url("token"),
            &[("x-api-token", "token-secre".into())],
            "{}"
        )
        .await
        .status,
        401
    );
    assert_eq!(post(&relay.hook_url("token"), &[], "{}").await.status, 401);

    let open = post(&relay.hook_url("open"), &[], "{\"type\":\"ping\"}").await;
    assert_eq!(open.status, 202);
    assert_eq!(
        receiver.next().await.header("x-hookrelay-event-type"),
        "ping"
    );
    relay.wait_for_log("NOT verified").await;
    let logs = relay.logs().join("\n");
    for secret in [
        "token-secret",
        "nexus-secret",
        "gitlab-token",
        "prefixed-secret",
    ] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}
