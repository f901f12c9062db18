//! Configuration without restarts: SIGHUP and `POST /api/reload` read the file again and,
//! if all of it is good, run it in place of the current one.
//!
//! One task, the [`Reloader`], owns the running config and applies reloads one at a time;
//! SIGHUP and the admin API only ask it ([`ReloadHandle`]). A reload:
//!
//! 1. reads and validates the file (`Config::load`) and builds every enabled sink; any
//!    problem refuses the whole file: the running config stays, untouched, and the problems
//!    are logged, counted (`hookrelay_config_reloads_total{outcome="failure"}`), answered
//!    as `file:line:col` lines and raised as a `config.reload_failed` notice;
//! 2. otherwise swaps, in this order: metrics and health learn new names; dispatch starts,
//!    replaces or stops workers (unchanged sinks keep theirs); ingress serves the new
//!    sources, verifiers and routes from its next request; the admin's view, the gauges,
//!    retention and the notices' routes follow.
//!
//! Invariants: nothing is applied before everything is checked. No ingest request is
//! refused because of a reload: ingress swaps one snapshot, and a request in progress ends
//! with the snapshot it began with. No queued delivery is dropped: dispatch never touches
//! a queue entry on reload. Settings that only take effect at start (listen addresses,
//! storage path, connection limits, `[server] tls` paths, `[admin]` listener, `[notices]`)
//! keep their running values and are reported as needing a restart, in the log and in the
//! answer.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::admin::{Admin, GaugedSinks};
use crate::config::{Config, ConfigError, SourceKind};
use crate::dispatch::Dispatcher;
use crate::dispatch::health::Health;
use crate::ingress::Ingress;
use crate::ingress::tls::TlsIngress;
use crate::metrics::{Metrics, ReloadOutcome};
use crate::notice::Notices;
use crate::route::Router;
use crate::store::Store;

