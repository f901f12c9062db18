//! Ingress: the hyper server for `POST /hooks/{source}`.
//!
//! Per request: find the source, enforce the body limit and timeouts, verify, route, and
//! hand the event to the store; answer `202` only once the store says the commit is durable.
//!
//! Invariant: this module (with `admin`) is the only one that knows hyper server types
//! and HTTP status codes. Nothing unverified reaches the store: verification happens on the
//! complete body before `Store::ingest` is called. A refusal leaves a log line and nothing
//! else — never the body, a signature or a secret.
//!
//! Sources, verifiers, routes and the body limits live in one [`Live`] snapshot that a
//! reload replaces whole ([`Ingress::reconfigure`]). A request loads it once, first, and
//! uses that one snapshot to the end: it is verified and routed by one config, never half
//! of each, and a reload never refuses or fails a request in flight.

mod body;
mod refusals;
mod response;
pub mod tls;

use refusals::refused;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::{Config, ServerConfig};
use crate::metrics::{EventOutcome, Metrics, SourceCounters};
use crate::route::Router;
use crate::store::{Ingested, NewEvent, Store, StoreError};
use crate::verify::{Rejection, Verifier};

use body::BodyError;
use response::{json_error, json_id};

/// Headers never kept with an event: they carry credentials of the sender or of hookrelay.
const ALWAYS_SECRET: [header::HeaderName; 3] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

/// One configured source, ready to verify requests.
struct Source {
    name: Arc<str>,
    enabled: bool,
    verifier: Verifier,
    counters: SourceCounters,
}

/// What a reload replaces: everything about a request that the config decides.
struct Live {
    sources: HashMap<Box<str>, Source>,
    router: Router,
    max_body: u64,
    body_timeout: Duration,
}

impl Live {
    /// The snapshot for `config`, counting nowhere until [`Live::count_into`].
    fn new(config: &Config) -> Live {
        let sources = config
            .sources
            .iter()
            .map(|s| {
                let source = Source {
                    name: Arc::from(s.name.as_str()),
                    enabled: s.enabled,
                    verifier: Verifier::new(&s.kind),
                    counters: SourceCounters::default(),
                };
                (Box::from(s.name.as_str()), source)
            })
            .collect();
        Live {
            sources,
            router: Router::new(config),
            max_body: config.server.max_body,
            body_timeout: config.server.body_timeout,
        }
    }

    /// Takes each source's counters from `metrics` (which must know the sources).
    fn count_into(&mut self, metrics: &Metrics) {
        for (name, source) in &mut self.sources {
            source.counters = metrics.source(name);
        }
    }
}

/// Everything a request needs, shared by all connections.
pub struct Ingress {
    /// Read once per request; replaced whole by a reload.
    live: ArcSwap<Live>,
    store: Store,
    /// Body bytes held in memory over all requests: `[server] max_buffered` permits.
    buffered: Arc<Semaphore>,
    max_buffered: u64,
    unknown_source: SourceCounters,
}

impl Ingress {
    /// Builds the request handler state from the config.
    pub fn new(config: &Config, store: Store) -> Ingress {
        Ingress {
            live: ArcSwap::from_pointee(Live::new(config)),
            store,
            buffered: Arc::new(Semaphore::new(
                usize::try_from(config.server.max_buffered)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            )),
            max_buffered: config.server.max_buffered,
            unknown_source: SourceCounters::default(),
        }
    }

    /// Counts every request into `metrics` (the handles are taken once, here).
    pub fn observed(mut self, metrics: &Metrics) -> Ingress {
        let mut live = self.live.into_inner();
        // Not shared yet: this `Ingress` was just built and serves nothing.
        if let Some(live) = Arc::get_mut(&mut live) {
            live.count_into(metrics);
        }
        self.live = ArcSwap::new(live);
        self.unknown_source = metrics.unknown_source();
        self
    }

