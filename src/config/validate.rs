//! Validation: the raw file (`raw`) becomes the typed [`Config`], or a [`ConfigError`] that
//! lists every problem found, each with its file, line, column and key path, the offending
//! line, and what to do.
//!
//! Invariants:
//! - Every problem is collected; one bad value never hides another. A [`Config`] is returned
//!   only when there are none.
//! - No message contains a value resolved from `${env:..}` or `${file:..}`, nor a sink URL or
//!   header value: messages say what is wrong with a value, never what it is. (The excerpt
//!   shows the file's own line, which the user already has.)
//! - Relative paths (`storage.path`, `${file:..}`) are resolved against the config file's
//!   folder, so the relay behaves the same whatever directory it is started from.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::raw::{
    self, Entry, Issue, RawAdmin, RawCondition, RawConfig, RawDuration, RawField, RawHeaders,
    RawPairs, RawRetry, RawRoute, RawServer, RawSink, RawSize, RawSource, RawStorage, Strings,
};
use super::secrets;
use super::tls::Outbound;
use super::{Condition, PresetScheme, Product, Subject, SummaryField, Test};

mod messages;
mod nats;
mod notices;
use super::{
    AdminConfig, Config, FieldLocation, HmacAlgorithm, Rate, RetryPolicy, RouteConfig, Secret,
    ServerConfig, SignatureEncoding, SinkConfig, SinkKind, SourceConfig, SourceKind, StorageConfig,
    WebhookSinkConfig,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// An admin token guards replays and every event's body: shorter ones are guessable.
const SHORTEST_ADMIN_TOKEN: usize = 16;
const DEFAULT_MAX_BODY: u64 = 25 * 1024 * 1024;
/// Bodies are held in memory and stored whole; no webhook comes near this.
const LARGEST_MAX_BODY: u64 = 1024 * 1024 * 1024;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: i64 = 1024;
/// Bounds ingress memory whatever `max_connections` × `max_body` come to.
const DEFAULT_MAX_BUFFERED: u64 = 256 * 1024 * 1024;
/// Far above what one process can serve, and low enough for any semaphore.
const LARGEST_MAX_CONNECTIONS: i64 = 1_000_000;
const DEFAULT_STORAGE_PATH: &str = "data/hookrelay.redb";
const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);
const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_CONCURRENCY: i64 = 8;
const LARGEST_CONCURRENCY: i64 = 1024;
const DEFAULT_MAX_ATTEMPTS: i64 = 12;
const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(1);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(3600);
/// Longer durations are surely typos, and adding them to an `Instant` could overflow.
const LONGEST_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
const LONGEST_NAME: usize = 64;

/// Source kinds, as written in `kind = "..."`.
const SOURCE_KINDS: &[&str] = &[
    "github",
    "gitlab",
    "standard",
    "hmac",
    "token",
    "none",
    "nexus",
    "artifactory",
    "harbor",
    "gitea",
    "bitbucket",
];
/// Sink kinds, as written in `kind = "..."`.
const SINK_KINDS: &[&str] = &[
    "webhook",
    "slack",
    "discord",
    "teams",
    "smtp",
    "dependency-track",
    "guac",
    "archive",
    "nats",
];

/// For each source key that only some kinds take, those kinds. `kind` and `enabled` are
/// taken by all.
const KIND_KEYS: &[(&str, &[&str])] = &[
    (
        "secret",
        &[
            "github",
            "standard",
            "hmac",
            "token",
            "nexus",
            "artifactory",
            "harbor",
            "gitea",
            "bitbucket",
        ],
    ),
    ("scheme", &["artifactory", "gitea"]),
    ("token", &["gitlab"]),
    ("signing_token", &["gitlab"]),
    ("tolerance", &["gitlab", "standard"]),
    ("header", &["hmac", "token"]),
    ("algorithm", &["hmac"]),
    ("encoding", &["hmac"]),
    ("prefix", &["hmac"]),
    ("event_type", &["hmac", "token", "none"]),
    ("delivery_id", &["hmac", "token", "none"]),
];

/// Headers the webhook sink sets itself (or that HTTP manages); a static one would clash.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
];

/// One problem in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem concerns the whole file (it could not be read).
    pub line: usize,
    /// 1-based column, counted in characters; 0 when `line` is 0.
    pub column: usize,
    /// Dotted key path such as `routes[0].to`; empty for TOML syntax errors and unreadable files.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
    /// The offending line and the part to underline.
    excerpt: Option<Excerpt>,
}

/// A source line with a character range to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Excerpt {
    text: String,
    start: usize,
    len: usize,
}

/// Every problem found in a configuration file; `Display` renders them for people.
#[derive(Debug)]
pub struct ConfigError {
    origin: String,
    problems: Vec<Problem>,
}

impl ConfigError {
    /// The problems, in file order.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The file name the problems refer to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Problems found after validation, with no place in the file (a sink that cannot be
    /// built): each is `(key, message)`, the key naming its table, e.g. `sinks.chat`.
    pub fn unplaced(
        origin: &str,
        problems: impl IntoIterator<Item = (String, String)>,
    ) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    line: 0,
                    column: 0,
                    key,
                    message,
                    excerpt: None,
                })
                .collect(),
        }
    }

    fn whole_file(origin: &str, message: String) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            problems: vec![Problem {
                line: 0,
                column: 0,
                key: String::new(),
                message,
                excerpt: None,
            }],
        }
    }

    fn from_issues(origin: &str, text: &str, mut issues: Vec<Issue>) -> ConfigError {
        // File order reads best; the sort is stable so one spot's problems keep their order.
        issues.sort_by_key(|i| i.span.as_ref().map_or(0, |s| s.start));
        let problems = issues
            .into_iter()
            .map(|issue| match issue.span {
                Some(span) => {
                    let (line, column, mut excerpt) = locate(text, span);
                    // By the problem's key, or by the key written on the line: a syntax
                    // error has no key of its own.
                    if holds_secret(&issue.key) || holds_secret(line_key(&excerpt.text)) {
                        excerpt.text = mask_literals(&excerpt.text);
                    }
                    Problem {
                        line,
                        column,
                        key: issue.key,
                        message: issue.message,
                        excerpt: Some(excerpt),
                    }
                }
                None => Problem {
                    line: 0,
                    column: 0,
                    key: issue.key,
                    message: issue.message,
                    excerpt: None,
                },
            })
            .collect();
        ConfigError {
            origin: origin.to_string(),
            problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            f.write_str(&self.origin)?;
            if p.line > 0 {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            f.write_str(": ")?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            writeln!(f, "{}", p.message)?;
            if let Some(x) = &p.excerpt {
                let number = p.line.to_string();
                let gutter = " ".repeat(number.len());
                // Keep tabs from the line so the carets sit under the right characters.
                let pad: String = x
                    .text
                    .chars()
                    .take(x.start)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                writeln!(f, "{gutter} |")?;
                writeln!(f, "{number} | {}", x.text)?;
                writeln!(f, "{gutter} | {pad}{}", "^".repeat(x.len))?;
            }
            writeln!(f)?;
        }
        let n = self.problems.len();
        let s = if n == 1 { "" } else { "s" };
        write!(f, "{n} error{s} in {}", self.origin)
    }
}

impl std::error::Error for ConfigError {}

/// Whether the value of `key` may be a credential written inline: a secret, a password, a
/// URL (chat webhook URLs are credentials; others may carry `user:password@`), a proxy, a
/// static header (`Authorization`). `check` runs in front of journald: none of them may be
/// echoed.
fn holds_secret(key: &str) -> bool {
    // A list item's key ends in its index: `sources.gh.secret[1]`.
    let key = key.split('[').next().unwrap_or(key);
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(
        last,
        "secret"
            | "token"
            | "signing_token"
            | "signing_secret"
            | "password"
            | "url"
            | "proxy"
            | "headers"
    ) || key.contains(".headers")
}

/// The key a TOML line assigns (`url` in `  url = "…"`, `sinks.a.url` in a dotted key);
/// empty when the line is no assignment.
fn line_key(line: &str) -> &str {
    line.split_once('=')
        .map(|(key, _)| key.trim().trim_matches(['"', '\'']))
        .filter(|key| !key.is_empty() && !key.contains([' ', '{', '[']))
        .unwrap_or("")
}

/// `line` with the content of every quoted string that is not a `${env:..}`/`${file:..}`
/// reference replaced by `*`, one for one, so the carets below still line up.
fn mask_literals(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '\'' {
            continue;
        }
        let mut content = String::new();
        let mut closed = false;
        while let Some(inner) = chars.next() {
            if inner == '\\' && c == '"' {
                content.push(inner);
                if let Some(escaped) = chars.next() {
                    content.push(escaped);
                }
                continue;
            }
            if inner == c {
                closed = true;
                break;
            }
            content.push(inner);
        }
        if content.starts_with("${") {
            out.push_str(&content);
        } else {
            out.extend(content.chars().map(|_| '*'));
        }
        if closed {
            out.push(c);
        }
    }
    out
}

/// Line, column and excerpt of a byte span. Spans running past their first line are
/// underlined to its end; empty spans (end of file) get one caret.
fn locate(text: &str, span: Range<usize>) -> (usize, usize, Excerpt) {
    let mut start = span.start.min(text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line = text[..start].matches('\n').count() + 1;
    let before = text[line_start..start].chars().count();
    // A span may start on the `\n` of a CRLF line end, past the trimmed line's end.
    let line_limit = (line_start + line_text.len()).max(start);
    let end = span.end.clamp(start, line_limit);
    let len = text.get(start..end).map_or(0, |s| s.chars().count()).max(1);
    let excerpt = Excerpt {
        text: line_text.to_string(),
        start: before,
        len,
    };
    (line, before + 1, excerpt)
}

/// Whether two listeners would take the same port: the same port (not 0, which picks a free
/// one) on the same address, or on any address when one of them is unspecified (`0.0.0.0`).
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Reads, parses and validates the file at `path`.
pub(super) fn load(path: &Path) -> Result<Config, ConfigError> {
    load_as(path, Secrets::Required)
}

/// Like [`load`], for the offline commands: see [`Secrets::StandIn`].
pub(super) fn load_offline(path: &Path) -> Result<Config, ConfigError> {
    load_as(path, Secrets::StandIn)
}

/// Whether secrets given as `${env:..}` or `${file:..}` must be readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Required,
    /// One that cannot be read gets a stand-in value. Only for the offline commands, which
    /// use no secret, and run where secrets are often gone: systemd removes a service's
    /// credentials folder when it stops, and a store copied to another machine travels
    /// without them.
    StandIn,
}

/// What replaces a secret that cannot be read, in the form its key needs to be valid.
#[derive(Debug, Clone, Copy)]
pub(super) enum StandIn {
    Text,
    Whsec,
    Url,
    NatsServers,
}

impl StandIn {
    fn bytes(self) -> &'static [u8] {
        match self {
            StandIn::Text => b"offline-stand-in-for-an-unreadable-secret",
            StandIn::Whsec => b"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            StandIn::Url => b"https://offline.invalid/",
            StandIn::NatsServers => b"nats://offline.invalid:4222",
        }
    }
}

fn load_as(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let what = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "this user may not read it: give the relay's user read access (chmod, chown), \
                 or run as a user that has it"
            }
            std::io::ErrorKind::InvalidData => "it is not UTF-8 text: save it as UTF-8",
            std::io::ErrorKind::IsADirectory => "it is a folder: give the path of the file",
            _ => {
                "check the path given to --config (or $HOOKRELAY_CONFIG; without either it is \
                 config/hookrelay.toml, relative to the current folder)"
            }
        };
        ConfigError::whole_file(
            &origin,
            format!("cannot read the configuration file: {e}; {what}"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    build(&text, &origin, dir, secrets)
}

/// Parses and validates `text`; relative paths resolve against the current directory.
pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    build(text, origin, Path::new(""), Secrets::Required)
}

fn build(text: &str, origin: &str, dir: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
    let (raw, issues) = raw::read(text);
    let mut v = Validator {
        issues,
        dir,
        secrets,
        origin,
        text,
    };
    let config = v.config(raw);
    match config {
        Some(config) if v.issues.is_empty() => Ok(config),
        _ => {
            if v.issues.is_empty() {
                // Every `None` above is paired with an issue; this guards that promise.
                v.issues.push(Issue {
                    span: None,
                    key: String::new(),
                    message: "invalid configuration (no detail was recorded; please report \
                              this as a hookrelay bug)"
                        .to_string(),
                });
            }
            Err(ConfigError::from_issues(origin, text, v.issues))
        }
    }
}

mod folders;
mod machines;

