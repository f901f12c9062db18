//! The `hookrelay` binary: command line, logging, exit codes; wires the parts.

mod offline;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hookrelay::config::{Config, SourceKind};

/// glibc's allocator spent about a fifth of both the HTTP threads' and the store writer's
/// time under load (bodies are allocated on one thread and freed on another); see
/// BENCHMARKS.md for the before/after figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (serve: stopped cleanly after SIGTERM or SIGINT)
  1  runtime failure (serve: cannot listen, cannot open the store; test-sink: the sink
     refused or failed the test message)
  2  invalid configuration (a sink that cannot be built included) or command line";

const SERVE_EXIT_CODES: &str = "\
Exit codes:
  0  stopped cleanly after SIGTERM or SIGINT
  1  runtime failure: cannot listen, cannot open the store
  2  invalid configuration (a sink that cannot be built included) or command line";

const CHECK_EXIT_CODES: &str = "\
Exit codes:
  0  the file is valid (warnings, if any, are printed)
  2  the file has problems (each printed with its file, line, column and key), or the
     command line is invalid";

const TEST_SINK_EXIT_CODES: &str = "\
Exit codes:
  0  the sink delivered the test message
  1  the sink refused or failed it (the answer is printed), or takes no test message
     (dependency-track, guac: post a real SBOM event)
  2  invalid configuration, no sink of that name, or an invalid command line";

