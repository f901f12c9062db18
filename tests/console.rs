//! The web console as an operator meets it: the real relay with an admin listener, and
//! Debian's headless Chromium driven over the DevTools Protocol (`common::browser`).
//!
//! An event fails at its sink until it is dead-lettered; the operator types the token, sees
//! the event dead-lettered, presses Replay once the sink answers again, and sees it
//! delivered, all without reloading the page. A payload full of markup shows as text and
//! runs nothing. The console's files load without the token, with strict headers, while the
//! API still needs it.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::admin::{admin_addr, call};
use common::browser::{Browser, js_string};
use common::*;

const GITHUB_SECRET: &str = "console-test-github-secret";
const ADMIN_TOKEN: &str = "console-test-token-0123456789abcdef";

/// The relay with an admin listener, a GitHub source, and one webhook sink at `receiver`
/// that gives up after two quick attempts.
async fn start(dir: &Path, receiver: &Receiver) -> (Relay, SocketAddr) {
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:0"
token = "{ADMIN_TOKEN}"

[sources.github]
kind = "github"
secret = "{GITHUB_SECRET}"

[sinks.receiver]
kind = "webhook"
url = "{}"
retry = {{ max_attempts = 2, initial = "10ms", max = "20ms" }}

[[routes]]
from = "github"
to = ["receiver"]
"#,
        receiver.url()
    );
    let relay = Relay::start(dir, &config);
    let addr = admin_addr(&relay).await;
    (relay, addr)
}