    /// Serves `config`'s sources, verifiers, routes and body limits from the next request
    /// on; requests in progress finish with the snapshot they started with. `metrics` must
    /// already know `config`'s sources ([`Metrics::track`]).
    pub fn reconfigure(&self, config: &Config, metrics: &Metrics) {
        let mut live = Live::new(config);
        live.count_into(metrics);
        self.live.store(Arc::new(live));
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        // One trailing slash is allowed: product settings pages often add one to a URL.
        let Some(name) = path
            .strip_prefix("/hooks/")
            .map(|n| n.strip_suffix('/').unwrap_or(n))
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            // A sender set up with a wrong URL: seen in the log and the unknown-source count.
            self.unknown_source.inc(EventOutcome::UnknownSource);
            refused!(info, path = %truncate(path, 64), %peer, outcome = "unknown_source", "refused request: not a webhook path");
            let (parts, body) = request.into_parts();
            let response = json_error(
                StatusCode::NOT_FOUND,
                "not found: webhooks are sent to POST /hooks/{source}",
            );
            return after_reading(
                response,
                &parts.headers,
                Some(body),
                self.live.load().body_timeout,
            )
            .await;
        };
        // One snapshot for the whole request: verified and routed by the same config.
        let live = self.live.load_full();
        let Some(source) = live.sources.get(name).filter(|s| s.enabled) else {
            self.unknown_source.inc(EventOutcome::UnknownSource);
            let reason = format!(
                "no enabled source named {:?}: the last part of the URL must name one of the \
                 relay's [sources.NAME]",
                truncate(name, 64)
            );
            refused!(info, source = %truncate(name, 64), %peer, outcome = "unknown_source", reason, "refused event");
            let (parts, body) = request.into_parts();
            let response = json_error(StatusCode::NOT_FOUND, &reason);
            return after_reading(response, &parts.headers, Some(body), live.body_timeout).await;
        };
        if request.method() != Method::POST {
            source.counters.inc(EventOutcome::MethodNotAllowed);
            refused!(info, source = %source.name, %peer, method = %request.method(), outcome = "method_not_allowed", "refused event");
            let mut response = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "webhooks must be sent with POST",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("POST"));
            let (parts, body) = request.into_parts();
            return after_reading(response, &parts.headers, Some(body), live.body_timeout).await;
        }
        let (parts, body) = request.into_parts();
        if let Some(coding) = unknown_transfer_coding(&parts.headers) {
            source.counters.inc(EventOutcome::BodyError);
            refused!(info, source = %source.name, %peer, outcome = "body_error", transfer_encoding = %truncate(&coding, 64), "refused event: a transfer coding other than chunked");
            let response = json_error(
                StatusCode::NOT_IMPLEMENTED,
                &format!(
                    "Transfer-Encoding {:?} is not supported: send the body as it is, with \
                     Content-Length or Transfer-Encoding: chunked (a compressed body goes with \
                     Content-Encoding, and is relayed as it came)",
                    truncate(&coding, 64)
                ),
            );
            return after_reading(response, &parts.headers, Some(body), live.body_timeout).await;
        }
        if let Some(length) = content_length(&parts.headers).filter(|&l| l > live.max_body) {
            // Past the drain limit the rest is not worth reading: answer and close.
            let rest = (length <= DRAIN_LIMIT).then_some(body);
            return too_large(source, peer, &live, &parts.headers, rest).await;
        }
        let read = body::read(body, live.max_body, &self.buffered);
        let body::Body { bytes: body, _held } = match tokio::time::timeout(live.body_timeout, read)
            .await
        {
            Err(_) => {
                source.counters.inc(EventOutcome::BodyTimeout);
                refused!(info, source = %source.name, %peer, outcome = "body_timeout", "refused event");
                return json_error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                );
            }
            Ok(Err(BodyError::TooLarge(rest))) => {
                return too_large(source, peer, &live, &parts.headers, Some(rest)).await;
            }
            Ok(Err(BodyError::Busy(rest))) => {
                source.counters.inc(EventOutcome::Busy);
                refused!(warn, source = %source.name, %peer, outcome = "busy", max_buffered = self.max_buffered, "refused event: too many request bodies in memory");
                let response = unavailable(
                    "too many request bodies in progress ([server] max_buffered); send again later",
                );
                // Read and dropped, not held: the budget is for bodies kept until stored.
                return after_reading(response, &parts.headers, Some(rest), live.body_timeout)
                    .await;
            }
            Ok(Err(BodyError::Read(err))) => {
                source.counters.inc(EventOutcome::BodyError);
                refused!(info, source = %source.name, %peer, outcome = "body_error", error = %err, "refused event");
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
            Ok(Ok(body)) => body,
        };
        let now = unix_now();
        let verified = match source.verifier.verify(&parts.headers, &body, now) {
            Ok(v) => v,
            Err(rejection) => {
                let reason = source.verifier.explain(rejection, &parts.headers, now);
                return self.rejected(source, peer, rejection, &reason);
            }
        };
        let sinks = live
            .router
            .sinks_for(&source.name, verified.event_type.as_deref(), &body);
        let event = NewEvent {
            source: source.name.clone(),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            headers: kept_headers(&parts.headers, source.verifier.secret_headers()),
            event_type: verified.event_type,
            delivery_id: verified.delivery_id,
            body,
            sinks,
        };
        let fan_out = event.sinks.len();
        let event_type = event.event_type.clone();
        let delivery_id = event.delivery_id.clone();
        match self.store.ingest(event).await {
            Ok(Ingested::Accepted(id)) => {
                source.counters.inc(EventOutcome::Accepted);
                tracing::info!(source = %source.name, event_type = event_type.as_deref().unwrap_or(""), delivery_id = delivery_id.as_deref().unwrap_or(""), event_id = %id, sinks = fan_out, outcome = "accepted", "accepted event");
                json_id(StatusCode::ACCEPTED, id, false)
            }
            Ok(Ingested::Duplicate(id)) => {
                source.counters.inc(EventOutcome::Duplicate);
                tracing::info!(source = %source.name, event_type = event_type.as_deref().unwrap_or(""), delivery_id = delivery_id.as_deref().unwrap_or(""), event_id = %id, outcome = "duplicate", "duplicate delivery; nothing new queued");
                json_id(StatusCode::OK, id, true)
            }
            Err(err) => {
                source.counters.inc(EventOutcome::StoreFailed);
                let message = match &err {
                    StoreError::Closed => "shutting down; send again later",
                    _ => "the event could not be stored; send again later",
                };
                tracing::error!(source = %source.name, outcome = "store_failed", error = %err, "event not stored");
                unavailable(message)
            }
        }
    }

    fn rejected(
        &self,
        source: &Source,
        peer: SocketAddr,
        rejection: Rejection,
        reason: &str,
    ) -> Response<Full<Bytes>> {
        refused!(warn, source = %source.name, %peer, outcome = rejection.code(), reason, "refused event");
        let status = if rejection.is_unauthorized() {
            source.counters.inc(EventOutcome::Unauthorized);
            StatusCode::UNAUTHORIZED
        } else {
            source.counters.inc(EventOutcome::MalformedJson);
            StatusCode::BAD_REQUEST
        };
        json_error(status, reason)
    }
}

