//! Routing: which sinks an event goes to, from its source, event type and, for routes with
//! `where`, its [`Summary`](crate::summary::Summary) and body. Pure: compiled once from the
//! config, no I/O.
//!
//! A route applies to an event when its `from` names the event's source, if it has `events`
//! globs one of them matches the event type, and every condition of its `where` holds. A
//! route without `events` takes every event of its sources, even one without a type; a
//! route with `events` never takes an event without a type. An event goes to the union of
//! the sinks of every route that applies.
//!
//! Invariants: disabled sinks are never returned; the answer is deduplicated and in
//! sink-name order. Routes are grouped by source and every glob is compiled at start. The
//! body is parsed at most once per event, and only when a route whose source and events
//! match has a `where`: an event no such route reaches costs no parse, and matching then
//! allocates only the returned vector. The summary is computed at most once, and only when
//! a condition names one of its fields.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::Value;

use crate::config::{Condition, Config, Subject, Test};
use crate::summary::{Summarizer, Summary};

/// The routes of the whole config, grouped by source and compiled.
#[derive(Debug, Clone)]
pub struct Router {
    by_source: HashMap<Box<str>, SourceRoutes>,
}

/// One source's routes and what computes its events' summaries.
#[derive(Debug, Clone, Default)]
struct SourceRoutes {
    routes: Vec<Route>,
    summarizer: Summarizer,
}

/// One condition of a route's `where`, compiled.
#[derive(Debug, Clone)]
struct Check {
    subject: Subject,
    test: CompiledTest,
}

#[derive(Debug, Clone)]
enum CompiledTest {
    AnyOf(GlobSet),
    Present(bool),
}

impl Check {
    fn holds(&self, event: &mut EventView<'_>) -> bool {
        // Whether the value is there, and its text when it has one.
        let (present, text): (bool, Option<Cow<'_, str>>) = match &self.subject {
            Subject::Summary(field) => {
                let text = event.summary().get(*field).map(Cow::Borrowed);
                (text.is_some(), text)
            }
            Subject::Pointer(pointer) => match event.json().and_then(|j| j.pointer(pointer)) {
                // Empty counts as absent, as in the summary: "", [], {} and null.
                None | Some(Value::Null) => (false, None),
                Some(Value::String(s)) if s.is_empty() => (false, None),
                Some(Value::Array(a)) if a.is_empty() => (false, None),
                Some(Value::Object(o)) if o.is_empty() => (false, None),
                Some(Value::String(s)) => (true, Some(Cow::Borrowed(s.as_str()))),
                Some(Value::Bool(b)) => {
                    (true, Some(Cow::Borrowed(if *b { "true" } else { "false" })))
                }
                Some(Value::Number(n)) => (true, Some(Cow::Owned(n.to_string()))),
                // Present, but no text a pattern could match, not even "*".
                Some(Value::Array(_) | Value::Object(_)) => (true, None),
            },
        };
        match &self.test {
            CompiledTest::Present(wanted) => present == *wanted,
            CompiledTest::AnyOf(globs) => text.is_some_and(|v| globs.is_match(v.as_ref())),
        }
    }
}

/// What the conditions look at, computed on first use and then kept for the other routes.
struct EventView<'a> {
    event_type: Option<&'a str>,
    body: &'a [u8],
    summarizer: &'a Summarizer,
    /// `Some(None)` once parsing was tried and the body is not JSON.
    json: Option<Option<Value>>,
    summary: Option<Summary>,
}

impl EventView<'_> {
    fn json(&mut self) -> Option<&Value> {
        let body = self.body;
        self.json
            .get_or_insert_with(|| {
                #[cfg(test)]
                tests::PARSES.with(|n| n.set(n.get() + 1));
                crate::summary::body_json(body)
            })
            .as_ref()
    }

    fn summary(&mut self) -> &Summary {
        if self.summary.is_none() {
            let event_type = self.event_type;
            let summarizer = self.summarizer;
            let summary = match self.json() {
                Some(json) => summarizer.summarize_json(event_type, json),
                None => Summary::default(),
            };
            self.summary = Some(summary);
        }
        self.summary.get_or_insert_with(Summary::default)
    }
}

