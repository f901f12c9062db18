//! Phase 4, fan-out: the signed + durable relay with every event routed to
//! [`FANOUT_SINKS`] `kind = "webhook"` sinks (no rate limit, concurrency
//! [`FANOUT_CONCURRENCY`]), all posting to one fast [`Receiver`] in this process, under the
//! same closed-loop load as phase 2 for a sustained window (`LOAD_FANOUT_SECONDS`, 60 s by
//! default as issue 4 asks).
//!
//! It answers whether deliveries keep up: the ingest rate, the delivery rate over the same
//! window (deliveries/s over all sinks, and as a ratio to the ingest rate), the end-to-end
//! latency from receipt to delivery, the relay's own queue depth at both edges of the window
//! (its `/metrics`), and how long the queue took to drain once the load stopped. Every
//! accepted event must reach every sink; a request the receiver cannot place fails the run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;

use crate::metrics;
use crate::receiver::Receiver;
use crate::{
    Machine, PhaseResult, Plan, RelayProcess, Row, SINK_LOG_FILTER, Section, drive, env_u64, ms,
    probe, report_phase, thread_cpu, thread_sched,
};

/// Webhook sinks every event goes to, as issue 4 asks.
pub(crate) const FANOUT_SINKS: usize = 4;

/// Attempts in flight per sink: enough that loopback round trips never cap the rate.
pub(crate) const FANOUT_CONCURRENCY: usize = 64;

