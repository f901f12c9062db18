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
//! 8. [`admin`]: the operators' listener: health, metrics, events, replays.
//!
//! [`metrics`] is cross-cutting: a leaf the parts count into. [`notice`] turns hookrelay's
//! own health (sinks, store, config reloads) into events of the source `hookrelay`.

pub mod admin;
pub mod config;
pub mod dispatch;
pub mod ingress;
pub mod metrics;
pub mod notice;
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
    /// The admin listener could not be bound.
    #[error(
        "cannot listen on {addr} for the admin API: {source}; set [admin] listen to a free address"
    )]
    AdminListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
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
    let mut metrics = metrics::Metrics::new(&config);
    let store = Store::open_observed(&config.storage, metrics.store())?;
    let sink_names = config.sinks.iter().map(|s| s.name.clone()).collect();
    metrics.add_collector(admin::StoreGauges::new(store.clone(), sink_names));
    let metrics = Arc::new(metrics);
    let health = Arc::new(dispatch::health::Health::new(&config.sinks));
    let (notices, notice_tasks) = notice::Notices::start(
        store.clone(),
        route::Router::new(&config),
        &config.notices,
        metrics.notices(),
    );
    health.notify(notices);
    let admin_listener =
        match &config.admin {
            Some(admin) => Some(TcpListener::bind(admin.listen).await.map_err(|source| {
                RunError::AdminListen {
                    addr: admin.listen,
                    source,
                }
            })?),
            None => None,
        };
    let dispatcher = dispatch::Dispatcher::start_observed(
        store.clone(),
        &config.sinks,
        &config.sources,
        Some(&metrics),
        health.clone(),
    )?;
    let retention = tokio::spawn(retention_loop(store.clone(), config.storage.retention));
    let ingress = Arc::new(ingress::Ingress::new(&config, store.clone()).observed(&metrics));
    let grace = config.server.shutdown_timeout;
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = match (admin_listener, &config.admin) {
        (Some(listener), Some(admin_config)) => {
            if admin_config.token.is_none() {
                tracing::warn!(
                    "[admin] has no token: anyone with access to this host can use the admin API"
                );
            }
            tracing::info!(
                admin_listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                "admin API listening"
            );
            let state = Arc::new(admin::Admin::new(
                admin_config,
                &config,
                store.clone(),
                metrics.clone(),
                health.clone(),
            ));
            let stop = async move {
                let _ = admin_stopped.await;
            };
            Some(tokio::spawn(admin::serve(listener, state, stop, grace)))
        }
        _ => None,
    };
    ingress::serve(listener, ingress, &config.server, tls, shutdown, grace).await;
    tracing::info!("ingress stopped; finishing deliveries in flight");
    let _ = admin_stop.send(());
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    retention.abort();
    dispatcher.shutdown(grace).await;
    notice_tasks.stop();
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