/// Compiles glob patterns that config validation already checked.
fn glob_set(patterns: &[String]) -> GlobSet {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        set.add(Glob::new(pattern).unwrap_or_else(|e| {
            panic!("config validation guarantees every route glob compiles: {e}")
        }));
    }
    set.build()
        .expect("config validation guarantees every route glob compiles")
}

fn compile(condition: &Condition) -> Check {
    Check {
        subject: condition.subject.clone(),
        test: match &condition.test {
            Test::AnyOf(patterns) => CompiledTest::AnyOf(glob_set(patterns)),
            Test::Present(p) => CompiledTest::Present(*p),
        },
    }
}

/// One route as one source sees it.
#[derive(Debug, Clone)]
struct Route {
    /// `None` takes every event; `Some` only events whose type one of the globs matches.
    events: Option<GlobSet>,
    /// `where`: all must hold; empty takes every event.
    filter: Vec<Check>,
    /// Enabled sinks only, in name order, deduplicated. Shared names, so answering costs
    /// reference counts, not string copies.
    to: Vec<Arc<str>>,
}

impl Route {
    fn applies_to(&self, event_type: Option<&str>) -> bool {
        match (&self.events, event_type) {
            (None, _) => true,
            (Some(globs), Some(event_type)) => globs.is_match(event_type),
            (Some(_), None) => false,
        }
    }
}

impl Router {
    /// Compiles the routes of a validated config.
    ///
    /// # Panics
    ///
    /// On a glob that does not compile or a route to a sink that does not exist; config
    /// validation refuses both, so this only fires on a `Config` built around it.
    pub fn new(config: &Config) -> Router {
        // One shared name per enabled sink; a route to a disabled sink simply has one fewer.
        let enabled: HashMap<&str, Arc<str>> = config
            .sinks
            .iter()
            .filter(|s| s.enabled)
            .map(|s| (s.name.as_str(), Arc::from(s.name.as_str())))
            .collect();
        let mut by_source: HashMap<Box<str>, SourceRoutes> = HashMap::new();
        for route in &config.routes {
            let events = (!route.events.is_empty()).then(|| glob_set(&route.events));
            let mut to: Vec<Arc<str>> = route
                .to
                .iter()
                .filter_map(|name| {
                    assert!(
                        config.sinks.iter().any(|s| &s.name == name),
                        "config validation guarantees every route's sink exists"
                    );
                    enabled.get(name.as_str()).cloned()
                })
                .collect();
            to.sort_unstable();
            to.dedup();
            let compiled = Route {
                events,
                filter: route.filter.iter().map(compile).collect(),
                to,
            };
            let mut sources: Vec<&str> = route.from.iter().map(String::as_str).collect();
            sources.sort_unstable();
            sources.dedup();
            for source in sources {
                by_source
                    .entry(source.into())
                    .or_insert_with(|| SourceRoutes {
                        routes: Vec::new(),
                        summarizer: config
                            .sources
                            .iter()
                            .find(|s| s.name == source)
                            .map(Summarizer::new)
                            .unwrap_or_default(),
                    })
                    .routes
                    .push(compiled.clone());
            }
        }
        Router { by_source }
    }

