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
    self, Entry, Issue, RawConfig, RawDuration, RawField, RawHeaders, RawRetry, RawRoute,
    RawServer, RawSink, RawSize, RawSource, RawStorage, Strings,
};
use super::secrets;
use super::{
    Config, FieldLocation, HmacAlgorithm, Rate, RetryPolicy, RouteConfig, Secret, ServerConfig,
    SignatureEncoding, SinkConfig, SinkKind, SourceConfig, SourceKind, StorageConfig,
    WebhookSinkConfig,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 25 * 1024 * 1024;
/// Bodies are held in memory and stored whole; no webhook comes near this.
const LARGEST_MAX_BODY: u64 = 1024 * 1024 * 1024;
const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_CONNECTIONS: i64 = 1024;
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
const SOURCE_KINDS: &[&str] = &["github", "gitlab", "standard", "hmac", "token", "none"];
/// Sink kinds, as written in `kind = "..."`.
const SINK_KINDS: &[&str] = &["webhook"];

/// For each source key that only some kinds take, those kinds. `kind` and `enabled` are
/// taken by all.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("secret", &["github", "standard", "hmac", "token"]),
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
                    let (line, column, excerpt) = locate(text, span);
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
    let end = span.end.clamp(start, line_start + line_text.len());
    let len = text.get(start..end).map_or(0, |s| s.chars().count()).max(1);
    let excerpt = Excerpt {
        text: line_text.to_string(),
        start: before,
        len,
    };
    (line, before + 1, excerpt)
}

/// Reads, parses and validates the file at `path`.
pub(super) fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(
            &origin,
            format!("cannot read the configuration file: {e}; check the path given to --config"),
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    build(&text, &origin, dir)
}

/// Parses and validates `text`; relative paths resolve against the current directory.
pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    build(text, origin, Path::new(""))
}

fn build(text: &str, origin: &str, dir: &Path) -> Result<Config, ConfigError> {
    let (raw, issues) = raw::read(text);
    let mut v = Validator { issues, dir };
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

/// Walks the raw file, collecting issues. Each method returns `None` only after recording
/// at least one issue, and keeps checking what it can before returning.
struct Validator<'a> {
    issues: Vec<Issue>,
    dir: &'a Path,
}

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(Issue::new(span, key, message));
    }

    fn config(&mut self, raw: RawConfig) -> Option<Config> {
        let server = self.server(raw.server.unwrap_or_default());
        let storage = self.storage(raw.storage.unwrap_or_default());
        let sources: Vec<_> = raw.sources.iter().map(|e| self.source(e)).collect();
        let sinks: Vec<_> = raw.sinks.iter().map(|e| self.sink(e)).collect();
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
        let idle_timeout = self.duration(
            raw.idle_timeout.as_ref(),
            "server.idle_timeout",
            DEFAULT_IDLE_TIMEOUT,
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
        Some(ServerConfig {
            listen: listen?,
            max_body: max_body?,
            header_timeout: header_timeout?,
            body_timeout: body_timeout?,
            idle_timeout: idle_timeout?,
            shutdown_timeout: shutdown_timeout?,
            max_connections: usize::try_from(max_connections?).ok()?,
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
            // `join` keeps absolute paths as they are.
            Some(p) => Some(self.dir.join(p.get_ref())),
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
        let name_ok = self.name(&entry.name, &path);
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
        let mut foreign = false;
        for (key, span) in &entry.keys {
            let Some((_, kinds)) = KIND_KEYS.iter().find(|(k, _)| k == key) else {
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
        let kind = self.source_kind(raw, kind, &path);
        if !name_ok || foreign {
            return None;
        }
        Some(SourceConfig {
            name: entry.name.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            kind: kind?,
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
                let tolerance = self.duration(
                    raw.tolerance.as_ref(),
                    &key("tolerance"),
                    DEFAULT_TOLERANCE,
                    false,
                );
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
                let tolerance = self.duration(
                    raw.tolerance.as_ref(),
                    &key("tolerance"),
                    DEFAULT_TOLERANCE,
                    false,
                );
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
            _ => {
                let event_type = self.field(raw.event_type.as_ref(), &key("event_type"));
                let delivery_id = self.field(raw.delivery_id.as_ref(), &key("delivery_id"));
                Some(SourceKind::None {
                    event_type: event_type?,
                    delivery_id: delivery_id?,
                })
            }
        }
    }

    fn sink(&mut self, entry: &Entry<RawSink>) -> Option<SinkConfig> {
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
        let url = match &raw.url {
            Some(u) => self.url(u, &key("url")),
            None => {
                self.problem(
                    entry.name.span(),
                    &path,
                    "missing url; add url = \"https://...\", the receiver's address",
                );
                None
            }
        };
        let signing_key = match &raw.signing_secret {
            None => Some(None),
            Some(s) => self.whsec(s, &key("signing_secret")).map(Some),
        };
        let headers = match &raw.headers {
            None => Some(Vec::new()),
            Some(h) => self.headers(h, &key("headers")),
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
        let rate = self.rate(raw, &path);
        let retry = self.retry(raw.retry.as_ref(), &key("retry"));
        if !name_ok {
            return None;
        }
        Some(SinkConfig {
            name: entry.name.get_ref().clone(),
            enabled: raw.enabled.unwrap_or(true),
            rate: rate?,
            concurrency: usize::try_from(concurrency?).ok()?,
            retry: retry?,
            timeout: timeout?,
            kind: SinkKind::Webhook(WebhookSinkConfig {
                url: url?,
                signing_key: signing_key?,
                headers: headers?,
            }),
        })
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
        Some(RouteConfig {
            from: from?,
            events: events?,
            to: to?,
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
            if !known.contains(&name.as_str()) {
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
        let mut ok = true;
        let mut patterns: Vec<String> = Vec::new();
        for item in events.get_ref() {
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
        self.each_secret(value, key, |bytes| Ok(Secret::new(bytes)))
    }

    /// Resolves each `whsec_` secret of a string-or-list and decodes its key bytes.
    fn whsec_keys(&mut self, value: &Spanned<Strings>, key: &str) -> Option<Vec<Secret>> {
        self.each_secret(value, key, |bytes| decode_whsec(&bytes).map(Secret::new))
    }

    fn each_secret(
        &mut self,
        value: &Spanned<Strings>,
        key: &str,
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
            match secrets::resolve(item.get_ref(), self.dir).and_then(&convert) {
                Ok(secret) => out.push(secret),
                Err(message) => self.problem(item.span(), key, message),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    fn whsec(&mut self, value: &Spanned<String>, key: &str) -> Option<Secret> {
        match secrets::resolve(value.get_ref(), self.dir).and_then(|b| decode_whsec(&b)) {
            Ok(bytes) => Some(Secret::new(bytes)),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }

    /// A resolved sink URL: absolute http(s) with a host. Never echoed: URLs often hold tokens.
    fn url(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let checked = secrets::resolve(value.get_ref(), self.dir).and_then(|bytes| {
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
                return Err("has no host; write a URL such as \"https://host/path\"".to_string());
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
            let header_value = secrets::resolve(val.get_ref(), self.dir).and_then(|bytes| {
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

#[cfg(test)]
mod tests {
    use super::*;
}
