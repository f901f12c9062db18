//! The nats sink's credentials and TLS against a real `nats-server -js` that demands them:
//! user and password, token, NKey seed, creds file (an operator-mode server with JWTs made
//! here), and TLS with a private CA. Each relay has two sinks on the same stream: `good`
//! holds the right credential and delivers; `bad` holds a wrong one and is refused with an
//! error that names the sink and the key to fix, and never the secret.

mod common;

use std::path::Path;

use async_nats::ConnectOptions;
use async_nats::jetstream::{consumer, stream};
use common::nats::{NatsServer, jwt};
use common::tls::Ca;
use common::*;
use futures_util::StreamExt as _;

const SECRET: &str = "nats-auth-secret";

/// The relay's config: the `good` and `bad` sinks, each with its own credential keys.
fn config(url: &str, good: &str, bad: &str) -> String {
    format!(
        r#"
[sources.github]
kind = "github"
secret = "{SECRET}"

[sinks.good]
kind = "nats"
url = "{url}"
subject = "hooks.{{{{ source }}}}"
timeout = "5s"
{good}

[sinks.bad]
kind = "nats"
url = "{url}"
subject = "hooks.{{{{ source }}}}"
timeout = "5s"
retry = {{ max_attempts = 1 }}
{bad}

[[routes]]
from = "github"
to = ["good", "bad"]
"#
    )
}

/// Starts the relay, sends one event, and checks that `good` put it in the stream and that
/// `bad` was refused with an error containing every one of `needles`. `secrets` must
/// appear in no log line.
async fn check(
    dir: &Path,
    nats: &NatsServer,
    client: ConnectOptions,
    sinks: (&str, &str),
    needles: &[&str],
    secrets: &[&str],
) {
    let js = nats.jetstream_with(client).await;
    let hooks = js
        .create_stream(stream::Config {
            name: "HOOKS".to_string(),
            subjects: vec!["hooks.>".to_string()],
            ..Default::default()
        })
        .await
        .unwrap();
    let relay = Relay::start(dir, &config(&nats.url, sinks.0, sinks.1));
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let reply = post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", "auth-1", body),
        body.to_vec(),
    )
    .await;
    assert_eq!(reply.status, 202);
    let id = reply.id();

    let consumer = hooks
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, consumer.messages().await.unwrap().next())
        .await
        .expect("the good sink's message reached the stream")
        .unwrap()
        .unwrap();
    assert_eq!(message.payload.as_ref(), body);
    let headers = message.headers.as_ref().unwrap();
    assert_eq!(headers.get("Hookrelay-Event-Id").unwrap().as_str(), id);
    relay
        .wait_for_log_with(&["\"sink\":\"good\"", "delivered"])
        .await;

    let refused = relay
        .wait_for_log_with(&["\"sink\":\"bad\"", "dead-lettered"])
        .await;
    for needle in needles {
        assert!(refused.contains(needle), "{needle:?} not in {refused}");
    }
    for line in relay.logs() {
        for secret in secrets {
            assert!(
                !line.contains(secret),
                "a log line shows {secret:?}: {line}"
            );
        }
    }
}

#[tokio::test]
async fn username_and_password() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        r#"authorization { users = [ { user: "hookrelay", password: "right-password-1" } ] }"#,
        "nats",
    );
    check(
        dir.path(),
        &nats,
        ConnectOptions::with_user_and_password("hookrelay".into(), "right-password-1".into()),
        (
            "username = \"hookrelay\"\npassword = \"right-password-1\"",
            "username = \"hookrelay\"\npassword = \"wrong-password-2\"",
        ),
        &["[sinks.bad] username and password", "refused"],
        &["right-password-1", "wrong-password-2"],
    )
    .await;
}

#[tokio::test]
async fn token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nats-token"), "right-token-1\n").unwrap();
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        r#"authorization { token: "right-token-1" }"#,
        "nats",
    );
    check(
        dir.path(),
        &nats,
        ConnectOptions::with_token("right-token-1".into()),
        (
            // A token from a file ends with a line break, which is not part of it.
            "token = \"${file:nats-token}\"",
            "token = \"wrong-token-2\"",
        ),
        &["[sinks.bad] token", "refused"],
        &["right-token-1", "wrong-token-2"],
    )
    .await;
}

#[tokio::test]
async fn nkey_seed() {
    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let wrong = stranger.seed().unwrap();
    std::fs::write(dir.path().join("user.nk"), format!("{seed}\n")).unwrap();
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        &format!(
            r#"authorization {{ users = [ {{ nkey: "{}" }} ] }}"#,
            user.public_key()
        ),
        "nats",
    );
    check(
        dir.path(),
        &nats,
        ConnectOptions::with_nkey(seed.clone()),
        ("nkey = \"${file:user.nk}\"", &format!("nkey = \"{wrong}\"")),
        &["[sinks.bad] nkey", "refused"],
        &[&seed, &wrong],
    )
    .await;
}

#[tokio::test]
async fn creds_file() {
    let dir = tempfile::tempdir().unwrap();
    let operator = jwt::Operator::new();
    let account = operator.account();
    let user = account.user();
    // A user of another account the server does not know.
    let stranger = jwt::Operator::new().account().user();
    std::fs::write(dir.path().join("good.creds"), user.creds()).unwrap();
    std::fs::write(dir.path().join("bad.creds"), stranger.creds()).unwrap();
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        &operator.server_config(&account),
        "nats",
    );
    check(
        dir.path(),
        &nats,
        ConnectOptions::with_credentials(&user.creds()).unwrap(),
        ("creds_file = \"good.creds\"", "creds_file = \"bad.creds\""),
        &["[sinks.bad] creds_file", "refused"],
        &[&user.seed(), &stranger.seed()],
    )
    .await;
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let ca = Ca::new("hookrelay test NATS CA");
    ca.write(&dir.path().join("ca.pem"));
    ca.issue(&certs, "nats");
    Ca::new("some other CA").write(&dir.path().join("other-ca.pem"));
    let nats = NatsServer::start_with(
        &dir.path().join("nats"),
        &format!(
            "tls {{ cert_file: {:?}, key_file: {:?} }}",
            certs.join("nats.pem"),
            certs.join("nats.key")
        ),
        "tls",
    );
    common::tls::install_provider();
    check(
        dir.path(),
        &nats,
        ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(dir.path().join("ca.pem")),
        ("ca_file = \"ca.pem\"", "ca_file = \"other-ca.pem\""),
        &["unknown issuer", "ca_file in [sinks.bad]"],
        &[],
    )
    .await;
}
