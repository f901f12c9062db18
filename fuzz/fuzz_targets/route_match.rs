//! Fuzzes routing on arbitrary event types: input is `source \0 event type`, matched
//! against routes with literal, `*`, `?` and character-class globs. Whatever the sender puts
//! in its event-type header or JSON field, routing must never panic and must only ever name
//! configured sinks.
#![no_main]

use std::sync::LazyLock;

use hookrelay::config::Config;
use hookrelay::route::Router;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[sources.github]
kind = "none"

[sources.nexus]
kind = "none"

[sinks.a]
kind = "webhook"
url = "http://127.0.0.1:9/a"

[sinks.b]
kind = "webhook"
url = "http://127.0.0.1:9/b"

[[routes]]
from = "github"
events = ["push", "release*", "pull_request?", "issue[sx]", "*.created"]
to = ["a"]

[[routes]]
from = ["github", "nexus"]
events = ["*"]
to = ["b"]
"#;

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    Router::new(&Config::parse(CONFIG, "fuzz.toml").expect("the fuzz config is valid"))
});

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let source = parts.next().and_then(|s| std::str::from_utf8(s).ok()).unwrap_or("");
    let event_type = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    for sink in ROUTER.sinks_for(source, event_type) {
        assert!(&*sink == "a" || &*sink == "b", "routed to an unknown sink {sink}");
    }
});
