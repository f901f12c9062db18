//! Configuration without restarts, through the real binary: `POST /api/reload` and SIGHUP
//! read the file again; a good file runs at once (routes, sources, sinks, pauses), a bad
//! one changes nothing and is counted; a sink removed from the file keeps its queue and
//! resumes when it returns; no ingest request is refused or misrouted across a reload.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::admin::{AdminReply, admin_addr, call, wait_until};
use common::reload::{hangup_and_wait, reloads};
use common::*;
use tokio::sync::watch;

const SECRET: &str = "reload-test-github-secret";
const TOKEN: &str = "reload-test-admin-token-0123456789";

/// The parts of the test config a test changes between reloads.
#[derive(Clone)]
struct Setup {
    a: String,
    b: String,
    server: String,
    source: String,
    sink_a: String,
    /// Whether `[sinks.a]` is in the file at all.
    with_a: bool,
    to: String,
    extra: String,
    /// Routes hookrelay's own notices to `b`.
    notices_to_b: bool,
}

impl Setup {
    fn new(a: &Receiver, b: &Receiver) -> Setup {
        Setup {
            a: a.url(),
            b: b.url(),
            server: String::new(),
            source: String::new(),
            sink_a: String::new(),
            with_a: true,
            to: "\"a\"".to_string(),
            extra: String::new(),
            notices_to_b: false,
        }
    }

    fn render(&self) -> String {
        let sink_a = if self.with_a {
            format!(
                "[sinks.a]\nkind = \"webhook\"\nurl = \"{}\"\n{}\n",
                self.a, self.sink_a
            )
        } else {
            String::new()
        };
        let notices = if self.notices_to_b {
            "[[routes]]\nfrom = \"hookrelay\"\nto = [\"b\"]\n"
        } else {
            ""
        };
        format!(
            r#"[server]
listen = "127.0.0.1:0"
shutdown_timeout = "5s"
{server}

[storage]
path = "store/hookrelay.redb"

[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[sources.github]
kind = "github"
secret = "{SECRET}"
{source}

{sink_a}
[sinks.b]
kind = "webhook"
url = "{b}"

{extra}

[[routes]]
from = "github"
to = [{to}]

{notices}
"#,
            server = self.server,
            source = self.source,
            b = self.b,
            extra = self.extra,
            to = self.to,
        )
    }

    fn write(&self, path: &Path) {
        std::fs::write(path, self.render()).unwrap();
    }
}

/// Starts the relay on `setup`; returns it, its config path and its admin address.
async fn start(dir: &Path, setup: &Setup) -> (Relay, PathBuf, SocketAddr) {
    let path = dir.join("hookrelay.toml");
    setup.write(&path);
    let relay = Relay::start_with_file(dir, &path);
    let admin = admin_addr(&relay).await;
    (relay, path, admin)
}

async fn reload(admin: SocketAddr) -> AdminReply {
    call(admin, "POST", "/api/reload", Some(TOKEN)).await
}

/// Rewrites the file and reloads it through the API; the reload must succeed.
async fn reload_ok(admin: SocketAddr, path: &Path, setup: &Setup) -> serde_json::Value {
    setup.write(path);
    let reply = reload(admin).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

async fn send(relay: &Relay, delivery: &str) -> Reply {
    let body = format!("{{\"delivery\":\"{delivery}\"}}");
    post(
        &relay.hook_url("github"),
        &github_headers(SECRET, "push", delivery, body.as_bytes()),
        body,
    )
    .await
}

async fn sink_state(admin: SocketAddr, name: &str) -> serde_json::Value {
    let sinks = call(admin, "GET", "/api/sinks", Some(TOKEN)).await.json();
    sinks["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no sink {name} in {sinks}"))
}

/// One request of the load test: when it was sent, when and how it was answered.
struct Sent {
    id: String,
    status: u16,
    sent: Instant,
    answered: Instant,
}

#[tokio::test]
async fn a_route_changed_under_load_refuses_nothing_and_delivers_by_the_route_at_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Receiver::start().await;
    let mut b = Receiver::start().await;
    let mut setup = Setup::new(&a, &b);
    let (relay, path, admin) = start(dir.path(), &setup).await;
    let relay = Arc::new(relay);

    // Four senders, each one request after another, until told to stop.
    let (acked_tx, mut acked) = watch::channel(0usize);
    let acked_tx = Arc::new(acked_tx);
    let (stop_tx, stop) = watch::channel(false);
    let mut senders = Vec::new();
    for sender in 0..4 {
        let relay = relay.clone();
        let acked_tx = acked_tx.clone();
        let stop = stop.clone();
        senders.push(tokio::spawn(async move {
            let client = client();
            let mut sent = Vec::new();
            for n in 0.. {
                if *stop.borrow() {
                    break;
                }
                let delivery = format!("load-{sender}-{n}");
                let body = format!("{{\"n\":{n}}}");
                let mut request = client.post(relay.hook_url("github")).body(body.clone());
                for (name, value) in github_headers(SECRET, "push", &delivery, body.as_bytes()) {
                    request = request.header(name, value);
                }
                let started = Instant::now();
                let response = request.send().await.expect("request to hookrelay");
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                sent.push(Sent {
                    id: json["id"].as_str().unwrap_or_default().to_string(),
                    status,
                    sent: started,
                    answered: Instant::now(),
                });
                acked_tx.send_modify(|n| *n += 1);
            }
            sent
        }));
    }