/// Serves `listener` until `shutdown` resolves, then stops accepting, lets requests in
/// progress finish (their commits included) for up to `grace`, and returns.
///
/// With `tls`, every connection is HTTPS (HTTP/2 or HTTP/1.1, by ALPN), and the
/// certificate is reloaded when its files change (and by the caller on SIGHUP); without,
/// plain HTTP/1.1.
pub async fn serve(
    listener: TcpListener,
    ingress: Arc<Ingress>,
    server: &ServerConfig,
    tls: Option<Arc<tls::TlsIngress>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(server.max_connections));
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .keep_alive(true)
        // A sender may shut its side once the request is out and wait for the answer;
        // without this, hyper drops the request unanswered when it sees that end of input.
        .half_close(true)
        .max_buf_size(64 * 1024);
    let http = Arc::new(http);
    let secure = tls.map(|tls| secure_setup(tls, server));
    let held_lines = tokio::spawn(refusals::report_held_lines());
    tokio::pin!(shutdown);
    loop {
        // Wait for a free connection slot first: beyond the limit, clients wait in the
        // kernel's accept queue instead of costing us memory.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        while connections.try_join_next().is_some() {}
        if let Some(secure) = &secure {
            connections.spawn(serve_tls(
                secure.clone(),
                stream,
                peer,
                ingress.clone(),
                stop_rx.clone(),
                permit,
            ));
            continue;
        }
        let ingress = ingress.clone();
        let http = http.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = service_fn(move |request| {
                let ingress = ingress.clone();
                async move { Ok::<_, Infallible>(ingress.handle(request, peer).await) }
            });
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(err) = ended {
                        log_connection_error(peer, &err);
                    }
                }
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    if let Some(secure) = &secure {
        secure.watcher.abort();
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.shutdown().await;
    }
    held_lines.abort();
}