/// Walks the raw file, collecting issues. Each method returns `None` only after recording
/// at least one issue, and keeps checking what it can before returning.
pub(super) struct Validator<'a> {
    pub(super) issues: Vec<Issue>,
    pub(super) dir: &'a Path,
    secrets: Secrets,
    /// The file's name as shown in messages, and its text: a template records where it
    /// was written, for errors found when it is compiled.
    origin: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    /// Resolves a secret value (see [`secrets::resolve`]); for the offline commands, an
    /// `${env:..}` or `${file:..}` that cannot be read becomes `stand_in` instead.
    pub(super) fn resolve(&self, value: &str, stand_in: StandIn) -> Result<Vec<u8>, String> {
        let resolved = secrets::resolve(value, self.dir);
        let indirect = || secrets::classify(value).is_ok_and(|r| r.is_indirect());
        match resolved {
            Err(_) if self.secrets == Secrets::StandIn && indirect() => {
                Ok(stand_in.bytes().to_vec())
            }
            resolved => resolved,
        }
    }

    pub(super) fn problem(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.issues.push(Issue::new(span, key, message));
    }

    /// Reports a required key that is absent, at the entry's name; always `None`, so it can
    /// stand as the `None` arm of the key's check.
    pub(super) fn missing<T>(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Option<T> {
        self.problem(span, key, message);
        None
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        // Problems in [tls] are recorded here; sinks are still checked against the defaults.
        let outbound = self
            .outbound_defaults(
                raw.tls.as_ref(),
                raw.server.as_ref().and_then(|s| s.proxy.as_ref()),
            )
            .unwrap_or_default();
        let server = self.server(raw.server.unwrap_or_default());
        let storage = self.storage(raw.storage.unwrap_or_default());
        let admin_listen_span = raw
            .admin
            .as_ref()
            .and_then(|a| a.listen.as_ref())
            .map_or(0..0, Spanned::span);
        let admin = raw.admin.map(|a| self.admin(a));
        if let (Some(server), Some(Some(admin))) = (&server, &admin)
            && same_socket(server.listen, admin.listen)
        {
            self.problem(
                admin_listen_span,
                "admin.listen",
                format!(
                    "is the address webhooks come in on ([server] listen = \"{}\"); the admin \
                     API needs its own port, e.g. \"127.0.0.1:9090\"",
                    server.listen
                ),
            );
        }
        let notices = self.notices(raw.notices.unwrap_or_default());
        let sources: Vec<_> = raw.sources.iter().map(|e| self.source(e)).collect();
        let sinks: Vec<_> = raw.sinks.iter().map(|e| self.sink(e, &outbound)).collect();
        self.shared_folders(&raw.sinks, &sinks);
        let source_names: Vec<&str> = raw
            .sources
            .iter()
            .map(|e| e.name.get_ref().as_str())
            .collect();
        let sink_names: Vec<&str> = raw
            .sinks
            .iter()
            .map(|e| e.name.get_ref().as_str())
            .collect();
        let routes: Vec<_> = raw
            .routes
            .iter()
            .map(|(i, r)| self.route(*i, r, &source_names, &sink_names))
            .collect();
        let mut sources = sources.into_iter().collect::<Option<Vec<_>>>()?;
        let mut sinks = sinks.into_iter().collect::<Option<Vec<_>>>()?;
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        sinks.sort_by(|a, b| a.name.cmp(&b.name));
        Some(Config {
            server: server?,
            storage: storage?,
            sources,
            sinks,
            routes: routes.into_iter().collect::<Option<Vec<_>>>()?,
            // Outer `None`: no [admin] section; inner `None`: a section with problems.
            admin: match admin {
                None => None,
                Some(checked) => Some(checked?),
            },
            notices: notices?,
        })
    }

    fn admin(&mut self, raw: RawAdmin) -> Option<AdminConfig> {
        let listen = match &raw.listen {
            None => DEFAULT_ADMIN_LISTEN.parse().ok(),
            Some(v) => match v.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        v.span(),
                        "admin.listen",
                        "is not an address; write IP:PORT, e.g. \"127.0.0.1:9090\" (host names \
                         are not resolved)",
                    );
                    None
                }
            },
        };
        let token = match &raw.token {
            None => Some(None),
            Some(value) => match self.resolve(value.get_ref(), StandIn::Text) {
                Ok(bytes) if bytes.len() < SHORTEST_ADMIN_TOKEN => {
                    self.problem(
                        value.span(),
                        "admin.token",
                        format!(
                            "is shorter than {SHORTEST_ADMIN_TOKEN} characters; use a long random \
                             value, e.g. the output of `openssl rand -hex 32`"
                        ),
                    );
                    None
                }
                Ok(bytes) if !bytes.iter().all(|b| b.is_ascii_graphic()) => {
                    self.problem(
                        value.span(),
                        "admin.token",
                        "must be printable ASCII without spaces (it is sent in an \
                         Authorization header)",
                    );
                    None
                }
                Ok(bytes) => Some(Some(Secret::new(bytes))),
                Err(message) => {
                    self.problem(value.span(), "admin.token", message);
                    None
                }
            },
        };
        if let (Some(addr), Some(None)) = (listen, &token)
            && !addr.ip().is_loopback()
        {
            let span = raw.listen.as_ref().map_or(0..0, |l| l.span());
            self.problem(
                span,
                "admin.listen",
                "is not a loopback address and [admin] has no token: anyone who can reach it \
                 could read every event and replay them. Set admin.token (e.g. \
                 \"${env:HOOKRELAY_ADMIN_TOKEN}\") or listen on 127.0.0.1",
            );
            return None;
        }
        Some(AdminConfig {
            listen: listen?,
            token: token?,
        })
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerConfig> {
        let listen = match &raw.listen {
            None => DEFAULT_LISTEN.parse().ok(),
            Some(v) => match v.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(
                        v.span(),
                        "server.listen",
                        "is not an address; write IP:PORT, e.g. \"127.0.0.1:8080\" or \
                         \"0.0.0.0:8080\" (host names are not resolved)",
                    );
                    None
                }
            },
        };
        let max_body = self.size(raw.max_body.as_ref(), "server.max_body", DEFAULT_MAX_BODY);
        let header_timeout = self.duration(
            raw.header_timeout.as_ref(),
            "server.header_timeout",
            DEFAULT_HEADER_TIMEOUT,
            false,
        );
        let body_timeout = self.duration(
            raw.body_timeout.as_ref(),
            "server.body_timeout",
            DEFAULT_BODY_TIMEOUT,
            false,
        );
        // Zero is meaningful here: exit without waiting for in-flight deliveries.
        let shutdown_timeout = self.duration(
            raw.shutdown_timeout.as_ref(),
            "server.shutdown_timeout",
            DEFAULT_SHUTDOWN_TIMEOUT,
            true,
        );
        let max_connections = self.integer(
            raw.max_connections.as_ref(),
            "server.max_connections",
            DEFAULT_MAX_CONNECTIONS,
            1..=LARGEST_MAX_CONNECTIONS,
        );
        let max_buffered = match (&raw.max_buffered, max_body) {
            (None, Some(max_body)) => Some(DEFAULT_MAX_BUFFERED.max(max_body)),
            (Some(value), Some(max_body)) => self
                .size(Some(value), "server.max_buffered", DEFAULT_MAX_BUFFERED)
                .filter(|&n| {
                    n >= max_body || {
                        self.problem(
                            value.span(),
                            "server.max_buffered",
                            format!(
                                "must be at least server.max_body ({max_body} bytes), or no body of that size could ever be taken"
                            ),
                        );
                        false
                    }
                }),
            (_, None) => None,
        };
        let tls = match &raw.tls {
            None => Some(None),
            Some(t) => self.server_tls(t).map(Some),
        };
        Some(ServerConfig {
            listen: listen?,
            max_body: max_body?,
            header_timeout: header_timeout?,
            body_timeout: body_timeout?,
            shutdown_timeout: shutdown_timeout?,
            max_connections: usize::try_from(max_connections?).ok()?,
            max_buffered: max_buffered?,
            tls: tls?,
        })
    }

    fn storage(&mut self, raw: RawStorage) -> Option<StorageConfig> {
        let path = match &raw.path {
            None => Some(self.dir.join(DEFAULT_STORAGE_PATH)),
            Some(p) if p.get_ref().is_empty() => {
                self.problem(
                    p.span(),
                    "storage.path",
                    "is empty; write the path of the redb file, e.g. \"data/hookrelay.redb\"",
                );
                None
            }
            Some(p) if !self.literal_path(p, "storage.path") => None,
            // `join` keeps absolute paths as they are.
            Some(p) => {
                let full = self.dir.join(p.get_ref());
                match unusable_store_path(&full) {
                    Some(message) => {
                        self.problem(p.span(), "storage.path", &message);
                        None
                    }
                    None => Some(full),
                }
            }
        };
        let retention = self.duration(
            raw.retention.as_ref(),
            "storage.retention",
            DEFAULT_RETENTION,
            false,
        );
        Some(StorageConfig {
            path: path?,
            retention: retention?,
        })
    }

    /// Whether path `p` is meant as written: `${env:…}` and `${file:…}` are read only in
    /// secrets and URLs, and no shell expands `~` here, so either would name a file or
    /// folder of that literal name beside the config, and the store or the output would
    /// quietly land there. A problem is recorded when it is not.
    pub(super) fn literal_path(&mut self, p: &Spanned<String>, key: &str) -> bool {
        let text = p.get_ref();
        let message = if text.contains("${") {
            "holds ${…}, which is read only in secrets and URLs: write the path itself"
        } else if text == "~" || text.starts_with("~/") {
            "starts with ~, which is not expanded here: write the full path, such as \
             \"/home/NAME/…\" or \"/var/lib/hookrelay/…\""
        } else {
            return true;
        };
        self.problem(p.span(), key, message);
        false
    }

    /// Checks a source or sink name; they appear in URL paths, logs and metric labels.
    fn name(&mut self, name: &Spanned<String>, path: &str) -> bool {
        let n = name.get_ref();
        let charset = n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        let ok = charset && (1..=LONGEST_NAME).contains(&n.len()) && n != "." && n != "..";
        if !ok {
            self.problem(
                name.span(),
                path,
                format!(
                    "bad name; a name is 1 to {LONGEST_NAME} characters of A-Z a-z 0-9 _ . - \
                     (not \".\" or \"..\"), since it appears in URL paths, logs and metrics"
                ),
            );
        }
        ok
    }

    fn source(&mut self, entry: &Entry<RawSource>) -> Option<SourceConfig> {
        let path = format!("sources.{}", raw::segment(entry.name.get_ref()));
        let name_ok = self.name(&entry.name, &path) && !self.reserved_source(&entry.name, &path);
        let raw = entry.body.as_ref()?;
        let Some(kind) = &raw.kind else {
            self.problem(
                entry.name.span(),
                &path,
                format!(
                    "missing kind; add kind = one of {}",
                    quoted_list(SOURCE_KINDS)
                ),
            );
            return None;
        };
        let kind_name = kind.get_ref().as_str();
        if !SOURCE_KINDS.contains(&kind_name) {
            self.problem(
                kind.span(),
                format!("{path}.kind"),
                format!(
                    "unknown source kind \"{kind_name}\"{}",
                    raw::hint(kind_name, SOURCE_KINDS, "the kinds are")
                ),
            );
            return None;
        }
        let foreign = self.foreign_keys(&entry.keys, KIND_KEYS, kind_name, &path);
        let kind = self.source_kind(raw, kind, &path);
        let summary = match &raw.summary {
            None => Some(Vec::new()),
            Some(s) => self.summary_pointers(s, &format!("{path}.summary")),
        };
        if !name_ok || foreign {
            return None;
        }
        Some(SourceConfig {
            name: entry.name.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            kind: kind?,
            summary: summary?,
        })
    }

    fn source_kind(
        &mut self,
        raw: &RawSource,
        kind: &Spanned<String>,
        path: &str,
    ) -> Option<SourceKind> {
        let needs = |what: &str| format!("kind \"{}\" needs {what}", kind.get_ref());
        let key = |k: &str| format!("{path}.{k}");
        match kind.get_ref().as_str() {
            "github" => {
                let secret = self.need(raw.secret.as_ref(), kind, path, || {
                    needs("secret = \"...\", the webhook secret set in GitHub")
                })?;
                Some(SourceKind::Github {
                    secrets: self.secrets(secret, &key("secret"))?,
                })
            }
            "gitlab" => {
                if raw.token.is_none() && raw.signing_token.is_none() {
                    self.problem(
                        kind.span(),
                        path,
                        needs("token = \"...\" (X-Gitlab-Token), signing_token = \"whsec_...\", or both"),
                    );
                    return None;
                }
                let tokens = match &raw.token {
                    None => Some(Vec::new()),
                    Some(t) => self.secrets(t, &key("token")),
                };
                let signing_keys = match &raw.signing_token {
                    None => Some(Vec::new()),
                    Some(t) => self.whsec_keys(t, &key("signing_token")),
                };
                let tolerance = self.tolerance(raw.tolerance.as_ref(), &key("tolerance"));
                Some(SourceKind::Gitlab {
                    tokens: tokens?,
                    signing_keys: signing_keys?,
                    tolerance: tolerance?,
                })
            }
            "standard" => {
                let secret = self.need(raw.secret.as_ref(), kind, path, || {
                    needs("secret = \"whsec_...\", the signing secret of the sender")
                });
                let keys = secret.and_then(|s| self.whsec_keys(s, &key("secret")));
                let tolerance = self.tolerance(raw.tolerance.as_ref(), &key("tolerance"));
                Some(SourceKind::Standard {
                    keys: keys?,
                    tolerance: tolerance?,
                })
            }
            "hmac" => {
                let header = self.need(raw.header.as_ref(), kind, path, || {
                    needs("header = \"...\", the request header carrying the signature")
                });
                let header = header.and_then(|h| self.header_name(h, &key("header")));
                let secret = self.need(raw.secret.as_ref(), kind, path, || {
                    needs("secret = \"...\", the key the sender signs with")
                });
                let secrets = secret.and_then(|s| self.secrets(s, &key("secret")));
                let algorithm = self.choice(
                    raw.algorithm.as_ref(),
                    &key("algorithm"),
                    &[
                        ("sha1", HmacAlgorithm::Sha1),
                        ("sha256", HmacAlgorithm::Sha256),
                        ("sha512", HmacAlgorithm::Sha512),
                    ],
                    HmacAlgorithm::Sha256,
                );
                let encoding = self.choice(
                    raw.encoding.as_ref(),
                    &key("encoding"),
                    &[
                        ("hex", SignatureEncoding::Hex),
                        ("base64", SignatureEncoding::Base64),
                    ],
                    SignatureEncoding::Hex,
                );
                let prefix = match &raw.prefix {
                    None => Some(None),
                    Some(p) => self.prefix(p, &key("prefix")).map(Some),
                };
                let event_type = self.field(raw.event_type.as_ref(), &key("event_type"));
                let delivery_id = self.field(raw.delivery_id.as_ref(), &key("delivery_id"));
                Some(SourceKind::Hmac {
                    header: header?,
                    algorithm: algorithm?,
                    encoding: encoding?,
                    prefix: prefix?,
                    secrets: secrets?,
                    event_type: event_type?,
                    delivery_id: delivery_id?,
                })
            }
            "token" => {
                let header = self.need(raw.header.as_ref(), kind, path, || {
                    needs("header = \"...\", the request header carrying the token")
                });
                let header = header.and_then(|h| self.header_name(h, &key("header")));
                let secret = self.need(raw.secret.as_ref(), kind, path, || {
                    needs("secret = \"...\", the token the sender sends")
                });
                let secrets = secret.and_then(|s| self.secrets(s, &key("secret")));
                let event_type = self.field(raw.event_type.as_ref(), &key("event_type"));
                let delivery_id = self.field(raw.delivery_id.as_ref(), &key("delivery_id"));
                Some(SourceKind::Token {
                    header: header?,
                    secrets: secrets?,
                    event_type: event_type?,
                    delivery_id: delivery_id?,
                })
            }
            "none" => {
                let event_type = self.field(raw.event_type.as_ref(), &key("event_type"));
                let delivery_id = self.field(raw.delivery_id.as_ref(), &key("delivery_id"));
                Some(SourceKind::None {
                    event_type: event_type?,
                    delivery_id: delivery_id?,
                })
            }
            // `source` only calls this with a kind from SOURCE_KINDS; the rest are presets.
            name => {
                let product = Product::ALL.iter().find(|(n, _)| *n == name)?.1;
                self.preset(raw, kind, product, path)
            }
        }
    }

    /// A product preset: the secret, and the scheme where the product offers two.
    fn preset(
        &mut self,
        raw: &RawSource,
        kind: &Spanned<String>,
        product: Product,
        path: &str,
    ) -> Option<SourceKind> {
        let what = match product {
            Product::Harbor => {
                "secret = \"...\", exactly what is written in Harbor's Auth Header field"
            }
            Product::Nexus => "secret = \"...\", the Secret Key of the Nexus webhook capability",
            Product::Artifactory => "secret = \"...\", the Secret Token of the Artifactory webhook",
            Product::Gitea | Product::Bitbucket => "secret = \"...\", the webhook's secret",
        };
        let secret = self.need(raw.secret.as_ref(), kind, path, || {
            format!("kind \"{}\" needs {what}", kind.get_ref())
        });
        let secrets = secret.and_then(|s| self.secrets(s, &format!("{path}.secret")));
        // Harbor only sends its header verbatim; Nexus and Bitbucket only sign.
        let default = match product {
            Product::Harbor => PresetScheme::Token,
            _ => PresetScheme::Signature,
        };
        let scheme = self.choice(
            raw.scheme.as_ref(),
            &format!("{path}.scheme"),
            &[
                ("signature", PresetScheme::Signature),
                ("token", PresetScheme::Token),
            ],
            default,
        );
        Some(SourceKind::Preset {
            product,
            scheme: scheme?,
            secrets: secrets?,
        })
    }

    /// `summary = { field = "/pointer" }` of a source.
    fn summary_pointers(
        &mut self,
        value: &Spanned<RawPairs<String>>,
        path: &str,
    ) -> Option<Vec<(SummaryField, String)>> {
        let mut ok = true;
        let mut out = Vec::new();
        for (name, pointer) in &value.get_ref().0 {
            let key = format!("{path}.{}", raw::segment(name.get_ref()));
            let field = self.summary_field(name, &key);
            let checked = match check_pointer(pointer.get_ref()) {
                Ok(()) => Some(pointer.get_ref().clone()),
                Err(message) => {
                    self.problem(pointer.span(), &key, message);
                    None
                }
            };
            match (field, checked) {
                (Some(f), Some(p)) => out.push((f, p)),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The name of a summary field, or a problem listing them.
    fn summary_field(&mut self, name: &Spanned<String>, key: &str) -> Option<SummaryField> {
        if let Some((_, f)) = SummaryField::ALL.iter().find(|(n, _)| n == name.get_ref()) {
            return Some(*f);
        }
        let names: Vec<&str> = SummaryField::ALL.iter().map(|(n, _)| *n).collect();
        let pointer_hint = if name.get_ref().contains('/') {
            "; a JSON pointer starts with /"
        } else {
            ""
        };
        self.problem(
            name.span(),
            key,
            format!(
                "unknown summary field \"{}\"{}{pointer_hint}",
                name.get_ref(),
                raw::hint(name.get_ref(), &names, "the fields are")
            ),
        );
        None
    }

    /// `where = { ... }` of a route: summary fields or JSON pointers, each with its test.
    fn filter(
        &mut self,
        value: &Spanned<RawPairs<RawCondition>>,
        path: &str,
    ) -> Option<Vec<Condition>> {
        if value.get_ref().0.is_empty() {
            self.problem(
                value.span(),
                path,
                "is empty; remove where to take every event, or add a condition such as \
                 { action = \"uploaded\" }",
            );
            return None;
        }
        let mut ok = true;
        let mut out = Vec::new();
        for (name, condition) in &value.get_ref().0 {
            let key = format!("{path}.{}", raw::segment(name.get_ref()));
            let subject = if name.get_ref().starts_with('/') {
                match check_pointer(name.get_ref()) {
                    Ok(()) => Some(Subject::Pointer(name.get_ref().clone())),
                    Err(message) => {
                        self.problem(name.span(), &key, message);
                        None
                    }
                }
            } else {
                self.summary_field(name, &key).map(Subject::Summary)
            };
            let test = match condition.get_ref() {
                RawCondition::Present(p) => Some(Test::Present(*p)),
                RawCondition::AnyOf(items) if items.is_empty() => {
                    self.problem(
                        condition.span(),
                        &key,
                        "is an empty list, which no value matches; list at least one value, \
                         or write { present = false }",
                    );
                    None
                }
                RawCondition::AnyOf(items) => {
                    // A lone string carries no span of its own: use the condition's.
                    let items: Vec<Spanned<String>> = items
                        .iter()
                        .map(|i| {
                            let span = if i.span().is_empty() {
                                condition.span()
                            } else {
                                i.span()
                            };
                            Spanned::new(span, i.get_ref().clone())
                        })
                        .collect();
                    self.patterns(&items, &key).map(Test::AnyOf)
                }
            };
            match (subject, test) {
                (Some(subject), Some(test)) => out.push(Condition { subject, test }),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn sink(&mut self, entry: &Entry<RawSink>, outbound: &Outbound) -> Option<SinkConfig> {
        let path = format!("sinks.{}", raw::segment(entry.name.get_ref()));
        let key = |k: &str| format!("{path}.{k}");
        let name_ok = self.name(&entry.name, &path);
        let raw = entry.body.as_ref()?;
        match &raw.kind {
            None => {
                self.problem(
                    entry.name.span(),
                    &path,
                    format!(
                        "missing kind; add kind = one of {}",
                        quoted_list(SINK_KINDS)
                    ),
                );
                return None;
            }
            Some(kind) if !SINK_KINDS.contains(&kind.get_ref().as_str()) => {
                self.problem(
                    kind.span(),
                    key("kind"),
                    format!(
                        "unknown sink kind \"{}\"{}",
                        kind.get_ref(),
                        raw::hint(kind.get_ref(), SINK_KINDS, "the kinds so far are")
                    ),
                );
                return None;
            }
            Some(_) => {}
        }
        let kind_name = raw.kind.as_ref().map_or("", |k| k.get_ref().as_str());
        let foreign = self.foreign_sink_keys(entry, kind_name, &path);
        let kind = match kind_name {
            "webhook" => self.webhook_sink(entry, raw, &path),
            "dependency-track" => self.dependency_track_sink(entry, raw, &path),
            "guac" => self.guac_sink(entry, raw, &path),
            "archive" => self.archive_sink(entry, raw, &path),
            "nats" => self.nats_sink(entry, raw, &path),
            _ => self.message_sink(kind_name, entry, raw, &path),
        };
        let timeout = self.duration(
            raw.timeout.as_ref(),
            &key("timeout"),
            DEFAULT_SINK_TIMEOUT,
            false,
        );
        let concurrency = self.integer(
            raw.concurrency.as_ref(),
            &key("concurrency"),
            DEFAULT_CONCURRENCY,
            1..=LARGEST_CONCURRENCY,
        );
        let rate = self
            .rate(raw, &path)
            .map(|rate| rate.or_else(|| messages::default_rate(kind_name)));
        let retry = self.retry(raw.retry.as_ref(), &key("retry"));
        let outbound = self.sink_outbound(raw, &path, outbound);
        if !name_ok || foreign {
            return None;
        }
        Some(SinkConfig {
            name: entry.name.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            paused: raw.paused.unwrap_or(false),
            rate: rate?,
            concurrency: usize::try_from(concurrency?).ok()?,
            retry: retry?,
            timeout: timeout?,
            outbound: outbound?,
            kind: kind?,
        })
    }

    /// `kind = "webhook"`'s own keys.
    fn webhook_sink(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let url = match &raw.url {
            Some(u) => self.url(u, &key("url")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing url; add url = \"https://...\", the receiver's address",
            ),
        };
        let signing_keys = match &raw.signing_secret {
            None => Some(Vec::new()),
            Some(s) => self.whsec_keys(s, &key("signing_secret")),
        };
        let headers = match &raw.headers {
            None => Some(Vec::new()),
            Some(h) => self.headers(h, &key("headers")),
        };
        Some(SinkKind::Webhook(WebhookSinkConfig {
            url: url?,
            signing_keys: signing_keys?,
            headers: headers?,
        }))
    }

    /// Reports each key of an entry that its kind does not take, per `table`; true if any.
    fn foreign_keys(
        &mut self,
        keys: &[(String, Range<usize>)],
        table: &[(&str, &[&str])],
        kind_name: &str,
        path: &str,
    ) -> bool {
        let mut foreign = false;
        for (key, span) in keys {
            let Some((_, kinds)) = table.iter().find(|(k, _)| k == key) else {
                continue;
            };
            if !kinds.contains(&kind_name) {
                foreign = true;
                let (noun, verb) = if kinds.len() == 1 {
                    ("kind", "takes")
                } else {
                    ("kinds", "take")
                };
                self.problem(
                    span.clone(),
                    format!("{path}.{key}"),
                    format!(
                        "kind \"{kind_name}\" takes no {key}; only {noun} {} {verb} it: remove \
                         it or change kind",
                        quoted_list(kinds)
                    ),
                );
            }
        }
        foreign
    }

    fn route(
        &mut self,
        index: usize,
        raw: &Spanned<RawRoute>,
        sources: &[&str],
        sinks: &[&str],
    ) -> Option<RouteConfig> {
        let path = format!("routes[{index}]");
        let body = raw.get_ref();
        let from = match &body.from {
            None => {
                self.problem(
                    raw.span(),
                    &path,
                    "missing from; add from = \"SOURCE\" or a list of source names",
                );
                None
            }
            Some(from) => self.references(
                &from.get_ref().0,
                from.span(),
                &format!("{path}.from"),
                sources,
                "source",
            ),
        };
        let events = match &body.events {
            None => Some(Vec::new()),
            Some(events) => self.globs(events, &format!("{path}.events")),
        };
        let to = match &body.to {
            None => {
                self.problem(
                    raw.span(),
                    &path,
                    "missing to; add to = [\"SINK\", ...], the sinks that get these events",
                );
                None
            }
            Some(to) => self.references(
                to.get_ref(),
                to.span(),
                &format!("{path}.to"),
                sinks,
                "sink",
            ),
        };
        let filter = match &body.filter {
            None => Some(Vec::new()),
            Some(f) => self.filter(f, &format!("{path}.where")),
        };
        Some(RouteConfig {
            from: from?,
            events: events?,
            to: to?,
            filter: filter?,
        })
    }

    /// Names that must each exist among `known`, listed once, at least one.
    fn references(
        &mut self,
        items: &[Spanned<String>],
        span: Range<usize>,
        key: &str,
        known: &[&str],
        what: &str,
    ) -> Option<Vec<String>> {
        if items.is_empty() {
            self.problem(
                span,
                key,
                format!("is an empty list; name at least one {what}"),
            );
            return None;
        }
        let mut ok = true;
        let mut names: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let name = item.get_ref();
            // Routes may take hookrelay's own notices without a [sources.hookrelay] table.
            let notices = what == "source" && name == super::NOTICE_SOURCE;
            if !known.contains(&name.as_str()) && !notices {
                ok = false;
                let hint = match raw::nearest(name, known.iter().copied()) {
                    Some(best) => format!(" (did you mean \"{best}\"?)"),
                    None if known.is_empty() => {
                        format!("; no {what}s are defined: add a [{what}s.NAME] table")
                    }
                    None => format!("; the {what}s are: {}", name_list(known)),
                };
                self.problem(item.span(), key, format!("no {what} \"{name}\"{hint}"));
            } else if names.contains(name) {
                ok = false;
                self.problem(
                    item.span(),
                    key,
                    format!("\"{name}\" is listed twice; list it once"),
                );
            } else {
                names.push(name.clone());
            }
        }
        ok.then_some(names)
    }

    fn globs(&mut self, events: &Spanned<Vec<Spanned<String>>>, key: &str) -> Option<Vec<String>> {
        if events.get_ref().is_empty() {
            self.problem(
                events.span(),
                key,
                "is an empty list, which would read as \"no events\"; remove events to route \
                 every event, or list patterns such as [\"push\", \"release*\"]",
            );
            return None;
        }
        self.patterns(events.get_ref(), key)
    }

    /// Glob patterns, each compiling and listed once.
    fn patterns(&mut self, items: &[Spanned<String>], key: &str) -> Option<Vec<String>> {
        let mut ok = true;
        let mut patterns: Vec<String> = Vec::new();
        for item in items {
            let pattern = item.get_ref();
            if let Err(e) = globset::Glob::new(pattern) {
                ok = false;
                self.problem(
                    item.span(),
                    key,
                    format!("{e}; a pattern uses * ? [abc] {{a,b}}, e.g. \"release*\""),
                );
            } else if patterns.contains(pattern) {
                ok = false;
                self.problem(
                    item.span(),
                    key,
                    format!("\"{pattern}\" is listed twice; list it once"),
                );
            } else {
                patterns.push(pattern.clone());
            }
        }
        ok.then_some(patterns)
    }

    /// A required value, or a problem at the source's `kind` saying it is missing.
    fn need<'r, T>(
        &mut self,
        value: Option<&'r T>,
        kind: &Spanned<String>,
        path: &str,
        message: impl FnOnce() -> String,
    ) -> Option<&'r T> {
        if value.is_none() {
            self.problem(kind.span(), path, message());
        }
        value
    }

    /// Resolves each secret of a string-or-list.
    fn secrets(&mut self, value: &Spanned<Strings>, key: &str) -> Option<Vec<Secret>> {
        self.each_secret(value, key, StandIn::Text, |bytes| Ok(Secret::new(bytes)))
    }

    /// Resolves each `whsec_` secret of a string-or-list and decodes its key bytes.
    fn whsec_keys(&mut self, value: &Spanned<Strings>, key: &str) -> Option<Vec<Secret>> {
        self.each_secret(value, key, StandIn::Whsec, |bytes| {
            decode_whsec(&bytes).map(Secret::new)
        })
    }

    fn each_secret(
        &mut self,
        value: &Spanned<Strings>,
        key: &str,
        stand_in: StandIn,
        convert: impl Fn(Vec<u8>) -> Result<Secret, String>,
    ) -> Option<Vec<Secret>> {
        let items = &value.get_ref().0;
        if items.is_empty() {
            self.problem(
                value.span(),
                key,
                "is an empty list; give at least one secret (a list lets you rotate them)",
            );
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match self.resolve(item.get_ref(), stand_in).and_then(&convert) {
                Ok(secret) => out.push(secret),
                Err(message) => self.problem(item.span(), key, message),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// A resolved sink URL: absolute http(s) with a host. Never echoed: URLs often hold tokens.
    fn url(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let checked = self
            .resolve(value.get_ref(), StandIn::Url)
            .and_then(|bytes| {
                let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
                let url = reqwest::Url::parse(&text).map_err(|e| {
                format!(
                    "is not a valid URL ({e}); write an absolute URL such as \"https://host/path\""
                )
            })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err("must be an http:// or https:// URL".to_string());
                }
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(
                        "has no host; write a URL such as \"https://host/path\"".to_string()
                    );
                }
                Ok(text)
            });
        match checked {
            Ok(url) => Some(url),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }

    fn headers(
        &mut self,
        value: &Spanned<RawHeaders>,
        path: &str,
    ) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let mut ok = true;
        let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (name, val) in &value.get_ref().0 {
            let key = format!("{path}.{}", raw::segment(name.get_ref()));
            let header = match HeaderName::from_bytes(name.get_ref().as_bytes()) {
                Err(_) => {
                    self.problem(
                        name.span(),
                        &key,
                        "is not a valid header name; use letters, digits and -, e.g. \"X-Team\"",
                    );
                    None
                }
                Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
                    self.problem(
                        name.span(),
                        &key,
                        "is a header hookrelay sets itself; remove it from headers",
                    );
                    None
                }
                Ok(h) if out.iter().any(|(seen, _)| *seen == h) => {
                    self.problem(
                        name.span(),
                        &key,
                        "is given twice (header names ignore case); keep one",
                    );
                    None
                }
                Ok(h) => Some(h),
            };
            let indirect = secrets::classify(val.get_ref()).is_ok_and(|r| r.is_indirect());
            let header_value = self
                .resolve(val.get_ref(), StandIn::Text)
                .and_then(|bytes| {
                    let mut v = HeaderValue::from_bytes(&bytes).map_err(|_| {
                        "is not a valid header value; use visible ASCII characters and spaces, no \
                     line breaks"
                            .to_string()
                    })?;
                    // Values from the environment or a file are usually credentials.
                    v.set_sensitive(indirect);
                    Ok(v)
                });
            let header_value = match header_value {
                Ok(v) => Some(v),
                Err(message) => {
                    self.problem(val.span(), &key, message);
                    None
                }
            };
            match (header, header_value) {
                (Some(h), Some(v)) => out.push((h, v)),
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn rate(&mut self, raw: &RawSink, path: &str) -> Option<Option<Rate>> {
        let Some(rate) = &raw.rate else {
            if let Some(burst) = &raw.burst {
                self.problem(
                    burst.span(),
                    format!("{path}.burst"),
                    "only applies with a rate; add rate = \"10/s\" or remove burst",
                );
                return None;
            }
            return Some(None);
        };
        let parsed = match parse_rate(rate.get_ref()) {
            Ok(p) => Some(p),
            Err(message) => {
                self.problem(rate.span(), format!("{path}.rate"), message);
                None
            }
        };
        let burst = self.integer(
            raw.burst.as_ref(),
            &format!("{path}.burst"),
            1,
            1..=i64::from(u32::MAX),
        );
        let (count, per) = parsed?;
        Some(Some(Rate {
            count,
            per,
            burst: u32::try_from(burst?).ok()?,
        }))
    }

    fn retry(&mut self, raw: Option<&Spanned<RawRetry>>, path: &str) -> Option<RetryPolicy> {
        let body = raw.map(Spanned::get_ref);
        let max_attempts = self.integer(
            body.and_then(|r| r.max_attempts.as_ref()),
            &format!("{path}.max_attempts"),
            DEFAULT_MAX_ATTEMPTS,
            1..=i64::from(u32::MAX),
        );
        let initial_raw = body.and_then(|r| r.initial.as_ref());
        let initial = self.duration(
            initial_raw,
            &format!("{path}.initial"),
            DEFAULT_RETRY_INITIAL,
            false,
        );
        let max = self.duration(
            body.and_then(|r| r.max.as_ref()),
            &format!("{path}.max"),
            DEFAULT_RETRY_MAX,
            false,
        );
        let (initial, max) = (initial?, max?);
        if initial > max {
            // Point at whichever of the two is written; one of them must be.
            let span = initial_raw
                .map(Spanned::span)
                .or_else(|| body.and_then(|r| r.max.as_ref()).map(Spanned::span))
                .or_else(|| raw.map(Spanned::span))
                .unwrap_or(0..0);
            self.problem(
                span,
                format!("{path}.initial"),
                format!(
                    "initial backoff {} is longer than max {}; make initial at most max",
                    humantime::format_duration(initial),
                    humantime::format_duration(max)
                ),
            );
            return None;
        }
        Some(RetryPolicy {
            max_attempts: u32::try_from(max_attempts?).ok()?,
            initial,
            max,
        })
    }

    fn header_name(&mut self, value: &Spanned<String>, key: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(value.get_ref().as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.problem(
                    value.span(),
                    key,
                    "is not a valid header name; use letters, digits and -, e.g. \
                     \"X-Hub-Signature-256\"",
                );
                None
            }
        }
    }

    fn prefix(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let p = value.get_ref();
        let message = if p.is_empty() {
            "is empty; remove prefix if the signature has none"
        } else if !p.bytes().all(|b| (b' '..=b'~').contains(&b)) {
            "must be printable ASCII, as header values are, e.g. \"sha256=\""
        } else {
            return Some(p.clone());
        };
        self.problem(value.span(), key, message);
        None
    }

    /// `{ header = ".." }` or `{ pointer = "/.." }`; `Some(None)` when absent.
    fn field(
        &mut self,
        value: Option<&Spanned<RawField>>,
        key: &str,
    ) -> Option<Option<FieldLocation>> {
        let Some(value) = value else {
            return Some(None);
        };
        let RawField { header, pointer } = value.get_ref();
        match (header, pointer) {
            (Some(h), None) => self
                .header_name(h, &format!("{key}.header"))
                .map(|h| Some(FieldLocation::Header(h))),
            (None, Some(p)) => match check_pointer(p.get_ref()) {
                Ok(()) => Some(Some(FieldLocation::JsonPointer(p.get_ref().clone()))),
                Err(message) => {
                    self.problem(p.span(), format!("{key}.pointer"), message);
                    None
                }
            },
            (Some(_), Some(_)) => {
                self.problem(value.span(), key, "has both header and pointer; keep one");
                None
            }
            (None, None) => {
                self.problem(
                    value.span(),
                    key,
                    "is empty; write { header = \"X-Name\" } or { pointer = \"/json/pointer\" }",
                );
                None
            }
        }
    }

    /// One of a fixed set of words, or `default` when absent.
    fn choice<T: Copy>(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        options: &[(&str, T)],
        default: T,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(default);
        };
        if let Some((_, t)) = options.iter().find(|(word, _)| word == value.get_ref()) {
            return Some(*t);
        }
        let words: Vec<&str> = options.iter().map(|(w, _)| *w).collect();
        self.problem(
            value.span(),
            key,
            format!(
                "unknown value \"{}\"{}",
                value.get_ref(),
                raw::hint(value.get_ref(), &words, "write one of")
            ),
        );
        None
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<RawDuration>>,
        key: &str,
        default: Duration,
        zero_ok: bool,
    ) -> Option<Duration> {
        let Some(value) = value else {
            return Some(default);
        };
        match parse_duration(&value.get_ref().0) {
            Ok(d) if d.is_zero() && !zero_ok => {
                self.problem(value.span(), key, "must be longer than zero");
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }

    /// A Standard Webhooks timestamp tolerance: whole seconds, since `webhook-timestamp` is
    /// in seconds and a shorter tolerance would refuse most honest senders.
    fn tolerance(&mut self, value: Option<&Spanned<RawDuration>>, key: &str) -> Option<Duration> {
        let tolerance = self.duration(value, key, DEFAULT_TOLERANCE, false)?;
        if tolerance < Duration::from_secs(1) {
            let span = value.map(Spanned::span).unwrap_or_default();
            self.problem(
                span,
                key,
                "must be at least 1s: webhook-timestamp counts whole seconds (the default is 5m)",
            );
            return None;
        }
        Some(tolerance)
    }

    fn size(&mut self, value: Option<&Spanned<RawSize>>, key: &str, default: u64) -> Option<u64> {
        let Some(value) = value else {
            return Some(default);
        };
        let bytes = match value.get_ref() {
            RawSize::Text(text) => parse_size(text),
            RawSize::Bytes(n) => {
                u64::try_from(*n).map_err(|_| "must be more than 0 bytes".to_string())
            }
        };
        let message = match bytes {
            Ok(0) => "must be more than 0 bytes".to_string(),
            Ok(n) if n > LARGEST_MAX_BODY => "must be at most 1GiB".to_string(),
            Ok(n) => return Some(n),
            Err(message) => message,
        };
        self.problem(value.span(), key, message);
        None
    }

    fn integer(
        &mut self,
        value: Option<&Spanned<i64>>,
        key: &str,
        default: i64,
        allowed: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let Some(value) = value else {
            return Some(default);
        };
        let n = *value.get_ref();
        if allowed.contains(&n) {
            return Some(n);
        }
        self.problem(
            value.span(),
            key,
            format!("must be from {} to {}", allowed.start(), allowed.end()),
        );
        None
    }
}

/// Decodes a `whsec_` secret to its key bytes. Messages never quote the secret.
fn decode_whsec(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let Some(encoded) = bytes.strip_prefix(b"whsec_") else {
        return Err(
            "must be \"whsec_\" followed by the base64 key, as GitLab and Standard \
                    Webhooks senders issue it"
                .to_string(),
        );
    };
    // Padding is optional: some senders print keys without it.
    let key = base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(encoded)
        .map_err(|_| {
            "has a part after \"whsec_\" that is not valid base64 (A-Z a-z 0-9 + /); copy the \
             secret again"
                .to_string()
        })?;
    if key.is_empty() {
        return Err("has no key after \"whsec_\"; copy the whole secret".to_string());
    }
    Ok(key)
}

/// Checks an RFC 6901 JSON pointer: `/`-separated, `~` only as `~0` or `~1`.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.starts_with('/') {
        return Err(
            "must start with /, e.g. \"/type\" or \"/event/id\" (a JSON pointer)".to_string(),
        );
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("has a ~ not followed by 0 or 1; write ~0 for ~ and ~1 for /".to_string());
        }
    }
    Ok(())
}

/// Parses a duration such as `"30s"`, `"5m"`, `"1h 30m"` or `"7d"`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| {
        format!(
            "is not a duration ({e}); write a number and a unit: \"100ms\", \"30s\", \"5m\", \
             \"1h\", \"7d\""
        )
    })?;
    if d > LONGEST_DURATION {
        return Err("is longer than 100 years".to_string());
    }
    Ok(d)
}

