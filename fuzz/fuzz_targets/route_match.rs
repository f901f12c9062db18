//! Fuzzes routing on arbitrary events: input is `source \0 event type \0 body`, matched
//! against routes with literal, `*`, `?` and character-class globs, and routes whose `where`
//! tests summary fields (filled by the GitHub and Nexus readings) and JSON pointers into the
//! body, with patterns, lists and `present`. Whatever the sender puts in its event-type
//! header or body (not JSON, deep nesting, huge numbers, escapes), routing must never panic
//! and must name only configured sinks, each once, in name order.
#![no_main]

use std::sync::LazyLock;

use hookrelay::config::Config;
use hookrelay::route::Router;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[sources.github]
kind = "github"
secret = "fuzz-secret"

[sources.nexus]
kind = "nexus"
secret = "fuzz-secret"

[sources.plain]
kind = "none"
summary = { version = "/build/number", repository = "/a~1b/~0c" }

[sinks.a]
kind = "webhook"
url = "http://127.0.0.1:9/a"

[sinks.b]
kind = "webhook"
url = "http://127.0.0.1:9/b"

[sinks.c]
kind = "webhook"
url = "http://127.0.0.1:9/c"

[sinks.d]
kind = "webhook"
url = "http://127.0.0.1:9/d"

[[routes]]
from = "github"
events = ["push", "release*", "pull_request?", "issue[sx]", "*.created"]
to = ["a"]

[[routes]]
from = ["github", "nexus"]
events = ["*"]
to = ["b"]

[[routes]]
from = ["github", "nexus", "plain"]
where = { ref = "refs/heads/{main,release-*}", action = ["uploaded", "push*"], "/0/x" = "1" }
to = ["c", "a"]

[[routes]]
from = ["nexus", "plain"]
events = ["rm:*"]
where = { repository = "maven-*", "/asset/name" = { present = true }, version = { present = false } }
to = ["d"]

[[routes]]
from = "plain"
where = { "/deep/1/list/-" = { present = true }, "/n" = ["42", "true", "1e400"] }
to = ["c", "d"]
"#;

const SINKS: &[&str] = &["a", "b", "c", "d"];

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    Router::new(&Config::parse(CONFIG, "fuzz.toml").expect("the fuzz config is valid"))
});

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let source = parts
        .next()
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("");
    let event_type = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let body = parts.next().unwrap_or_default();
    let sinks = ROUTER.sinks_for(source, event_type, body);
    for sink in &sinks {
        assert!(SINKS.contains(&&**sink), "routed to an unknown sink {sink}");
    }
    assert!(
        sinks.windows(2).all(|pair| pair[0] < pair[1]),
        "sinks not deduplicated in name order: {sinks:?}"
    );
});
