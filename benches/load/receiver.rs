//! The fast loopback receiver of the phases with webhook sinks: a hyper 1 HTTP/1.1 server in
//! the bench process, on its own runtime (threads named `receiver`, so their CPU can be read
//! apart), that reads each request's body and answers `200` at once. It never slows the relay
//! down, so what the phases measure is the relay's delivery path.
//!
//! Each sink posts to its own path (`/s0`, `/s1`, …); the receiver counts deliveries per
//! sink and in total, and wakes whoever waits for a count. While a window is open it also
//! records the end-to-end latency of each delivery whose event was received in that window:
//! the relay's event id is a UUIDv7 whose first 48 bits are the receipt time in
//! milliseconds, and the webhook sink sends it as `webhook-id`, so the latency is the arrival
//! time here minus that. Both clocks are this machine's wall clock, read to the millisecond:
//! each latency is exact to about ±1 ms.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::MAX_LATENCY_US;

/// A running receiver; dropping it stops it.
pub(crate) struct Receiver {
    /// Where it listens (loopback).
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
    runtime: tokio::runtime::Runtime,
}

/// What the request handlers share with the phase.
struct State {
    /// Deliveries per sink, by the index in the path.
    per_sink: Vec<AtomicU64>,
    total: AtomicU64,
    /// Signalled after every delivery: the phase waits on it for a count.
    arrived: Notify,
    /// Receipt times (Unix ms) of the events whose latency is recorded: `[start, end)`.
    window_start_ms: AtomicU64,
    window_end_ms: AtomicU64,
    /// Receipt to arrival here, in µs (whole milliseconds: the id has no finer time).
    latency_us: Mutex<Histogram<u64>>,
    /// Requests that were not a delivery of a known sink with an event id: a broken setup.
    rejected: AtomicU64,
}

impl Receiver {
    /// Starts a receiver for `sinks` sinks on a runtime of `threads` workers.
    pub(crate) fn start(sinks: usize, threads: usize) -> anyhow::Result<Receiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("receiver")
            .enable_all()
            .build()
            .context("cannot start the receiver's runtime")?;
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .context("the receiver cannot listen on loopback")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            per_sink: (0..sinks).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            arrived: Notify::new(),
            window_start_ms: AtomicU64::new(u64::MAX),
            window_end_ms: AtomicU64::new(u64::MAX),
            latency_us: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?),
            rejected: AtomicU64::new(0),
        });
        runtime.spawn(serve(listener, state.clone()));
        Ok(Receiver {
            addr,
            state,
            runtime,
        })
    }

    /// The URL sink number `index` posts to.
    pub(crate) fn url(&self, index: usize) -> String {
        format!("http://{}/s{index}", self.addr)
    }

    /// Deliveries received so far, all sinks together.
    pub(crate) fn delivered(&self) -> u64 {
        self.state.total.load(Ordering::Acquire)
    }

    /// Deliveries received so far by each sink.
    pub(crate) fn per_sink(&self) -> Vec<u64> {
        self.state
            .per_sink
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect()
    }

    /// Requests that were not a delivery to a known sink (each one a failure of the setup).
    pub(crate) fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Acquire)
    }

    /// From now on, records the latency of events received from now on.
    pub(crate) fn open_window(&self) {
        self.state.window_end_ms.store(u64::MAX, Ordering::Release);
        self.state
            .window_start_ms
            .store(unix_ms(), Ordering::Release);
    }

    /// Events received from now on are no longer recorded; deliveries of those received
    /// while the window was open still are, however late they arrive.
    pub(crate) fn close_window(&self) {
        self.state.window_end_ms.store(unix_ms(), Ordering::Release);
    }

    /// The recorded latencies so far.
    pub(crate) fn latency_us(&self) -> Histogram<u64> {
        self.state
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until `count` deliveries have arrived in total, or `deadline`; says whether
    /// they did.
    pub(crate) fn wait_for(&self, count: u64, deadline: Instant) -> bool {
        let state = &self.state;
        self.runtime.block_on(async {
            let deadline = tokio::time::Instant::from_std(deadline);
            loop {
                if state.total.load(Ordering::Acquire) >= count {
                    return true;
                }
                // `notify_one` leaves a permit when nobody waits, so a delivery between the
                // check above and this wait still wakes it.
                if tokio::time::timeout_at(deadline, state.arrived.notified())
                    .await
                    .is_err()
                {
                    return state.total.load(Ordering::Acquire) >= count;
                }
            }
        })
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(receive(&state, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One delivery: counted once its whole body is in, then answered `200`.
async fn receive(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let sink = request
        .uri()
        .path()
        .strip_prefix("/s")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < state.per_sink.len());
    // The first 48 bits of a UUIDv7 are its Unix time in milliseconds.
    let received_ms = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .map(|id| (id.as_u128() >> 80) as u64);
    let body = request.into_body().collect().await;
    let (Some(sink), Some(received_ms), Ok(_)) = (sink, received_ms, body) else {
        state.rejected.fetch_add(1, Ordering::AcqRel);
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let now_ms = unix_ms();
    let start = state.window_start_ms.load(Ordering::Acquire);
    let end = state.window_end_ms.load(Ordering::Acquire);
    if (start..end).contains(&received_ms) {
        let us = now_ms.saturating_sub(received_ms).saturating_mul(1000);
        let _ = state
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(us.clamp(1, MAX_LATENCY_US));
    }
    state.per_sink[sink].fetch_add(1, Ordering::AcqRel);
    state.total.fetch_add(1, Ordering::AcqRel);
    state.arrived.notify_one();
    Response::new(Full::new(Bytes::new()))
}
