//! Offline commands: `events`, `dlq`, `replay`, `export`, working on the store file
//! directly, for a stopped relay or an air-gapped site where only the file travels.
//!
//! Invariants:
//! - They open the store only when no relay holds it (redb's file lock); a running relay's
//!   store is refused with a message pointing to the admin API, never read behind its back.
//! - A read command never creates a store: a missing file is an error naming the path.
//! - A replay only queues (one new round, like the API's replay); nothing is sent here. The
//!   relay sends it at its next start.
//! - Output masks signature and credential headers exactly as the admin API does
//!   (`admin::HeaderMask`); sink URLs and configured secrets never appear.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hookrelay::admin::{HeaderMask, event_document};
use hookrelay::config::Config;
use hookrelay::store::{
    DeliveryState, EventId, EventQuery, EventStatus, Replayed, Store, StoreError,
};

/// Events read or moved per store transaction: small, so memory stays flat on big stores.
const PAGE: usize = 500;

/// `hookrelay events …`.
#[derive(Subcommand)]
pub enum EventsCommand {
    /// List stored events, newest first.
    #[command(after_help = crate::OFFLINE)]
    List(ListArgs),
    /// Print one event as JSON: headers (masked), body, deliveries and attempts.
    #[command(after_help = crate::OFFLINE)]
    Show {
        /// The event's id, as `events list` or the relay's 202 answer gives it.
        id: String,
    },
}

/// Filters and paging of `events list`.
#[derive(Args)]
pub struct ListArgs {
    /// Only this source's events.
    #[arg(long)]
    source: Option<String>,
    /// Only events of this type.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only events in this state: dead, pending, delivered or unrouted.
    #[arg(long)]
    status: Option<String>,
    /// Only events older than this id (the "next page" id printed by the previous list).
    #[arg(long)]
    before: Option<String>,
    /// Most events to print (at least 1).
    #[arg(long, default_value_t = DEFAULT_LIST_LIMIT, value_parser = at_least_one)]
    limit: usize,
}

/// A `--limit`: a whole number, 1 or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

const DEFAULT_LIST_LIMIT: usize = 50;
const DEFAULT_DLQ_LIMIT: usize = 50;

/// `command` (a list command for the next page) completed with `--limit` when it is not
/// `default`, and `--config`: pasted, it lists the same store one page on.
fn next_page_command(mut command: String, limit: usize, default: usize, config: &Path) -> String {
    if limit != default {
        command.push_str(&format!(" --limit {limit}"));
    }
    command.push_str(&format!(
        " --config {}",
        shell_word(&config.display().to_string())
    ));
    command
}

/// `text` as one shell word: as it is when that is safe, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:=@%+,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// `hookrelay dlq …`.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first: of one sink, or of every configured sink.
    #[command(after_help = crate::OFFLINE)]
    List {
        /// Only this sink's dead letters.
        #[arg(long)]
        sink: Option<String>,
        /// Most dead letters to print per sink (at least 1).
        #[arg(long, default_value_t = DEFAULT_DLQ_LIMIT, value_parser = at_least_one)]
        limit: usize,
        /// Only dead letters of events older than this id (the "next page" id printed by
        /// the previous list); needs --sink.
        #[arg(long, requires = "sink")]
        before: Option<String>,
    },
}

/// What `hookrelay replay` re-queues.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["event", "sink", "from"])))]
pub struct ReplayArgs {
    /// Re-queue this event, to every sink it was routed to (or only to --sink).
    #[arg(long)]
    event: Option<String>,
    /// Alone: re-queue this sink's dead letters. With --event or --from: only this sink.
    #[arg(long)]
    sink: Option<String>,
    /// With --sink alone: only dead letters dead-lettered at or after this RFC 3339 time.
    #[arg(long, requires = "sink", conflicts_with_all = ["event", "from"])]
    since: Option<String>,
    /// Re-queue every event received at or after this RFC 3339 time, to its sinks.
    #[arg(long, conflicts_with = "event")]
    from: Option<String>,
    /// With --from: only events received before this RFC 3339 time.
    #[arg(long, requires = "from")]
    to: Option<String>,
}

