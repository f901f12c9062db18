//! Load bench: the real `hookrelay` binary over loopback beside a bare hyper server, measured
//! in the same run by the same client, so their ratio means something on any machine.
//!
//! Six phases; the first five are a warm-up (not counted) then a measured window:
//!
//! 1. **bare baseline**: a hyper 1 HTTP/1.1 server in this process, on its own tokio
//!    runtime, that reads the whole body and answers `202` with a small JSON id. No
//!    verification, no storage: the best any relay could do on this machine.
//! 2. **hookrelay, signed + durable**: the release binary (`CARGO_BIN_EXE_hookrelay`) as a
//!    child process with one `kind = "github"` source and no routes, so every request is
//!    HMAC-verified and fsync'd to redb before its `202`, and nothing else runs. Then both
//!    again in alternating rounds (`load/rounds.rs`): the median ratio, robust to a noisy host,
//!    beside a third server in the same rounds, the durable ceiling (`load/ceiling.rs`: the
//!    signature check and one contiguous write and sync per batch, no index).
//! 3. **hookrelay + JetStream**: the same, plus one `kind = "nats"` sink every event is
//!    routed to, publishing to a `nats-server -js` started here; reported as a ratio to
//!    phase 2, with the publish rate and how long the backlog took to drain. Skipped, saying
//!    so, when `nats-server` is not installed.
//! 4. **fan-out** (`load/fanout.rs`): every event routed to 4 webhook sinks served by a fast
//!    receiver in this process (`load/receiver.rs`), for `LOAD_FANOUT_SECONDS` (60): ingest
//!    and delivery rates, receipt-to-delivery latency, queue depth, time to drain.
//! 5. **half of peak** (`load/halfpeak.rs`): the relay of phase 2 driven open-loop at half
//!    the rate phase 2 measured; latency free of coordinated omission.
//! 6. **backlog** (`load/backlog.rs`): `LOAD_BACKLOG_EVENTS` (250,000) events × 4 paused
//!    sinks filled through the relay, then a restart with the sinks unpaused: time to
//!    serve, RSS, drain rate.
//!
//! The load generator is a hyper 1 client (`hyper::client::conn::http1`), one task per
//! keep-alive connection, on its own runtime. Every request carries the same ~1 KiB GitHub
//! push body (GitHub signs only the body, so one signature serves all) and a unique
//! `X-GitHub-Delivery`, so dedup never short-cuts a commit. Every reply must be `202`: any
//! other status or a connection error fails the bench after the phase.
//!
//! The load generator and the server share the same cores: the figures are a ratio on one
//! machine, not the server's capacity on a dedicated one. CPU time per side is printed so
//! the split can be read off.
//!
//! Knobs (environment): `LOAD_SECONDS` (measured, default 10), `LOAD_WARMUP` (default 3),
//! `LOAD_CONNECTIONS` (default 64), `LOAD_ROUNDS` and `LOAD_ROUND_SECONDS` (default 5 × 5 s),
//! `LOAD_FANOUT_SECONDS`, `LOAD_BACKLOG_EVENTS`. Run with
//! `cargo bench --bench load`; the table is also written to `target/load-bench.md`. Without
//! `--bench` (as `cargo test --benches` runs it) it is a smoke run of every phase (1 s
//! windows, a 2,000-event backlog) that writes nothing.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

// The later phases live in `benches/load/` (a folder without `main.rs`, so cargo does not
// take its files for benches of their own).
#[path = "load/backlog.rs"]
mod backlog;
#[path = "load/ceiling.rs"]
mod ceiling;
#[path = "load/fanout.rs"]
mod fanout;
#[path = "load/halfpeak.rs"]
mod halfpeak;
#[path = "load/metrics.rs"]
mod metrics;
#[path = "load/receiver.rs"]
mod receiver;
#[path = "load/rounds.rs"]
mod rounds;

/// The source's secret in the relay's config; the client signs with it.
const SECRET: &str = "bench-secret-0123456789";

/// Keeps the "listening" line (target `hookrelay`, the binary) and warnings, and drops the
/// per-event `info` lines of `hookrelay::ingress` ("accepted event"), which would otherwise
/// cost one formatted JSON line on stderr per request and measure logging, not the relay.
/// `LOAD_RELAY_LOG` replaces it for a diagnostic run (e.g. add
/// `hookrelay::store::writer=trace` for one line per commit with its size and duration); the
/// relay's whole log is copied to `target/load-bench-relay.log` either way.
const RELAY_LOG_FILTER: &str = "warn,hookrelay=info,hookrelay::ingress=warn";

fn relay_log_filter() -> String {
    std::env::var("LOAD_RELAY_LOG").unwrap_or_else(|_| RELAY_LOG_FILTER.to_string())
}

/// Slowest latency the histograms track; anything above is clamped (and would be a failure
/// of the run anyway).
const MAX_LATENCY_US: u64 = 60_000_000;

/// How much to run and how.
#[derive(Clone, Copy)]
struct Plan {
    warmup: Duration,
    measured: Duration,
    connections: usize,
    /// A smoke run (`cargo test --benches`): short, writes no report.
    smoke: bool,
    /// Open loop at this many requests/s over all connections, each on a fixed schedule;
    /// `None`: closed loop, each connection sends its next request once the last is answered.
    pace: Option<f64>,
}

/// What a later phase adds to the report: its rows in the table and its paragraph.
struct Section {
    rows: Vec<Row>,
    text: String,
}

