//! Alternating rounds, the ratio that holds up on a noisy host: the bare baseline, the
//! phase-2 relay and the durable ceiling (`ceiling.rs`) all kept running, driven in turn for
//! `LOAD_ROUNDS` short windows each (bare, relay, ceiling, bare, …). Each round's ratios
//! compare windows seconds apart, so a neighbour's burst that lowers one whole phase lowers
//! its round's other windows too; the medians of the rounds are the figures to compare, and
//! the spread says how far one window can be trusted.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::ceiling::SyncedAppend;
use crate::{
    Machine, Plan, RelayProcess, Sched, Section, baseline_runtime, drive, env_u64, probe,
    serve_baseline,
};

/// One round's rates, requests/s.
struct Round {
    bare: f64,
    relay: f64,
    ceiling: f64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.relay / self.bare
    }

    fn ceiling_ratio(&self) -> f64 {
        self.ceiling / self.bare
    }

    fn relay_of_ceiling(&self) -> f64 {
        self.relay / self.ceiling
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Runs the rounds; see the module doc.
pub(crate) fn alternating_rounds(
    client: &tokio::runtime::Runtime,
    body: &Bytes,
    plan: Plan,
    machine: &Machine,
) -> anyhow::Result<Section> {
    let rounds = env_u64("LOAD_ROUNDS", if plan.smoke { 1 } else { 5 })?.max(1) as usize;
    let seconds = env_u64("LOAD_ROUND_SECONDS", if plan.smoke { 1 } else { 5 })?.max(1);
    let window = Plan {
        warmup: Duration::from_secs(if plan.smoke { 0 } else { 1 }),
        measured: Duration::from_secs(seconds),
        ..plan
    };
    let server = baseline_runtime(machine)?;
    let listener = server.block_on(TcpListener::bind("127.0.0.1:0"))?;
    let bare_addr = listener.local_addr()?;
    server.spawn(serve_baseline(listener));
    let dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    let relay = RelayProcess::start(dir.path())?;
    client.block_on(probe(relay.addr, body))?;
    // Its journal on the relay's file system, so both sync to the same disk.
    let ceiling = SyncedAppend::start(machine, dir.path())?;
    client.block_on(probe(ceiling.addr, body))?;
    // CPU is measured by phases 1 and 2; these windows only count requests.
    let no_cpu = || Ok((0.0, 0.0, Sched::default()));
    let mut results = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let bare = drive(
            client,
            bare_addr,
            body,
            window,
            "bare hyper, 202",
            &[],
            no_cpu,
        )?;
        let relayed = drive(
            client,
            relay.addr,
            body,
            window,
            "hookrelay, signed + durable",
            &[],
            no_cpu,
        )?;
        let synced = drive(
            client,
            ceiling.addr,
            body,
            window,
            "durable ceiling",
            &[],
            no_cpu,
        )?;
        let result = Round {
            bare: bare.rate(),
            relay: relayed.rate(),
            ceiling: synced.rate(),
        };
        println!(
            "  round {round}/{rounds}: bare {:.0} req/s, hookrelay {:.0} req/s = {:.2}×; \
             ceiling {:.0} req/s = {:.2}×, hookrelay {:.2}× of it",
            result.bare,
            result.relay,
            result.ratio(),
            result.ceiling,
            result.ceiling_ratio(),
            result.relay_of_ceiling()
        );
        results.push(result);
    }
    relay.stop()?;
    drop(ceiling);
    server.shutdown_timeout(Duration::from_secs(1));

    let ratios: Vec<f64> = results.iter().map(Round::ratio).collect();
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    let middle = median(ratios);
    let ceiling_middle = median(results.iter().map(Round::ceiling_ratio).collect());
    let relay_of_ceiling = median(results.iter().map(Round::relay_of_ceiling).collect());
    println!("  median ratio {middle:.2}× (rounds {low:.2}× to {high:.2}×)");
    println!(
        "  durable ceiling: median {ceiling_middle:.2}× of bare hyper; hookrelay median \
         {relay_of_ceiling:.2}× of the ceiling"
    );
    let listed = results
        .iter()
        .map(|r| format!("{:.0}/{:.0} = {:.2}×", r.relay, r.bare, r.ratio()))
        .collect::<Vec<_>>()
        .join("; ");
    let ceilings = results
        .iter()
        .map(|r| format!("{:.0}", r.ceiling))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "\n**Alternating rounds**: the bare baseline and a fresh phase-2 relay, both running, \
         driven in turn for {rounds} rounds of {seconds} s each (after {} s of warm-up per \
         window). Signed + durable ingest over bare hyper, median of the rounds: \
         **{middle:.2}×** (rounds from {low:.2}× to {high:.2}×: {listed}). Issue 4's target \
         ≥ 0.6×: {}; issue 3's ≥ 0.5×: {}.\n\n\
         **The durable ceiling** in the same rounds: a hyper server that checks the GitHub \
         signature and group-commits each batch of bodies as one contiguous write and one \
         `fdatasync` to a file beside the relay's store, with no index (`load/ceiling.rs`): \
         {ceilings} req/s, a median **{ceiling_middle:.2}×** of bare hyper. hookrelay took a \
         median **{relay_of_ceiling:.2}×** of the ceiling's rate: the rest of the gap to bare \
         hyper is what a sync before each answer costs on this host, whatever the store.\n",
        window.warmup.as_secs(),
        if middle >= 0.6 { "met" } else { "NOT met" },
        if middle >= 0.5 { "met" } else { "NOT met" },
    );
    Ok(Section {
        rows: Vec::new(),
        text,
    })
}