/// What `hookrelay export` writes.
#[derive(Args)]
pub struct ExportArgs {
    /// Only events received at or after this RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Only events received before this RFC 3339 time.
    #[arg(long)]
    to: Option<String>,
    /// Only this source's events.
    #[arg(long)]
    source: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

/// Opens `config`'s store for an offline command, refusing one a running relay holds.
fn open(config: &Config) -> anyhow::Result<Store> {
    let path = &config.storage.path;
    if !path.exists() {
        bail!(
            "no store at {}: nothing was stored yet, or [storage] path points elsewhere",
            path.display()
        );
    }
    // redb would turn an empty file into a new store; an empty file is a failed copy.
    if std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0) {
        bail!(
            "the store {} is an empty file, not a hookrelay store: was the copy cut short? \
             Point [storage] path at the store file",
            path.display()
        );
    }
    match Store::open(&config.storage) {
        Ok(store) => Ok(store),
        Err(StoreError::InUse { path }) => {
            let admin = match &config.admin {
                Some(admin) => format!("the admin API at http://{}/api/", admin.listen),
                None => "the admin API (add an [admin] section to enable it)".to_string(),
            };
            bail!(
                "the store {path} is held by a running hookrelay; offline commands need it stopped. \
                 While it runs, use {admin} instead"
            )
        }
        Err(err) => Err(err.into()),
    }
}

/// Runs `f` on the opened store in a small runtime, then closes the store cleanly.
fn with_store<T>(
    config: &Config,
    f: impl AsyncFnOnce(&Store) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let store = open(config)?;
        let result = f(&store).await;
        store.close().await;
        result
    })
}

fn time(ms: u64) -> String {
    hookrelay::admin::time::format_ms(ms)
}

/// Parses an RFC 3339 time given to `flag` into Unix milliseconds.
/// A bad value on the command line: the binary exits 2 for it, as for any usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(Usage(message))
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<u64> {
    hookrelay::admin::time::parse_ms(text).ok_or_else(|| {
        usage(format!(
            "--{flag} {text:?}: expected an RFC 3339 time such as 2024-05-01T12:00:00Z"
        ))
    })
}

/// `--from` and `--to` in milliseconds; either end open when absent.
fn time_range(from: Option<&str>, to: Option<&str>) -> anyhow::Result<(u64, u64)> {
    let from_ms = from.map(|t| parse_time("from", t)).transpose()?;
    let to_ms = to.map(|t| parse_time("to", t)).transpose()?;
    if let (Some(f), Some(t), Some(from), Some(to)) = (from_ms, to_ms, from, to)
        && t < f
    {
        return Err(usage(format!(
            "--to {to:?} is before --from {from:?}; swap them"
        )));
    }
    Ok((from_ms.unwrap_or(0), to_ms.unwrap_or(u64::MAX)))
}

fn parse_id(text: &str) -> anyhow::Result<EventId> {
    EventId::parse_str(text).map_err(|_| {
        usage(format!(
            "{text:?} is not an event id (a UUID such as 0191e3c0-…)"
        ))
    })
}

/// The configured sink called `name`, or an error listing the sinks.
/// `name` as a sink that takes deliveries: configured and enabled.
fn enabled_sink(config: &Config, name: &str) -> anyhow::Result<Arc<str>> {
    let sink = known_sink(config, name)?;
    if config.sinks.iter().any(|s| s.name == name && !s.enabled) {
        bail!(
            "sink \"{name}\" is disabled (enabled = false): nothing is sent to it; set enabled = \
             true first"
        );
    }
    Ok(sink)
}