/// Receives signed webhooks, stores every accepted event durably, and relays it to sinks.
#[derive(Parser)]
#[command(name = "hookrelay", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config`, the same for every command.
#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file: the store, sources, sinks and routes every command reads.
    #[arg(
        long = "config",
        short = 'c',
        global = true,
        default_value = "config/hookrelay.toml",
        env = "HOOKRELAY_CONFIG"
    )]
    path: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    #[command(after_help = SERVE_EXIT_CODES)]
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log line format. The level is set with RUST_LOG (default: info).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate a configuration file and print every problem found.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Send a clearly labelled test message through one sink and report its answer.
    #[command(after_help = TEST_SINK_EXIT_CODES)]
    TestSink {
        /// The sink's name, as in [sinks.NAME].
        name: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Offline: list or show stored events (the relay must be stopped).
    #[command(subcommand_required = true, after_help = OFFLINE)]
    Events {
        #[command(subcommand)]
        command: offline::EventsCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Offline: list dead letters (the relay must be stopped).
    #[command(subcommand_required = true, after_help = OFFLINE)]
    Dlq {
        #[command(subcommand)]
        command: offline::DlqCommand,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Offline: queue deliveries again, by event, sink or time range; the relay sends them at
    /// its next start.
    #[command(after_help = OFFLINE)]
    Replay {
        #[command(flatten)]
        what: offline::ReplayArgs,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Offline: write stored events as JSON lines, oldest first, for audit.
    #[command(after_help = OFFLINE)]
    Export {
        #[command(flatten)]
        what: offline::ExportArgs,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub(crate) const OFFLINE: &str = "\
Offline commands open the store file directly, for a stopped relay or a copy of its store.
They refuse a store that a running relay holds: use the admin API (/api/) while it runs.
Signature and credential headers are masked as in the admin API.

Exit codes:
  0  success
  1  the store cannot be opened (missing, or held by a running relay), no such event or sink
  2  invalid configuration or command line";

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            config: ConfigArg { path: config },
        } => match Config::load(&config) {
            Ok(loaded) => {
                if let Some(code) = refuse_bad_sinks(&loaded, &config) {
                    return code;
                }
                if let Some(files) = &loaded.server.tls {
                    let end = hookrelay::ingress::tls::certificate_end(files).unwrap_or(None);
                    if let Some(warning) = hookrelay::ingress::tls::expiry_warning(files, end) {
                        eprintln!("warning: {warning}");
                    }
                }
                for (key, warning) in loaded.warnings() {
                    eprintln!("warning: {key}: {warning}");
                }
                println!(
                    "{}: ok ({} sources, {} sinks, {} routes)",
                    config.display(),
                    loaded.sources.len(),
                    loaded.sinks.len(),
                    loaded.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::from(2)
            }
        },
        Command::TestSink {
            name,
            config: ConfigArg { path: config },
        } => {
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::from(2);
                }
            };
            if !loaded.sinks.iter().any(|s| s.name == name) {
                // A name that is not in the file is a command-line error, like a bad flag.
                let names: Vec<&str> = loaded.sinks.iter().map(|s| s.name.as_str()).collect();
                eprintln!(
                    "hookrelay: no sink \"{name}\" in {}; the sinks are: {}",
                    config.display(),
                    names.join(", ")
                );
                return ExitCode::from(2);
            }
            if let Some(code) = refuse_bad_sinks(&loaded, &config) {
                return code;
            }
            init_logging(LogFormat::Text, "warn");
            match test_sink(&loaded, &name) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("hookrelay: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Events {
            command,
            config: ConfigArg { path: config },
        } => offline_command(&config, |c| offline::events(c, &config, command)),
        Command::Dlq {
            command,
            config: ConfigArg { path: config },
        } => offline_command(&config, |c| offline::dlq(c, &config, command)),
        Command::Replay {
            what,
            config: ConfigArg { path: config },
        } => offline_command(&config, |c| offline::replay(c, what)),
        Command::Export {
            what,
            config: ConfigArg { path: config },
        } => offline_command(&config, |c| offline::export(c, what)),
        Command::Serve {
            config: ConfigArg { path: config },
            log_format,
        } => {
            ignore_early_hangups();
            init_logging(log_format, "info");
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::from(2);
                }
            };
            // Before the store is opened or created: a config error, with its exit code.
            if let Some(code) = refuse_bad_sinks(&loaded, &config) {
                return code;
            }
            match serve(loaded, config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("hookrelay: {err:#}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// Loads the config and runs one offline command on it, mapping its outcome to an exit code.
fn offline_command(
    config: &std::path::Path,
    run: impl FnOnce(&Config) -> anyhow::Result<()>,
) -> ExitCode {
    let loaded = match Config::load_offline(config) {
        Ok(c) => c,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    // A damaged store can make redb panic while reading: say so in one line, not a trace.
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&loaded)))
        .unwrap_or_else(|panic| {
            let what = hookrelay::store::panic_message(&*panic);
            Err(anyhow::anyhow!(
                "reading the store {} stopped on data it cannot make sense of ({what}); the file \
                 is damaged: keep a copy of it and restore the store from a backup",
                loaded.storage.path.display()
            ))
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            if err.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("hookrelay: {err:#}");
            if err.downcast_ref::<offline::Usage>().is_some() {
                return ExitCode::from(2);
            }
            ExitCode::from(1)
        }
    }
}

/// Builds every sink of `loaded` (read from `path`) and prints what fails, as `check` does:
/// the exit code to stop with, `None` when every sink builds.
fn refuse_bad_sinks(loaded: &Config, path: &std::path::Path) -> Option<ExitCode> {
    let problems = match check_sinks(loaded) {
        Ok(problems) => problems,
        Err(err) => {
            eprintln!("hookrelay: {err:#}");
            return Some(ExitCode::from(1));
        }
    };
    if problems.is_empty() {
        return None;
    }
    // A problem placed in the file (a template) reads like the loader's; others name their sink.
    let file = format!("{}:", path.display());
    for problem in &problems {
        if problem.message.starts_with(&file) {
            eprintln!("{}", problem.message);
        } else {
            eprintln!("{problem}");
        }
    }
    let n = problems.len();
    let s = if n == 1 { "" } else { "s" };
    eprintln!("\n{n} error{s} in {}", path.display());
    Some(ExitCode::from(2))
}

/// Builds every sink (compiling its templates) without sending anything.
fn check_sinks(config: &Config) -> anyhow::Result<Vec<hookrelay::sinks::SinkBuildError>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(async { hookrelay::sinks::check(&config.sinks) }))
}

/// Sends one test message through sink `name`; `Ok` with a line to print when it was taken.
fn test_sink(config: &Config, name: &str) -> anyhow::Result<String> {
    use hookrelay::sinks::{AnySink, Outcome, Sink};
    let Some(sink_config) = config.sinks.iter().find(|s| s.name == name) else {
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "no sink \"{name}\" in the configuration; the sinks are: {}",
            names.join(", ")
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let sink = AnySink::new(sink_config)?;
        let delivery = hookrelay::sinks::test_delivery();
        let outcome = tokio::time::timeout(
            sink_config.timeout + std::time::Duration::from_secs(1),
            sink.deliver(&delivery),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "sink \"{name}\": no answer in time; raise [sinks.{name}] timeout if it is slow"
            )
        })?;
        match outcome {
            Outcome::Delivered { status, message_id } => {
                let mut line = format!("sink \"{name}\" ({}): test message delivered", sink.kind());
                if let Some(status) = status {
                    line.push_str(&format!(", status {status}"));
                }
                if let Some(id) = message_id {
                    line.push_str(&format!(", message id {id}"));
                }
                Ok(line)
            }
            Outcome::Retry { error, .. } => Err(anyhow::anyhow!(
                "sink \"{name}\": test message not delivered (would be retried): {}",
                error.message
            )),
            Outcome::Failed(error) => Err(anyhow::anyhow!(
                "sink \"{name}\": test message refused (would be dead-lettered): {}",
                error.message
            )),
            // Nothing reached the service, so nothing was tested: not a success.
            Outcome::Skipped { reason } => Err(anyhow::anyhow!(
                "sink \"{name}\": nothing sent, the sink skipped the test message: {reason}"
            )),
        }
    })
}

