//! Bounds the log lines of refused requests: anyone who can reach the listener can send
//! refusals as fast as the relay answers them (tens of thousands a second). Past 50 a second
//! they are held back, and the next line written says how many were; the
//! `hookrelay_events_received_total` counters still count every request.

use crate::log_budget::LineBudget;

/// Refusal lines written per second at most: a misconfigured sender stays visible, a flood
/// costs a few KiB a second.
pub(super) static REFUSALS: LineBudget = LineBudget::new(50);

/// Whether a refusal's line may be written now; reports the lines held back before it.
pub(super) fn admit() -> bool {
    match REFUSALS.admit() {
        None => false,
        Some(0) => true,
        Some(held) => {
            report(held);
            true
        }
    }
}

/// Reports, once a second, lines held back that no later refusal has reported: the end of
/// a flood is otherwise never said. Runs while ingress serves.
pub(super) async fn report_held_lines() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match REFUSALS.take_held() {
            0 => {}
            held => report(held),
        }
    }
}

fn report(held: u64) {
    tracing::warn!(
        held,
        per_second = REFUSALS.per_second(),
        "held back the log lines of {held} refused requests (more than {} a second); \
         hookrelay_events_received_total counts every one",
        REFUSALS.per_second()
    );
}

/// Logs a refused request at `level` (`info` or `warn`) unless this second's budget of
/// refusal lines is spent; takes what `tracing::info!` takes.
macro_rules! refused {
    ($level:ident, $($line:tt)+) => {
        if $crate::ingress::refusals::admit() {
            tracing::$level!($($line)+);
        }
    };
}
pub(crate) use refused;