/// What one phase measured.
struct PhaseResult {
    name: &'static str,
    requests: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
    /// CPU seconds over the measured window: the server's threads, the client's.
    server_cpu: f64,
    client_cpu: f64,
    /// The relay's store writer thread over the window (zero for the baseline).
    writer: Sched,
    /// Every `202` of the phase, warm-up included: the events the relay stored.
    accepted: u64,
    /// Paced phases: counted requests whose connection was still busy with the previous one
    /// at their scheduled time (the server was behind).
    behind_schedule: u64,
    /// Fraction of the whole machine busy during the window, everyone included.
    machine_busy: f64,
    /// Fraction of the whole machine in interrupt and softirq work.
    machine_interrupts: f64,
    /// The busiest other processes over the window, by name, in cores.
    others: Vec<(String, f64)>,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Cores used by everything but this server and this client: other processes, and
    /// interrupt work not charged to a thread (loopback TCP of both sides, mostly). More
    /// than the interrupts means other processes disturbed the figures.
    fn other_cores(&self, cores: usize) -> f64 {
        let ours = (self.server_cpu + self.client_cpu) / self.seconds;
        (self.machine_busy * cores as f64 - ours).max(0.0)
    }
}

/// The relay's memory and store, sampled around its phase.
struct RelayFacts {
    rss_idle_kib: u64,
    rss_end_kib: u64,
    rss_peak_kib: u64,
    store_bytes: u64,
    log_lines_during_load: usize,
    /// Bytes the relay caused to be written to the disk during the load (warm-up included).
    disk_written: u64,
}

fn main() {
    if let Err(err) = run() {
        eprintln!("load bench FAILED: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let plan = Plan {
        warmup: Duration::from_secs(env_u64("LOAD_WARMUP", if smoke { 0 } else { 3 })?),
        measured: Duration::from_secs(env_u64("LOAD_SECONDS", if smoke { 1 } else { 10 })?),
        connections: env_u64("LOAD_CONNECTIONS", 64)? as usize,
        smoke,
        pace: None,
    };
    ensure!(
        plan.measured > Duration::ZERO,
        "LOAD_SECONDS must be at least 1"
    );
    ensure!(plan.connections > 0, "LOAD_CONNECTIONS must be at least 1");
    let body = Bytes::from(push_payload());
    let machine = Machine::read();
    println!(
        "load bench: {} keep-alive connections, {} B body, {} s warm-up + {} s measured per phase",
        plan.connections,
        body.len(),
        plan.warmup.as_secs(),
        plan.measured.as_secs()
    );
    println!(
        "machine: {} cores ({}), kernel {}; the load generator and the server share these cores",
        machine.cores, machine.cpu, machine.kernel
    );

    let client = client_runtime(&machine)?;

    println!("\n[1/6] bare hyper baseline");
    let baseline = {
        let server = baseline_runtime(&machine)?;
        let listener = server.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        server.spawn(serve_baseline(listener));
        let pid = std::process::id();
        let result = drive(
            &client,
            addr,
            &body,
            plan,
            "bare hyper, 202",
            &[pid],
            || {
                Ok((
                    thread_cpu(pid, |name| name.starts_with("baseline"))?,
                    thread_cpu(pid, |name| name.starts_with("load-client"))?,
                    Sched::default(),
                ))
            },
        )?;
        server.shutdown_timeout(Duration::from_secs(1));
        result
    };
    report_phase(&baseline, &machine);

    println!("\n[2/6] hookrelay: github HMAC verified, fsync'd to redb, no routes");
    let dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    let relay = RelayProcess::start(dir.path())?;
    // The pid lets one attach a profiler (`perf record -p`) during the load.
    println!(
        "  hookrelay pid {} listening on {}",
        relay.pid(),
        relay.addr
    );
    // One request end to end before measuring "idle": the store is open and the config
    // proven to accept a signed event.
    client.block_on(probe(relay.addr, &body))?;
    let rss_idle_kib = vm_kib(relay.pid(), "VmRSS")?;
    let written_idle = disk_written(relay.pid())?;
    let lines_before = relay.log_lines();
    let relay_pid = relay.pid();
    let self_pid = std::process::id();
    let relay_result = drive(
        &client,
        relay.addr,
        &body,
        plan,
        "hookrelay, signed + durable",
        &[self_pid, relay_pid],
        || {
            Ok((
                thread_cpu(relay_pid, |_| true)?,
                thread_cpu(self_pid, |name| name.starts_with("load-client"))?,
                thread_sched(relay_pid, "store-writer")?,
            ))
        },
    )?;
    let rss_end_kib = vm_kib(relay.pid(), "VmRSS")?;
    let rss_peak_kib = vm_kib(relay.pid(), "VmHWM")?;
    let written_end = disk_written(relay.pid())?;
    let log_lines_during_load = relay.log_lines() - lines_before;
    relay.stop()?;
    let facts = RelayFacts {
        rss_idle_kib,
        rss_end_kib,
        rss_peak_kib,
        store_bytes: std::fs::metadata(dir.path().join("store/hookrelay.redb"))
            .map(|m| m.len())
            .unwrap_or(0),
        log_lines_during_load,
        disk_written: written_end.saturating_sub(written_idle),
    };
    report_phase(&relay_result, &machine);

    println!("\n[2/6, again] bare hyper and hookrelay in alternating rounds");
    let rounds = rounds::alternating_rounds(&client, &body, plan, &machine)?;

    println!("\n[3/6] hookrelay publishing every event to NATS JetStream");
    let jetstream = jetstream_phase(&client, &body, plan, &machine, &relay_result)?;

    println!("\n[4/6] hookrelay fanning every event out to 4 webhook sinks");
    let fanout = fanout::fanout_phase(&client, &body, plan, &machine, &baseline, &relay_result)?;

    println!("\n[5/6] hookrelay at half of its peak rate, open loop");
    let half_peak =
        halfpeak::half_peak_phase(&client, &body, plan, &machine, &baseline, &relay_result)?;

    println!("\n[6/6] hookrelay restarted on a backlog of pending deliveries");
    let backlog = backlog::backlog_phase(&client, &body, plan, &machine, &baseline)?;

    let sections = [fanout, half_peak, backlog];
    let rows: Vec<Row> = sections
        .iter()
        .flat_map(|s| &s.rows)
        .map(Row::clone)
        .collect();
    let mut markdown = table(
        &baseline,
        &relay_result,
        &rows,
        &facts,
        &machine,
        plan,
        body.len(),
    );
    markdown.push_str(&rounds.text);
    if let Some(section) = jetstream {
        markdown.push_str(&section);
    }
    for section in &sections {
        markdown.push_str(&section.text);
    }
    println!("\n{markdown}");
    if !plan.smoke {
        let path = target_dir().join("load-bench.md");
        std::fs::write(&path, &markdown)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("written to {}", path.display());
    }
    Ok(())
}

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?}: expected a whole number")),
        Err(_) => Ok(default),
    }
}

