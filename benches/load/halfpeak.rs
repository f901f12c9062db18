//! Phase 5, latency at half of peak: the relay of phase 2 (signed + durable, no routes),
//! driven open-loop at half the rate phase 2 measured. Each connection sends on a fixed
//! schedule, and a request's latency runs from its scheduled time whenever the server still
//! held the connection then (see `connection_loop`), so a stall shows in the figures instead
//! of quietly lowering the offered load. Issue 4's target: p99 ≤ 5 ms.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use crate::metrics::{self, CommitTimes};
use crate::{
    Machine, PhaseResult, Plan, RelayProcess, Row, Section, drive, ms, probe, relay_log_filter,
    report_phase, thread_cpu, thread_sched,
};

/// Phase 5; see the module doc. `peak` is phase 2's result, `baseline` phase 1's.
pub(crate) fn half_peak_phase(
    client: &tokio::runtime::Runtime,
    body: &Bytes,
    plan: Plan,
    machine: &Machine,
    baseline: &PhaseResult,
    peak: &PhaseResult,
) -> anyhow::Result<Section> {
    let target = peak.rate() / 2.0;
    let plan = Plan {
        pace: Some(target),
        ..plan
    };
    let dir = tempfile::tempdir().context("cannot create a temp dir for the relay")?;
    // An admin listener, for the relay's own commit times over the window.
    let admin_config = "\n[admin]\nlisten = \"127.0.0.1:0\"\n";
    let relay = RelayProcess::start_with(dir.path(), admin_config, &relay_log_filter())?;
    let admin = relay.admin_addr()?;
    println!(
        "  hookrelay pid {} listening on {}; {target:.0} requests/s over {} connections \
         ({:.2} ms apart on each)",
        relay.pid(),
        relay.addr,
        plan.connections,
        plan.connections as f64 / target * 1000.0
    );
    client.block_on(probe(relay.addr, body))?;
    let relay_pid = relay.pid();
    let self_pid = std::process::id();
    let commit_edges = Mutex::new(Vec::new());
    let result = drive(
        client,
        relay.addr,
        body,
        plan,
        "hookrelay, signed + durable, open loop at half of its peak",
        &[self_pid, relay_pid],
        || {
            let metrics = client.block_on(metrics::scrape(admin))?;
            commit_edges
                .lock()
                .unwrap()
                .push(CommitTimes::parse(&metrics)?);
            Ok((
                thread_cpu(relay_pid, |_| true)?,
                thread_cpu(self_pid, |name| name.starts_with("load-client"))?,
                thread_sched(relay_pid, "store-writer")?,
            ))
        },
    )?;
    relay.stop()?;
    report_phase(&result, machine);
    let commits = match commit_edges.into_inner().unwrap().as_slice() {
        [start, end] => end.since(start),
        edges => anyhow::bail!("expected the window's two edges, sampled {}", edges.len()),
    };
    let commit_p99 = commits
        .quantile_bound(0.99)
        .map_or("—".to_string(), |s| format!("≤ {} ms", s * 1000.0));

    let p99 = result.latency_us.value_at_quantile(0.99);
    let text = format!(
        "\n**Half of peak**: the relay of phase 2 driven open-loop at {target:.0} requests/s \
         (half of its {:.0}), each of the {} connections on a fixed schedule, latency from the \
         scheduled send whenever the previous reply was late. Achieved {:.0} requests/s \
         ({:.2}× baseline); p50 {}, p99 **{}** (issue 4's target ≤ 5 ms: {}), max {}; {:.1}% \
         of requests fell due while their connection still waited for the previous reply. \
         The relay's group commits (fsync included, its `hookrelay_store_commit_duration` \
         histogram over the window): {} commits, p99 {commit_p99}; {:.2}% took over 2 ms, \
         {:.2}% over 4 ms, {:.2}% over 8 ms.\n",
        peak.rate(),
        plan.connections,
        result.rate(),
        result.rate() / baseline.rate(),
        ms(result.latency_us.value_at_quantile(0.50)),
        ms(p99),
        if Duration::from_micros(p99) <= Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        },
        ms(result.latency_us.max()),
        result.behind_schedule as f64 / result.requests as f64 * 100.0,
        commits.count(),
        commits.share_over(0.002) * 100.0,
        commits.share_over(0.004) * 100.0,
        commits.share_over(0.008) * 100.0,
    );
    println!("{}", text.trim());
    Ok(Section {
        rows: vec![Row::of(&result, machine)],
        text,
    })
}
