//! Product presets through the real binary: each product's documented request is accepted
//! and a tampered one refused; each sample's summary is checked field by field by routes
//! whose `where` names every field (an event reaches the receiver only if all hold); a
//! `where` on the repository sends an upload to `releases` and nothing for `snapshots`.

mod common;

use common::presets::{self, sample};
use common::*;

const NEXUS: &str = "nexus-key";
const JFROG: &str = "jfrog-secret";
const HARBOR: &str = "Bearer harbor-token";
const GITEA: &str = "gitea-secret";
const BITBUCKET: &str = "bb-secret";

/// Five preset sources, and one sink reached only through routes that pin every summary
/// field of the sample each source sends.
fn summary_config(receiver: &Receiver) -> String {
    format!(
        r#"
[sources.nexus]
kind = "nexus"
secret = "{NEXUS}"

[sources.artifactory]
kind = "artifactory"
secret = "{JFROG}"

[sources.harbor]
kind = "harbor"
secret = "{HARBOR}"

[sources.gitea]
kind = "gitea"
secret = "{GITEA}"

[sources.bitbucket]
kind = "bitbucket"
secret = "{BITBUCKET}"

[sinks.summary]
kind = "webhook"
url = "{url}"
concurrency = 1

[[routes]]
from = "nexus"
events = ["rm:repository:component"]
to = ["summary"]
where = {{ action = "uploaded", repository = "releases", component = "demo-app", version = "1.4.2", actor = "ci-bot", path = {{ present = false }}, url = {{ present = false }}, ref = {{ present = false }} }}

[[routes]]
from = "artifactory"
events = ["artifact.deployed"]
to = ["summary"]
where = {{ action = "uploaded", repository = "libs-release-local", path = "com/example/demo-app/1.4.2/demo-app-1.4.2.jar", component = {{ present = false }}, version = {{ present = false }}, actor = {{ present = false }}, url = {{ present = false }}, ref = {{ present = false }} }}

[[routes]]
from = "harbor"
events = ["PUSH_ARTIFACT"]
to = ["summary"]
where = {{ action = "uploaded", repository = "platform/demo-app", version = "1.4.2", actor = "ci-bot", url = "harbor.example.com/platform/demo-app:1.4.2", component = {{ present = false }}, path = {{ present = false }}, ref = {{ present = false }} }}

[[routes]]
from = "gitea"
events = ["push"]
to = ["summary"]
where = {{ action = "pushed", repository = "platform/demo-app", actor = "ada", ref = "refs/heads/main", url = "https://git.example.com/platform/demo-app/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a", component = {{ present = false }}, path = {{ present = false }}, version = {{ present = false }} }}

[[routes]]
from = "bitbucket"
events = ["repo:push"]
to = ["summary"]
where = {{ action = "pushed", repository = "platform/demo-app", actor = "ada", ref = "refs/heads/main", url = "https://bitbucket.org/platform/demo-app", component = {{ present = false }}, path = {{ present = false }}, version = {{ present = false }} }}

[[routes]]
from = "bitbucket"
events = ["repo:refs_changed"]
to = ["summary"]
where = {{ action = "pushed", repository = "PLAT/demo-app", actor = "ada", ref = "refs/heads/main", url = {{ present = false }}, component = {{ present = false }}, path = {{ present = false }}, version = {{ present = false }} }}
"#,
        url = receiver.url()
    )
}

struct Case {
    source: &'static str,
    event_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

fn cases() -> Vec<Case> {
    let nexus = sample("nexus-component.json");
    let artifactory = sample("artifactory-deployed.json");
    let harbor = sample("harbor-push.json");
    let gitea = sample("gitea-push.json");
    let cloud = sample("bitbucket-cloud-push.json");
    let data_center = sample("bitbucket-dc-refs-changed.json");
    vec![
        Case {
            source: "nexus",
            event_type: "rm:repository:component",
            headers: presets::nexus(NEXUS, "rm:repository:component", "d-nexus-1", &nexus),
            body: nexus,
        },
        Case {
            source: "artifactory",
            event_type: "artifact.deployed",
            headers: presets::artifactory(JFROG, &artifactory),
            body: artifactory,
        },
        Case {
            source: "harbor",
            event_type: "PUSH_ARTIFACT",
            headers: presets::harbor(HARBOR),
            body: harbor,
        },
        Case {
            source: "gitea",
            event_type: "push",
            headers: presets::gitea(GITEA, "push", "d-gitea-1", &gitea),
            body: gitea.clone(),
        },
        Case {
            source: "gitea",
            event_type: "push",
            headers: presets::forgejo(GITEA, "push", "d-forgejo-1", &gitea),
            body: gitea,
        },
        Case {
            source: "bitbucket",
            event_type: "repo:push",
            headers: presets::bitbucket_cloud(BITBUCKET, "repo:push", "{d-bb-1}", &cloud),
            body: cloud,
        },
        Case {
            source: "bitbucket",
            event_type: "repo:refs_changed",
            headers: presets::bitbucket_data_center(
                BITBUCKET,
                "repo:refs_changed",
                "d-bbdc-1",
                &data_center,
            ),
            body: data_center,
        },
    ]
}

#[tokio::test]
async fn each_preset_accepts_its_documented_request_and_summarises_it_field_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &summary_config(&receiver));
    for case in cases() {
        let what = format!("{} {}", case.source, case.event_type);
        let reply = post(
            &relay.hook_url(case.source),
            &case.headers,
            case.body.clone(),
        )
        .await;
        assert_eq!(reply.status, 202, "{what}: {:?}", reply.json);
        // Arriving at all proves every summary field held; then it is this very event.
        let got = receiver.next().await;
        assert_eq!(got.body, case.body, "{what}");
        assert_eq!(got.header("webhook-id"), reply.id(), "{what}");
        assert_eq!(
            got.header("x-hookrelay-event-type"),
            case.event_type,
            "{what}"
        );
        assert_eq!(got.header("x-hookrelay-source"), case.source, "{what}");
    }
}

