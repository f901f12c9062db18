//! Routing: which sinks an event goes to, from its source and event type. Pure: compiled
//! once from the config, no I/O.
//!
//! A route applies to an event when its `from` names the event's source and, if it has
//! `events` globs, one of them matches the event type. A route without `events` takes every
//! event of its sources, even one without a type; a route with `events` never takes an
//! event without a type. An event goes to the union of the sinks of every route that applies.
//!
//! Invariants: disabled sinks are never returned; the answer is deduplicated and in
//! sink-name order; matching allocates only the returned vector (routes are grouped by
//! source and their globs compiled into one `GlobSet` each at start).

use std::collections::HashMap;
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::Config;

/// The routes of the whole config, grouped by source and compiled.
#[derive(Debug, Clone)]
pub struct Router {
    by_source: HashMap<Box<str>, Vec<Route>>,
}

/// One route as one source sees it.
#[derive(Debug, Clone)]
struct Route {
    /// `None` takes every event; `Some` only events whose type one of the globs matches.
    events: Option<GlobSet>,
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
        let mut by_source: HashMap<Box<str>, Vec<Route>> = HashMap::new();
        for route in &config.routes {
            let events = (!route.events.is_empty()).then(|| {
                let mut set = GlobSetBuilder::new();
                for pattern in &route.events {
                    set.add(Glob::new(pattern).unwrap_or_else(|e| {
                        panic!("config validation guarantees every route glob compiles: {e}")
                    }));
                }
                set.build()
                    .expect("config validation guarantees every route glob compiles")
            });
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
            let compiled = Route { events, to };
            let mut sources: Vec<&str> = route.from.iter().map(String::as_str).collect();
            sources.sort_unstable();
            sources.dedup();
            for source in sources {
                by_source
                    .entry(source.into())
                    .or_default()
                    .push(compiled.clone());
            }
        }
        Router { by_source }
    }

    /// The enabled sinks an event from `source` with `event_type` goes to, deduplicated and
    /// in sink-name order; empty when no route applies.
    pub fn sinks_for(&self, source: &str, event_type: Option<&str>) -> Vec<Arc<str>> {
        let Some(routes) = self.by_source.get(source) else {
            return Vec::new();
        };
        let mut sinks: Vec<Arc<str>> = Vec::new();
        for route in routes.iter().filter(|r| r.applies_to(event_type)) {
            sinks.extend(route.to.iter().cloned());
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
        RetryPolicy, RouteConfig, ServerConfig, SinkConfig, SinkKind, StorageConfig,
        WebhookSinkConfig,
    };
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn sink(name: &str, enabled: bool) -> SinkConfig {
        SinkConfig {
            name: name.to_owned(),
            enabled,
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
                signing_key: None,
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
        }
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
            names(r.sinks_for("github", Some("push"))),
            ["audit", "builds-slack", "zeta"]
        );
        assert_eq!(
            names(r.sinks_for("github", Some("pull_request_review"))),
            ["audit", "builds-slack", "zeta"]
        );
        assert_eq!(names(r.sinks_for("github", Some("issues"))), ["audit"]);
        assert_eq!(
            names(r.sinks_for("gitlab", Some("Push Hook"))),
            ["audit", "builds-slack"]
        );
    }

    #[test]
    fn a_route_without_events_takes_untyped_events_and_one_with_events_does_not() {
        let r = router();
        assert_eq!(names(r.sinks_for("github", None)), ["audit"]);
        assert_eq!(names(r.sinks_for("gitlab", None)), ["audit"]);
    }

    #[test]
    fn globs_match_the_whole_event_type_case_sensitively() {
        let r = router();
        assert_eq!(names(r.sinks_for("github", Some("pushed"))), ["audit"]);
        assert_eq!(names(r.sinks_for("github", Some("Push"))), ["audit"]);
        assert_eq!(names(r.sinks_for("gitlab", Some("Push Hook!"))), ["audit"]);
    }

    #[test]
    fn disabled_sinks_and_unknown_sources_get_nothing() {
        let r = router();
        assert!(!names(r.sinks_for("gitlab", Some("Tag Push Hook"))).contains(&"off".into()));
        assert!(r.sinks_for("nobody", Some("push")).is_empty());
        assert!(r.sinks_for("", None).is_empty());
        let only_disabled = Router::new(&config(
            vec![sink("off", false)],
            vec![route(&["s"], &[], &["off"])],
        ));
        assert!(only_disabled.sinks_for("s", Some("x")).is_empty());
    }

    #[test]
    fn repeated_names_in_a_route_count_once() {
        let r = Router::new(&config(
            vec![sink("a", true)],
            vec![route(&["s", "s"], &["x", "x*"], &["a", "a"])],
        ));
        assert_eq!(names(r.sinks_for("s", Some("x"))), ["a"]);
    }

    #[test]
    #[should_panic(expected = "config validation guarantees")]
    fn a_route_to_a_missing_sink_is_a_bug_caught_at_start() {
        Router::new(&config(vec![], vec![route(&["s"], &[], &["ghost"])]));
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
            let got = names(Router::new(&config).sinks_for(source, event_type));
            prop_assert_eq!(got, reference(&config, source, event_type));
        }
    }
}
