//! Phase 6, a backlog: a store holding `LOAD_BACKLOG_EVENTS` (250,000 by default) events
//! × [`FANOUT_SINKS`] paused webhook sinks = 1,000,000 pending deliveries, filled through
//! the relay itself as fast as it takes them; then the relay restarted on that store with
//! the sinks unpaused, posting to a fast [`Receiver`].
//!
//! Measured after the restart: the time from spawning the process to the first `202` of a
//! probe (serving), the relay's RSS right then and after a drain window (10 s) — the queue
//! lives on disk, so it must not grow with the backlog — and the drain rate, deliveries/s
//! at the receiver over that window. Issue 4's targets: serving within 2 s, RSS < 150 MiB.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::fanout::{FANOUT_SINKS, fanout_config};
use crate::receiver::Receiver;
use crate::{
    DeliveryIds, Machine, PhaseResult, Plan, RelayProcess, Row, SINK_LOG_FILTER, Section,
    Signatures, env_u64, github_request, probe, signature_1, signature_256, thread_cpu, vm_kib,
};

/// Issue 4's serving target after a restart on a full backlog.
const SERVING_TARGET: Duration = Duration::from_secs(2);

/// Issue 4's memory target with a full backlog, in KiB.
const RSS_TARGET_KIB: u64 = 150 * 1024;