fn known_sink(config: &Config, name: &str) -> anyhow::Result<Arc<str>> {
    if config.sinks.iter().any(|s| s.name == name) {
        return Ok(Arc::from(name));
    }
    let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
    bail!(
        "no sink \"{name}\" in the configuration; the sinks are: {}",
        names.join(", ")
    )
}

/// `hookrelay events list|show`; `config_path` is where `config` was read (for the next
/// page's command).
pub fn events(config: &Config, config_path: &Path, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List(args) => {
            let status = match &args.status {
                None => None,
                Some(text) => Some(EventStatus::parse(text).ok_or_else(|| {
                    usage(format!(
                        "--status {text:?}: expected dead, pending, delivered or unrouted"
                    ))
                })?),
            };
            let query = EventQuery {
                before: args.before.as_deref().map(parse_id).transpose()?,
                source: args.source.clone(),
                event_type: args.event_type.clone(),
                status,
                limit: args.limit,
            };
            // Pages of the store's own size: its scan bound may end a page early.
            let mut shown = Vec::new();
            let mut next = query.before;
            let mut more = true;
            with_store(config, async |store| {
                while shown.len() < query.limit && more {
                    let page = store.recent_events(&EventQuery {
                        before: next,
                        limit: query.limit - shown.len(),
                        ..query.clone()
                    })?;
                    shown.extend(page.events);
                    more = page.next.is_some();
                    next = page.next;
                }
                Ok(())
            })?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<36}  {:<24}  {:<16}  {:<24}  {:<9}  BYTES",
                "ID", "RECEIVED", "SOURCE", "TYPE", "STATUS"
            )?;
            for e in &shown {
                writeln!(
                    out,
                    "{:<36}  {:<24}  {:<16}  {:<24}  {:<9}  {}",
                    e.id,
                    time(e.received_at_ms),
                    e.source,
                    e.event_type.as_deref().unwrap_or("-"),
                    e.status.as_str(),
                    e.size
                )?;
            }
            if more && let Some(next) = next {
                // The same command, one page on: every option repeated, so pasting it lists
                // the same store with the same filters.
                let mut command = format!("hookrelay events list --before {next}");
                for (flag, value) in [
                    ("--source", args.source.as_deref()),
                    ("--type", args.event_type.as_deref()),
                    ("--status", args.status.as_deref()),
                ] {
                    if let Some(value) = value {
                        command.push_str(&format!(" {flag} {}", shell_word(value)));
                    }
                }
                let command =
                    next_page_command(command, args.limit, DEFAULT_LIST_LIMIT, config_path);
                writeln!(out, "more: {command}")?;
            }
            Ok(())
        }
        EventsCommand::Show { id } => {
            let id = parse_id(&id)?;
            let mask = HeaderMask::new(config);
            let detail = with_store(config, async |store| Ok(store.event_detail(id)?))?;
            let Some((event, deliveries, attempts)) = detail else {
                bail!("no event {id} in the store (it may have passed retention)");
            };
            let document = event_document(&mask, &event, &deliveries, &attempts);
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
    }
}