    /// The enabled sinks an event from `source` with `event_type` and `body` goes to,
    /// deduplicated and in sink-name order; empty when no route applies.
    pub fn sinks_for(&self, source: &str, event_type: Option<&str>, body: &[u8]) -> Vec<Arc<str>> {
        let Some(source) = self.by_source.get(source) else {
            return Vec::new();
        };
        let mut event = EventView {
            event_type,
            body,
            summarizer: &source.summarizer,
            json: None,
            summary: None,
        };
        let mut sinks: Vec<Arc<str>> = Vec::new();
        for route in &source.routes {
            // Cheap tests first: the body is only looked at for a route that wants the event.
            if route.applies_to(event_type) && route.filter.iter().all(|c| c.holds(&mut event)) {
                sinks.extend(route.to.iter().cloned());
            }
        }
        // Each route's list is already sorted, so with one matching route this is a check.
        sinks.sort_unstable();
        sinks.dedup();
        sinks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        Condition, RetryPolicy, RouteConfig, ServerConfig, SinkConfig, SinkKind, StorageConfig,
        Subject, SummaryField, Test, WebhookSinkConfig,
    };
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn sink(name: &str, enabled: bool) -> SinkConfig {
        SinkConfig {
            name: name.to_owned(),
            enabled,
            paused: false,
            rate: None,
            concurrency: 1,
            retry: RetryPolicy {
                max_attempts: 3,
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            timeout: Duration::from_secs(10),
            outbound: Default::default(),
            kind: SinkKind::Webhook(WebhookSinkConfig {
                url: "http://127.0.0.1:9/".to_owned(),
                signing_keys: Vec::new(),
                headers: Vec::new(),
            }),
        }
    }

    fn route(from: &[&str], events: &[&str], to: &[&str]) -> RouteConfig {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        RouteConfig {
            from: strings(from),
            events: strings(events),
            to: strings(to),
            filter: Vec::new(),
        }
    }

    fn config(mut sinks: Vec<SinkConfig>, routes: Vec<RouteConfig>) -> Config {
        sinks.sort_by(|a, b| a.name.cmp(&b.name));
        Config {
            server: ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                max_body: 1 << 20,
                header_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(5),
                shutdown_timeout: Duration::from_secs(5),
                max_connections: 16,
                max_buffered: 1 << 24,
                tls: None,
            },
            storage: StorageConfig {
                path: "unused.redb".into(),
                retention: Duration::from_secs(3600),
            },
            sources: Vec::new(),
            sinks,
            routes,
            admin: None,
            notices: Default::default(),
        }
    }