/// Phase 6; see the module doc. `baseline` gives the ratio of each rate.
pub(crate) fn backlog_phase(
    client: &tokio::runtime::Runtime,
    body: &Bytes,
    plan: Plan,
    machine: &Machine,
    baseline: &PhaseResult,
) -> anyhow::Result<Section> {
    let events = env_u64(
        "LOAD_BACKLOG_EVENTS",
        if plan.smoke { 2_000 } else { 250_000 },
    )?;
    ensure!(events > 0, "LOAD_BACKLOG_EVENTS must be at least 1");
    let window = if plan.smoke {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let receiver = Receiver::start(FANOUT_SINKS, machine.cores)?;
    let dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    let store = dir.path().join("store/hookrelay.redb");

    // Fill: the sinks paused, so every delivery stays queued.
    let relay =
        RelayProcess::start_with(dir.path(), &fanout_config(&receiver, true), SINK_LOG_FILTER)?;
    client.block_on(probe(relay.addr, body))?;
    let fill_started = Instant::now();
    client.block_on(send_events(relay.addr, body, events, plan.connections))?;
    let fill = fill_started.elapsed();
    relay.stop()?;
    let store_bytes = std::fs::metadata(&store)
        .with_context(|| format!("no store at {}", store.display()))?
        .len();
    // The fill's events and both probes, each to every sink.
    let pending = (events + 2) * FANOUT_SINKS as u64;
    println!(
        "  filled: {events} events in {:.1} s ({:.0} requests/s), {} deliveries pending; store \
         file {:.1} MiB",
        fill.as_secs_f64(),
        events as f64 / fill.as_secs_f64(),
        pending - FANOUT_SINKS as u64,
        store_bytes as f64 / (1024.0 * 1024.0)
    );

    // Restart on the same store, the sinks unpaused.
    let spawned = Instant::now();
    let relay = RelayProcess::start_with(
        dir.path(),
        &fanout_config(&receiver, false),
        SINK_LOG_FILTER,
    )?;
    client.block_on(probe(relay.addr, body))?;
    let serving = spawned.elapsed();
    let drain_started = Instant::now();
    let rss_serving_kib = vm_kib(relay.pid(), "VmRSS")?;
    let delivered_at_serving = receiver.delivered();
    let relay_cpu_at_serving = thread_cpu(relay.pid(), |_| true)?;
    let drained = receiver.wait_for(pending, drain_started + window);
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let delivered = receiver.delivered();
    let relay_cpu = thread_cpu(relay.pid(), |_| true)? - relay_cpu_at_serving;
    let rss_after_kib = vm_kib(relay.pid(), "VmRSS")?;
    let rss_peak_kib = vm_kib(relay.pid(), "VmHWM")?;
    relay.stop()?;
    ensure!(
        receiver.rejected() == 0,
        "backlog: the receiver got {} request(s) that were no delivery of a known sink with a \
         webhook-id",
        receiver.rejected()
    );
    let drain_rate = (delivered - delivered_at_serving) as f64 / drain_seconds;
    let text = format!(
        "\n**Backlog**: {events} events × {FANOUT_SINKS} paused webhook sinks ingested through \
         the relay in {:.1} s ({:.0} requests/s, {:.2}× baseline): {} deliveries pending, \
         store file {:.1} MiB. Restarted on that store with the sinks unpaused (one loopback \
         receiver, as in the fan-out): serving, spawn to the first `202` of a probe, after \
         **{:.2} s** (issue 4's target ≤ 2 s: {}); RSS {:.1} MiB then, {:.1} MiB after {:.1} s \
         of draining (peak {:.1} MiB; target < 150 MiB: {}); drained **{drain_rate:.0} \
         deliveries/s** ({:.2}× baseline) over those {:.1} s, relay {:.2} cores; {} of {pending} \
         delivered by then{}.\n",
        fill.as_secs_f64(),
        events as f64 / fill.as_secs_f64(),
        events as f64 / fill.as_secs_f64() / baseline.rate(),
        pending - FANOUT_SINKS as u64,
        store_bytes as f64 / (1024.0 * 1024.0),
        serving.as_secs_f64(),
        if serving <= SERVING_TARGET {
            "met"
        } else {
            "NOT met"
        },
        rss_serving_kib as f64 / 1024.0,
        rss_after_kib as f64 / 1024.0,
        drain_seconds,
        rss_peak_kib as f64 / 1024.0,
        // The peak (`VmHWM`) covers the whole life of the restarted relay, between the samples.
        if rss_peak_kib < RSS_TARGET_KIB {
            "met"
        } else {
            "NOT met"
        },
        drain_rate / baseline.rate(),
        drain_seconds,
        relay_cpu / drain_seconds,
        delivered,
        if drained { " (all)" } else { "" },
    );
    println!("{}", text.trim());
    let rows = vec![
        Row {
            name: "hookrelay, backlog fill into 4 paused sinks: requests".to_string(),
            rate: events as f64 / fill.as_secs_f64(),
            latency_us: None,
            cores: None,
        },
        Row {
            name: format!(
                "hookrelay, backlog of {} deliveries after a restart: deliveries",
                pending - FANOUT_SINKS as u64
            ),
            rate: drain_rate,
            latency_us: None,
            cores: None,
        },
    ];
    Ok(Section { rows, text })
}

/// Sends `count` signed events, each with its own delivery id, over `connections`
/// keep-alive connections as fast as the relay answers; every answer must be `202`.
async fn send_events(
    addr: SocketAddr,
    body: &Bytes,
    count: u64,
    connections: usize,
) -> anyhow::Result<()> {
    let signatures = Arc::new(Signatures {
        sha1: signature_1(body),
        sha256: signature_256(body),
    });
    let ids = Arc::new(DeliveryIds::new());
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for connection in 0..connections {
        let (body, signatures, ids, next) =
            (body.clone(), signatures.clone(), ids.clone(), next.clone());
        tasks.spawn(async move {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect to {addr}"))?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut seq = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                sender
                    .ready()
                    .await
                    .context("connection closed by the relay")?;
                let request = github_request(addr, &body, &signatures, &ids.id(connection, seq));
                seq += 1;
                let response = sender.send_request(request).await?;
                let status = response.status();
                let reply = response.into_body().collect().await?.to_bytes();
                ensure!(
                    status == StatusCode::ACCEPTED,
                    "backlog fill: the relay answered {status}: {}",
                    String::from_utf8_lossy(&reply[..reply.len().min(200)])
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("a fill connection panicked")??;
    }
    Ok(())
}