/// `hookrelay dlq list`.
pub fn dlq(config: &Config, config_path: &Path, command: DlqCommand) -> anyhow::Result<()> {
    let DlqCommand::List {
        sink,
        limit,
        before,
    } = command;
    let before = before.as_deref().map(parse_id).transpose()?;
    let letters = with_store(config, async |store| {
        // Configured sinks, then those removed from the file whose dead letters the store
        // still holds (as the admin API lists them).
        let stored = store.sinks_with_entries()?;
        let sinks: Vec<String> = match &sink {
            Some(name) if stored.contains(name) => vec![name.clone()],
            Some(name) => vec![known_sink(config, name)?.to_string()],
            None => {
                let configured = config.sinks.iter().map(|s| s.name.clone());
                let removed = stored
                    .into_iter()
                    .filter(|n| !config.sinks.iter().any(|s| s.name == *n));
                configured.chain(removed).collect()
            }
        };
        let mut all = Vec::new();
        for sink in &sinks {
            let (page, next) = store.dead_letter_page(sink, before, limit)?;
            all.push((sink.clone(), page, next));
        }
        Ok(all)
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<16}  {:<36}  {:<24}  {:>8}  REASON",
        "SINK", "EVENT", "DEAD SINCE", "ATTEMPTS"
    )?;
    for (sink, page, next) in &letters {
        for d in page {
            writeln!(
                out,
                "{:<16}  {:<36}  {:<24}  {:>8}  {}",
                sink,
                d.event_id,
                time(d.at_ms),
                d.attempts,
                d.reason
            )?;
        }
        if let Some(next) = next {
            // The same command, one page on, for this sink.
            let command = next_page_command(
                format!(
                    "hookrelay dlq list --sink {} --before {next}",
                    shell_word(sink)
                ),
                limit,
                DEFAULT_DLQ_LIMIT,
                config_path,
            );
            writeln!(
                out,
                "more dead letters of {sink}: {command} (or replay them all with `hookrelay replay --sink {}`)",
                shell_word(sink)
            )?;
        }
    }
    Ok(())
}

/// `hookrelay replay`: queues again, durably; the relay sends at its next start.
pub fn replay(config: &Config, args: ReplayArgs) -> anyhow::Result<()> {
    let only: Option<Arc<str>> = args
        .sink
        .as_deref()
        .map(|s| enabled_sink(config, s))
        .transpose()?;
    let configured = |sink: &str| config.sinks.iter().any(|s| s.name == sink && s.enabled);
    if let Some(id) = &args.event {
        let id = parse_id(id)?;
        let lines = with_store(config, async |store| {
            let Some((_, deliveries, _)) = store.event_detail(id)? else {
                bail!("no event {id} in the store (it may have passed retention)");
            };
            // One event, one named sink: sent there even if it was not routed there.
            let targets = match &only {
                Some(sink) => vec![sink.clone()],
                None => targets_of(&deliveries, None, &configured),
            };
            let results = store.replay(id, targets.clone()).await?;
            Ok(targets
                .iter()
                .zip(results)
                .map(|(sink, result)| format!("event {id} -> {sink}: {}", words(result)))
                .collect::<Vec<_>>())
        })?;
        if lines.is_empty() {
            println!("event {id}: no configured, enabled sink to replay it to");
            return Ok(());
        }
        let queued = lines.iter().any(|line| line.ends_with(": queued"));
        for line in lines {
            println!("{line}");
        }
        if queued {
            println!("queued deliveries are sent when the relay starts");
        }
        return Ok(());
    }
    if let Some(from) = &args.from {
        let (from_ms, to_ms) = time_range(Some(from), args.to.as_deref())?;
        let (events, queued, pending) = with_store(config, async |store| {
            let (mut events, mut queued, mut pending, mut after) = (0usize, 0usize, 0usize, None);
            loop {
                let ids = store.event_ids_between(from_ms, to_ms, after, PAGE)?;
                // Submitted together, a page's replays share the writer's commits (and its
                // syncs), instead of one synced commit per event: minutes on a large store.
                let mut page = tokio::task::JoinSet::new();
                for id in &ids {
                    let Some((_, deliveries, _)) = store.event_detail(*id)? else {
                        continue;
                    };
                    let targets = targets_of(&deliveries, only.as_ref(), &configured);
                    if !targets.is_empty() {
                        let (store, id) = (store.clone(), *id);
                        page.spawn(async move { store.replay(id, targets).await });
                    }
                }
                events += page.len();
                for results in page.join_all().await {
                    for result in results? {
                        match result {
                            Replayed::Queued => queued += 1,
                            Replayed::AlreadyQueued => pending += 1,
                            _ => {}
                        }
                    }
                }
                after = ids.last().copied();
                if ids.len() < PAGE {
                    return Ok((events, queued, pending));
                }
            }
        })?;
        let waiting = if pending > 0 {
            format!(" ({pending} were queued already)")
        } else {
            String::new()
        };
        println!(
            "{events} event(s) found, {queued} delivery(ies) queued{waiting}; they are sent when \
             the relay starts"
        );
        return Ok(());
    }
    // clap requires --event, --from or --sink, so only --sink is left.
    let Some(sink) = only else {
        bail!("say what to replay: --event ID, --sink NAME or --from TIME");
    };
    let since_ms = match &args.since {
        Some(since) => parse_time("since", since)?,
        None => 0,
    };
    let replayed = with_store(config, async |store| {
        Ok(store.replay_dead(sink.clone(), since_ms, PAGE).await?)
    })?;
    println!(
        "sink {sink}: {replayed} dead letter(s) queued again; they are sent when the relay starts"
    );
    Ok(())
}