/// A realistic GitHub `push` payload, about 1 KiB, compact JSON as GitHub sends it. The
/// peer scripts (`benches/peers.sh`) send the same file, so their figures compare.
fn push_payload() -> Vec<u8> {
    include_bytes!("fixtures/push.json").to_vec()
}

/// `sha256=<hex HMAC-SHA256 of body>`, as GitHub's `X-Hub-Signature-256`.
fn signature_256(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `sha1=<hex HMAC-SHA1 of body>`: GitHub still sends the legacy header beside the new one.
fn signature_1(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The request GitHub would send for this delivery.
fn github_request(
    addr: SocketAddr,
    body: &Bytes,
    sig: &Signatures,
    delivery: &str,
) -> Request<Full<Bytes>> {
    Request::post("/hooks/github")
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "GitHub-Hookshot/bench")
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-github-hook-id", "471147384")
        .header("x-github-hook-installation-target-id", "186853002")
        .header("x-github-hook-installation-target-type", "repository")
        .header("x-hub-signature", sig.sha1.as_str())
        .header("x-hub-signature-256", sig.sha256.as_str())
        .body(Full::new(body.clone()))
        .expect("static request parts are valid")
}

/// Both signature headers, computed once: the body never changes.
struct Signatures {
    sha1: String,
    sha256: String,
}

/// Unique delivery ids across connections, requests and bench runs (the relay's store is new
/// each run, but a unique run prefix keeps ids honest even if it were not).
struct DeliveryIds {
    run: u128,
}

impl DeliveryIds {
    fn new() -> DeliveryIds {
        DeliveryIds {
            run: uuid::Uuid::now_v7().as_u128() & !((1u128 << 64) - 1),
        }
    }
    fn id(&self, connection: usize, seq: u64) -> String {
        let low = ((connection as u128) << 40) | seq as u128;
        uuid::Uuid::from_u128(self.run | low)
            .hyphenated()
            .to_string()
    }
}

fn client_runtime(machine: &Machine) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine.cores)
        .thread_name("load-client")
        .enable_all()
        .build()
        .context("cannot start the client runtime")
}

fn baseline_runtime(machine: &Machine) -> anyhow::Result<tokio::runtime::Runtime> {
    // As many workers as the relay's runtime gets by default: one per core.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(machine.cores)
        .thread_name("baseline-server")
        .enable_all()
        .build()
        .context("cannot start the baseline server runtime")
}

/// The bare server: reads the whole body, answers `202 {"id":"<uuid>"}` like the relay.
async fn serve_baseline(listener: TcpListener) {
    serve_http1(listener, |request: Request<Incoming>| async move {
        match request.into_body().collect().await {
            Ok(_) => id_reply(StatusCode::ACCEPTED),
            Err(_) => id_reply(StatusCode::BAD_REQUEST),
        }
    })
    .await
}

/// Serves keep-alive HTTP/1.1 connections from `listener` with `handle`, until the runtime
/// stops.
async fn serve_http1<F, R>(listener: TcpListener, handle: F)
where
    F: Fn(Request<Incoming>) -> R + Clone + Send + 'static,
    R: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let reply = handle(request);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A reply like the relay's: `status` with `{"id":"<a fresh UUIDv7>"}`.
