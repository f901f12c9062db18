//! Reload helpers: rewrite a relay's config file, ask for a reload by API or SIGHUP, and
//! await its outcome through the reload counter rather than a sleep.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::admin::call;
use super::{Relay, WAIT};

/// `hookrelay_config_reloads_total{outcome}` as `/metrics` shows it now.
pub async fn reloads(admin: SocketAddr, token: &str, outcome: &str) -> u64 {
    let reply = call(admin, "GET", "/metrics", Some(token)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let series = format!("hookrelay_config_reloads_total{{outcome=\"{outcome}\"}} ");
    reply
        .text
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series:?} in /metrics:\n{}", reply.text))
        .trim()
        .parse()
        .unwrap()
}

/// Sends SIGHUP and waits until the reload counter for `outcome` reaches `count`.
pub async fn hangup_and_wait(
    relay: &Relay,
    admin: SocketAddr,
    token: &str,
    outcome: &str,
    count: u64,
) {
    relay.hangup();
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = reloads(admin, token, outcome).await;
        if seen >= count {
            assert_eq!(seen, count, "more {outcome} reloads than SIGHUPs");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {outcome} reload {count} after SIGHUP; log:\n{}",
            relay.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