    thread_local! {
        /// Body parses on this thread, to prove when routing does not parse.
        pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn names(sinks: Vec<Arc<str>>) -> Vec<String> {
        sinks.iter().map(|s| s.to_string()).collect()
    }

    fn router() -> Router {
        Router::new(&config(
            vec![
                sink("audit", true),
                sink("builds-slack", true),
                sink("off", false),
                sink("zeta", true),
            ],
            vec![
                route(&["github"], &["push", "release"], &["zeta", "builds-slack"]),
                route(&["github", "gitlab"], &[], &["audit"]),
                route(&["gitlab"], &["*Hook"], &["builds-slack", "off"]),
                route(&["github"], &["pull_request*"], &["builds-slack", "zeta"]),
            ],
        ))
    }

    #[test]
    fn union_of_matching_routes_in_name_order() {
        let r = router();
        assert_eq!(
            names(r.sinks_for("github", Some("push"), b"{}")),
            ["audit", "builds-slack", "zeta"]
        );
        assert_eq!(
            names(r.sinks_for("github", Some("pull_request_review"), b"{}")),
            ["audit", "builds-slack", "zeta"]
        );
        assert_eq!(
            names(r.sinks_for("github", Some("issues"), b"{}")),
            ["audit"]
        );
        assert_eq!(
            names(r.sinks_for("gitlab", Some("Push Hook"), b"{}")),
            ["audit", "builds-slack"]
        );
    }

    #[test]
    fn a_route_without_events_takes_untyped_events_and_one_with_events_does_not() {
        let r = router();
        assert_eq!(names(r.sinks_for("github", None, b"{}")), ["audit"]);
        assert_eq!(names(r.sinks_for("gitlab", None, b"{}")), ["audit"]);
    }

    #[test]
    fn globs_match_the_whole_event_type_case_sensitively() {
        let r = router();
        assert_eq!(
            names(r.sinks_for("github", Some("pushed"), b"{}")),
            ["audit"]
        );
        assert_eq!(names(r.sinks_for("github", Some("Push"), b"{}")), ["audit"]);
        assert_eq!(
            names(r.sinks_for("gitlab", Some("Push Hook!"), b"{}")),
            ["audit"]
        );
    }

    #[test]
    fn disabled_sinks_and_unknown_sources_get_nothing() {
        let r = router();
        assert!(
            !names(r.sinks_for("gitlab", Some("Tag Push Hook"), b"{}")).contains(&"off".into())
        );
        assert!(r.sinks_for("nobody", Some("push"), b"{}").is_empty());
        assert!(r.sinks_for("", None, b"{}").is_empty());
        let only_disabled = Router::new(&config(
            vec![sink("off", false)],
            vec![route(&["s"], &[], &["off"])],
        ));
        assert!(only_disabled.sinks_for("s", Some("x"), b"{}").is_empty());
    }

    #[test]
    fn repeated_names_in_a_route_count_once() {
        let r = Router::new(&config(
            vec![sink("a", true)],
            vec![route(&["s", "s"], &["x", "x*"], &["a", "a"])],
        ));
        assert_eq!(names(r.sinks_for("s", Some("x"), b"{}")), ["a"]);
    }

    #[test]
    #[should_panic(expected = "config validation guarantees")]
    fn a_route_to_a_missing_sink_is_a_bug_caught_at_start() {
        Router::new(&config(vec![], vec![route(&["s"], &[], &["ghost"])]));
    }

    fn condition(subject: Subject, test: Test) -> Condition {
        Condition { subject, test }
    }

    fn any_of(values: &[&str]) -> Test {
        Test::AnyOf(values.iter().map(|v| v.to_string()).collect())
    }

    /// A Nexus source `nexus` and a generic source `plain`, with filtered routes.
    fn filtered_router() -> Router {
        let mut c = config(
            vec![
                sink("releases", true),
                sink("main", true),
                sink("all", true),
            ],
            vec![
                RouteConfig {
                    filter: vec![
                        condition(
                            Subject::Summary(SummaryField::Action),
                            any_of(&["uploaded"]),
                        ),
                        condition(
                            Subject::Summary(SummaryField::Repository),
                            any_of(&["releases", "staging-*"]),
                        ),
                    ],
                    ..route(&["nexus"], &["rm:repository:component"], &["releases"])
                },
                RouteConfig {
                    filter: vec![
                        condition(
                            Subject::Pointer("/ref".into()),
                            any_of(&["refs/heads/main"]),
                        ),
                        condition(Subject::Pointer("/draft".into()), Test::Present(false)),
                    ],
                    ..route(&["plain"], &[], &["main"])
                },
                route(&["nexus", "plain"], &[], &["all"]),
            ],
        );
        c.sources = vec![
            crate::summary::tests::preset(crate::config::Product::Nexus),
            crate::summary::tests::source(
                crate::config::SourceKind::None {
                    event_type: None,
                    delivery_id: None,
                },
                &[],
            ),
        ];
        c.sources[0].name = "nexus".into();
        c.sources[1].name = "plain".into();
        Router::new(&c)
    }

    fn nexus_upload(repository: &str) -> String {
        format!(
            r#"{{"initiator":"ci/10.0.0.1","repositoryName":"{repository}","action":"CREATED","component":{{"name":"app","version":"1"}}}}"#
        )
    }

    #[test]
    fn where_matches_summary_fields_with_values_and_globs() {
        let r = filtered_router();
        let component = Some("rm:repository:component");
        for (repository, expected) in [
            ("releases", &["all", "releases"][..]),
            ("staging-eu", &["all", "releases"]),
            ("snapshots", &["all"]),
            ("releases-old", &["all"]),
        ] {
            let body = nexus_upload(repository);
            assert_eq!(
                names(r.sinks_for("nexus", component, body.as_bytes())),
                expected,
                "{repository}"
            );
        }
        let deleted = nexus_upload("releases").replace("CREATED", "DELETED");
        assert_eq!(
            names(r.sinks_for("nexus", component, deleted.as_bytes())),
            ["all"]
        );
    }

    #[test]
    fn where_matches_pointers_and_presence() {
        let r = filtered_router();
        let cases: [(&[u8], &[&str]); 10] = [
            (br#"{"ref":"refs/heads/main"}"#, &["all", "main"]),
            // An empty list or object is absent, like "" and null; a full one is present.
            (br#"{"ref":"refs/heads/main","draft":[]}"#, &["all", "main"]),
            (br#"{"ref":"refs/heads/main","draft":{}}"#, &["all", "main"]),
            (br#"{"ref":"refs/heads/main","draft":[1]}"#, &["all"]),
            (
                br#"{"ref":"refs/heads/main","draft":null}"#,
                &["all", "main"],
            ),
            (br#"{"ref":"refs/heads/main","draft":true}"#, &["all"]),
            (br#"{"ref":"refs/heads/main","draft":""}"#, &["all", "main"]),
            (br#"{"ref":"refs/heads/dev"}"#, &["all"]),
            (br#"{"ref":["refs/heads/main"]}"#, &["all"]),
            (b"not json", &["all"]),
        ];
        for (body, expected) in cases {
            assert_eq!(
                names(r.sinks_for("plain", None, body)),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let numbers = Router::new(&config(
            vec![sink("s", true)],
            vec![RouteConfig {
                filter: vec![condition(Subject::Pointer("/n".into()), any_of(&["4?"]))],
                ..route(&["x"], &[], &["s"])
            }],
        ));
        assert_eq!(names(numbers.sinks_for("x", None, br#"{"n":42}"#)), ["s"]);
        assert!(numbers.sinks_for("x", None, br#"{"n":5}"#).is_empty());
        // "*" matches any text, and a list or object has none.
        let anything = Router::new(&config(
            vec![sink("s", true)],
            vec![RouteConfig {
                filter: vec![condition(Subject::Pointer("/tags".into()), any_of(&["*"]))],
                ..route(&["x"], &[], &["s"])
            }],
        ));
        assert_eq!(
            names(anything.sinks_for("x", None, br#"{"tags":"a"}"#)),
            ["s"]
        );
        for body in [
            &br#"{"tags":[]}"#[..],
            br#"{"tags":["a"]}"#,
            br#"{"tags":{}}"#,
        ] {
            assert!(anything.sinks_for("x", None, body).is_empty());
        }
    }

    #[test]
    fn the_body_is_parsed_once_and_only_when_a_reached_route_needs_it() {
        let r = filtered_router();
        let parses = || PARSES.with(|n| n.get());
        let before = parses();
        // The filtered Nexus route wants another event type: no parse.
        r.sinks_for("nexus", Some("rm:repository:asset"), b"{}");
        // Unfiltered routes only: no parse, even of a body that is not JSON.
        r.sinks_for("nobody", None, b"not json");
        assert_eq!(parses(), before);
        // Two conditions, on summary fields: one parse.
        r.sinks_for(
            "nexus",
            Some("rm:repository:component"),
            nexus_upload("releases").as_bytes(),
        );
        assert_eq!(parses(), before + 1);
        // Two pointer conditions: one parse.
        r.sinks_for("plain", None, br#"{"ref":"refs/heads/main"}"#);
        assert_eq!(parses(), before + 2);
    }

    /// The meaning of routing written plainly: every route, every glob, every call.
    fn reference(config: &Config, source: &str, event_type: Option<&str>) -> Vec<String> {
        let mut out = BTreeSet::new();
        for route in &config.routes {
            let from = route.from.iter().any(|f| f == source);
            let events = route.events.is_empty()
                || event_type.is_some_and(|e| {
                    route
                        .events
                        .iter()
                        .any(|g| Glob::new(g).unwrap().compile_matcher().is_match(e))
                });
            if from && events {
                for name in &route.to {
                    if config.sinks.iter().any(|s| &s.name == name && s.enabled) {
                        out.insert(name.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    fn arb_route() -> impl Strategy<Value = RouteConfig> {
        let source = prop::sample::select(vec!["a", "b", "c"]);
        let glob = prop::sample::select(vec![
            "push",
            "pu*",
            "*",
            "re?ease",
            "[pr]*",
            "{push,tag}",
            "*.paid",
        ]);
        let sink = prop::sample::select(vec!["s0", "s1", "s2", "s3"]);
        (
            prop::collection::vec(source, 1..3),
            prop::collection::vec(glob, 0..3),
            prop::collection::vec(sink, 1..4),
        )
            .prop_map(|(from, events, to)| route(&from, &events, &to))
    }

    proptest! {
        #[test]
        fn router_agrees_with_the_plain_reading(
            routes in prop::collection::vec(arb_route(), 0..8),
            enabled in prop::collection::vec(any::<bool>(), 4),
            source in prop::sample::select(vec!["a", "b", "c", "d"]),
            event_type in prop::option::of(prop::sample::select(vec!["push", "release", "tag", "invoice.paid", "pull", "", "Push"])),
        ) {
            let sinks = enabled.iter().enumerate().map(|(i, on)| sink(&format!("s{i}"), *on)).collect();
            let config = config(sinks, routes);
            let got = names(Router::new(&config).sinks_for(source, event_type, b"{}"));
            prop_assert_eq!(got, reference(&config, source, event_type));
        }
    }
}