#[tokio::test]
async fn each_preset_refuses_a_tampered_body_and_a_wrong_secret() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let relay = Relay::start(dir.path(), &summary_config(&receiver));
    for case in cases() {
        let what = format!("{} {}", case.source, case.event_type);
        let url = relay.hook_url(case.source);
        // Harbor signs nothing: only its header can be wrong, and a changed body passes.
        if case.source != "harbor" {
            let mut tampered = case.body.clone();
            let at = tampered.len() / 2;
            tampered[at] ^= 0x01;
            let reply = post(&url, &case.headers, tampered).await;
            assert_eq!(reply.status, 401, "{what}: tampered body");
        }
        let wrong_secret: Vec<(&str, String)> = case
            .headers
            .iter()
            .map(|(name, value)| match *name {
                "authorization" => (*name, "Bearer not-the-token".to_string()),
                n if n.contains("signature") || n == "x-jfrog-event-auth" => {
                    (*name, value.replace(|c: char| c.is_ascii_digit(), "0"))
                }
                _ => (*name, value.clone()),
            })
            .collect();
        let reply = post(&url, &wrong_secret, case.body.clone()).await;
        assert_eq!(reply.status, 401, "{what}: wrong signature or token");
        let unsigned: Vec<(&str, String)> = case
            .headers
            .iter()
            .filter(|(name, _)| {
                !name.contains("signature")
                    && !matches!(*name, "authorization" | "x-jfrog-event-auth")
            })
            .cloned()
            .collect();
        let reply = post(&url, &unsigned, case.body.clone()).await;
        assert_eq!(reply.status, 401, "{what}: unsigned");
    }
    for line in relay.logs() {
        assert!(
            !line.contains("harbor-token"),
            "a secret reached the log: {line}"
        );
    }
}

#[tokio::test]
async fn a_where_on_the_repository_relays_uploads_to_releases_and_not_to_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut releases = Receiver::start().await;
    let mut everything = Receiver::start().await;
    let config = format!(
        r#"
[sources.nexus]
kind = "nexus"
secret = "{NEXUS}"

[sinks.releases]
kind = "webhook"
url = "{releases}"
concurrency = 1

[sinks.everything]
kind = "webhook"
url = "{everything}"
concurrency = 1

[[routes]]
from = "nexus"
events = ["rm:repository:component"]
where = {{ action = "uploaded", repository = "releases" }}
to = ["releases"]

# Event types Nexus may add later are routed by name like any other.
[[routes]]
from = "nexus"
to = ["everything"]
"#,
        releases = releases.url(),
        everything = everything.url()
    );
    let relay = Relay::start(dir.path(), &config);
    let url = relay.hook_url("nexus");
    let release_body = sample("nexus-component.json");
    let snapshot_body = String::from_utf8(release_body.clone())
        .unwrap()
        .replace("\"releases\"", "\"snapshots\"")
        .replace("1.4.2", "1.4.3-SNAPSHOT")
        .into_bytes();
    assert_ne!(snapshot_body, release_body);
    let future_body = br#"{"initiator":"admin/10.0.0.1","action":"RECONCILED"}"#.to_vec();

    // Not for `releases`: accepted, relayed to `everything` only.
    let snapshot = post(
        &url,
        &presets::nexus(NEXUS, "rm:repository:component", "d-snap", &snapshot_body),
        snapshot_body.clone(),
    )
    .await;
    assert_eq!(snapshot.status, 202, "{:?}", snapshot.json);
    let future = post(
        &url,
        &presets::nexus(NEXUS, "rm:repository:reconciled", "d-future", &future_body),
        future_body.clone(),
    )
    .await;
    assert_eq!(
        future.status, 202,
        "an unknown event type is accepted: {:?}",
        future.json
    );
    let release = post(
        &url,
        &presets::nexus(NEXUS, "rm:repository:component", "d-rel", &release_body),
        release_body.clone(),
    )
    .await;
    assert_eq!(release.status, 202, "{:?}", release.json);

    // The positive control arrives; had the snapshot been routed to `releases`, it would
    // have arrived first (one sink delivers in ingestion order at concurrency 1).
    let got = releases.next().await;
    assert_eq!(got.header("webhook-id"), release.id());
    assert_eq!(got.body, release_body);
    let all: Vec<String> = [
        everything.next().await,
        everything.next().await,
        everything.next().await,
    ]
    .iter()
    .map(|r| r.header("webhook-id").to_string())
    .collect();
    assert_eq!(all, [snapshot.id(), future.id(), release.id()]);
}

#[test]
fn every_example_config_passes_check() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .envs(
                [
                    "NEXUS_WEBHOOK_SECRET",
                    "ARTIFACTORY_WEBHOOK_SECRET",
                    "HARBOR_AUTH_HEADER",
                    "GITEA_WEBHOOK_SECRET",
                    "BITBUCKET_WEBHOOK_SECRET",
                ]
                .map(|name| (name, "example-secret")),
            )
            .envs(
                [
                    "DEPLOY_HOOK_URL",
                    "PIPELINE_HOOK_URL",
                    "SECURITY_HOOK_URL",
                    "CI_HOOK_URL",
                ]
                .map(|name| (name, "https://receiver.example.com/hook")),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(
        checked,
        ["artifactory", "bitbucket", "gitea", "harbor", "nexus"]
    );
}