/// Reload requests that may wait while one runs; more SIGHUPs than this add nothing, since
/// a waiting reload reads the file as it is when it runs.
const QUEUED_RELOADS: usize = 4;

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /api/reload`.
    Api,
}

impl Trigger {
    /// As written in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Api => "POST /api/reload",
        }
    }
}

/// Names added, removed and changed between two configs, each list in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// In the new file only.
    pub added: Vec<String>,
    /// In the running config only.
    pub removed: Vec<String>,
    /// In both, with different settings.
    pub changed: Vec<String>,
}

impl Changes {
    fn between<'a, T: PartialEq + 'a>(
        old: impl IntoIterator<Item = (&'a str, &'a T)>,
        new: impl IntoIterator<Item = (&'a str, &'a T)>,
    ) -> Changes {
        let old: std::collections::BTreeMap<&str, &T> = old.into_iter().collect();
        let new: std::collections::BTreeMap<&str, &T> = new.into_iter().collect();
        let mut changes = Changes::default();
        for (name, settings) in &new {
            match old.get(name) {
                None => changes.added.push(name.to_string()),
                Some(before) if before != settings => changes.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|name| !new.contains_key(*name))
            .map(|name| name.to_string())
            .collect();
        changes
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `+added ~changed -removed`, for a log line; `unchanged` when nothing is.
    fn summary(&self) -> String {
        let mut marked = Vec::new();
        for (mark, names) in [
            ('+', &self.added),
            ('~', &self.changed),
            ('-', &self.removed),
        ] {
            marked.extend(names.iter().map(|name| format!("{mark}{name}")));
        }
        if marked.is_empty() {
            return "unchanged".to_owned();
        }
        marked.join(" ")
    }

    fn to_json(&self) -> Value {
        json!({ "added": self.added, "removed": self.removed, "changed": self.changed })
    }
}

/// What a reload changed, and what it could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file that was read.
    pub file: String,
    /// Sources (their verifiers with them).
    pub sources: Changes,
    /// Sinks: a changed one got a new worker; paused, resumed and disabled ones count here.
    pub sinks: Changes,
    /// Whether the routes differ.
    pub routes_changed: bool,
    /// Other settings that changed and now apply, e.g. `[server] max_body`.
    pub settings: Vec<&'static str>,
    /// Settings the file changes that only apply after a restart; they keep their running
    /// values until then.
    pub needs_restart: Vec<&'static str>,
}

impl Report {
    /// Compares the running config with a new one.
    pub fn compare(file: &str, running: &Config, new: &Config) -> Report {
        fn sources(c: &Config) -> impl Iterator<Item = (&str, &crate::config::SourceConfig)> {
            c.sources.iter().map(|s| (s.name.as_str(), s))
        }
        fn sinks(c: &Config) -> impl Iterator<Item = (&str, &crate::config::SinkConfig)> {
            c.sinks.iter().map(|s| (s.name.as_str(), s))
        }
        let mut settings = Vec::new();
        let mut needs_restart = Vec::new();
        let (old_server, new_server) = (&running.server, &new.server);
        if old_server.max_body != new_server.max_body {
            settings.push("[server] max_body");
        }
        if old_server.body_timeout != new_server.body_timeout {
            settings.push("[server] body_timeout");
        }
        if running.storage.retention != new.storage.retention {
            settings.push("[storage] retention");
        }
        for (key, differs) in [
            ("[server] listen", old_server.listen != new_server.listen),
            (
                "[server] header_timeout",
                old_server.header_timeout != new_server.header_timeout,
            ),
            (
                "[server] shutdown_timeout",
                old_server.shutdown_timeout != new_server.shutdown_timeout,
            ),
            (
                "[server] max_connections",
                old_server.max_connections != new_server.max_connections,
            ),
            (
                "[server] max_buffered",
                old_server.max_buffered != new_server.max_buffered,
            ),
            ("[server] tls", old_server.tls != new_server.tls),
            ("[storage] path", running.storage.path != new.storage.path),
            ("[notices]", running.notices != new.notices),
        ] {
            if differs {
                needs_restart.push(key);
            }
        }
        match (&running.admin, &new.admin) {
            (Some(old), Some(new)) => {
                if old.listen != new.listen {
                    needs_restart.push("[admin] listen");
                }
                if old.token != new.token {
                    settings.push("[admin] token");
                }
            }
            (None, None) => {}
            // The admin listener is bound at start only.
            _ => needs_restart.push("[admin]"),
        }
        Report {
            file: file.to_string(),
            sources: Changes::between(sources(running), sources(new)),
            sinks: Changes::between(sinks(running), sinks(new)),
            routes_changed: running.routes != new.routes,
            settings,
            needs_restart,
        }
    }

    /// Whether the file differs from the running config in anything.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
            && self.sinks.is_empty()
            && !self.routes_changed
            && self.settings.is_empty()
            && self.needs_restart.is_empty()
    }

    /// The answer of `POST /api/reload`.
    pub fn to_json(&self) -> Value {
        json!({
            "file": self.file,
            "changed": !self.is_empty(),
            "sources": self.sources.to_json(),
            "sinks": self.sinks.to_json(),
            "routes_changed": self.routes_changed,
            "settings": self.settings,
            "needs_restart": self.needs_restart,
        })
    }
}

/// Why a reload was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The file has problems; the running config is kept.
    #[error("{file}: {} problem(s); the running configuration is kept", problems.len())]
    Invalid {
        /// The file that was read.
        file: String,
        /// One `file:line:col: key: message` line per problem (sink build errors have no
        /// position: `file: sinks.NAME: message`).
        problems: Vec<String>,
    },
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    Stopping,
}

/// One request to the reloader.
struct Request {
    trigger: Trigger,
    reply: Option<oneshot::Sender<Result<Report, ReloadError>>>,
}

/// Asks the [`Reloader`] for a reload; cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    requests: mpsc::Sender<Request>,
}

impl ReloadHandle {
    /// Reloads and returns what changed, or why nothing did.
    pub async fn reload(&self, trigger: Trigger) -> Result<Report, ReloadError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request {
                trigger,
                reply: Some(reply),
            })
            .await
            .map_err(|_| ReloadError::Stopping)?;
        answer.await.unwrap_or(Err(ReloadError::Stopping))
    }

    /// Asks for a reload without waiting for it (its outcome is logged).
    fn request(&self, trigger: Trigger) {
        match self.requests.try_send(Request {
            trigger,
            reply: None,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => tracing::info!(
                trigger = trigger.as_str(),
                "reloads are already waiting; they will read the file as it is then"
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// A handle and the requests it sends, for [`Reloader::serve`].
pub(crate) fn channel() -> (ReloadHandle, ReloadRequests) {
    let (requests, receiver) = mpsc::channel(QUEUED_RELOADS);
    (ReloadHandle { requests }, ReloadRequests(receiver))
}

/// The receiving end of [`channel`].
pub(crate) struct ReloadRequests(mpsc::Receiver<Request>);

/// The running parts a reload reconfigures.
pub(crate) struct Parts {
    /// Read for deliveries left to sinks a reload removed.
    pub store: Store,
    /// Takes the new sources, verifiers, routes and body limits.
    pub ingress: Arc<Ingress>,
    /// Starts, replaces and stops sink workers; handed back at shutdown.
    pub dispatcher: Dispatcher,
    /// Takes the new token, sinks and header masks, when the admin listener runs.
    pub admin: Option<Arc<Admin>>,
    /// Learns new sources and sinks; counts reloads.
    pub metrics: Arc<Metrics>,
    /// Learns new sinks.
    pub health: Arc<Health>,
    /// The configured sinks the queue gauges report.
    pub gauged: GaugedSinks,
    /// `[storage] retention`, read by the retention task at each pass.
    pub retention: watch::Sender<Duration>,
    /// Routes notices; told of a refused file (`config.reload_failed`).
    pub notices: Notices,
}

/// Owns the running config and applies reloads, one at a time.
pub(crate) struct Reloader {
    path: PathBuf,
    /// The config as it runs: the last good file, with start-only settings as at start.
    running: Config,
    parts: Parts,
}

impl Reloader {
    /// A reloader for the relay started with `running`, read from `path`.
    pub fn new(path: PathBuf, running: Config, parts: Parts) -> Reloader {
        Reloader {
            path,
            running,
            parts,
        }
    }

    /// Applies requests until `stop` resolves (a reload in progress finishes first), then
    /// hands back the dispatcher for shutdown.
    pub async fn serve(
        mut self,
        requests: ReloadRequests,
        stop: impl Future<Output = ()>,
    ) -> Dispatcher {
        let mut requests = requests.0;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                Some(request) = requests.recv() => {
                    let outcome = self.reload(request.trigger).await;
                    if let Some(reply) = request.reply {
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
        self.parts.dispatcher
    }

    async fn reload(&mut self, trigger: Trigger) -> Result<Report, ReloadError> {
        let file = self.path.display().to_string();
        let path = self.path.clone();
        // Reading the file and `${file:...}` secrets is blocking I/O.
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let new = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(err)) => return Err(self.refused(trigger, file, &err)),
            Err(err) => {
                let err = ConfigError::unplaced(
                    &file,
                    [(String::new(), format!("reading the file failed: {err}"))],
                );
                return Err(self.refused(trigger, file, &err));
            }
        };
        let built = match crate::dispatch::build(&new.sinks) {
            Ok(built) => built,
            Err(errors) => {
                let err = ConfigError::unplaced(
                    &file,
                    errors
                        .into_iter()
                        .map(|e| (format!("sinks.{}", e.sink), e.message)),
                );
                return Err(self.refused(trigger, file, &err));
            }
        };

        let report = Report::compare(&file, &self.running, &new);
        let had_sources = !self.running.sources.is_empty();
        let new = keep_start_only_settings(&self.running, new);
        let conflicts = conflicts_with_running(&new, had_sources);
        if !conflicts.is_empty() {
            return Err(self.refused(
                trigger,
                file.clone(),
                &ConfigError::unplaced(&file, conflicts),
            ));
        }
        for source in &new.sources {
            let touched = report.sources.added.contains(&source.name)
                || report.sources.changed.contains(&source.name);
            if touched && source.enabled && matches!(source.kind, SourceKind::None { .. }) {
                tracing::warn!(source = %source.name, "source has kind = \"none\": its requests are NOT verified; anyone who can reach the port can inject events");
            }
        }
        let parts = &mut self.parts;
        parts.metrics.track(&new);
        parts.health.track(&new.sinks);
        // Workers first, so a new route's sink has its worker by the time events reach it
        // (entries queued before would wait in the store for it anyway).
        parts.dispatcher.reconfigure(
            &new.sinks,
            &new.sources,
            built,
            Some(&parts.metrics),
            new.server.shutdown_timeout,
        );
        parts.ingress.reconfigure(&new, &parts.metrics);
        if let (Some(admin), Some(admin_config)) = (&parts.admin, &new.admin) {
            admin.reconfigure(admin_config, &new);
        }
        parts
            .gauged
            .set(new.sinks.iter().map(|s| s.name.clone()).collect());
        // Only a changed retention starts a pass at once (the retention task wakes on a send).
        parts.retention.send_if_modified(|retention| {
            let changed = *retention != new.storage.retention;
            *retention = new.storage.retention;
            changed
        });
        parts.notices.set_router(Router::new(&new));
        parts.metrics.reload(ReloadOutcome::Success);
        crate::warn_of_config(&new);
        if !report.sinks.removed.is_empty() {
            crate::warn_of_stranded_deliveries(&parts.store, &new);
        }
        self.running = new;

        tracing::info!(
            trigger = trigger.as_str(),
            file = %file,
            sources = %report.sources.summary(),
            sinks = %report.sinks.summary(),
            routes_changed = report.routes_changed,
            settings = %if report.settings.is_empty() {
                "unchanged".to_owned()
            } else {
                report.settings.join(", ")
            },
            "configuration reloaded"
        );
        if !report.needs_restart.is_empty() {
            tracing::warn!(
                trigger = trigger.as_str(),
                file = %file,
                needs_restart = %report.needs_restart.join(", "),
                "these settings changed in the file but take effect only after a restart; they keep their running values until then"
            );
        }
        Ok(report)
    }

    /// Logs, counts, raises as a notice and returns a refused reload.
    fn refused(&self, trigger: Trigger, file: String, err: &ConfigError) -> ReloadError {
        let problems: Vec<String> = err
            .problems()
            .iter()
            .map(|p| {
                let mut line = err.origin().to_string();
                if p.line > 0 {
                    line.push_str(&format!(":{}:{}", p.line, p.column));
                }
                line.push_str(": ");
                if !p.key.is_empty() {
                    line.push_str(&p.key);
                    line.push_str(": ");
                }
                line.push_str(&p.message);
                line
            })
            .collect();
        self.parts.metrics.reload(ReloadOutcome::Failure);
        tracing::error!(
            trigger = trigger.as_str(),
            file = %file,
            problems = %problems.join("\n"),
            "configuration reload refused: the running configuration is kept; fix the file and reload again"
        );
        self.parts.notices.reload_failed(err);
        ReloadError::Invalid { file, problems }
    }
}

/// `new` with the settings that apply only at start set back to their values in `running`,
/// so the admin's view and the next comparison show what actually runs.
fn keep_start_only_settings(running: &Config, mut new: Config) -> Config {
    new.server.listen = running.server.listen;
    new.server.header_timeout = running.server.header_timeout;
    new.server.shutdown_timeout = running.server.shutdown_timeout;
    new.server.max_connections = running.server.max_connections;
    new.server.max_buffered = running.server.max_buffered;
    new.server.tls = running.server.tls.clone();
    new.storage.path = running.storage.path.clone();
    new.notices = running.notices.clone();
    new.admin = match (&running.admin, new.admin) {
        (Some(old), Some(mut admin)) => {
            admin.listen = old.listen;
            Some(admin)
        }
        // Started with or without a listener, it stays so until a restart.
        (old, _) => old.clone(),
    };
    new
}

/// What a file that is valid on its own would break in the running relay, once the settings
/// that change only at restart keep their running values (`effective`): each a key and
/// what to do. Checked before anything is applied, so a refused reload changes nothing.
fn conflicts_with_running(effective: &Config, had_sources: bool) -> Vec<(String, String)> {
    let mut conflicts = Vec::new();
    if let Some(admin) = &effective.admin
        && admin.token.is_none()
        && !admin.listen.ip().is_loopback()
    {
        conflicts.push((
            "admin.token".to_string(),
            format!(
                "the admin API is listening on {}, which is not a loopback address, and a \
                 reload does not move it: without a token anyone who can reach it could read \
                 every event. Keep admin.token, or restart the relay to apply the new listen",
                admin.listen
            ),
        ));
    }
    let server = &effective.server;
    if server.max_body > server.max_buffered {
        conflicts.push((
            "server.max_body".to_string(),
            format!(
                "{} bytes is more than the running server.max_buffered ({} bytes), which \
                 changes only at restart: every body that large would be refused with 503. \
                 Restart the relay to raise both",
                server.max_body, server.max_buffered
            ),
        ));
    }
    if had_sources && effective.sources.is_empty() {
        conflicts.push((
            "sources".to_string(),
            "the file has no [sources.NAME] (is it cut short?): every sender would get 404. \
             To stop taking events on purpose, set enabled = false on the sources"
                .to_string(),
        ));
    }
    conflicts
}

/// Installs the relay's one SIGHUP handler: each SIGHUP reads the HTTPS certificate files
/// again (with `tls`) and asks for a config reload (with `reload`). Call before serving: a
/// SIGHUP that arrives before a handler exists terminates the process.
pub(crate) fn on_hangup(
    tls: Option<Arc<TlsIngress>>,
    reload: Option<ReloadHandle>,
) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; reload with POST /api/reload (TLS files are still watched)");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            if let Some(tls) = &tls {
                tls.reload("SIGHUP");
            }
            if let Some(reload) = &reload {
                reload.request(Trigger::Signal);
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "t.toml").unwrap()
    }

    const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[storage]
path = "a.redb"
[admin]
listen = "127.0.0.1:9090"
token = "0123456789abcdef0123"
[sources.github]
kind = "github"
secret = "one-secret-value"
[sources.old]
kind = "none"
[sinks.audit]
kind = "webhook"
url = "https://a/"
[sinks.chat]
kind = "webhook"
url = "https://c/"
[[routes]]
from = "github"
to = ["audit"]
"#;

    /// The problems a reload from `running` to `new` would be refused for, by key.
    fn conflicts(running: &str, new: &str) -> Vec<String> {
        let running = config(running);
        let had_sources = !running.sources.is_empty();
        let effective = keep_start_only_settings(&running, config(new));
        conflicts_with_running(&effective, had_sources)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    #[test]
    fn a_reload_cannot_drop_the_token_of_an_admin_api_still_open_to_the_network() {
        let open = BASE.replace("listen = \"127.0.0.1:9090\"", "listen = \"0.0.0.0:9090\"");
        let loopback_without_token = BASE.replace("token = \"0123456789abcdef0123\"\n", "");
        assert_eq!(conflicts(&open, &loopback_without_token), ["admin.token"]);
        // Started on loopback, it may lose its token; and a kept token is always fine.
        assert!(conflicts(BASE, &loopback_without_token).is_empty());
        assert!(conflicts(&open, BASE).is_empty());
    }

    #[test]
    fn a_reload_cannot_raise_max_body_past_the_running_max_buffered() {
        let running = format!("{BASE}\n").replace(
            "[server]\n",
            "[server]\nmax_body = \"1MiB\"\nmax_buffered = \"1MiB\"\n",
        );
        let raised = running.replace(
            "max_body = \"1MiB\"\nmax_buffered = \"1MiB\"",
            "max_body = \"4MiB\"\nmax_buffered = \"8MiB\"",
        );
        assert_eq!(conflicts(&running, &raised), ["server.max_body"]);
        let lowered = running.replace("max_body = \"1MiB\"", "max_body = \"512KiB\"");
        assert!(conflicts(&running, &lowered).is_empty());
    }

    #[test]
    fn a_reload_to_a_file_without_sources_is_refused() {
        let without_sources =
            "[server]\nlisten = \"127.0.0.1:8080\"\n[storage]\npath = \"a.redb\"\n";
        assert_eq!(conflicts(BASE, without_sources), ["sources"]);
        assert_eq!(conflicts(BASE, ""), ["sources"]);
        assert!(conflicts(without_sources, without_sources).is_empty());
    }

    #[test]
    fn an_identical_file_changes_nothing() {
        let report = Report::compare("t.toml", &config(BASE), &config(BASE));
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(report.to_json()["changed"], false);
    }

    #[test]
    fn names_settings_and_restart_only_keys_are_told_apart() {
        let new = BASE
            .replace("one-secret-value", "another-secret-value")
            .replace(
                "[sources.old]\nkind = \"none\"\n",
                "[sources.gitlab]\nkind = \"none\"\n",
            )
            .replace(
                "url = \"https://c/\"",
                "url = \"https://c/\"\npaused = true",
            )
            .replace("to = [\"audit\"]", "to = [\"audit\", \"chat\"]")
            .replace("127.0.0.1:8080", "127.0.0.1:8081")
            .replace("path = \"a.redb\"", "path = \"a.redb\"\nretention = \"1d\"")
            .replace("0123456789abcdef0123", "fedcba9876543210fedc");
        let report = Report::compare("t.toml", &config(BASE), &config(&new));
        assert_eq!(report.sources.added, ["gitlab"]);
        assert_eq!(report.sources.removed, ["old"]);
        assert_eq!(
            report.sources.changed,
            ["github"],
            "a rotated secret is a change"
        );
        assert_eq!(report.sinks.changed, ["chat"], "a pause is a change");
        assert!(report.sinks.added.is_empty() && report.sinks.removed.is_empty());
        assert!(report.routes_changed);
        assert_eq!(report.settings, ["[storage] retention", "[admin] token"]);
        assert_eq!(report.needs_restart, ["[server] listen"]);
        assert_eq!(report.sinks.summary(), "~chat");
        assert_eq!(report.sources.summary(), "+gitlab ~github -old");
        assert_eq!(Changes::default().summary(), "unchanged");
    }

    #[test]
    fn adding_or_removing_the_admin_listener_needs_a_restart() {
        let without = BASE.replace(
            "[admin]\nlisten = \"127.0.0.1:9090\"\ntoken = \"0123456789abcdef0123\"\n",
            "",
        );
        let report = Report::compare("t.toml", &config(BASE), &config(&without));
        assert_eq!(report.needs_restart, ["[admin]"]);
        let report = Report::compare("t.toml", &config(&without), &config(BASE));
        assert_eq!(report.needs_restart, ["[admin]"]);
    }
}