fn id_reply(status: StatusCode) -> Response<Full<Bytes>> {
    let id = uuid::Uuid::now_v7();
    let mut response = Response::new(Full::new(Bytes::from(format!("{{\"id\":\"{id}\"}}"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// What one connection task saw.
#[derive(Default)]
struct ConnectionTally {
    /// `202`s inside the measured window.
    requests: u64,
    /// All `202`s.
    accepted: u64,
    /// Counted requests sent late because the previous reply had not come (paced only).
    behind_schedule: u64,
    latency_us: Option<Histogram<u64>>,
    failures: Vec<String>,
}

/// Runs warm-up then the measured window against `addr`; `cpu` reads the server's and the
/// client's CPU seconds and the relay writer's scheduling and is called at the window's edges; processes in `ours` (this one, the
/// relay) are left out of the "other processes" list.
fn drive(
    client: &tokio::runtime::Runtime,
    addr: SocketAddr,
    body: &Bytes,
    plan: Plan,
    name: &'static str,
    ours: &[u32],
    cpu: impl Fn() -> anyhow::Result<(f64, f64, Sched)>,
) -> anyhow::Result<PhaseResult> {
    let signatures = Arc::new(Signatures {
        sha1: signature_1(body),
        sha256: signature_256(body),
    });
    let ids = Arc::new(DeliveryIds::new());
    let started = Instant::now();
    let window_start = started + plan.warmup;
    let window_end = window_start + plan.measured;
    let mut tasks = Vec::with_capacity(plan.connections);
    for connection in 0..plan.connections {
        // Each connection sends `rate / connections` requests/s, the connections' schedules
        // staggered evenly so the server sees a steady stream, not bursts.
        let pacing = plan.pace.map(|rate| {
            let interval = Duration::from_secs_f64(plan.connections as f64 / rate);
            Pacing {
                first: started + interval.mul_f64(connection as f64 / plan.connections as f64),
                interval,
            }
        });
        let body = body.clone();
        let signatures = signatures.clone();
        let ids = ids.clone();
        tasks.push(client.spawn(async move {
            let mut tally = ConnectionTally {
                latency_us: Some(
                    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid bounds"),
                ),
                ..ConnectionTally::default()
            };
            if let Err(err) = connection_loop(
                addr,
                &body,
                &signatures,
                &ids,
                connection,
                pacing,
                window_start,
                window_end,
                &mut tally,
            )
            .await
            {
                tally
                    .failures
                    .push(format!("connection {connection}: {err:#}"));
            }
            tally
        }));
    }
    // Sample CPU at the window's edges from this (non-runtime) thread.
    std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
    let busy_start = MachineTicks::read()?;
    let procs_start = process_cpu();
    let (server_start, client_start, writer_start) = cpu()?;
    std::thread::sleep(window_end.saturating_duration_since(Instant::now()));
    let (server_end, client_end, writer_end) = cpu()?;
    let procs_end = process_cpu();
    let busy_end = MachineTicks::read()?;
    let others = top_others(&procs_start, &procs_end, ours, plan.measured.as_secs_f64());

    let mut latency_us = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3)?;
    let mut requests = 0;
    let mut accepted = 0;
    let mut behind_schedule = 0;
    let mut failures = Vec::new();
    for task in tasks {
        let tally = client
            .block_on(task)
            .context("a connection task panicked")?;
        requests += tally.requests;
        accepted += tally.accepted;
        behind_schedule += tally.behind_schedule;
        if let Some(h) = &tally.latency_us {
            latency_us.add(h)?;
        }
        failures.extend(tally.failures);
    }
    if !failures.is_empty() {
        let shown: Vec<_> = failures.iter().take(5).cloned().collect();
        bail!(
            "{name}: {} failed request(s) or connection(s); every reply must be 202. First ones:\n  {}",
            failures.len(),
            shown.join("\n  ")
        );
    }
    ensure!(
        requests > 0,
        "{name}: no request completed in the measured window"
    );
    Ok(PhaseResult {
        name,
        requests,
        seconds: plan.measured.as_secs_f64(),
        latency_us,
        server_cpu: server_end - server_start,
        client_cpu: client_end - client_start,
        writer: Sched {
            on_cpu: writer_end.on_cpu - writer_start.on_cpu,
            waiting_for_cpu: writer_end.waiting_for_cpu - writer_start.waiting_for_cpu,
        },
        accepted,
        behind_schedule,
        machine_busy: busy_end.busy_since(&busy_start),
        machine_interrupts: busy_end.interrupts_since(&busy_start),
        others,
    })
}

/// One connection's schedule in an open-loop phase.
#[derive(Clone, Copy)]
struct Pacing {
    first: Instant,
    interval: Duration,
}

/// One keep-alive connection sending requests until `window_end`.
///
/// Closed loop (`pacing` is `None`): back to back; requests that start before `window_start`
/// (warm-up) or end after `window_end` are not counted.
///
/// Open loop: request `k` is due at `first + k × interval`. Its latency runs from that
/// scheduled time whenever the previous reply came after it (the server held the
/// connection up: measuring from the late send would hide that wait, the "coordinated
/// omission" of closed-loop tools), else from the actual send (a timer firing late is the
/// client's delay, not the server's). Every request scheduled inside the window counts,
/// however late it ends.
#[allow(clippy::too_many_arguments)]
async fn connection_loop(
    addr: SocketAddr,
    body: &Bytes,
    signatures: &Signatures,
    ids: &DeliveryIds,
    connection: usize,
    pacing: Option<Pacing>,
    window_start: Instant,
    window_end: Instant,
    tally: &mut ConnectionTally,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let histogram = tally.latency_us.as_mut().expect("set by the caller");
    let mut seq = 0u64;
    let mut previous_done: Option<Instant> = None;
    loop {
        // `sent`: where this request's latency starts; `behind`: its connection was still
        // waiting for the previous reply when it fell due.
        let (sent, scheduled, behind) = match pacing {
            None => (Instant::now(), None, false),
            Some(p) => {
                let due = p.first + p.interval.mul_f64(seq as f64);
                if due > Instant::now() {
                    tokio::time::sleep_until(due.into()).await;
                }
                if previous_done.is_some_and(|done| done > due) {
                    (due, Some(due), true)
                } else {
                    (Instant::now(), Some(due), false)
                }
            }
        };
        if scheduled.unwrap_or(sent) >= window_end {
            break;
        }
        sender
            .ready()
            .await
            .context("connection closed by the server")?;
        let request = github_request(addr, body, signatures, &ids.id(connection, seq));
        seq += 1;
        let response = sender
            .send_request(request)
            .await
            .context("request failed")?;
        let status = response.status();
        let reply = response
            .into_body()
            .collect()
            .await
            .context("reading the reply")?
            .to_bytes();
        let done = Instant::now();
        previous_done = Some(done);
        if status != StatusCode::ACCEPTED {
            let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
            tally.failures.push(format!("status {status}: {text}"));
            if tally.failures.len() >= 5 {
                break;
            }
            continue;
        }
        tally.accepted += 1;
        let counted = match scheduled {
            None => sent >= window_start && done <= window_end,
            Some(due) => due >= window_start,
        };
        if counted {
            tally.requests += 1;
            if behind {
                tally.behind_schedule += 1;
            }
            let us = (done - sent).as_micros() as u64;
            histogram.record(us.clamp(1, MAX_LATENCY_US))?;
        }
    }
    drop(sender);
    let _ = driver.await;
    Ok(())
}

/// Sends one signed event and insists on a `202`: the relay is up and configured right.
async fn probe(addr: SocketAddr, body: &Bytes) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let signatures = Signatures {
        sha1: signature_1(body),
        sha256: signature_256(body),
    };
    let delivery = uuid::Uuid::now_v7().to_string();
    let response = sender
        .send_request(github_request(addr, body, &signatures, &delivery))
        .await?;
    let status = response.status();
    let reply = response.into_body().collect().await?.to_bytes();
    ensure!(
        status == StatusCode::ACCEPTED,
        "the relay answered the first signed event with {status}: {}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}

/// The release binary on a config in `dir`, its stderr drained by a thread (a full pipe
/// would stall the relay) that picks out the listening address and counts lines.
struct RelayProcess {
    child: Child,
    addr: SocketAddr,
    lines: Arc<AtomicU64>,
    /// The admin listener's address, sent once its line is logged (with `[admin]` only).
    admin: mpsc::Receiver<SocketAddr>,
}

impl RelayProcess {
    fn start(dir: &Path) -> anyhow::Result<RelayProcess> {
        RelayProcess::start_with(dir, "", &relay_log_filter())
    }

    /// Like [`RelayProcess::start`], with `extra` appended to the config (sinks, routes) and
    /// `log_filter` as `RUST_LOG`.
    fn start_with(dir: &Path, extra: &str, log_filter: &str) -> anyhow::Result<RelayProcess> {
        let config = dir.join("hookrelay.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\n\n[storage]\npath = \"store/hookrelay.redb\"\n\n\
                 [sources.github]\nkind = \"github\"\nsecret = \"{SECRET}\"\n{extra}"
            ),
        )?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookrelay"))
            .args(["serve", "--log-format", "json", "--config"])
            .arg(&config)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the hookrelay binary")?;
        let stderr = child.stderr.take().expect("stderr is piped");
        std::fs::create_dir_all(target_dir())
            .with_context(|| format!("cannot create {}", target_dir().display()))?;
        let log_path = target_dir().join("load-bench-relay.log");
        let mut log_copy = std::fs::File::create(&log_path)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let lines = Arc::new(AtomicU64::new(0));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (admin_tx, admin_rx) = mpsc::channel();
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                let mut addr_tx = Some(addr_tx);
                let mut admin_tx = Some(admin_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.fetch_add(1, Ordering::Relaxed);
                    let _ = writeln!(log_copy, "{line}");
                    // The admin listener's line comes after the "listening" one (the store is
                    // opened in between), when the config has an `[admin]` section.
                    if admin_tx.is_some()
                        && let Some(addr) = admin_listen_addr(&line)
                    {
                        let _ = admin_tx.take().map(|tx| tx.send(addr));
                    }
                    if let Some(tx) = &addr_tx {
                        if let Some(addr) = listen_addr(&line) {
                            let _ = tx.send(Ok(addr));
                            addr_tx = None;
                        } else {
                            // Until it listens, every line may explain why it does not.
                            let _ = tx.send(Err(line));
                        }
                    }
                }
                let _ = log_copy.flush();
            });
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut early = Vec::new();
        let addr = loop {
            match addr_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(addr)) => break addr,
                Ok(Err(line)) => early.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "hookrelay did not start listening; its log:\n{}",
                        early.join("\n")
                    );
                }
            }
        };
        Ok(RelayProcess {
            child,
            addr,
            lines,
            admin: admin_rx,
        })
    }

    /// The admin listener's address, once the relay logged it (within 60 s: a big store
    /// takes a while to open). Call it once per relay: the address is handed over once.
    fn admin_addr(&self) -> anyhow::Result<SocketAddr> {
        self.admin
            .recv_timeout(Duration::from_secs(60))
            .context("the relay did not log \"admin API listening\" within 60 s")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_lines(&self) -> usize {
        self.lines.load(Ordering::Relaxed) as usize
    }

    /// SIGTERM and a clean exit, as an operator would stop it.
    fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                ensure!(
                    status.success(),
                    "hookrelay exited with {status} after SIGTERM"
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "hookrelay did not exit within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        // After `stop` this finds the child already reaped; on an early error it ends it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address of the relay's `"... listening"` JSON log line, as `tests/common` reads it.
fn listen_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if !value.get("message")?.as_str()?.contains("listening") {
        return None;
    }
    value.get("listen")?.as_str()?.parse().ok()
}

/// The address of the relay's `"admin API listening"` JSON log line.
fn admin_listen_addr(line: &str) -> Option<SocketAddr> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    if value.get("message")?.as_str()? != "admin API listening" {
        return None;
    }
    value.get("admin_listen")?.as_str()?.parse().ok()
}