async fn send_github(relay: &Relay, headers: &[(&'static str, String)], body: &str) -> String {
    let mut all = github_headers(GITHUB_SECRET, "push", "unused", body.as_bytes());
    for (name, value) in headers {
        all.retain(|(n, _)| n != name);
        all.push((name, value.clone()));
    }
    let reply = post(&relay.hook_url("github"), &all, body).await;
    assert_eq!(reply.status, 202, "{:?}", reply.json);
    reply.id()
}

/// Opens the console and signs in with `token` as an operator would: type, press the button.
async fn sign_in(browser: &mut Browser, admin: SocketAddr, token: &str) {
    browser.navigate(&format!("http://{admin}/")).await;
    browser
        .wait_for(
            "the console asks for the token",
            "!document.getElementById('login').hidden",
        )
        .await;
    browser.type_into("#token", token);
    browser.click("#login-submit");
}

/// An expression: the status cell of the event `id`'s row in the events list, when that
/// row's status is `status`.
fn event_row_status(id: &str, status: &str) -> String {
    format!(
        "(() => {{ const row = document.querySelector({}); \
         return row && row.dataset.status === {} ? row.querySelector('.status').textContent : null; }})()",
        js_string(&format!("#events tr[data-id='{id}']")),
        js_string(status)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replays_a_dead_letter_from_the_console_and_sees_it_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // The sink fails twice (the event's whole retry budget), then answers 204 for good.
    let mut receiver = Receiver::with_script(vec![Answer::status(503), Answer::status(503)]).await;
    let (relay, admin) = start(dir.path(), &receiver).await;
    let id = send_github(
        &relay,
        &[("x-github-delivery", "console-1".into())],
        "{\"ref\":\"refs/heads/main\"}",
    )
    .await;
    for _ in 0..2 {
        assert_eq!(receiver.next().await.header("webhook-id"), id);
    }

    let mut browser = Browser::launch();
    // A wrong token is refused, and the console asks again.
    sign_in(&mut browser, admin, "not-the-token-0123456789abcdef").await;
    let refused = browser
        .wait_for(
            "the console says the token was refused",
            "!document.getElementById('login').hidden && document.getElementById('login-error').textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("refused"), "{refused}");
    browser.type_into("#token", ADMIN_TOKEN);
    browser.click("#login-submit");
    // Marks this page: still there at the end, so nothing below reloaded it.
    browser.eval("window.__sameDocument = true");

    let shown = browser
        .wait_for(
            "the event listed as dead-lettered",
            &event_row_status(&id, "dead"),
        )
        .await;
    assert_eq!(shown, "dead-lettered");

    // The sink's dead letters: the event is there, with its own Replay button.
    browser.click(".bar nav a[data-view='dead-letters']");
    let replay = format!("#dead-letters tr[data-event-id='{id}'] button.replay");
    browser
        .wait_for(
            "the event among the sink's dead letters",
            &format!("document.querySelector({}) !== null", js_string(&replay)),
        )
        .await;
    assert!(
        browser
            .text(&format!("#dead-letters tr[data-event-id='{id}']"))
            .unwrap()
            .contains("503"),
        "the dead letter says why"
    );
    browser.click(&replay);

    // The receiver, answering again, gets the event with the same webhook-id.
    let again = receiver.next().await;
    assert_eq!(again.header("webhook-id"), id);
    assert_eq!(again.header("x-hookrelay-attempt"), "3");

    // The console shows it delivered, in the list and on the event's own page.
    browser
        .wait_for(
            "the console confirms the replay",
            &format!(
                "document.getElementById('notice').textContent.includes({})",
                js_string(&format!("Replay of {id} queued"))
            ),
        )
        .await;
    browser.click(".bar nav a[data-view='events']");
    let shown = browser
        .wait_for(
            "the event listed as delivered",
            &event_row_status(&id, "delivered"),
        )
        .await;
    assert_eq!(shown, "delivered");
    browser.click(&format!("#events tr[data-id='{id}'] a"));
    browser
        .wait_for(
            "the event's page shows its delivery done",
            "document.querySelector(\"#event tr[data-sink='receiver'][data-state='delivered']\") !== null",
        )
        .await;
    let outcomes = browser.eval(
        "[...document.querySelectorAll('#event tr[data-outcome]')].map(r => r.dataset.outcome + (r.textContent.includes('replay') ? '+replay' : ''))",
    );
    assert_eq!(
        outcomes,
        serde_json::json!(["retrying", "dead_lettered", "delivered+replay"]),
    );

    assert_eq!(browser.eval("window.__sameDocument === true"), true);
    let href = browser.eval("location.href");
    assert!(
        !href.as_str().unwrap().contains(ADMIN_TOKEN),
        "the token never goes into the URL: {href}"
    );
    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "the page ran with errors: {problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_payload_shows_as_text_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let (relay, admin) = start(dir.path(), &receiver).await;
    // No double quote: the console pretty-prints JSON bodies, which escapes them.
    let image = "<img src=x onerror=window.__pwned='body_img'>";
    let script = "<script>window.__pwned='body script'</script>";
    let body = serde_json::json!({ "title": image, "note": script }).to_string();
    let event_type = "<img src=x onerror=window.__pwned='type'>";
    let header = "<svg onload=window.__pwned='header'></svg>";
    let id = send_github(
        &relay,
        &[
            ("x-github-event", event_type.to_string()),
            ("x-github-delivery", "<b>hostile-1</b>".to_string()),
            ("x-note", header.to_string()),
        ],
        &body,
    )
    .await;
    receiver.next().await;

    let mut browser = Browser::launch();
    sign_in(&mut browser, admin, ADMIN_TOKEN).await;
    let shown = browser
        .wait_for(
            "the event listed as delivered",
            &event_row_status(&id, "delivered"),
        )
        .await;
    assert_eq!(shown, "delivered");
    assert_eq!(
        browser
            .text(&format!("#events tr[data-id='{id}'] td.wrap"))
            .as_deref(),
        Some(event_type),
        "the event type shows as text"
    );

    browser.click(&format!("#events tr[data-id='{id}'] a"));
    let shown_body = browser
        .wait_for(
            "the event's body",
            "document.getElementById('event-body')?.textContent",
        )
        .await;
    let shown_body = shown_body.as_str().unwrap();
    assert!(shown_body.contains(image), "{shown_body}");
    assert!(shown_body.contains(script), "{shown_body}");
    assert_eq!(browser.text("#event h1").as_deref(), Some(event_type));
    let page = browser.text("#event").unwrap();
    assert!(page.contains(header), "the header shows as text: {page}");
    assert!(page.contains("<b>hostile-1</b>"), "{page}");

    // None of it became an element, and nothing ran.
    let made = browser.eval(
        "document.querySelectorAll('main img, main script, main svg, main b, main iframe').length",
    );
    assert_eq!(made, 0, "markup from the payload became elements");
    assert_eq!(browser.eval("typeof window.__pwned"), "undefined");
    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "the page ran with errors: {problems:?}"
    );
}

#[tokio::test]
async fn the_console_loads_without_the_token_with_strict_headers_while_the_api_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (_relay, admin) = start(dir.path(), &receiver).await;
    let client = client();
    let page = client.get(format!("http://{admin}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/console.js"), "{html}");

    // Each asset the page names is served with its type; a revalidation is a bodiless 304.
    for (path, kind) in [
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let reply = client
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        assert!(
            reply.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let etag = reply.headers()["etag"].clone();
        let again = client
            .get(format!("http://{admin}{path}"))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
        assert!(again.bytes().await.unwrap().is_empty());
    }

    // The page is public; the data is not.
    let events = call(admin, "GET", "/api/events", None).await;
    assert_eq!(events.status, 401, "{}", events.text);
    let events = call(admin, "GET", "/api/events", Some(ADMIN_TOKEN)).await;
    assert_eq!(events.status, 200, "{}", events.text);
    let post = call(admin, "POST", "/", Some(ADMIN_TOKEN)).await;
    assert_eq!(post.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_list_filters_by_event_type_and_pages_back_with_older() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let (relay, admin) = start(dir.path(), &receiver).await;
    // One page is 50 events: 51 need a second page.
    let release = send_github(
        &relay,
        &[
            ("x-github-event", "release".into()),
            ("x-github-delivery", "page-0".into()),
        ],
        "{}",
    )
    .await;
    for n in 1..=50 {
        send_github(&relay, &[("x-github-delivery", format!("page-{n}"))], "{}").await;
    }
    let rows = "document.querySelectorAll('#events tr').length";

    let mut browser = Browser::launch();
    sign_in(&mut browser, admin, ADMIN_TOKEN).await;
    browser
        .wait_for(
            "a first page of 50 events, and an Older button",
            &format!("{rows} === 50 && !document.getElementById('older').hidden"),
        )
        .await;
    browser.click("#older");
    browser
        .wait_for(
            "the 51st event, and no more pages",
            &format!(
                "{rows} === 51 && document.getElementById('older').hidden && \
                 document.querySelector({}) !== null",
                js_string(&format!("#events tr[data-id='{release}']"))
            ),
        )
        .await;

    browser.type_into("input[name='event_type']", "release");
    browser.click(".filters button[type='submit']");
    let hash = browser
        .wait_for(
            "only the release event listed",
            &format!(
                "{rows} === 1 && document.querySelector({}) !== null && location.hash",
                js_string(&format!("#events tr[data-id='{release}']"))
            ),
        )
        .await;
    assert_eq!(hash, "#/events?event_type=release");
    let problems = browser.problems();
    assert!(
        problems.is_empty(),
        "the page ran with errors: {problems:?}"
    );
}