    acked.wait_for(|n| *n >= 40).await.unwrap();
    setup.to = "\"b\"".to_string();
    setup.write(&path);
    let reload_started = Instant::now();
    let reply = reload(admin).await;
    let reload_ended = Instant::now();
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["routes_changed"], true, "{}", reply.text);
    let after = *acked.borrow();
    acked.wait_for(|n| *n >= after + 40).await.unwrap();
    stop_tx.send(true).unwrap();
    let mut sent = Vec::new();
    for sender in senders {
        sent.extend(sender.await.unwrap());
    }

    for s in &sent {
        assert_eq!(s.status, 202, "a request was refused during the reload");
    }
    let mut got_a = std::collections::HashSet::new();
    let mut got_b = std::collections::HashSet::new();
    while got_a.len() + got_b.len() < sent.len() {
        tokio::select! {
            r = a.next() => assert!(got_a.insert(r.header("webhook-id").to_string()), "delivered twice"),
            r = b.next() => assert!(got_b.insert(r.header("webhook-id").to_string()), "delivered twice"),
        }
    }
    let (mut before, mut later) = (0, 0);
    for s in &sent {
        let (in_a, in_b) = (got_a.contains(&s.id), got_b.contains(&s.id));
        assert!(in_a != in_b, "{} went to a: {in_a}, b: {in_b}", s.id);
        if s.answered < reload_started {
            before += 1;
            assert!(
                in_a,
                "{} was accepted before the reload but went to b",
                s.id
            );
        } else if s.sent > reload_ended {
            later += 1;
            assert!(in_b, "{} was sent after the reload but went to a", s.id);
        }
    }
    assert!(before >= 40 && later >= 1, "before {before}, after {later}");
}

#[tokio::test]
async fn a_bad_file_keeps_the_running_config_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Receiver::start().await;
    let mut b = Receiver::start().await;
    let mut setup = Setup::new(&a, &b);
    setup.notices_to_b = true;
    let (relay, path, admin) = start(dir.path(), &setup).await;

    // A route to a sink that does not exist: a validation error with its place.
    let mut bad = setup.clone();
    bad.to = "\"nope\"".to_string();
    bad.write(&path);
    let reply = reload(admin).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    let problems = reply.json()["problems"].clone();
    let first = problems[0].as_str().unwrap();
    let place = format!("{}:", path.display());
    let rest = first
        .strip_prefix(&place)
        .unwrap_or_else(|| panic!("{first:?} does not start with the file"));
    let mut parts = rest.splitn(3, ':');
    let (line, column) = (parts.next().unwrap(), parts.next().unwrap());
    assert!(
        line.parse::<u32>().is_ok() && column.parse::<u32>().is_ok(),
        "{first:?} has no line:col"
    );
    assert!(
        first.contains("routes[0].to") && first.contains("nope"),
        "{first}"
    );
    assert!(!reply.text.contains(SECRET) && !reply.text.contains(TOKEN));
    assert_eq!(reloads(admin, TOKEN, "failure").await, 1);
    assert_eq!(reloads(admin, TOKEN, "success").await, 0);
    // Operators hear of it through the notices' route.
    let notice = b.next().await;
    let notice: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
    assert_eq!(notice["type"], "config.reload_failed", "{notice}");
    assert!(
        notice["errors"][0]
            .as_str()
            .unwrap()
            .contains("routes[0].to"),
        "{notice}"
    );
    assert!(!notice.to_string().contains(SECRET), "{notice}");

    // A file that validates but whose sink cannot be built (its template does not
    // compile) is refused as a whole, and the same way on SIGHUP.
    let mut unbuildable = setup.clone();
    unbuildable.extra = format!(
        "[sinks.chat]\nkind = \"slack\"\nurl = \"{}\"\ntemplate = \"{{{{ unclosed\"\n",
        b.url()
    );
    unbuildable.to = "\"a\", \"chat\"".to_string();
    unbuildable.write(&path);
    hangup_and_wait(&relay, admin, TOKEN, "failure", 2).await;
    relay.wait_for_log("configuration reload refused").await;
    let reply = reload(admin).await;
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.text.contains("chat"), "{}", reply.text);
    let sinks = call(admin, "GET", "/api/sinks", Some(TOKEN)).await.json();
    assert_eq!(sinks["sinks"].as_array().unwrap().len(), 2, "{sinks}");

    // The running config is the first one: events still go to a.
    let id = send(&relay, "still-a").await.id();
    assert_eq!(a.next().await.header("webhook-id"), id);
    for line in relay.logs() {
        assert!(!line.contains(SECRET) && !line.contains(TOKEN), "{line}");
    }
}