/// Bytes `pid` has caused to be sent to the storage layer (`write_bytes` of
/// `/proc/PID/io`).
fn disk_written(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no write_bytes in /proc/{pid}/io"))
}

/// A `Vm*` line of `/proc/PID/status`, in KiB.
fn vm_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// CPU ticks (user + system, reaped children included) of every process, by pid, with its
/// name.
fn process_cpu() -> HashMap<u32, ProcessTicks> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // it ended meanwhile
        };
        if let Some(stat) = parse_stat(&stat) {
            out.insert(
                pid,
                ProcessTicks {
                    name: stat.name.to_string(),
                    parent: stat.parent,
                    // Short-lived processes (a compiler, a test binary) are gone by the
                    // second snapshot; their time shows up in their parent's reaped-children
                    // ticks.
                    ticks: stat.own + stat.children,
                },
            );
        }
    }
    out
}

/// Up to three process names, not in `ours`, that used the most CPU between two snapshots,
/// each over 0.05 cores: who else was using the machine.
fn top_others(
    start: &HashMap<u32, ProcessTicks>,
    end: &HashMap<u32, ProcessTicks>,
    ours: &[u32],
    seconds: f64,
) -> Vec<(String, f64)> {
    let hz = clock_ticks_per_second();
    // A process that ended in the window shows up whole in its parent's children ticks;
    // what it had used before the window must come off again.
    let mut before_window: HashMap<u32, u64> = HashMap::new();
    for (pid, p) in start {
        if !end.contains_key(pid) {
            *before_window.entry(p.parent).or_default() += p.ticks;
        }
    }
    let mut by_name: HashMap<&str, u64> = HashMap::new();
    for (pid, p) in end {
        if ours.contains(pid) {
            continue;
        }
        // A process born during the window counts from zero.
        let before = start.get(pid).map(|s| s.ticks).unwrap_or(0)
            + before_window.get(pid).copied().unwrap_or(0);
        *by_name.entry(&p.name).or_default() += p.ticks.saturating_sub(before);
    }
    let mut list: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(name, ticks)| (name.to_string(), ticks as f64 / hz / seconds))
        .filter(|(_, cores)| *cores >= 0.05)
        .collect();
    list.sort_by(|a, b| b.1.total_cmp(&a.1));
    list.truncate(3);
    list
}

