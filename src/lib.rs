//! hookrelay receives signed webhooks, stores every accepted event durably in redb, and fans
//! it out to the sinks its routes name, each at its own rate, with a durable retry queue.
//!
//! The data flows one way; read the modules in this order:
//!
//! 1. [`config`]: the TOML file, validated into a typed [`config::Config`].
//! 2. [`ingress`]: the HTTP server: routing `/hooks/{source}`, limits, status codes.
//! 3. [`verify`]: one verifier per signature scheme.
//! 4. [`route`]: which sinks an event goes to, by source, event type and [`summary`].
//! 5. [`store`]: redb; the event and its queue entries in one fsync'd group commit.
//! 6. [`dispatch`]: one worker per sink: rate limit, deliver, retry or dead-letter.
//! 7. [`sinks`]: one file per kind of destination; [`template`] renders their messages.

pub mod config;
pub mod dispatch;
pub mod ingress;
pub mod route;
pub mod sinks;
pub mod store;
pub mod summary;
pub mod template;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

use config::Config;
use store::Store;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// A sink could not be built.
    #[error(transparent)]
    Sink(#[from] sinks::SinkBuildError),
    /// The HTTPS certificate, key or client CA could not be used.
    #[error("[server] tls: {0}")]
    Tls(String),
}

/// How often retention looks for expired events, and how many it removes per transaction:
/// small transactions, so a purge never holds the writer long enough to delay an ingest.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
const RETENTION_BATCH: usize = 500;

/// Runs the relay on a bound listener until `shutdown` resolves.
///
/// On shutdown: stop accepting, finish requests in flight (their commits included), give
/// in-flight deliveries up to `[server] shutdown_timeout`, then close the store. Deliveries
/// cut short stay queued and run after the next start.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // Before the store opens: a bad certificate should cost nothing but the message.
    let tls = match &config.server.tls {
        Some(files) => Some(Arc::new(
            ingress::tls::TlsIngress::load(files).map_err(RunError::Tls)?,
        )),
        None => None,
    };
    let store = Store::open(&config.storage)?;
    let dispatcher = dispatch::Dispatcher::start(store.clone(), &config.sinks)?;
    let retention = tokio::spawn(retention_loop(store.clone(), config.storage.retention));
    let ingress = Arc::new(ingress::Ingress::new(&config, store.clone()));
    let grace = config.server.shutdown_timeout;
    ingress::serve(listener, ingress, &config.server, tls, shutdown, grace).await;
    tracing::info!("ingress stopped; finishing deliveries in flight");
    retention.abort();
    dispatcher.shutdown(grace).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn retention_loop(store: Store, retention: Duration) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let cutoff_ms = now_ms.saturating_sub(retention.as_millis() as u64);
        let mut removed = 0;
        loop {
            match store.purge(cutoff_ms, RETENTION_BATCH).await {
                Ok(n) => {
                    removed += n;
                    if n < RETENTION_BATCH {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "retention pass failed; will try again");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "retention removed expired events");
        }
    }
}
