//! The relay's own figures, read from its admin listener's `/metrics`: the queue depth the
//! fan-out phase reports, and the commit times that say what limits half-peak latency.

use std::net::SocketAddr;

use anyhow::{Context, ensure};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The text of `GET /metrics` on the admin listener.
pub(crate) async fn scrape(admin: SocketAddr) -> anyhow::Result<String> {
    let stream = TcpStream::connect(admin)
        .await
        .with_context(|| format!("connect to the admin listener {admin}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::get("/metrics")
        .header(http::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())
        .expect("static request parts are valid");
    let response = sender.send_request(request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    ensure!(status == StatusCode::OK, "GET /metrics answered {status}");
    String::from_utf8(text.to_vec()).context("/metrics is not UTF-8")
}

/// The value of a sample line: its last word.
fn value(line: &str) -> anyhow::Result<f64> {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("/metrics: cannot read {line:?}"))
}

/// Deliveries queued over all sinks (in flight included).
pub(crate) fn queue_depth(metrics: &str) -> anyhow::Result<u64> {
    let mut depth = 0;
    let mut seen = false;
    for line in metrics.lines() {
        if line.starts_with("hookrelay_queue_depth{") {
            depth += value(line)? as u64;
            seen = true;
        }
    }
    ensure!(seen, "/metrics holds no hookrelay_queue_depth");
    Ok(depth)
}

/// The relay's histogram of group-commit times (fsync included), cumulative: `(upper bound
/// in seconds, commits at or under it)` per bucket, and all commits.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitTimes {
    buckets: Vec<(f64, u64)>,
    count: u64,
}

impl CommitTimes {
    pub(crate) fn parse(metrics: &str) -> anyhow::Result<CommitTimes> {
        const BUCKET: &str = "hookrelay_store_commit_duration_seconds_bucket{le=\"";
        let mut times = CommitTimes::default();
        for line in metrics.lines() {
            if let Some(rest) = line.strip_prefix(BUCKET) {
                let bound = rest.split('"').next().unwrap_or_default();
                if bound != "+Inf" {
                    let bound: f64 = bound
                        .parse()
                        .with_context(|| format!("/metrics: cannot read {line:?}"))?;
                    times.buckets.push((bound, value(line)? as u64));
                }
            } else if line.starts_with("hookrelay_store_commit_duration_seconds_count") {
                times.count = value(line)? as u64;
            }
        }
        ensure!(
            !times.buckets.is_empty(),
            "/metrics holds no hookrelay_store_commit_duration_seconds histogram"
        );
        Ok(times)
    }

    /// The commits between `earlier` and this one.
    pub(crate) fn since(&self, earlier: &CommitTimes) -> CommitTimes {
        let before = |bound: f64| {
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0, |(_, n)| *n)
        };
        CommitTimes {
            buckets: self
                .buckets
                .iter()
                .map(|&(bound, n)| (bound, n.saturating_sub(before(bound))))
                .collect(),
            count: self.count.saturating_sub(earlier.count),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The share of commits (0 to 1) that took longer than the largest bucket bound at or
    /// under `seconds` (the bounds are `0.0005 × 2^k`, so 0.002 is one exactly).
    pub(crate) fn share_over(&self, seconds: f64) -> f64 {
        let within = self
            .buckets
            .iter()
            .rev()
            .find(|(bound, _)| *bound <= seconds)
            .map_or(0, |(_, n)| *n);
        if self.count == 0 {
            0.0
        } else {
            (self.count - within.min(self.count)) as f64 / self.count as f64
        }
    }

    /// The upper bound of the bucket holding the commit at quantile `q`.
    pub(crate) fn quantile_bound(&self, q: f64) -> Option<f64> {
        let rank = (q * self.count as f64).ceil() as u64;
        self.buckets
            .iter()
            .find(|(_, n)| *n >= rank)
            .map(|(bound, _)| *bound)
    }
}
