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
//! [`reload`] applies a new config file to the running parts (SIGHUP, `POST /api/reload`).

pub mod admin;
mod clock;
pub mod config;
pub mod dispatch;
pub mod ingress;
mod log_budget;
pub mod metrics;
pub mod notice;
pub mod reload;
mod retention;
pub mod route;
pub mod sinks;
pub mod store;
pub mod summary;
pub mod template;
pub mod verify;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

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
        "cannot listen on {addr} for the admin API: {reason}; set [admin] listen to a free address"
    )]
    AdminListen {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why; in the message, not a `source`, so a chain printout says it once.
        reason: std::io::Error,
    },
    /// The HTTPS certificate, key or client CA could not be used.
    #[error("[server] tls: {0}")]
    Tls(String),
}

/// How [`run_with`] runs the relay beyond its config.
#[derive(Default)]
pub struct RunOptions {
    /// The file `config` was read from: with it, SIGHUP and `POST /api/reload` read it again
    /// and apply it; without, the config is fixed for the run.
    pub config_path: Option<PathBuf>,
}

/// Runs the relay on a bound listener until `shutdown` resolves, with a fixed config.
///
/// On shutdown: stop accepting, finish requests in flight (their commits included), give
/// in-flight deliveries up to `[server] shutdown_timeout`, then close the store. Deliveries
/// cut short stay queued and run after the next start.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_with(listener, config, RunOptions::default(), shutdown).await
}