/// One process in a CPU snapshot.
struct ProcessTicks {
    name: String,
    parent: u32,
    /// User + system ticks, its reaped children's included.
    ticks: u64,
}

/// The fields of a `/proc/.../stat` line this bench reads.
struct Stat<'a> {
    name: &'a str,
    parent: u32,
    /// User + system ticks.
    own: u64,
    /// User + system ticks of its reaped children.
    children: u64,
}

fn parse_stat(stat: &str) -> Option<Stat<'_>> {
    // "pid (name) state ppid ...": the name may hold spaces, so split at the last ')'.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // After the name, state is field 3, ppid 4; utime, stime, cutime, cstime are fields 14
    // to 17 (1-based, proc(5)).
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        name: &stat[open + 1..close],
        parent: field(4)? as u32,
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// Scheduler time of one thread, in seconds.
#[derive(Clone, Copy, Default)]
struct Sched {
    /// Running on a CPU.
    on_cpu: f64,
    /// Runnable but waiting for a CPU: time a busy machine adds to its latency.
    waiting_for_cpu: f64,
}

/// `/proc/PID/task/TID/schedstat` of the thread of `pid` named `name` (zero if none).
fn thread_sched(pid: u32, name: &str) -> anyhow::Result<Sched> {
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let text = std::fs::read_to_string(path.join("schedstat"))?;
        let mut values = text
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        let on_cpu = values.next().unwrap_or(0) as f64 / 1e9;
        let waiting_for_cpu = values.next().unwrap_or(0) as f64 / 1e9;
        return Ok(Sched {
            on_cpu,
            waiting_for_cpu,
        });
    }
    Ok(Sched::default())
}

/// CPU seconds (user + system) of the threads of `pid` whose name passes `keep`.
fn thread_cpu(pid: u32, keep: impl Fn(&str) -> bool) -> anyhow::Result<f64> {
    let hz = clock_ticks_per_second();
    let mut ticks = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(entry?.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        if let Some(stat) = parse_stat(&stat)
            && keep(stat.name)
        {
            ticks += stat.own;
        }
    }
    Ok(ticks as f64 / hz)
}

fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The `cpu` line of `/proc/stat`: busy and total ticks of the whole machine.
struct MachineTicks {
    busy: u64,
    /// Interrupt and softirq time, which no thread is charged for: on loopback, much of
    /// the TCP work of both sides.
    interrupts: u64,
    total: u64,
}

impl MachineTicks {
    fn read() -> anyhow::Result<MachineTicks> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let line = stat.lines().next().context("empty /proc/stat")?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        ensure!(values.len() >= 5, "unexpected /proc/stat: {line}");
        let total: u64 = values.iter().sum();
        // idle and iowait are the not-busy columns.
        let busy = total - values[3] - values[4];
        let interrupts = values.get(5).unwrap_or(&0) + values.get(6).unwrap_or(&0);
        Ok(MachineTicks {
            busy,
            interrupts,
            total,
        })
    }

    fn busy_since(&self, earlier: &MachineTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total).max(1);
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }

    fn interrupts_since(&self, earlier: &MachineTicks) -> f64 {
        let total = self.total.saturating_sub(earlier.total).max(1);
        self.interrupts.saturating_sub(earlier.interrupts) as f64 / total as f64
    }
}

/// What the report says about the machine.
struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
}

impl Machine {
    fn read() -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("model name")?
                        .split_once(':')
                        .map(|(_, v)| v.trim().to_string())
                })
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine { cores, cpu, kernel }
    }
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