/// How much of a refused body is read and dropped so that its sender sees the answer.
const DRAIN_LIMIT: u64 = 64 << 20;

/// `413`: the body is (or says it is) larger than `max_body`. The `rest` of the body is read
/// and dropped first (up to [`DRAIN_LIMIT`], within `body_timeout`), unless the sender
/// waits for `100 Continue` and so has not sent it; when it was not read to the end the
/// connection closes after the answer.
async fn too_large(
    source: &Source,
    peer: SocketAddr,
    live: &Live,
    headers: &HeaderMap,
    rest: Option<Incoming>,
) -> Response<Full<Bytes>> {
    let max_body = live.max_body;
    source.counters.inc(EventOutcome::TooLarge);
    refused!(info, source = %source.name, %peer, outcome = "too_large", max_body, "refused event");
    let response = json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body larger than {max_body} bytes: raise [server] max_body to take it"),
    );
    after_reading(response, headers, rest, live.body_timeout).await
}

/// `response` to a refused request, once the `rest` of its body has been read and dropped
/// (up to [`DRAIN_LIMIT`], within `body_timeout`; see [`body::discard`]), unless the sender
/// waits for `100 Continue` and so has not sent it. When the body was not read to the end
/// the connection closes after the answer.
async fn after_reading(
    mut response: Response<Full<Bytes>>,
    headers: &HeaderMap,
    rest: Option<Incoming>,
    body_timeout: Duration,
) -> Response<Full<Bytes>> {
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let drained = match rest {
        Some(rest) if !waits_for_continue => {
            tokio::time::timeout(body_timeout, body::discard(rest, DRAIN_LIMIT))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// `503` with `Retry-After`: nothing was stored; the sender should try again later.
fn unavailable(message: &str) -> Response<Full<Bytes>> {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    response
}

/// What every HTTPS connection shares.
#[derive(Clone)]
struct Secure {
    tls: Arc<tls::TlsIngress>,
    http: Arc<auto::Builder<TokioExecutor>>,
    handshake_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 `GOAWAY`).
    idle_timeout: Duration,
    watcher: Arc<tokio::task::AbortHandle>,
}

/// The HTTP/1.1 + HTTP/2 server and the reload task for HTTPS ingress.
fn secure_setup(tls: Arc<tls::TlsIngress>, server: &ServerConfig) -> Secure {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_timeout)
        .keep_alive(true)
        // A sender may shut its side once the request is out and wait for the answer;
        // without this, hyper drops the request unanswered when it sees that end of input.
        .half_close(true)
        .max_buf_size(64 * 1024);
    // HTTP/2 has no request-head timer between requests: a ping every `header_timeout`
    // finds a peer that vanished, and `idle_close` closes one that stays silent.
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(server.header_timeout))
        .keep_alive_timeout(server.header_timeout);
    let watcher = tokio::spawn(tls::watch(tls.clone())).abort_handle();
    Secure {
        tls,
        http: Arc::new(http),
        handshake_timeout: server.header_timeout,
        idle_timeout: server.header_timeout,
        watcher: Arc::new(watcher),
    }
}