/// Like [`run`], reloading the config from `options.config_path` on SIGHUP and on
/// `POST /api/reload`.
pub async fn run_with(
    listener: TcpListener,
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    // Before the store opens: a bad certificate should cost nothing but the message.
    let tls = match &config.server.tls {
        Some(files) => Some(Arc::new(
            ingress::tls::TlsIngress::load(files).map_err(RunError::Tls)?,
        )),
        None => None,
    };
    warn_of_config(&config);
    let reloading = options.config_path.map(|path| (path, reload::channel()));
    let reload_handle = reloading.as_ref().map(|(_, (handle, _))| handle.clone());
    // Before serving: a SIGHUP that arrives before a handler exists kills the process.
    let hangup = match (&tls, &reload_handle) {
        (None, None) => None,
        _ => reload::on_hangup(tls.clone(), reload_handle.clone()),
    };
    let mut metrics = metrics::Metrics::new(&config);
    let store = Store::open_observed(&config.storage, metrics.store())?;
    warn_of_stranded_deliveries(&store, &config);
    let gauged = admin::GaugedSinks::default();
    gauged.set(config.sinks.iter().map(|s| s.name.clone()).collect());
    metrics.add_collector(admin::StoreGauges::new(store.clone(), gauged.clone()));
    let metrics = Arc::new(metrics);
    let health = Arc::new(dispatch::health::Health::new(&config.sinks));
    let (notices, notice_tasks) = notice::Notices::start(
        store.clone(),
        route::Router::new(&config),
        &config.notices,
        metrics.notices(),
    );
    health.notify(notices.clone());
    let admin_listener =
        match &config.admin {
            Some(admin) => Some(TcpListener::bind(admin.listen).await.map_err(|reason| {
                RunError::AdminListen {
                    addr: admin.listen,
                    reason,
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
    let (retention_setting, retention_rx) = watch::channel(config.storage.retention);
    let retention = tokio::spawn(retention::run(store.clone(), retention_rx));
    let ingress = Arc::new(ingress::Ingress::new(&config, store.clone()).observed(&metrics));
    let grace = config.server.shutdown_timeout;
    // The admin API answers until dispatch has drained (`/healthz` 200, `/readyz` 503
    // meanwhile), then gets what is left of the deadline for its own requests.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<std::time::Duration>();
    let mut admin_state = None;
    let admin_task = match (admin_listener, &config.admin) {
        (Some(listener), Some(admin_config)) => {
            if admin_config.token.is_none() {
                tracing::warn!(
                    "[admin] has no token: every local user of this host can use the admin API; set [admin] token on a shared host"
                );
            }
            tracing::info!(
                admin_listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                "admin API listening"
            );
            let mut state = admin::Admin::new(
                admin_config,
                &config,
                store.clone(),
                metrics.clone(),
                health.clone(),
            );
            if let Some(handle) = &reload_handle {
                state = state.with_reload(handle.clone());
            }
            let state = Arc::new(state);
            admin_state = Some(state.clone());
            let stop = async move { admin_stopped.await.unwrap_or_default() };
            Some(tokio::spawn(admin::serve(listener, state, stop)))
        }
        _ => None,
    };
    let server = config.server.clone();
    // With a file to reload, the reloader owns the dispatcher (and the config) until
    // shutdown; without, it stays here.
    let (reloader_stop, reloader_stopped) = tokio::sync::oneshot::channel::<()>();
    let store_path = config.storage.path.display().to_string();
    let counts = (
        config.sources.len(),
        config.sinks.len(),
        config.routes.len(),
    );
    let stopping_admin = admin_state.clone();
    let (reloader, mut dispatcher) = match reloading {
        Some((path, (_, requests))) => {
            let parts = reload::Parts {
                store: store.clone(),
                ingress: ingress.clone(),
                dispatcher,
                admin: admin_state,
                metrics: metrics.clone(),
                health: health.clone(),
                gauged,
                retention: retention_setting,
                notices,
            };
            let reloader = reload::Reloader::new(path, config, parts);
            let stop = async move {
                let _ = reloader_stopped.await;
            };
            (Some(tokio::spawn(reloader.serve(requests, stop))), None)
        }
        None => (None, Some(dispatcher)),
    };
    // One deadline for the whole stop, taken when the signal comes: ingress, admin and
    // dispatch drain at the same time against it, so the process exits within
    // `shutdown_timeout` (plus the store's close), not one timeout per part.
    let stop_started = Arc::new(std::sync::OnceLock::new());
    let shutdown = {
        let stop_started = stop_started.clone();
        async move {
            shutdown.await;
            let _ = stop_started.set(tokio::time::Instant::now());
            if let Some(admin) = stopping_admin {
                admin.stopping();
            }
        }
    };
    // Only now: the store is open and every listener bound, so the line means ready.
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        store = %store_path,
        sources = counts.0,
        sinks = counts.1,
        routes = counts.2,
        "hookrelay {} listening",
        env!("CARGO_PKG_VERSION")
    );
    ingress::serve(listener, ingress, &server, tls, shutdown, grace).await;
    let deadline = stop_started
        .get()
        .copied()
        .unwrap_or_else(tokio::time::Instant::now)
        + grace;
    tracing::info!("ingress stopped; finishing deliveries in flight");
    if let Some(hangup) = hangup {
        hangup.abort();
    }
    retention.abort();
    let _ = reloader_stop.send(());
    if let Some(reloader) = reloader {
        match reloader.await {
            Ok(handed_back) => dispatcher = Some(handed_back),
            Err(err) => {
                tracing::error!(error = %err, "the reloader failed; deliveries in flight are cut short and stay queued")
            }
        }
    }
    if let Some(dispatcher) = dispatcher {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        dispatcher.shutdown(left).await;
    }
    let _ = admin_stop.send(deadline.saturating_duration_since(tokio::time::Instant::now()));
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    notice_tasks.stop();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Logs what is valid in the config but likely a mistake ([`Config::warnings`]): a source
/// no route takes events from, a sink's client certificate that has expired or soon will, a
/// secret short enough to guess.
pub(crate) fn warn_of_config(config: &Config) {
    for (key, warning) in config.warnings() {
        tracing::warn!(key, "{warning}");
    }
}

/// Logs each sink that is not in `config` but whose queued deliveries or dead letters the
/// store still holds: they wait, and go out only if a sink of that name comes back. In the
/// background: counting a long queue takes a while, and serving does not wait for it.
pub(crate) fn warn_of_stranded_deliveries(store: &Store, config: &Config) {
    let store = store.clone();
    let configured: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let stranded = || -> Result<Vec<(String, store::SinkStats)>, store::StoreError> {
            let removed: Vec<String> = store
                .sinks_with_entries()?
                .into_iter()
                .filter(|name| !configured.contains(name))
                .collect();
            let names: Vec<&str> = removed.iter().map(String::as_str).collect();
            let stats = store.sink_stats(&names)?;
            Ok(removed.into_iter().zip(stats).collect())
        };
        match stranded() {
            Ok(sinks) => {
                for (sink, stats) in sinks {
                    tracing::warn!(
                        sink,
                        queued = stats.queued,
                        dead_letters = stats.dead,
                        "the store holds deliveries for a sink that is not in the configuration: \
                         they wait, and go out if a sink of this name comes back; GET /api/sinks \
                         lists them (hookrelay dlq list on a stopped relay)"
                    );
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot look for deliveries of removed sinks")
            }
        }
    });
}