/// Logs to stderr at `RUST_LOG`, else at `default` (`info` for the relay; `warn` for
/// `test-sink`, which shows a sink's warnings, such as a refused mail recipient).
fn init_logging(format: LogFormat, default: &str) {
    let info = || tracing_subscriber::EnvFilter::new(default);
    // Empty counts as unset: an empty `Environment=RUST_LOG=` would otherwise log nothing.
    let filter = match std::env::var("RUST_LOG").map(|spec| level_typos_fixed(&spec)) {
        Ok(spec) if !spec.trim().is_empty() => tracing_subscriber::EnvFilter::try_new(&spec)
            .unwrap_or_else(|err| {
                eprintln!(
                    "hookrelay: RUST_LOG={spec:?} is not a log filter ({err}); logging at {default}"
                );
                info()
            }),
        _ => info(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// `spec` with the common misspellings of a level (`warning`, `err`) written as the level,
/// saying so on stderr. A bare word that is not a level is a module name to `RUST_LOG`, so
/// `RUST_LOG=warning` would silently turn every line off, errors included.
fn level_typos_fixed(spec: &str) -> String {
    const TYPOS: [(&str, &str); 4] = [
        ("warning", "warn"),
        ("err", "error"),
        ("information", "info"),
        ("dbg", "debug"),
    ];
    let fixed: Vec<String> = spec
        .split(',')
        .map(|directive| {
            let (target, level) = match directive.split_once('=') {
                Some((target, level)) => (Some(target), level),
                None => (None, directive),
            };
            let Some((_, right)) = TYPOS
                .iter()
                .find(|(typo, _)| level.trim().eq_ignore_ascii_case(typo))
            else {
                return directive.to_string();
            };
            eprintln!(
                "hookrelay: RUST_LOG: {:?} is not a level; taken as {right:?} (the levels are \
                 error, warn, info, debug, trace and off)",
                level.trim()
            );
            match target {
                Some(target) => format!("{target}={right}"),
                None => right.to_string(),
            }
        })
        .collect();
    fixed.join(",")
}

fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|err| anyhow::anyhow!(listen_failure(listen, &err)))?;
        for source in config.sources.iter() {
            if matches!(source.kind, SourceKind::None { .. }) && source.enabled {
                tracing::warn!(source = %source.name, "source has kind = \"none\": its requests are NOT verified; anyone who can reach the port can inject events");
            }
        }
        let shutdown = shutdown_signal();
        ignore_user_signals();
        let options = hookrelay::RunOptions {
            config_path: Some(path),
        };
        hookrelay::run_with(listener, config, options, shutdown)
            .await
            .context("stopped")
    })
}

/// Installs a SIGHUP handler before anything else, so a SIGHUP while the relay is still
/// reading its config (a reload sent right after a start) does not end it, as the default
/// action would. The handler stays for the life of the process; SIGHUPs before the
/// reloader listens are dropped, and the reloader reads the file afresh anyway.
fn ignore_early_hangups() {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        let _entered = runtime.enter();
        let _ = signal(SignalKind::hangup());
    }
}

/// Logs SIGUSR1 and SIGUSR2 and goes on: by default either ends the process at once, with no
/// log line, and a stray `kill -USR1` (or a log rotator's) should not stop the relay.
fn ignore_user_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    for (name, kind) in [
        ("SIGUSR1", SignalKind::user_defined1()),
        ("SIGUSR2", SignalKind::user_defined2()),
    ] {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                tracing::info!(
                    signal = name,
                    "signal ignored: hookrelay reloads on SIGHUP and stops on SIGTERM or SIGINT"
                );
            }
        });
    }
}

/// Why the relay cannot listen on `listen`, and what to do.
fn listen_failure(listen: std::net::SocketAddr, err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {listen}: {err}; a port below 1024 needs root or the \
             CAP_NET_BIND_SERVICE capability (AmbientCapabilities= under systemd): grant it, \
             or set [server] listen to a port of 1024 or more"
        ),
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {listen}: {err}; another process holds the port: stop it, or set \
             [server] listen to a free address"
        ),
        std::io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {listen}: {err}; the address is not one of this host's: set \
             [server] listen to one of its addresses, or 0.0.0.0"
        ),
        _ => format!("cannot listen on {listen}: {err}; set [server] listen to a free address"),
    }
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed by the call itself,
/// not when the future is first polled: a SIGTERM that arrives while the relay is still
/// starting (after it logged that it listens) then stops it cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = which,
            "shutting down: no new requests; finishing what is in flight"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::level_typos_fixed;

    #[test]
    fn misspelt_levels_are_read_as_the_level_they_mean() {
        assert_eq!(level_typos_fixed("warning"), "warn");
        assert_eq!(
            level_typos_fixed("hookrelay=Warning,hyper=err"),
            "hookrelay=warn,hyper=error"
        );
        // Levels and module names are left as they are.
        assert_eq!(
            level_typos_fixed("info,hookrelay::ingress=debug"),
            "info,hookrelay::ingress=debug"
        );
    }
}