fn report_phase(r: &PhaseResult, machine: &Machine) {
    println!(
        "  {}: {} requests in {:.0} s = {:.0} req/s; p50 {}, p99 {}, max {}",
        r.name,
        r.requests,
        r.seconds,
        r.rate(),
        ms(r.latency_us.value_at_quantile(0.50)),
        ms(r.latency_us.value_at_quantile(0.99)),
        ms(r.latency_us.max()),
    );
    println!(
        "  CPU over the window: server {:.2} cores, load generator {:.2} cores, everything else {:.2} cores \
         (of which interrupts {:.2}); machine {:.0}% busy",
        r.server_cpu / r.seconds,
        r.client_cpu / r.seconds,
        r.other_cores(machine.cores),
        r.machine_interrupts * machine.cores as f64,
        r.machine_busy * 100.0
    );
    if !r.others.is_empty() {
        let list: Vec<String> = r
            .others
            .iter()
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect();
        println!("  busiest other processes (cores): {}", list.join(", "));
    }
}

/// One line of the report's table: what is counted per second, its latencies where it has
/// some, and the CPU split where it was measured.
#[derive(Clone)]
struct Row {
    /// Says what the rate counts (requests, deliveries) and what the latency spans.
    name: String,
    rate: f64,
    latency_us: Option<Histogram<u64>>,
    /// Cores: server, load generator, everything else.
    cores: Option<[f64; 3]>,
}

impl Row {
    /// The row of a phase driven by [`drive`]: requests/s, request latency, CPU.
    fn of(r: &PhaseResult, machine: &Machine) -> Row {
        Row {
            name: r.name.to_string(),
            rate: r.rate(),
            latency_us: Some(r.latency_us.clone()),
            cores: Some([
                r.server_cpu / r.seconds,
                r.client_cpu / r.seconds,
                r.other_cores(machine.cores),
            ]),
        }
    }
}

/// The Markdown report: printed, and written to `target/load-bench.md`.
fn table(
    baseline: &PhaseResult,
    relay: &PhaseResult,
    more: &[Row],
    facts: &RelayFacts,
    machine: &Machine,
    plan: Plan,
    body_len: usize,
) -> String {
    let ratio = relay.rate() / baseline.rate();
    let row = |r: &Row| {
        let latency = match &r.latency_us {
            Some(h) => format!(
                "{} | {} | {}",
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max())
            ),
            None => "— | — | —".to_string(),
        };
        let cores = match r.cores {
            Some([server, client, other]) => format!("{server:.2} / {client:.2} / {other:.2}"),
            None => "—".to_string(),
        };
        format!(
            "| {} | {:.0} | {latency} | {:.2}× | {cores} |\n",
            r.name,
            r.rate,
            r.rate / baseline.rate(),
        )
    };
    let mut out = String::new();
    out.push_str(&format!(
        "{} keep-alive connections, {} B signed GitHub `push` body, unique delivery ids, \
         {} s warm-up + {} s measured per server. Machine: {} cores ({}), kernel {}; \
         **the load generator and the server share these {} cores** (and so does the \
         receiver of the phases with webhook sinks). A rate counts requests, or deliveries \
         where its row says so; a row's latency is per request unless it says otherwise.\n\n",
        plan.connections,
        body_len,
        plan.warmup.as_secs(),
        plan.measured.as_secs(),
        machine.cores,
        machine.cpu,
        machine.kernel,
        machine.cores,
    ));
    out.push_str("| server | per second | p50 | p99 | max | vs baseline | CPU cores: server / load generator / other |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    out.push_str(&row(&Row::of(baseline, machine)));
    out.push_str(&row(&Row::of(relay, machine)));
    for r in more {
        out.push_str(&row(r));
    }
    out.push_str(&format!(
        "\nhookrelay / baseline = **{ratio:.2}** (goal ≥ 0.50: {}).\n",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    ));
    out.push_str(&format!(
        "hookrelay RSS: {:.1} MiB idle (after one event), {:.1} MiB at the end of the load, \
         {:.1} MiB peak; store-writer thread on a CPU {:.0}% of the time, waiting for one {:.0}%, \
         blocked (fsync, idle) {:.0}%; {:.1} KiB written to disk per event; \
         redb file {:.1} MiB holding {} events; \
         {} log lines during the load (RUST_LOG=`{}`).\n",
        facts.rss_idle_kib as f64 / 1024.0,
        facts.rss_end_kib as f64 / 1024.0,
        facts.rss_peak_kib as f64 / 1024.0,
        relay.writer.on_cpu / relay.seconds * 100.0,
        relay.writer.waiting_for_cpu / relay.seconds * 100.0,
        (1.0 - (relay.writer.on_cpu + relay.writer.waiting_for_cpu) / relay.seconds) * 100.0,
        facts.disk_written as f64 / 1024.0 / relay.accepted as f64,
        facts.store_bytes as f64 / (1024.0 * 1024.0),
        relay.accepted + 1,
        facts.log_lines_during_load,
        relay_log_filter(),
    ));
    out
}

/// Keeps the relay's per-delivery lines ("delivered", target `hookrelay::dispatch`) out
/// of the log of the phases with sinks, as [`RELAY_LOG_FILTER`] keeps the per-request ones.
const SINK_LOG_FILTER: &str =
    "warn,hookrelay=info,hookrelay::ingress=warn,hookrelay::dispatch=warn";

/// The nats sink of the JetStream phase: the README's example, on a loopback server.
const JETSTREAM_CONCURRENCY: usize = 64;

