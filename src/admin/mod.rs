//! Admin: a second hyper listener, apart from ingress, for operators: `/healthz`,
//! `/readyz`, `/metrics`, and a JSON API under `/api/` (events, sinks, dead letters,
//! replays, sink tests) described by `/api/openapi.json`.
//!
//! Invariants:
//! - Started only when the config has an `[admin]` section; loopback unless a token is set
//!   (the config refuses otherwise).
//! - Every route but `/healthz` needs `Authorization: Bearer <token>` when a token is set,
//!   compared in constant time; anything else is `401` before any other work is done.
//! - A write from another site's web page is `403`, and without a token so is any request
//!   addressed by a host name rather than an IP address or `localhost` (DNS rebinding).
//! - No answer carries a configured secret, a sink URL, or a secret or signature header of
//!   an event (those are masked). Event bodies are shown: they are what operators came for.
//! - [`ROUTES`] is the one list of what the router serves; a test holds it equal to the
//!   OpenAPI document.
//! - What the admin knows of the config (token, sinks, header masks) is one snapshot that a
//!   reload replaces whole ([`Admin::reconfigure`]); a request reads it once.
//! - The web console's files (`console.rs`: `/` and `/console/…`) are answered before the
//!   router and need no token: they hold no data; the page calls the API with the token.

mod api;
mod console;
mod gauges;
pub mod time;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{AdminConfig, Config, SinkConfig, SourceKind};
use crate::dispatch::health::Health;
use crate::metrics::Metrics;
use crate::reload::ReloadHandle;
use crate::store::Store;

pub use api::event_document;
pub use gauges::{GaugedSinks, StoreGauges};

/// Admin connections served at once; operators and a scraper need few.
const MAX_CONNECTIONS: usize = 64;
/// Time to send a request's headers; also how long an idle connection stays open.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the router serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
    Events,
    Event,
    ReplayEvent,
    Sinks,
    DeadLetters,
    ReplayDeadLetters,
    TestSink,
    Reload,
}

/// Every route: method, path template (`{name}` matches one segment), handler.
pub(crate) const ROUTES: &[(&str, &str, Route)] = &[
    ("GET", "/healthz", Route::Healthz),
    ("GET", "/readyz", Route::Readyz),
    ("GET", "/metrics", Route::Metrics),
    ("GET", "/api/openapi.json", Route::OpenApi),
    ("GET", "/api/events", Route::Events),
    ("GET", "/api/events/{id}", Route::Event),
    ("POST", "/api/events/{id}/replay", Route::ReplayEvent),
    ("GET", "/api/sinks", Route::Sinks),
    ("GET", "/api/sinks/{sink}/dead-letters", Route::DeadLetters),
    (
        "POST",
        "/api/sinks/{sink}/dead-letters/replay",
        Route::ReplayDeadLetters,
    ),
    ("POST", "/api/sinks/{sink}/test", Route::TestSink),
    ("POST", "/api/reload", Route::Reload),
];

/// The OpenAPI 3.1 document of the API, served at `/api/openapi.json`.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Everything the admin routes need, shared by all connections.
pub struct Admin {
    /// Read once per request; replaced whole by a reload.
    view: ArcSwap<View>,
    store: Store,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Asks for a reload (`POST /api/reload`); `None` when the relay has no file to reload.
    reload: Option<ReloadHandle>,
    /// Set once a stop began: `/readyz` answers 503 while deliveries drain.
    stopping: std::sync::atomic::AtomicBool,
}

/// What the admin knows of the running config.
struct View {
    /// SHA-256 of the token: compared in constant time whatever the presented length.
    token_digest: Option<[u8; 32]>,
    sinks: Vec<SinkConfig>,
    mask: HeaderMask,
}

impl View {
    fn new(admin: &AdminConfig, config: &Config) -> View {
        View {
            token_digest: admin
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.expose()).into()),
            sinks: config.sinks.clone(),
            mask: HeaderMask::new(config),
        }
    }
}

/// Which headers of a stored event are shown as `***`: credentials and signatures, by
/// name, plus each source's own signature or token header. Shared by the API and the
/// offline commands, so both mask alike.
#[derive(Debug, Clone, Default)]
pub struct HeaderMask {
    /// Per source, the extra header names its scheme uses for signatures or tokens.
    by_source: HashMap<String, Vec<String>>,
}

impl HeaderMask {
    /// The mask for `config`'s sources.
    pub fn new(config: &Config) -> HeaderMask {
        let by_source = config
            .sources
            .iter()
            .map(|s| {
                let names = match &s.kind {
                    SourceKind::Hmac { header, .. } | SourceKind::Token { header, .. } => {
                        vec![header.as_str().to_string()]
                    }
                    _ => Vec::new(),
                };
                (s.name.clone(), names)
            })
            .collect();
        HeaderMask { by_source }
    }