/// One HTTPS connection: the handshake (bounded by `header_timeout`, like a request head),
/// then HTTP/2 or HTTP/1.1 until it closes or shutdown asks it to finish.
async fn serve_tls(
    secure: Secure,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ingress: Arc<Ingress>,
    mut stop: watch::Receiver<bool>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _permit = permit;
    let mut stream = stream;
    match tokio::time::timeout(secure.handshake_timeout, plain_http(&mut stream)).await {
        Ok(true) => {
            refused!(info, %peer, outcome = "plain_http_on_https", "refused connection: plain HTTP sent to the HTTPS listener");
            return;
        }
        Ok(false) => {}
        Err(_) => {
            refused!(info, %peer, outcome = "tls_handshake_timeout", "refused connection");
            return;
        }
    }
    let acceptor = secure.tls.acceptor();
    let stream = match tokio::time::timeout(secure.handshake_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            refused!(info, %peer, outcome = "tls_handshake_failed", error = %err, "refused connection");
            return;
        }
        Err(_) => {
            refused!(info, %peer, outcome = "tls_handshake_timeout", "refused connection");
            return;
        }
    };
    // Requests in flight on this connection, watched by `idle_close`.
    let (in_flight, watched) = watch::channel(0usize);
    let in_flight = Arc::new(in_flight);
    let service = service_fn(move |request| {
        let ingress = ingress.clone();
        let in_flight = in_flight.clone();
        async move {
            let _busy = Busy::start(in_flight);
            Ok::<_, Infallible>(ingress.handle(request, peer).await)
        }
    });
    let connection = secure.http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => {
            if let Err(err) = ended {
                log_connection_error(peer, err.as_ref());
            }
        }
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
        () = idle_close(watched, secure.idle_timeout) => {
            tracing::debug!(%peer, "closing an idle HTTPS connection");
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Whether the client opened with plain HTTP instead of a TLS handshake, in which case it
/// has been answered `400` in plain HTTP, naming the fix. A sender set up with `http://`
/// for an HTTPS relay would otherwise see only a reset or a TLS alert it cannot read.
async fn plain_http(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A TLS connection opens with a handshake record (content type 22); every HTTP/1.x
    // request opens with a method's capital letter.
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0].is_ascii_uppercase() => {}
        _ => return false,
    }
    // Read the request's head first: closing with it unread would make the close a reset,
    // which can reach the client before the answer does.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while head.len() < 64 << 10 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = r#"{"error":"this relay takes HTTPS: send to https:// rather than http://"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    // What follows (a body) is read and dropped for a moment, for the same reason.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut left = 1usize << 20;
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
    true
}

/// Logs why hyper ended a connection. Requests it refused itself, before any source saw
/// them (a head too large: `431`; a malformed one: `400`), are logged like refused events,
/// so an operator can answer a sender who reports them; timeouts and resets are routine.
fn log_connection_error(peer: SocketAddr, err: &(dyn std::error::Error + 'static)) {
    let parse = err
        .downcast_ref::<hyper::Error>()
        .filter(|e| e.is_parse() || e.is_parse_too_large());
    match parse {
        Some(e) if e.is_parse_too_large() => {
            refused!(info, %peer, outcome = "headers_too_large", error = %e, "refused request: its head is over 64 KiB or 100 headers (431)");
        }
        Some(e) => {
            refused!(info, %peer, outcome = "malformed_request", error = %e, "refused request: not valid HTTP/1.1 (400)");
        }
        None => tracing::debug!(%peer, error = %err, "connection ended with an error"),
    }
}

/// One request in flight on a connection, counted until dropped (also when the request is
/// cancelled).
struct Busy(Arc<watch::Sender<usize>>);

impl Busy {
    fn start(count: Arc<watch::Sender<usize>>) -> Busy {
        count.send_modify(|n| *n += 1);
        Busy(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Resolves once no request has been in flight for `timeout`. HTTP/2 needs this: hyper's
/// `header_read_timeout` only guards HTTP/1.1 between requests, so an idle HTTP/2
/// connection that answers pings would otherwise hold a connection slot for ever.
async fn idle_close(mut in_flight: watch::Receiver<usize>, timeout: Duration) {
    loop {
        let idle = *in_flight.borrow_and_update() == 0;
        let changed = if idle {
            match tokio::time::timeout(timeout, in_flight.changed()).await {
                Err(_) => return,
                Ok(changed) => changed,
            }
        } else {
            in_flight.changed().await
        };
        if changed.is_err() {
            // The service (and the connection with it) is gone; the connection's own
            // future ends the select.
            std::future::pending::<()>().await;
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The `Transfer-Encoding` of a request whose body is in a coding besides `chunked` (gzip,
/// deflate, compress): hyper takes away only the chunked framing, so the body would be
/// stored and relayed still encoded, and with the header gone (it is hop-by-hop) no one
/// could tell. RFC 9112 asks for `501` then.
fn unknown_transfer_coding(headers: &HeaderMap) -> Option<String> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty());
    codings
        .any(|c| !c.eq_ignore_ascii_case(b"chunked"))
        .then(|| {
            headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
}

/// Headers worth keeping with the event: all but credentials.
fn kept_headers(headers: &HeaderMap, secret: &[header::HeaderName]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| !ALWAYS_SECRET.contains(name) && !secret.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Cuts attacker-chosen text (an unknown source name) before it reaches a log line.
fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}