/// Phase 3: the relay of phase 2 plus a `kind = "nats"` sink that every event is routed
/// to, publishing to a stream on a `nats-server -js` started here (file storage, on the
/// same cores). Measures ingest as a ratio to phase 2, and whether publishing keeps up:
/// messages the stream gained during the window, the backlog at its end, and how long
/// the backlog took to drain. `None` (with a line saying why) when `nats-server` is not
/// installed.
fn jetstream_phase(
    client: &tokio::runtime::Runtime,
    body: &Bytes,
    plan: Plan,
    machine: &Machine,
    no_sink: &PhaseResult,
) -> anyhow::Result<Option<String>> {
    let dir = tempfile::tempdir().context("cannot create a temp dir for nats-server")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let spawned = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path().join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut nats = match spawned {
        Ok(child) => KillOnDrop(child),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!(
                "  skipped: nats-server is not installed (Debian/Ubuntu: apt-get install \
                 nats-server)"
            );
            return Ok(None);
        }
        Err(err) => return Err(err).context("cannot start nats-server"),
    };
    let url = format!("nats://127.0.0.1:{port}");
    let stream = client.block_on(async {
        // The server takes a moment to listen; connecting is retried until it does.
        let deadline = Instant::now() + Duration::from_secs(15);
        let nats_client = loop {
            match async_nats::connect(&url).await {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err).context("nats-server did not accept a connection"),
            }
        };
        let js = async_nats::jetstream::new(nats_client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "HOOKS".to_string(),
            subjects: vec!["hooks.>".to_string()],
            ..Default::default()
        })
        .await
        .context("cannot create the HOOKS stream")
    })?;
    let messages = |stream: &async_nats::jetstream::stream::Stream| -> anyhow::Result<u64> {
        let mut stream = stream.clone();
        Ok(client
            .block_on(stream.info())
            .context("cannot read the stream's state")?
            .state
            .messages)
    };

    let relay_dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    let relay = RelayProcess::start_with(
        relay_dir.path(),
        &format!(
            "\n[sinks.stream]\nkind = \"nats\"\nurl = \"{url}\"\n\
             subject = \"hooks.{{{{ source }}}}.{{{{ event_type }}}}\"\n\
             concurrency = {JETSTREAM_CONCURRENCY}\n\n\
             [[routes]]\nfrom = \"github\"\nto = [\"stream\"]\n"
        ),
        SINK_LOG_FILTER,
    )?;
    client.block_on(probe(relay.addr, body))?;
    let relay_pid = relay.pid();
    let nats_pid = nats.0.id();
    let self_pid = std::process::id();
    // Stream size and nats-server CPU at the window's edges, beside the CPU figures.
    let edges = std::sync::Mutex::new(Vec::new());
    let result = drive(
        client,
        relay.addr,
        body,
        plan,
        "hookrelay, signed + durable + JetStream",
        &[self_pid, relay_pid, nats_pid],
        || {
            edges
                .lock()
                .unwrap()
                .push((messages(&stream)?, thread_cpu(nats_pid, |_| true)?));
            Ok((
                thread_cpu(relay_pid, |_| true)?,
                thread_cpu(self_pid, |name| name.starts_with("load-client"))?,
                thread_sched(relay_pid, "store-writer")?,
            ))
        },
    )?;
    let window_end = Instant::now();
    // Every accepted event, the probe included, must reach the stream, once.
    let expected = result.accepted + 1;
    let drain_deadline = window_end + Duration::from_secs(120);
    let mut in_stream = messages(&stream)?;
    while in_stream < expected {
        ensure!(
            Instant::now() < drain_deadline,
            "JetStream: {in_stream} of {expected} accepted events in the stream 120 s after the \
             load; see {}",
            target_dir().join("load-bench-relay.log").display()
        );
        std::thread::sleep(Duration::from_millis(20));
        in_stream = messages(&stream)?;
    }
    let drained_after = window_end.elapsed();
    ensure!(
        in_stream == expected,
        "JetStream: {in_stream} messages in the stream for {expected} accepted events"
    );
    relay.stop()?;
    let _ = nats.0.kill();
    report_phase(&result, machine);

    let edges = edges.into_inner().unwrap();
    let [(start_msgs, start_cpu), (end_msgs, end_cpu)] = edges[..] else {
        bail!("the CPU sampler ran {} times, not twice", edges.len());
    };
    let published = (end_msgs - start_msgs) as f64 / result.seconds;
    let section = format!(
        "\n**JetStream**: every event also published to a local `nats-server -js` (file \
         storage, same cores) by a `kind = \"nats\"` sink with concurrency \
         {JETSTREAM_CONCURRENCY}. Ingest {:.0} req/s (p50 {}, p99 {}) = **{:.2}×** ingest with \
         no sink; published {published:.0} msg/s during the window ({:.2}× the ingest rate); \
         backlog at the end of the load drained in {:.1} s; {expected} events, {in_stream} \
         messages. CPU cores: relay {:.2}, nats-server {:.2}, load generator {:.2}.\n",
        result.rate(),
        ms(result.latency_us.value_at_quantile(0.50)),
        ms(result.latency_us.value_at_quantile(0.99)),
        result.rate() / no_sink.rate(),
        published / result.rate(),
        drained_after.as_secs_f64(),
        result.server_cpu / result.seconds,
        (end_cpu - start_cpu) / result.seconds,
        result.client_cpu / result.seconds,
    );
    println!("{}", section.trim());
    Ok(Some(section))
}

/// A child process killed when dropped (an early error must not leave nats-server running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR`, else `target/` in the package.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}