/// The sinks to replay an event to: those it was routed to that are still configured and
/// enabled, or of those only `only`. An event never goes to a sink it was not routed to, so
/// a range replay to one sink skips the other sinks' events (and hookrelay's notices about
/// that sink, which are never sent to it).
fn targets_of(
    deliveries: &[(String, DeliveryState)],
    only: Option<&Arc<str>>,
    configured: &impl Fn(&str) -> bool,
) -> Vec<Arc<str>> {
    deliveries
        .iter()
        .filter(|(sink, _)| configured(sink))
        .filter(|(sink, _)| only.is_none_or(|only| **only == **sink))
        .map(|(sink, _)| Arc::from(sink.as_str()))
        .collect()
}

fn words(result: Replayed) -> &'static str {
    match result {
        Replayed::Queued => "queued",
        Replayed::AlreadyQueued => "already queued, left as it was",
        Replayed::NoSuchEvent => "no such event",
    }
}

/// `hookrelay export`: one JSON document per line, oldest first, as `events show` prints.
pub fn export(config: &Config, args: ExportArgs) -> anyhow::Result<()> {
    let (from_ms, to_ms) = time_range(args.from.as_deref(), args.to.as_deref())?;
    if let Some(source) = &args.source
        && source != hookrelay::config::NOTICE_SOURCE
        && !config.sources.iter().any(|s| s.name == *source)
    {
        // Not an error: a source removed from the file keeps its stored events.
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "hookrelay: no source \"{source}\" in the configuration (the sources are: {}); \
             exporting the stored events of a source by that name, if any",
            names.join(", ")
        );
    }
    let mask = HeaderMask::new(config);
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let count = with_store(config, async |store| {
        let (mut count, mut after) = (0usize, None);
        loop {
            let ids = store.event_ids_between(from_ms, to_ms, after, PAGE)?;
            for id in &ids {
                let Some((event, deliveries, attempts)) = store.event_detail(*id)? else {
                    continue;
                };
                if args.source.as_deref().is_some_and(|s| *s != *event.source) {
                    continue;
                }
                let document = event_document(&mask, &event, &deliveries, &attempts);
                // As an io::Error, so a reader that stops reading (`| head`) is recognised.
                serde_json::to_writer(&mut out, &document).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
                count += 1;
            }
            after = ids.last().copied();
            if ids.len() < PAGE {
                return Ok(count);
            }
        }
    })?;
    out.flush().context("cannot write the export")?;
    if args.output.is_some() {
        eprintln!("{count} event(s) exported");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn a_shell_word_is_quoted_only_when_it_must_be() {
        assert_eq!(
            shell_word("/etc/hookrelay/hookrelay.toml"),
            "/etc/hookrelay/hookrelay.toml"
        );
        assert_eq!(shell_word("Push Hook"), "'Push Hook'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(rm -rf)"), "'$(rm -rf)'");
        assert_eq!(shell_word(""), "''");
    }
}