#[tokio::test]
async fn a_removed_sink_keeps_its_queue_and_resumes_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Receiver::start().await;
    let b = Receiver::start().await;
    let mut setup = Setup::new(&a, &b);
    // Paused, so its queue is certain to be there when it is removed.
    setup.sink_a = "paused = true".to_string();
    let (relay, path, admin) = start(dir.path(), &setup).await;
    let mut ids = Vec::new();
    for n in 0..2 {
        let reply = send(&relay, &format!("queued-{n}")).await;
        assert_eq!(reply.status, 202);
        ids.push(reply.id());
    }

    let mut removed = setup.clone();
    removed.with_a = false;
    removed.to = "\"b\"".to_string();
    let report = reload_ok(admin, &path, &removed).await;
    assert_eq!(report["sinks"]["removed"], serde_json::json!(["a"]));
    let a_state = sink_state(admin, "a").await;
    assert_eq!(a_state["state"], "removed", "{a_state}");
    assert_eq!(a_state["queue_depth"], 2, "{a_state}");
    let metrics = call(admin, "GET", "/metrics", Some(TOKEN)).await.text;
    assert!(
        metrics.contains("hookrelay_queue_depth{sink=\"a\"} 2"),
        "{metrics}"
    );
    // The log says what the removal left behind, not only "sinks=-a".
    let stranded = relay
        .wait_for_log("holds deliveries for a sink that is not in the configuration")
        .await;
    assert!(
        stranded.contains(r#""sink":"a""#) && stranded.contains(r#""queued":2"#),
        "{stranded}"
    );

    let mut back = setup.clone();
    back.sink_a = String::new();
    let report = reload_ok(admin, &path, &back).await;
    assert_eq!(report["sinks"]["added"], serde_json::json!(["a"]));
    let mut got = vec![
        a.next().await.header("webhook-id").to_string(),
        a.next().await.header("webhook-id").to_string(),
    ];
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    wait_until(admin, "/api/sinks", TOKEN, "a's queue drained", |j| {
        j["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "a" && s["state"] == "healthy" && s["queue_depth"] == 0)
    })
    .await;
}

#[tokio::test]
async fn pause_resume_and_disable_take_effect_by_api_and_by_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Receiver::start().await;
    let b = Receiver::start().await;
    let mut setup = Setup::new(&a, &b);
    let (relay, path, admin) = start(dir.path(), &setup).await;
    let first = send(&relay, "running").await.id();
    assert_eq!(a.next().await.header("webhook-id"), first);

    setup.sink_a = "paused = true".to_string();
    let report = reload_ok(admin, &path, &setup).await;
    assert_eq!(report["sinks"]["changed"], serde_json::json!(["a"]));
    assert_eq!(sink_state(admin, "a").await["state"], "paused");
    let held = send(&relay, "held").await;
    assert_eq!(held.status, 202);
    assert_eq!(sink_state(admin, "a").await["queue_depth"], 1);

    // Resumed by SIGHUP: the held event is delivered.
    setup.sink_a = String::new();
    setup.write(&path);
    hangup_and_wait(&relay, admin, TOKEN, "success", 2).await;
    assert_eq!(a.next().await.header("webhook-id"), held.id());

    // Disabled: accepted, but nothing is queued for it.
    setup.sink_a = "enabled = false".to_string();
    reload_ok(admin, &path, &setup).await;
    assert_eq!(sink_state(admin, "a").await["state"], "disabled");
    let unqueued = send(&relay, "unqueued").await;
    assert_eq!(unqueued.status, 202);
    let event = call(
        admin,
        "GET",
        &format!("/api/events/{}", unqueued.id()),
        Some(TOKEN),
    )
    .await
    .json();
    assert_eq!(event["deliveries"], serde_json::json!([]), "{event}");
}

#[tokio::test]
async fn a_disabled_source_answers_404_and_restart_only_settings_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = Receiver::start().await;
    let b = Receiver::start().await;
    let mut setup = Setup::new(&a, &b);
    let (relay, path, admin) = start(dir.path(), &setup).await;
    assert_eq!(send(&relay, "on").await.status, 202);

    setup.source = "enabled = false".to_string();
    setup.server = "max_connections = 100".to_string();
    let report = reload_ok(admin, &path, &setup).await;
    assert_eq!(report["sources"]["changed"], serde_json::json!(["github"]));
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["[server] max_connections"])
    );
    relay.wait_for_log("take effect only after a restart").await;
    assert_eq!(send(&relay, "off").await.status, 404);

    setup.source = String::new();
    let report = reload_ok(admin, &path, &setup).await;
    // Still reported: the running value is the one from the start.
    assert_eq!(
        report["needs_restart"],
        serde_json::json!(["[server] max_connections"])
    );
    assert_eq!(send(&relay, "on-again").await.status, 202);
}