/// Parses a size such as `"64KiB"`, `"25MiB"`, `"1MB"` or `"1024"` (bytes).
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let not_a_size = || {
        "is not a size; write a number of bytes or a number and a unit: \"64KiB\", \"25MiB\", \
         \"1MB\""
            .to_string()
    };
    // bytesize would also take odd forms such as "." as zero; insist on a leading digit.
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_a_size());
    }
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| not_a_size())
}

/// Parses a rate `"N/s"`, `"N/m"` or `"N/h"` into a count and its period.
pub(super) fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let bad = || {
        format!(
            "is not a rate; write \"N/s\", \"N/m\" or \"N/h\" with N a whole number from 1 to {}, \
             e.g. \"10/s\"",
            u32::MAX
        )
    };
    let (count, unit) = text.split_once('/').ok_or_else(bad)?;
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u32 = count.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(bad());
    }
    let per = match unit {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    Ok((count, per))
}

/// `"a", "b" or "c"`.
fn quoted_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Up to ten names, comma-separated, with a count of the rest.
fn name_list(names: &[&str]) -> String {
    const SHOWN: usize = 10;
    let mut list = names
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    list
}

/// Why `path` cannot be the store file, when what is on disk already says so: a folder is
/// there, or a file stands where a parent folder would have to be.
fn unusable_store_path(path: &Path) -> Option<String> {
    if path.is_dir() {
        return Some(format!(
            "{} is a folder; name the redb file in it, e.g. \"{}\"",
            path.display(),
            path.join("hookrelay.redb").display()
        ));
    }
    let blocking = path.ancestors().skip(1).find(|a| a.is_file())?;
    Some(format!(
        "{} is a file, so the folder the store goes in cannot be made there; choose another \
         path",
        blocking.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing `config_load`: a problem located on the `\n` of a CRLF line end
    /// made `locate` clamp with a minimum above its maximum, and panic.
    #[test]
    fn regression_locate_a_span_starting_on_a_crlf_line_end() {
        let (line, column, excerpt) = locate("key = 1\r\nnext = 2\r\n", 8..12);
        assert_eq!((line, column), (1, 9));
        assert_eq!(excerpt.text, "key = 1");
        let crash = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz/corpus/config_load/regression-crlf-span"
        ))
        .unwrap();
        let _ = Config::parse(&String::from_utf8_lossy(&crash), "fuzz.toml");
    }

    #[test]
    fn a_secret_shorter_than_16_bytes_is_warned_about_with_its_key() {
        let warned = |text: &str| {
            Config::parse(text, "t.toml")
                .unwrap()
                .warnings()
                .into_iter()
                .filter(|(_, warning)| warning.contains("can be guessed"))
                .collect::<Vec<_>>()
        };
        // 15 bytes, a whsec_ key of 12 decoded bytes, and a rotation list with one short.
        let weak = warned(
            "[sources.gh]\nkind = \"github\"\nsecret = \"fifteen-bytes!!\"\n\
             [sources.std]\nkind = \"standard\"\nsecret = \"whsec_AAAAAAAAAAAAAAAA\"\n\
             [sources.gl]\nkind = \"gitlab\"\ntoken = [\"a-long-enough-token-1\", \"short\"]\n\
             [sinks.out]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n\
             signing_secret = \"whsec_AAAAAAAAAAAAAAAA\"\n",
        );
        let keys: Vec<&str> = weak.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "sources.gh.secret",
                "sources.gl.token",
                "sources.std.secret",
                "sinks.out.signing_secret"
            ]
        );
        assert!(weak[0].1.contains("15 bytes"), "{weak:?}");
        assert!(
            weak[1].1.contains("one of its secrets is 5 bytes"),
            "{weak:?}"
        );
        assert!(
            weak[2].1.contains("12 bytes") && weak[2].1.contains("whsec_"),
            "{weak:?}"
        );
        // 16 bytes and more pass, and a disabled source is not looked at.
        assert!(
            warned(
                "[sources.gh]\nkind = \"github\"\nsecret = \"sixteen-bytes!!!\"\n\
                 [sources.off]\nkind = \"github\"\nenabled = false\nsecret = \"x\"\n"
            )
            .is_empty()
        );
    }

    use proptest::prelude::*;

    /// Sets an environment variable for one test. Names must be unique per test, since
    /// tests share the process environment.
    fn set_env(name: &str, value: &str) {
        // SAFETY: each test uses its own variable names, so no other thread touches them.
        unsafe { std::env::set_var(name, value) };
    }

    fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(text, "t.toml") {
            Ok(_) => panic!("expected errors in:\n{text}"),
            Err(e) => e.problems().to_vec(),
        }
    }

    /// The single problem of `text`, as (line, column, key, message).
    fn only(text: &str) -> (usize, usize, String, String) {
        let mut ps = problems(text);
        assert_eq!(ps.len(), 1, "{ps:#?}");
        let p = ps.remove(0);
        (p.line, p.column, p.key, p.message)
    }

    fn full_example(secret_file: &Path) -> String {
        format!(
            r#"
[server]
listen = "0.0.0.0:9090"
max_body = "64KiB"
header_timeout = "5s"
body_timeout = "100ms"
shutdown_timeout = "0s"
max_connections = 10

[storage]
path = "/var/lib/hookrelay/db.redb"
retention = "1h 30m"

[sources.github]
kind = "github"
secret = ["${{env:HOOKRELAY_T_FULL_GH}}", "old-secret"]
enabled = false

[sources.gl]
kind = "gitlab"
token = "gl-token"
signing_token = ["whsec_AQID", "whsec_BAUG"]
tolerance = "2m"

[sources.std]
kind = "standard"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
tolerance = "10m"

[sources.nexus]
kind = "hmac"
header = "X-Nexus-Webhook-Signature"
algorithm = "sha1"
encoding = "base64"
prefix = "sha1="
secret = "${{file:{}}}"
event_type = {{ header = "X-Nexus-Webhook-Id" }}
delivery_id = {{ header = "X-Nexus-Webhook-Delivery" }}

[sources.tok]
kind = "token"
header = "X-Token"
secret = "tok"
event_type = {{ pointer = "/type" }}
delivery_id = {{ pointer = "/meta/id" }}

[sources.open]
kind = "none"

[sinks.audit]
kind = "webhook"
url = "https://audit.internal/hooks"
signing_secret = "${{env:HOOKRELAY_T_FULL_WHSEC}}"
headers = {{ "X-Team" = "platform", "Authorization" = "${{env:HOOKRELAY_T_FULL_AUTH}}" }}
timeout = "20s"
concurrency = 4
rate = "10/m"
burst = 5
retry = {{ max_attempts = 15, initial = "2s", max = "30m" }}

[sinks.builds]
kind = "webhook"
url = "http://127.0.0.1:9000/"
enabled = false

[[routes]]
from = "github"
events = ["push", "release*"]
to = ["audit", "builds"]

[[routes]]
from = ["gl", "std"]
to = ["builds"]
"#,
            secret_file.display()
        )
    }

    #[test]
    fn full_example_parses_to_the_expected_values() {
        set_env("HOOKRELAY_T_FULL_GH", "gh-secret");
        set_env("HOOKRELAY_T_FULL_WHSEC", "whsec_c2lnbg==");
        set_env("HOOKRELAY_T_FULL_AUTH", "Bearer abc");
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("nexus");
        std::fs::write(&secret_file, "nexus-secret\n").unwrap();
        let c = Config::parse(&full_example(&secret_file), "full.toml").unwrap();

        let s = &c.server;
        assert_eq!(s.listen, "0.0.0.0:9090".parse::<SocketAddr>().unwrap());
        assert_eq!(s.max_body, 64 * 1024);
        assert_eq!(s.header_timeout, Duration::from_secs(5));
        assert_eq!(s.body_timeout, Duration::from_millis(100));
        assert_eq!(s.shutdown_timeout, Duration::ZERO);
        assert_eq!(s.max_connections, 10);
        assert_eq!(c.storage.path, Path::new("/var/lib/hookrelay/db.redb"));
        assert_eq!(c.storage.retention, Duration::from_secs(5400));

        let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["github", "gl", "nexus", "open", "std", "tok"]);
        let source = |n: &str| c.sources.iter().find(|s| s.name == n).unwrap();

        assert!(!source("github").enabled);
        let SourceKind::Github { secrets } = &source("github").kind else {
            panic!()
        };
        assert_eq!(
            *secrets,
            [Secret::new("gh-secret"), Secret::new("old-secret")]
        );

        assert!(source("gl").enabled);
        let SourceKind::Gitlab {
            tokens,
            signing_keys,
            tolerance,
        } = &source("gl").kind
        else {
            panic!()
        };
        assert_eq!(*tokens, [Secret::new("gl-token")]);
        assert_eq!(
            *signing_keys,
            [Secret::new([1, 2, 3]), Secret::new([4, 5, 6])]
        );
        assert_eq!(*tolerance, Duration::from_secs(120));

        let SourceKind::Standard { keys, tolerance } = &source("std").kind else {
            panic!()
        };
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].expose().len(), 24);
        assert_eq!(*tolerance, Duration::from_secs(600));

        let SourceKind::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
            secrets,
            event_type,
            delivery_id,
        } = &source("nexus").kind
        else {
            panic!()
        };
        assert_eq!(header, "x-nexus-webhook-signature");
        assert_eq!(*algorithm, HmacAlgorithm::Sha1);
        assert_eq!(*encoding, SignatureEncoding::Base64);
        assert_eq!(prefix.as_deref(), Some("sha1="));
        assert_eq!(*secrets, [Secret::new("nexus-secret")]);
        assert_eq!(
            *event_type,
            Some(FieldLocation::Header(HeaderName::from_static(
                "x-nexus-webhook-id"
            )))
        );
        assert_eq!(
            *delivery_id,
            Some(FieldLocation::Header(HeaderName::from_static(
                "x-nexus-webhook-delivery"
            )))
        );

        let SourceKind::Token {
            header,
            secrets,
            event_type,
            delivery_id,
        } = &source("tok").kind
        else {
            panic!()
        };
        assert_eq!(header, "x-token");
        assert_eq!(*secrets, [Secret::new("tok")]);
        assert_eq!(
            *event_type,
            Some(FieldLocation::JsonPointer("/type".into()))
        );
        assert_eq!(
            *delivery_id,
            Some(FieldLocation::JsonPointer("/meta/id".into()))
        );

        let SourceKind::None {
            event_type,
            delivery_id,
        } = &source("open").kind
        else {
            panic!()
        };
        assert_eq!((event_type, delivery_id), (&None, &None));

        let sink_names: Vec<&str> = c.sinks.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(sink_names, ["audit", "builds"]);
        let audit = &c.sinks[0];
        assert!(audit.enabled);
        assert_eq!(audit.timeout, Duration::from_secs(20));
        assert_eq!(audit.concurrency, 4);
        assert_eq!(
            audit.rate,
            Some(Rate {
                count: 10,
                per: Duration::from_secs(60),
                burst: 5
            })
        );
        assert_eq!(
            audit.retry,
            RetryPolicy {
                max_attempts: 15,
                initial: Duration::from_secs(2),
                max: Duration::from_secs(1800)
            }
        );
        let SinkKind::Webhook(w) = &audit.kind else {
            panic!("audit is a webhook sink")
        };
        assert_eq!(w.url, "https://audit.internal/hooks");
        assert_eq!(w.signing_keys, [Secret::new("sign")]);
        assert_eq!(w.headers.len(), 2);
        assert_eq!(w.headers[0].0, "x-team");
        assert_eq!(w.headers[0].1, "platform");
        assert!(!w.headers[0].1.is_sensitive());
        assert_eq!(w.headers[1].0, "authorization");
        assert_eq!(w.headers[1].1, "Bearer abc");
        assert!(
            w.headers[1].1.is_sensitive(),
            "values from the environment are credentials"
        );

        let builds = &c.sinks[1];
        assert!(!builds.enabled);
        assert_eq!(builds.rate, None);
        assert_eq!(builds.concurrency, 8);
        assert_eq!(builds.timeout, Duration::from_secs(15));
        assert_eq!(
            builds.retry,
            RetryPolicy {
                max_attempts: 12,
                initial: Duration::from_secs(1),
                max: Duration::from_secs(3600)
            }
        );

        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].from, ["github"]);
        assert_eq!(c.routes[0].events, ["push", "release*"]);
        assert_eq!(c.routes[0].to, ["audit", "builds"]);
        assert_eq!(c.routes[1].from, ["gl", "std"]);
        assert!(c.routes[1].events.is_empty());
        assert_eq!(c.routes[1].to, ["builds"]);
    }

    #[test]
    fn every_source_key_but_kind_enabled_and_summary_says_which_kinds_take_it() {
        for field in raw::struct_fields::<RawSource>() {
            let listed = KIND_KEYS.iter().any(|(k, _)| k == field);
            assert_eq!(
                listed,
                !matches!(*field, "kind" | "enabled" | "summary"),
                "{field}"
            );
        }
    }

    #[test]
    fn an_empty_file_takes_every_default() {
        let c = Config::parse("", "empty.toml").unwrap();
        assert_eq!(
            c.server.listen,
            DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()
        );
        assert_eq!(c.server.max_body, 25 * 1024 * 1024);
        assert_eq!(c.server.header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.body_timeout, Duration::from_secs(30));
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.server.max_connections, 1024);
        assert_eq!(c.storage.path, Path::new("data/hookrelay.redb"));
        assert_eq!(c.storage.retention, Duration::from_secs(7 * 24 * 3600));
        assert!(c.sources.is_empty() && c.sinks.is_empty() && c.routes.is_empty());
    }

    const TWO_SINKS: &str = "[sources.github]\nkind = \"none\"\n\n\
        [sinks.builds-slack]\nkind = \"webhook\"\nurl = \"https://h/\"\n\n\
        [sinks.audit]\nkind = \"webhook\"\nurl = \"https://h/\"\n\n";

    #[test]
    fn a_dangling_sink_is_reported_with_position_suggestion_and_excerpt() {
        let text = format!("{TWO_SINKS}[[routes]]\nfrom = \"github\"\nto = [\"build-slack\"]\n");
        let err = Config::parse(&text, "config/hookrelay.toml").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!((p.line, p.column), (14, 7));
        assert_eq!(p.key, "routes[0].to");
        assert_eq!(
            p.message,
            "no sink \"build-slack\" (did you mean \"builds-slack\"?)"
        );
        assert_eq!(
            err.to_string(),
            "config/hookrelay.toml:14:7: routes[0].to: no sink \"build-slack\" (did you mean \
             \"builds-slack\"?)\n   |\n14 | to = [\"build-slack\"]\n   |       ^^^^^^^^^^^^^\n\n\
             1 error in config/hookrelay.toml"
        );
    }

    #[test]
    fn without_a_near_name_the_known_names_are_listed() {
        let text = format!("{TWO_SINKS}[[routes]]\nfrom = \"gthb\"\nto = [\"zzzzzzzz\"]\n");
        let ps = problems(&text);
        assert_eq!(ps.len(), 2, "{ps:#?}");
        assert_eq!(ps[0].key, "routes[0].from");
        assert_eq!(
            ps[0].message,
            "no source \"gthb\" (did you mean \"github\"?)"
        );
        assert_eq!(
            ps[1].message,
            "no sink \"zzzzzzzz\"; the sinks are: audit, builds-slack"
        );
        let m = &problems("[[routes]]\nfrom = \"a\"\nto = []\n")[0].message;
        assert_eq!(
            m,
            "no source \"a\"; no sources are defined: add a [sources.NAME] table"
        );
    }

    #[test]
    fn every_problem_is_reported_in_file_order() {
        let text = "[server]\nlisten = \"localhost\"\nmax_body = 0\n\n\
                    [sources.a]\nkind = \"gihub\"\n\n\
                    [sinks.s]\nkind = \"webhook\"\nurl = \"ftp://x/\"\nconcurrency = 0\n\n\
                    [[routes]]\nfrom = \"a\"\nto = []\n";
        let err = Config::parse(text, "m.toml").unwrap_err();
        let got: Vec<(usize, &str)> = err
            .problems()
            .iter()
            .map(|p| (p.line, p.key.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "server.listen"),
                (3, "server.max_body"),
                (6, "sources.a.kind"),
                (10, "sinks.s.url"),
                (11, "sinks.s.concurrency"),
                (15, "routes[0].to"),
            ]
        );
        assert!(
            err.problems()[2]
                .message
                .contains("did you mean \"github\"")
        );
        let shown = err.to_string();
        assert!(shown.ends_with("\n\n6 errors in m.toml"), "{shown}");
        assert_eq!(
            shown.matches("\n\n").count(),
            6,
            "one blank line between problems:\n{shown}"
        );
    }

    #[test]
    fn unknown_sections_and_keys_suggest_the_nearest() {
        let (line, col, key, m) = only("[source.github]\nkind = \"none\"\n");
        assert_eq!((line, col, key.as_str()), (1, 2, "source"));
        assert_eq!(m, "unknown section (did you mean \"sources\"?)");
        let (line, col, key, m) = only("[server]\nlisten = \"127.0.0.1:1\"\nmax_bdy = 5\n");
        assert_eq!((line, col, key.as_str()), (3, 1, "server.max_bdy"));
        assert_eq!(m, "unknown key (did you mean \"max_body\"?)");
        let (.., m) = only("[storage]\nqqqqqqqq = 1\n");
        assert_eq!(m, "unknown key; the keys here are: path, retention");
        let (.., key, m) =
            only("[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nretry = { tries = 3 }\n");
        assert_eq!(key, "sinks.s.retry.tries");
        assert!(m.contains("unknown field `tries`"), "{m}");
    }

    #[test]
    fn keys_of_another_kind_say_which_kinds_take_them() {
        let (line, col, key, m) =
            only("[sources.gh]\nkind = \"github\"\nsecret = \"s\"\nalgorithm = \"sha1\"\n");
        assert_eq!((line, col, key.as_str()), (4, 1, "sources.gh.algorithm"));
        assert_eq!(
            m,
            "kind \"github\" takes no algorithm; only kind \"hmac\" takes it: remove it or change kind"
        );
        let (.., m) = only("[sources.o]\nkind = \"none\"\nheader = \"X-A\"\n");
        assert!(
            m.contains("only kinds \"hmac\" or \"token\" take it"),
            "{m}"
        );
    }

    #[test]
    fn missing_required_keys_are_named() {
        let (line, _, key, m) = only("[sources.gh]\nkind = \"github\"\n");
        assert_eq!((line, key.as_str()), (2, "sources.gh"));
        assert!(m.starts_with("kind \"github\" needs secret"), "{m}");
        let (.., m) = only("[sources.gl]\nkind = \"gitlab\"\n");
        assert!(m.contains("token") && m.contains("signing_token"), "{m}");
        let ps = problems("[sources.h]\nkind = \"hmac\"\n");
        assert_eq!(ps.len(), 2, "header and secret: {ps:#?}");
        let (line, _, key, m) = only("[sources.x]\nsecret = \"s\"\n");
        assert_eq!((line, key.as_str()), (1, "sources.x"));
        assert!(m.starts_with("missing kind"), "{m}");
        let (.., m) = only("[sinks.s]\nkind = \"webhook\"\n");
        assert!(m.starts_with("missing url"), "{m}");
        let (line, _, key, m) = only(
            "[sources.o]\nkind = \"none\"\n[sinks.s]\nkind = \"webhook\"\n\
                                      url = \"http://h\"\n[[routes]]\nfrom = \"o\"\n",
        );
        assert_eq!((line, key.as_str()), (6, "routes[0]"));
        assert!(m.starts_with("missing to"), "{m}");
    }

    #[test]
    fn bad_values_say_what_is_allowed() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "[server]\nheader_timeout = \"10 parsecs\"\n",
                "server.header_timeout",
                "is not a duration",
            ),
            (
                "[server]\nbody_timeout = 30\n",
                "server.body_timeout",
                "a duration string",
            ),
            (
                "[server]\nheader_timeout = \"0s\"\n",
                "server.header_timeout",
                "longer than zero",
            ),
            (
                "[server]\nmax_body = \"25 lightyears\"\n",
                "server.max_body",
                "is not a size",
            ),
            (
                "[server]\nmax_body = \"2GiB\"\n",
                "server.max_body",
                "at most 1GiB",
            ),
            (
                "[server]\nmax_body = -1\n",
                "server.max_body",
                "more than 0",
            ),
            (
                "[server]\nmax_connections = 0\n",
                "server.max_connections",
                "from 1 to",
            ),
            (
                "[storage]\nretention = \"1000000d\"\n",
                "storage.retention",
                "100 years",
            ),
            ("[storage]\npath = \"\"\n", "storage.path", "is empty"),
            (
                "[storage]\npath = \"${env:STORE}\"\n",
                "storage.path",
                "read only in secrets and URLs",
            ),
            (
                "[storage]\npath = \"~/hookrelay.redb\"\n",
                "storage.path",
                "not expanded here",
            ),
            (
                "[sources.s]\nkind = \"standard\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\ntolerance = \"500ms\"\n",
                "sources.s.tolerance",
                "at least 1s",
            ),
            (
                "[sources.g]\nkind = \"gitlab\"\ntoken = \"t\"\ntolerance = \"999ms\"\n",
                "sources.g.tolerance",
                "whole seconds",
            ),
            (
                "[sources.b]\nkind = \"github\"\nsecret = []\n",
                "sources.b.secret",
                "empty list",
            ),
            (
                "[sources.b]\nkind = \"github\"\nsecret = 5\n",
                "sources.b.secret",
                "a string or a list",
            ),
            (
                "[sources.h]\nkind = \"hmac\"\nheader = \"X Sig\"\nsecret = \"s\"\n",
                "sources.h.header",
                "not a valid header name",
            ),
            (
                "[sources.h]\nkind = \"hmac\"\nheader = \"X-S\"\nsecret = \"s\"\nalgorithm = \"md5\"\n",
                "sources.h.algorithm",
                "write one of: sha1, sha256, sha512",
            ),
            (
                "[sources.h]\nkind = \"hmac\"\nheader = \"X-S\"\nsecret = \"s\"\nencoding = \"hexa\"\n",
                "sources.h.encoding",
                "did you mean \"hex\"",
            ),
            (
                "[sources.h]\nkind = \"hmac\"\nheader = \"X-S\"\nsecret = \"s\"\nprefix = \"\"\n",
                "sources.h.prefix",
                "remove prefix",
            ),
            (
                "[sources.t]\nkind = \"token\"\nheader = \"X-T\"\nsecret = \"s\"\nevent_type = { pointer = \"type\" }\n",
                "sources.t.event_type.pointer",
                "must start with /",
            ),
            (
                "[sources.t]\nkind = \"none\"\nevent_type = { pointer = \"/a~2\" }\n",
                "sources.t.event_type.pointer",
                "~0",
            ),
            (
                "[sources.t]\nkind = \"none\"\ndelivery_id = { header = \"X-A\", pointer = \"/a\" }\n",
                "sources.t.delivery_id",
                "keep one",
            ),
            (
                "[sources.t]\nkind = \"none\"\ndelivery_id = {}\n",
                "sources.t.delivery_id",
                "is empty",
            ),
            (
                "[sources.\"bad name\"]\nkind = \"none\"\n",
                "sources.\"bad name\"",
                "bad name",
            ),
            (
                "[sources.\"..\"]\nkind = \"none\"\n",
                "sources.\"..\"",
                "bad name",
            ),
            (
                "[sinks.s]\nkind = \"slak\"\nurl = \"http://h\"\n",
                "sinks.s.kind",
                "unknown sink kind \"slak\" (did you mean \"slack\"?)",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"/relative\"\n",
                "sinks.s.url",
                "not a valid URL",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"mailto:a@b\"\n",
                "sinks.s.url",
                "http:// or https://",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nrate = \"10/d\"\n",
                "sinks.s.rate",
                "is not a rate",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nburst = 3\n",
                "sinks.s.burst",
                "only applies with a rate",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nrate = \"1/s\"\nburst = 0\n",
                "sinks.s.burst",
                "from 1 to",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nconcurrency = 1025\n",
                "sinks.s.concurrency",
                "from 1 to 1024",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nretry = { max_attempts = 0 }\n",
                "sinks.s.retry.max_attempts",
                "from 1 to",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nretry = { initial = \"2h\" }\n",
                "sinks.s.retry.initial",
                "initial backoff 2h is longer than max 1h",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nheaders = { \"Bad Name\" = \"v\" }\n",
                "sinks.s.headers.\"Bad Name\"",
                "not a valid header name",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nheaders = { \"Webhook-Id\" = \"v\" }\n",
                "sinks.s.headers.Webhook-Id",
                "sets itself",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nheaders = { \"X-A\" = \"v\", \"x-a\" = \"w\" }\n",
                "sinks.s.headers.x-a",
                "given twice",
            ),
            (
                "[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\nheaders = { \"X-A\" = \"a\\u0001b\" }\n",
                "sinks.s.headers.X-A",
                "not a valid header value",
            ),
            ("routes = 1\n", "routes", "[[routes]]"),
            ("[routes]\nfrom = \"a\"\n", "routes", "[[routes]]"),
        ];
        let cases: Vec<_> = cases.iter().chain(messages::tests::BAD_VALUES).collect();
        for (text, key, needle) in cases {
            let ps = problems(text);
            assert_eq!(ps.len(), 1, "{text}\n{ps:#?}");
            assert_eq!(ps[0].key, *key, "{text}");
            assert!(ps[0].message.contains(needle), "{text}\n{}", ps[0].message);
            assert!(ps[0].line >= 1 && ps[0].column >= 1, "{text}");
        }
    }

    #[test]
    fn route_lists_reject_empties_duplicates_and_bad_globs() {
        let base =
            "[sources.a]\nkind = \"none\"\n[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\n";
        let cases = [
            ("from = []\nto = [\"s\"]\n", "routes[0].from", "empty list"),
            ("from = \"a\"\nto = []\n", "routes[0].to", "empty list"),
            (
                "from = [\"a\", \"a\"]\nto = [\"s\"]\n",
                "routes[0].from",
                "listed twice",
            ),
            (
                "from = \"a\"\nto = [\"s\", \"s\"]\n",
                "routes[0].to",
                "listed twice",
            ),
            (
                "from = \"a\"\nevents = []\nto = [\"s\"]\n",
                "routes[0].events",
                "remove events",
            ),
            (
                "from = \"a\"\nevents = [\"push\", \"a[b\"]\nto = [\"s\"]\n",
                "routes[0].events",
                "unclosed character class",
            ),
            (
                "from = \"a\"\nevents = [\"x\", \"x\"]\nto = [\"s\"]\n",
                "routes[0].events",
                "listed twice",
            ),
        ];
        for (route, key, needle) in cases {
            let text = format!("{base}[[routes]]\n{route}");
            let (.., k, m) = only(&text);
            assert_eq!(k, key, "{route}");
            assert!(m.contains(needle), "{route}: {m}");
        }
    }

    #[test]
    fn presets_need_only_a_secret_and_default_to_their_strongest_scheme() {
        let text = "[sources.nexus]\nkind = \"nexus\"\nsecret = \"n\"\n\
                    [sources.jfrog]\nkind = \"artifactory\"\nsecret = \"a\"\n\
                    [sources.jfrog-token]\nkind = \"artifactory\"\nsecret = \"a\"\nscheme = \"token\"\n\
                    [sources.harbor]\nkind = \"harbor\"\nsecret = \"Bearer h\"\n\
                    [sources.gitea]\nkind = \"gitea\"\nsecret = [\"g1\", \"g2\"]\n\
                    [sources.bb]\nkind = \"bitbucket\"\nsecret = \"b\"\n\
                    summary = { version = \"/push/changes/0/new/target/hash\" }\n";
        let c = Config::parse(text, "p.toml").unwrap();
        let kinds: Vec<(&str, Product, PresetScheme, usize)> = c
            .sources
            .iter()
            .map(|s| match &s.kind {
                SourceKind::Preset {
                    product,
                    scheme,
                    secrets,
                } => (s.name.as_str(), *product, *scheme, secrets.len()),
                other => panic!("{other:?}"),
            })
            .collect();
        use PresetScheme::{Signature, Token};
        assert_eq!(
            kinds,
            [
                ("bb", Product::Bitbucket, Signature, 1),
                ("gitea", Product::Gitea, Signature, 2),
                ("harbor", Product::Harbor, Token, 1),
                ("jfrog", Product::Artifactory, Signature, 1),
                ("jfrog-token", Product::Artifactory, Token, 1),
                ("nexus", Product::Nexus, Signature, 1),
            ]
        );
        assert_eq!(
            c.sources[0].summary,
            [(
                SummaryField::Version,
                "/push/changes/0/new/target/hash".to_string()
            )]
        );
    }

    #[test]
    fn preset_and_summary_mistakes_name_their_key() {
        let cases = [
            ("[sources.n]\nkind = \"nexus\"\n", "sources.n", "Secret Key"),
            (
                "[sources.n]\nkind = \"nexus\"\nsecret = \"s\"\nscheme = \"token\"\n",
                "sources.n.scheme",
                "only kinds \"artifactory\" or \"gitea\" take it",
            ),
            (
                "[sources.n]\nkind = \"gitea\"\nsecret = \"s\"\nscheme = \"hmac\"\n",
                "sources.n.scheme",
                "signature, token",
            ),
            (
                "[sources.n]\nkind = \"nexsu\"\n",
                "sources.n.kind",
                "did you mean \"nexus\"",
            ),
            (
                "[sources.n]\nkind = \"none\"\nsummary = { repo = \"/r\" }\n",
                "sources.n.summary.repo",
                "unknown summary field \"repo\"",
            ),
            (
                "[sources.n]\nkind = \"none\"\nsummary = { version = \"v\" }\n",
                "sources.n.summary.version",
                "must start with /",
            ),
        ];
        for (text, key, needle) in cases {
            let (line, _, k, m) = only(text);
            assert!(line >= 1, "{text}");
            assert_eq!(k, key, "{text}");
            assert!(m.contains(needle), "{text}\n{m}");
        }
    }

    #[test]
    fn where_compiles_each_kind_of_condition_in_file_order() {
        let text = "[sources.a]\nkind = \"none\"\n[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\n\
                    [[routes]]\nfrom = \"a\"\nto = [\"s\"]\n\
                    where = { repository = [\"releases\", \"staging-*\"], action = \"uploaded\", \"/ref\" = \"refs/heads/main\", \"/a~1b\" = { present = false } }\n";
        let c = Config::parse(text, "w.toml").unwrap();
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            c.routes[0].filter,
            [
                Condition {
                    subject: Subject::Summary(SummaryField::Repository),
                    test: Test::AnyOf(strings(&["releases", "staging-*"])),
                },
                Condition {
                    subject: Subject::Summary(SummaryField::Action),
                    test: Test::AnyOf(strings(&["uploaded"])),
                },
                Condition {
                    subject: Subject::Pointer("/ref".into()),
                    test: Test::AnyOf(strings(&["refs/heads/main"])),
                },
                Condition {
                    subject: Subject::Pointer("/a~1b".into()),
                    test: Test::Present(false),
                },
            ]
        );
    }

    #[test]
    fn where_mistakes_point_at_their_line_and_key() {
        let base = "[sources.a]\nkind = \"none\"\n[sinks.s]\nkind = \"webhook\"\nurl = \"http://h\"\n[[routes]]\nfrom = \"a\"\nto = [\"s\"]\n";
        let cases = [
            (
                "where = { repo = \"x\" }",
                "routes[0].where.repo",
                "did you mean \"ref\"",
            ),
            (
                "where = { colour = \"x\" }",
                "routes[0].where.colour",
                "unknown summary field \"colour\"; the fields are: action, repository",
            ),
            (
                "where = { \"/a~2\" = \"x\" }",
                "routes[0].where.\"/a~2\"",
                "~0 for ~",
            ),
            (
                "where = { action = [] }",
                "routes[0].where.action",
                "empty list",
            ),
            (
                "where = { action = \"a[\" }",
                "routes[0].where.action",
                "unclosed",
            ),
            (
                "where = { action = [\"a\", \"a\"] }",
                "routes[0].where.action",
                "listed twice",
            ),
            ("where = {}", "routes[0].where", "is empty"),
            (
                "where = { action = 4 }",
                "routes[0].where.action",
                "quote numbers",
            ),
            (
                "where = { action = { present = true, x = 1 } }",
                "routes[0].where.action.x",
                "unknown field",
            ),
        ];
        for (filter, key, needle) in cases {
            let text = format!("{base}{filter}\n");
            let (line, _, k, m) = only(&text);
            assert_eq!(line, 9, "{filter}");
            assert_eq!(k, key, "{filter}");
            assert!(m.contains(needle), "{filter}: {m}");
        }
    }

    #[test]
    fn one_bad_entry_does_not_hide_problems_in_others() {
        let text = "[sources.a]\nkind = \"github\"\nsecret = 1\n\
                    [sources.b]\nkind = \"github\"\nsecret = []\n\
                    [[routes]]\nfrom = \"a\"\nto = 7\n\
                    [[routes]]\nfrom = \"b\"\nto = [\"nope\"]\n";
        let keys: Vec<String> = problems(text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "sources.a.secret",
                "sources.b.secret",
                "routes[0].to",
                "routes[1].to"
            ]
        );
    }

    #[test]
    fn syntax_errors_render_like_other_problems() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\n", "s.toml").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(err.problems().len(), 1);
        assert_eq!((p.line, p.key.as_str()), (2, ""));
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("s.toml:2:{}: ", p.column)),
            "{shown}"
        );
        assert!(shown.contains("2 | listen = \"127.0.0.1:1\n"), "{shown}");
        assert!(shown.ends_with("1 error in s.toml"), "{shown}");
        // TOML itself rejects a name defined twice.
        let (line, ..) = only("[sources.a]\nkind = \"none\"\n[sources.a]\nkind = \"none\"\n");
        assert_eq!(line, 3);
    }

    #[test]
    fn an_unreadable_file_is_one_problem_naming_path_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.problems().len(), 1);
        assert_eq!((err.problems()[0].line, err.problems()[0].column), (0, 0));
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("{}: cannot read", path.display())),
            "{shown}"
        );
        assert!(shown.contains("os error"), "{shown}");
    }

    #[test]
    fn a_number_where_a_rate_duration_or_size_goes_gets_the_written_form() {
        for (text, key, form) in [
            (
                "[sinks.w]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nrate = 5\n",
                "sinks.w.rate",
                "\"5/s\"",
            ),
            ("[storage]\nretention = 7\n", "storage.retention", "\"7d\""),
        ] {
            let shown = match parse(text, "m.toml") {
                Err(err) => err.to_string(),
                Ok(_) => panic!("accepted: {text}"),
            };
            assert!(
                shown.contains(key) && shown.contains(form),
                "{text}: {shown}"
            );
        }
    }

    #[test]
    fn a_config_path_that_is_a_folder_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let shown = Config::load(dir.path()).unwrap_err().to_string();
        assert!(
            shown.contains("it is a folder: give the path of the file"),
            "{shown}"
        );
    }

    #[test]
    fn a_store_path_that_is_a_folder_or_under_a_file_is_refused_by_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let path = dir.path().join("hookrelay.toml");
        for (store, says) in [
            ("data", "is a folder; name the redb file in it"),
            ("notes.txt/h.redb", "notes.txt is a file"),
        ] {
            std::fs::write(&path, format!("[storage]\npath = \"{store}\"\n")).unwrap();
            let shown = Config::load(&path).unwrap_err().to_string();
            assert!(
                shown.contains("storage.path") && shown.contains(says),
                "{store}: {shown}"
            );
        }
    }

    #[test]
    fn load_resolves_relative_paths_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("conf/secrets")).unwrap();
        std::fs::write(dir.path().join("conf/secrets/gh"), "from-file\r\n").unwrap();
        let path = dir.path().join("conf/hookrelay.toml");
        std::fs::write(
            &path,
            "[storage]\npath = \"data/x.redb\"\n\
             [sources.gh]\nkind = \"github\"\nsecret = \"${file:secrets/gh}\"\n",
        )
        .unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.storage.path, dir.path().join("conf/data/x.redb"));
        let SourceKind::Github { secrets } = &c.sources[0].kind else {
            panic!()
        };
        assert_eq!(*secrets, [Secret::new("from-file")]);
        // Without a file, relative paths stay relative, that is, to the current directory.
        let c = Config::parse("[storage]\npath = \"d/x.redb\"\n", "inline").unwrap();
        assert_eq!(c.storage.path, Path::new("d/x.redb"));
    }

    #[test]
    fn a_missing_secret_names_position_key_and_variable() {
        let text =
            "[sources.gh]\nkind = \"github\"\nsecret = [\"a\", \"${env:HOOKRELAY_T_UNSET_1}\"]\n";
        let err = Config::parse(text, "e.toml").unwrap_err();
        let p = &err.problems()[0];
        assert_eq!(
            (p.line, p.column, p.key.as_str()),
            (3, 16, "sources.gh.secret")
        );
        assert!(
            p.message
                .contains("environment variable HOOKRELAY_T_UNSET_1 is not set")
        );
        assert!(
            err.to_string()
                .starts_with("e.toml:3:16: sources.gh.secret: environment variable")
        );
        let (.., m) = only(
            "[sources.gh]\nkind = \"github\"\nsecret = \"${file:/nonexistent/hookrelay/s}\"\n",
        );
        assert!(
            m.contains("cannot read secret file /nonexistent/hookrelay/s"),
            "{m}"
        );
    }

    #[test]
    fn resolved_secrets_never_appear_in_errors() {
        let leak = "LEAK-7f3a9c";
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, format!("{leak}:not-base64!\n")).unwrap();
        set_env("HOOKRELAY_T_LEAK_URL", &format!("{leak}:opaque"));
        set_env("HOOKRELAY_T_LEAK_URL2", &format!("https://{leak}@/x y"));
        set_env("HOOKRELAY_T_LEAK_WHSEC", &format!("whsec_{leak}!!"));
        set_env("HOOKRELAY_T_LEAK_HDR", &format!("{leak}\u{7f}"));
        let text = format!(
            "[sources.std]\nkind = \"standard\"\nsecret = [\"${{file:{}}}\", \"${{env:HOOKRELAY_T_LEAK_WHSEC}}\"]\n\
             [sinks.a]\nkind = \"webhook\"\nurl = \"${{env:HOOKRELAY_T_LEAK_URL}}\"\n\
             headers = {{ X-Auth = \"${{env:HOOKRELAY_T_LEAK_HDR}}\" }}\n\
             [sinks.b]\nkind = \"webhook\"\nurl = \"${{env:HOOKRELAY_T_LEAK_URL2}}\"\n\
             signing_secret = \"${{file:{}}}\"\n",
            file.display(),
            file.display()
        );
        let err = Config::parse(&text, "leak.toml").unwrap_err();
        assert_eq!(err.problems().len(), 6, "{err}");
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains(leak), "{shown}");
    }

    #[test]
    fn whsec_secrets_need_the_prefix_and_valid_base64() {
        assert_eq!(decode_whsec(b"whsec_AQID").unwrap(), [1, 2, 3]);
        assert_eq!(decode_whsec(b"whsec_AQI=").unwrap(), [1, 2]);
        assert_eq!(
            decode_whsec(b"whsec_AQI").unwrap(),
            [1, 2],
            "padding is optional"
        );
        assert!(
            decode_whsec(b"AQID")
                .unwrap_err()
                .contains("must be \"whsec_\"")
        );
        assert!(decode_whsec(b"whsec_").unwrap_err().contains("no key"));
        assert!(
            decode_whsec(b"whsec_A")
                .unwrap_err()
                .contains("not valid base64")
        );
        assert!(
            decode_whsec(b"whsec_AQ-D")
                .unwrap_err()
                .contains("not valid base64")
        );
        let (.., key, m) =
            only("[sources.gl]\nkind = \"gitlab\"\nsigning_token = [\"whsec_AQID\", \"AQID\"]\n");
        assert_eq!(key, "sources.gl.signing_token");
        assert!(m.contains("whsec_"), "{m}");
    }

    #[test]
    fn rates_sizes_and_durations_parse() {
        assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate("1/m"), Ok((1, Duration::from_secs(60))));
        assert_eq!(
            parse_rate("4294967295/h"),
            Ok((u32::MAX, Duration::from_secs(3600)))
        );
        for bad in [
            "",
            "0/s",
            "/s",
            "10",
            "10/",
            "10/sec",
            "+1/s",
            "-1/s",
            " 1/s",
            "1/s ",
            "4294967296/s",
            "1.5/s",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("25MiB"), Ok(25 * 1024 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        for bad in ["", "MiB", "-1KiB", "1 parsec", ".5MiB", "one"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "10", "ten seconds", "-1s", "200years"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let c = Config::parse("[server]\nmax_body = 1048576\n", "t").unwrap();
        assert_eq!(c.server.max_body, 1 << 20);
    }

    #[test]
    fn excerpts_underline_the_span_even_after_tabs_and_wide_characters() {
        let text = "[sources.\"é\"]\n\tkind = \"nope\"\n";
        let err = Config::parse(text, "w.toml").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("w.toml:1:10: sources.\"é\": bad name"),
            "{shown}"
        );
        assert!(
            shown.contains("1 | [sources.\"é\"]\n  |          ^^^\n"),
            "{shown}"
        );
        assert!(shown.contains("w.toml:2:9: sources.\"é\".kind"), "{shown}");
        assert!(
            shown.contains("2 | \tkind = \"nope\"\n  | \t       ^^^^^^\n"),
            "{shown}"
        );
    }

    #[test]
    fn max_buffered_defaults_to_256mib_and_must_hold_one_largest_body() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.max_buffered, 256 * 1024 * 1024);
        let c = Config::parse("[server]\nmax_body = \"512MiB\"\n", "t.toml").unwrap();
        assert_eq!(
            c.server.max_buffered,
            512 * 1024 * 1024,
            "never below max_body"
        );
        let c = Config::parse("[server]\nmax_buffered = \"64MiB\"\n", "t.toml").unwrap();
        assert_eq!(c.server.max_buffered, 64 * 1024 * 1024);
        let (line, column, key, message) =
            only("[server]\nmax_body = \"2MiB\"\nmax_buffered = \"1MiB\"\n");
        assert_eq!((line, column, key.as_str()), (3, 16, "server.max_buffered"));
        assert!(message.contains("at least server.max_body"), "{message}");
    }

    #[test]
    fn admin_is_off_unless_its_section_is_present() {
        assert!(Config::parse("", "t").unwrap().admin.is_none());
        let admin = Config::parse("[admin]\n", "t").unwrap().admin.unwrap();
        assert_eq!(
            admin.listen,
            "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
        );
        assert!(admin.token.is_none());
    }

    #[test]
    fn admin_token_resolves_from_the_environment() {
        set_env("HR_TEST_ADMIN_TOKEN", "0123456789abcdef0123");
        let text = "[admin]\nlisten = \"0.0.0.0:9999\"\ntoken = \"${env:HR_TEST_ADMIN_TOKEN}\"\n";
        let admin = Config::parse(text, "t").unwrap().admin.unwrap();
        assert_eq!(admin.listen.port(), 9999);
        assert_eq!(
            admin.token.unwrap().expose(),
            b"0123456789abcdef0123".as_slice()
        );
    }

    #[test]
    fn an_inline_credential_is_never_echoed_in_an_error() {
        let text = "[server]\nproxy = \"htp://user:Sup3rSecret@127.0.0.1:3128\"\n\
                    [sinks.chat]\nkind = \"slack\"\nurl = \"https://hooks.slack.example/T0/B0/xoxSECRET x\"\n\
                    [sinks.hook]\nkind = \"webhook\"\nurl = \"https://h/\"\nheaders = { \"X Bad\" = \"Bearer t0kenSECRET\" }\n";
        let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
        assert!(!shown.contains("Sup3rSecret"), "{shown}");
        assert!(!shown.contains("xoxSECRET"), "{shown}");
        assert!(!shown.contains("t0kenSECRET"), "{shown}");
        // A bad list item, and a line TOML itself cannot read.
        for text in [
            "[sources.gh]\nkind = \"github\"\nsecret = [\"GhS3cretAAA\", 42]\n",
            "[sources.gh]\nkind = \"github\"\nsecret = \"GhS3cretAAA\" \"x\"\n",
        ] {
            let shown = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(!shown.contains("GhS3cretAAA"), "{shown}");
        }
        // Still placed: the line and the carets under the value.
        assert!(shown.contains("proxy = \"*****"), "{shown}");
        // A reference is no secret, and shows what to fix.
        assert_eq!(
            mask_literals(r#"secret = "${env:GH_SECRET}" # 'x'"#),
            r#"secret = "${env:GH_SECRET}" # '*'"#
        );
        assert_eq!(mask_literals(r#"a = "q\"x""#), r#"a = "****""#);
    }

    #[test]
    fn the_admin_api_cannot_share_the_webhook_port() {
        for (server, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
        ] {
            let text = format!("[server]\nlisten = \"{server}\"\n[admin]\nlisten = \"{admin}\"\n");
            let problems = only(&text);
            assert_eq!(problems.0, 4, "{problems:?}");
            assert_eq!(problems.2, "admin.listen");
            assert!(problems.3.contains("needs its own port"), "{problems:?}");
        }
        let fine = "[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:9090\"\n";
        assert!(Config::parse(fine, "t.toml").is_ok());
        let ephemeral = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
        assert!(Config::parse(ephemeral, "t.toml").is_ok());
    }

    #[test]
    fn a_public_admin_listener_without_a_token_is_refused() {
        let (line, col, key, m) = only("[admin]\nlisten = \"0.0.0.0:9090\"\n");
        assert_eq!((line, col, key.as_str()), (2, 10, "admin.listen"));
        assert!(m.contains("admin.token") && m.contains("loopback"), "{m}");
        // IPv6 loopback needs no token.
        assert!(Config::parse("[admin]\nlisten = \"[::1]:9090\"\n", "t").is_ok());
    }

    #[test]
    fn bad_admin_values_say_what_to_write() {
        let (line, _, key, m) = only("[admin]\ntoken = \"short\"\n");
        assert_eq!((line, key.as_str()), (2, "admin.token"));
        assert!(m.contains("openssl rand"), "{m}");
        assert!(!m.contains("short\""), "the token is not echoed: {m}");
        let (_, _, key, m) = only("[admin]\ntoken = \"with a space in the token\"\n");
        assert_eq!(key, "admin.token");
        assert!(m.contains("printable"), "{m}");
        let (_, _, key, m) = only("[admin]\nlisten = \"localhost:9090\"\n");
        assert_eq!(key, "admin.listen");
        assert!(m.contains("IP:PORT"), "{m}");
        let (_, _, key, m) = only("[admin]\nlisen = \"127.0.0.1:1\"\n");
        assert_eq!(key, "admin.lisen");
        assert!(m.contains("listen"), "{m}");
    }

    proptest! {
        #[test]
        fn rate_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_rate(&s);
        }

        #[test]
        fn rate_parser_accepts_exactly_the_documented_form(n in 0u64..=u64::from(u32::MAX) + 10, unit in "[smhd]") {
            let parsed = parse_rate(&format!("{n}/{unit}"));
            let valid = n >= 1 && n <= u64::from(u32::MAX) && unit != "d";
            prop_assert_eq!(parsed.is_ok(), valid);
            if let Ok((count, _)) = parsed {
                prop_assert_eq!(u64::from(count), n);
            }
        }

        #[test]
        fn size_parser_never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn size_parser_never_panics_on_number_like_input(s in "[0-9.]{0,30}[ ]?[kKmMgGtTpPeEiIbB]{0,3}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn duration_parser_never_panics(s in "[0-9a-z .]{0,30}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn parse_never_panics_on_toml_like_text(s in "[\\[\\]a-z_.=\"{},0-9 \n$:/-]{0,200}") {
            let _ = Config::parse(&s, "p.toml");
        }
    }
}