    /// Whether header `name` of an event of `source` must be shown masked.
    pub fn masked(&self, source: &str, name: &str) -> bool {
        must_mask(self.by_source.get(source), name)
    }
}

impl Admin {
    /// The admin state for `config`, reading `store` and reporting `metrics` and `health`.
    pub fn new(
        admin: &AdminConfig,
        config: &Config,
        store: Store,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Admin {
        Admin {
            view: ArcSwap::from_pointee(View::new(admin, config)),
            store,
            metrics,
            health,
            reload: None,
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// From now on `/readyz` says the relay is stopping; the rest of the API still answers
    /// while in-flight deliveries drain.
    pub fn stopping(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Admin::stopping`] was called.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answers `POST /api/reload` through `reload`.
    pub fn with_reload(mut self, reload: ReloadHandle) -> Admin {
        self.reload = Some(reload);
        self
    }

    /// Serves `config`'s token, sinks and header masks from the next request on.
    pub fn reconfigure(&self, admin: &AdminConfig, config: &Config) {
        self.view.store(Arc::new(View::new(admin, config)));
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        if let Some(response) = console::serve(request.method(), &path, request.headers()) {
            return response;
        }
        let (route, params) = match find_route(request.method(), &path) {
            Found::Route(route, params) => (route, params),
            Found::WrongMethod(allowed) => {
                let mut response = json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed on this path",
                );
                if let Ok(value) = HeaderValue::from_str(&allowed.join(", ")) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                return response;
            }
            Found::Nothing => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    "no such admin route; GET /api/openapi.json lists them",
                );
            }
        };
        let view = self.view.load_full();
        if let Some(refusal) = browser_refusal(route, request.method(), request.headers(), &view) {
            return json_error(StatusCode::FORBIDDEN, &refusal);
        }
        if route != Route::Healthz && !view.authorized(request.headers()) {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token; send Authorization: Bearer <[admin] token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let query: HashMap<String, String> = request
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let openmetrics = crate::metrics::accepts_openmetrics(
            request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        api::answer(self, &view, route, &params, &query, openmetrics).await
    }
}

impl View {
    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        // The scheme's case is free (RFC 9110 §11.1): `bearer` is `Bearer`.
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| {
                let (scheme, token) = v.as_bytes().split_at_checked(7)?;
                scheme
                    .eq_ignore_ascii_case(b"bearer ")
                    .then(|| token.trim_ascii())
            })
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // An empty presented token hashes to a value no configured token has (16+ bytes).
        bool::from(digest.ct_eq(expected)) && !presented.is_empty()
    }
}

/// Why a request a web page may have sent on its own is refused, if it is.
///
/// A browser lets any page send a form or a no-cors `fetch` to a loopback port, and it can be
/// made to address a loopback port by a name the page's own site controls (DNS rebinding).
/// So a write must come from the admin's own origin (its console) or from a client that
/// names no origin (curl, scripts); and without a token, which nothing else guards, the API
/// answers only requests addressed to an IP address or `localhost`, which no other site can
/// make its own (health probes and `/metrics` excepted).
fn browser_refusal(
    route: Route,
    method: &Method,
    headers: &http::HeaderMap,
    view: &View,
) -> Option<String> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // A Host that is not text names no address this relay has; an absent one names nothing.
    let host = match headers.get(header::HOST) {
        Some(value) => value.to_str().unwrap_or("\u{FFFD}"),
        None => "",
    };
    if !matches!(*method, Method::GET | Method::HEAD) {
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
        let foreign_origin = text(header::ORIGIN).is_some_and(|origin| {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            !authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
        });
        if cross_site || foreign_origin {
            return Some(
                "a web page of another site cannot act on the admin API: send this request \
                 from the console at this address, or from curl or a script (no Origin header)"
                    .to_owned(),
            );
        }
    }
    // Probes and scrapers may address the relay by name; what they read holds no event.
    let probe = matches!(route, Route::Healthz | Route::Readyz | Route::Metrics);
    if view.token_digest.is_none() && !probe && !is_local_host(host) {
        return Some(format!(
            "the admin API has no token, so it answers only requests addressed to an IP \
             address or localhost, not to \"{host}\": use http://127.0.0.1:PORT, or set \
             [admin] token to reach it by name"
        ));
    }
    None
}

/// Whether a `Host` header names an IP address or `localhost`, with or without a port. A
/// request without one (HTTP/1.0) names nothing another site could own.
fn is_local_host(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:9090`: nothing but a port may follow the address.
        Some(rest) => {
            return rest.split_once(']').is_some_and(|(ip, after)| {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (after.is_empty()
                        || after
                            .strip_prefix(':')
                            .is_some_and(|port| port.parse::<u16>().is_ok()))
            });
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
}

/// Whether header `name` of an event must be masked, given its source's own signature or
/// token header names.
fn must_mask(source_headers: Option<&Vec<String>>, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    crate::verify::is_credential_header(&name)
        || crate::verify::is_signature_header(&name)
        || source_headers.is_some_and(|names| names.contains(&name))
}

enum Found {
    Route(Route, HashMap<&'static str, String>),
    WrongMethod(Vec<&'static str>),
    Nothing,
}

/// Matches `path` against [`ROUTES`]; `{name}` segments are captured, percent-decoded.
fn find_route(method: &Method, path: &str) -> Found {
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for (route_method, template, route) in ROUTES {
        let parts: Vec<&'static str> = template.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut params = HashMap::new();
        let matched = parts.iter().zip(&segments).all(|(part, segment)| {
            match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !segment.is_empty() => {
                    let decoded = percent_decode(segment);
                    params.insert(name, decoded);
                    true
                }
                Some(_) => false,
                None => part == segment,
            }
        });
        if !matched {
            continue;
        }
        // HEAD is GET without the body (hyper leaves it out): load balancers probe with it.
        let as_get = *method == Method::HEAD && *route_method == "GET";
        if method.as_str() == *route_method || as_get {
            return Found::Route(*route, params);
        }
        allowed.push(*route_method);
    }
    if allowed.is_empty() {
        Found::Nothing
    } else {
        Found::WrongMethod(allowed)
    }
}

/// A percent-encoded URL part, decoded (`+` stays `+`; invalid UTF-8 becomes U+FFFD).
pub(crate) fn percent_decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `{"error": "<message>"}` with `status`.
fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::json!({ "error": message }).to_string(),
    )
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Answers hold webhook bodies: a browser must never sniff one into a runnable type.
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Serves `listener` until `shutdown` resolves, then lets requests in progress finish for
/// up to the time it resolves with.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = Duration>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    let grace = loop {
        let permit = tokio::select! {
            grace = &mut shutdown => break grace,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let stream = tokio::select! {
            grace = &mut shutdown => break grace,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let admin = admin.clone();
        let http = http.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(request).await) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    };
    drop(listener);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        connections.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_ip_address_or_localhost_is_a_local_host() {
        for local in [
            "127.0.0.1:9090",
            "127.0.0.1",
            "localhost:9090",
            "LOCALHOST",
            "a.localhost:1",
            "[::1]",
            "[::1]:9090",
            "",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for named in [
            "attacker.example:9090",
            "127.0.0.1.nip.io:9090",
            "localhost.attacker.example",
            "[::1].attacker.example:9090",
            "[::1]x",
            "\u{FFFD}",
        ] {
            assert!(!is_local_host(named), "{named}");
        }
    }

    #[test]
    fn routes_match_templates_capture_parameters_and_report_allowed_methods() {
        let Found::Route(route, params) =
            find_route(&Method::POST, "/api/sinks/audit%2D1/dead-letters/replay")
        else {
            panic!("no match");
        };
        assert_eq!(route, Route::ReplayDeadLetters);
        assert_eq!(params["sink"], "audit-1");
        let Found::WrongMethod(allowed) = find_route(&Method::DELETE, "/api/events/x") else {
            panic!("expected 405");
        };
        assert_eq!(allowed, vec!["GET"]);
        assert!(matches!(
            find_route(&Method::GET, "/api/events//replay"),
            Found::Nothing
        ));
        assert!(matches!(find_route(&Method::GET, "/nope"), Found::Nothing));
    }

    /// Every route the router serves is in the OpenAPI document, and the document names no
    /// route the router does not serve. (tests/admin.rs calls each documented operation.)
    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        assert_eq!(doc["openapi"].as_str().unwrap_or("").get(..3), Some("3.1"));
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method != "parameters" {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut served: Vec<_> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn signature_and_secret_headers_are_masked() {
        let nexus = vec!["x-nexus-webhook-sig".to_string()];
        assert!(must_mask(None, "X-Hub-Signature-256"));
        assert!(must_mask(None, "Authorization"));
        assert!(must_mask(None, "X-Api-Key"));
        // GitLab's delivery id, not a credential.
        assert!(!must_mask(None, "Idempotency-Key"));
        assert!(must_mask(Some(&nexus), "X-Nexus-Webhook-Sig"));
        assert!(must_mask(None, "X-Api-Key"));
        assert!(!must_mask(None, "x-github-event"));
        assert!(
            !must_mask(None, "x-nexus-webhook-sig"),
            "only for its own source"
        );
    }
}
