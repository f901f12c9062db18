//! Requests shaped as each product sends them: its sample bodies (`tests/fixtures/presets/`)
//! and its headers, signed as its documentation describes.

use hmac::{Hmac, KeyInit, Mac};

/// A sample body from `tests/fixtures/presets/`.
pub fn sample(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/presets/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn hex_mac<M: Mac + KeyInit>(secret: &str, body: &[u8]) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Nexus: `X-Nexus-Webhook-Signature`, hex HMAC-SHA1; type and delivery in headers.
pub fn nexus(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json; charset=UTF-8".into()),
        ("x-nexus-webhook-id", event.into()),
        ("x-nexus-webhook-delivery", delivery.into()),
        (
            "x-nexus-webhook-signature",
            hex_mac::<Hmac<sha1::Sha1>>(secret, body),
        ),
    ]
}

/// Artifactory with payload signing: `X-JFrog-Event-Auth`, hex HMAC-SHA256.
pub fn artifactory(secret: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        (
            "x-jfrog-event-auth",
            hex_mac::<Hmac<sha2::Sha256>>(secret, body),
        ),
    ]
}

/// Harbor: the policy's auth header value, verbatim, in `Authorization`.
pub fn harbor(auth_header: &str) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("authorization", auth_header.into()),
    ]
}

/// Gitea: bare hex HMAC-SHA256 in `X-Gitea-Signature`, with the Gogs copies Gitea also sends.
pub fn gitea(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let signature = hex_mac::<Hmac<sha2::Sha256>>(secret, body);
    vec![
        ("content-type", "application/json".into()),
        ("x-gitea-event", event.into()),
        ("x-gitea-event-type", event.into()),
        ("x-gitea-delivery", delivery.into()),
        ("x-gitea-signature", signature.clone()),
        ("x-gogs-event", event.into()),
        ("x-gogs-delivery", delivery.into()),
        ("x-gogs-signature", signature),
    ]
}

/// Forgejo: its own headers beside the Gitea ones.
pub fn forgejo(
    secret: &str,
    event: &str,
    delivery: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let signature = hex_mac::<Hmac<sha2::Sha256>>(secret, body);
    let mut headers = gitea(secret, event, delivery, body);
    headers.extend([
        ("x-forgejo-event", event.to_string()),
        ("x-forgejo-event-type", event.to_string()),
        ("x-forgejo-delivery", delivery.to_string()),
        ("x-forgejo-signature", signature),
    ]);
    headers
}

/// Bitbucket Cloud: `X-Hub-Signature: sha256=<hex>`, `X-Event-Key`, `X-Request-UUID`.
pub fn bitbucket_cloud(
    secret: &str,
    event: &str,
    request: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("x-event-key", event.into()),
        (
            "x-hook-uuid",
            "{0b7e7a94-27a1-4e4c-8a07-b0d1c4d0a1f2}".into(),
        ),
        ("x-request-uuid", request.into()),
        ("x-attempt-number", "1".into()),
        (
            "x-hub-signature",
            format!("sha256={}", hex_mac::<Hmac<sha2::Sha256>>(secret, body)),
        ),
    ]
}

/// Bitbucket Data Center: `X-Hub-Signature: sha256=<hex>`, `X-Event-Key`, `X-Request-Id`.
pub fn bitbucket_data_center(
    secret: &str,
    event: &str,
    request: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json; charset=utf-8".into()),
        ("x-event-key", event.into()),
        ("x-request-id", request.into()),
        (
            "x-hub-signature",
            format!("sha256={}", hex_mac::<Hmac<sha2::Sha256>>(secret, body)),
        ),
    ]
}