/// The config the fan-out phases append to the relay's: an admin listener (for the queue
/// depth), [`FANOUT_SINKS`] webhook sinks posting to `receiver`, paused or not, and one
/// route from the `github` source to all of them.
pub(crate) fn fanout_config(receiver: &Receiver, paused: bool) -> String {
    let mut config = String::from("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    let mut names = Vec::new();
    for i in 0..FANOUT_SINKS {
        config.push_str(&format!(
            "\n[sinks.s{i}]\nkind = \"webhook\"\nurl = \"{}\"\nconcurrency = {FANOUT_CONCURRENCY}\n\
             paused = {paused}\n",
            receiver.url(i)
        ));
        names.push(format!("\"s{i}\""));
    }
    config.push_str(&format!(
        "\n[[routes]]\nfrom = \"github\"\nto = [{}]\n",
        names.join(", ")
    ));
    config
}

/// The relay's and the receiver's state at one edge of the measured window.
struct Edge {
    delivered: u64,
    receiver_cpu: f64,
    queue_depth: u64,
}

/// Phase 4; see the module doc. `baseline` and `no_sink` (phase 2) give the ratios.
pub(crate) fn fanout_phase(
    client: &tokio::runtime::Runtime,
    body: &Bytes,
    plan: Plan,
    machine: &Machine,
    baseline: &PhaseResult,
    no_sink: &PhaseResult,
) -> anyhow::Result<Section> {
    let seconds = env_u64("LOAD_FANOUT_SECONDS", if plan.smoke { 1 } else { 60 })?;
    ensure!(seconds > 0, "LOAD_FANOUT_SECONDS must be at least 1");
    let plan = Plan {
        measured: Duration::from_secs(seconds),
        ..plan
    };
    let receiver = Receiver::start(FANOUT_SINKS, machine.cores)?;
    let dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    let relay = RelayProcess::start_with(
        dir.path(),
        &fanout_config(&receiver, false),
        SINK_LOG_FILTER,
    )?;
    println!(
        "  hookrelay pid {} listening on {}; receiver on {}; {} s warm-up + {} s measured",
        relay.pid(),
        relay.addr,
        receiver.addr,
        plan.warmup.as_secs(),
        seconds
    );
    client.block_on(probe(relay.addr, body))?;
    let admin = relay.admin_addr()?;
    let relay_pid = relay.pid();
    let self_pid = std::process::id();
    let lines_before = relay.log_lines();
    let edges = Mutex::new(Vec::new());
    let result = drive(
        client,
        relay.addr,
        body,
        plan,
        "hookrelay + 4 webhook sinks: ingest, requests",
        &[self_pid, relay_pid],
        || {
            let mut edges = edges.lock().unwrap();
            // Events received from the window's start on are the ones whose latency counts.
            if edges.is_empty() {
                receiver.open_window();
            } else {
                receiver.close_window();
            }
            let cpu = (
                thread_cpu(relay_pid, |_| true)?,
                thread_cpu(self_pid, |name| name.starts_with("load-client"))?,
                thread_sched(relay_pid, "store-writer")?,
            );
            edges.push(Edge {
                delivered: receiver.delivered(),
                receiver_cpu: thread_cpu(self_pid, |name| name.starts_with("receiver"))?,
                queue_depth: metrics::queue_depth(&client.block_on(metrics::scrape(admin))?)?,
            });
            Ok(cpu)
        },
    )?;
    let load_stopped = Instant::now();
    // Every accepted event, the probe included, must reach every sink.
    let events = result.accepted + 1;
    let expected = events * FANOUT_SINKS as u64;
    // Generous: a relay that delivers at a quarter of the ingest rate drains a 60 s window's
    // backlog in a few minutes; one that never drains fails the smoke run and is reported.
    let patience = if plan.smoke {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(600)
    };
    let drained = receiver.wait_for(expected, load_stopped + patience);
    let drained_after = load_stopped.elapsed();
    let delivered_total = receiver.delivered();
    let log_lines = relay.log_lines() - lines_before;
    relay.stop()?;
    report_phase(&result, machine);

    ensure!(
        receiver.rejected() == 0,
        "fan-out: the receiver got {} request(s) that were no delivery of a known sink with a \
         webhook-id",
        receiver.rejected()
    );
    if plan.smoke && !drained {
        bail!(
            "fan-out: {delivered_total} of {expected} deliveries arrived within {patience:?} of \
             the load's end; see {}",
            crate::target_dir().join("load-bench-relay.log").display()
        );
    }
    let per_sink = receiver.per_sink();
    if drained {
        ensure!(
            per_sink.iter().all(|n| *n >= events),
            "fan-out: deliveries per sink {per_sink:?}, each should have {events}"
        );
    }
    let edges = edges.into_inner().unwrap();
    let [start, end] = &edges[..] else {
        bail!(
            "the window's edges were sampled {} times, not twice",
            edges.len()
        );
    };
    let ingest = result.rate();
    let delivery = (end.delivered - start.delivered) as f64 / result.seconds;
    let latency_us = receiver.latency_us();
    let drain = if drained {
        format!(
            "drained {:.1} s after the load stopped",
            drained_after.as_secs_f64()
        )
    } else {
        format!(
            "**NOT drained** {:.0} s after the load stopped: {} of {expected} deliveries had \
             arrived (the latency figures miss the events still queued)",
            drained_after.as_secs_f64(),
            delivered_total
        )
    };
    let ratio = delivery / ingest;
    let text = format!(
        "\n**Fan-out**: every event routed to {FANOUT_SINKS} `kind = \"webhook\"` sinks (no rate \
         limit, concurrency {FANOUT_CONCURRENCY} each), all served by one loopback receiver in \
         the bench process that answers `200` at once; {seconds} s measured. Ingest {ingest:.0} \
         req/s ({:.2}× baseline, {:.2}× ingest with no sink); deliveries \
         {delivery:.0}/s over the {FANOUT_SINKS} sinks = **{ratio:.2}×** the ingest rate \
         (issue 4's target ≥ 0.5: {}; {:.2} of the {FANOUT_SINKS} deliveries per event kept \
         pace). Receipt → delivery (event id's UUIDv7 time to arrival, ±1 ms; events received \
         in the window): p50 {}, p99 {}, max {} over {} deliveries. Queue (relay's \
         `hookrelay_queue_depth`, all sinks): {} at the window's start, {} at its end \
         ({:+}); {drain}; deliveries per sink {per_sink:?} for {events} events. Receiver {:.2} \
         cores; relay log lines during the load: {log_lines}.\n",
        ingest / baseline.rate(),
        ingest / no_sink.rate(),
        if ratio >= 0.5 { "met" } else { "NOT met" },
        ratio,
        ms(latency_us.value_at_quantile(0.50)),
        ms(latency_us.value_at_quantile(0.99)),
        ms(latency_us.max()),
        latency_us.len(),
        start.queue_depth,
        end.queue_depth,
        end.queue_depth as i64 - start.queue_depth as i64,
        (end.receiver_cpu - start.receiver_cpu) / result.seconds,
    );
    println!("{}", text.trim());
    let deliveries = Row {
        name: format!(
            "hookrelay + 4 webhook sinks: deliveries (latency receipt → delivery{})",
            if drained { "" } else { ", NOT drained" }
        ),
        rate: delivery,
        latency_us: Some(latency_us),
        cores: None,
    };
    Ok(Section {
        rows: vec![Row::of(&result, machine), deliveries],
        text,
    })
}
