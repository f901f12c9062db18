//! Configuration: the one TOML file, parsed (`raw`), validated (`validate`) into the typed
//! [`Config`] every other part reads. Nothing downstream sees the raw form.
//!
//! Invariant: this module imports no other part of hookrelay; each part takes its own typed
//! section. Secrets are resolved here (`secrets`) and only ever held as [`Secret`], whose
//! `Debug` never prints the value.

pub(crate) mod expiry;
mod raw;
mod secrets;
mod tls;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub use expiry::{expiry_warning, not_after};
pub use tls::{
    ClientIdentity, Outbound, Proxy, ServerTls, check_key_pair, read_certificates, read_private_key,
};
pub use validate::{ConfigError, Problem};

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ingress listener and its limits.
    pub server: ServerConfig,
    /// Where and how long events are kept.
    pub storage: StorageConfig,
    /// Sources, sorted by name.
    pub sources: Vec<SourceConfig>,
    /// Sinks, sorted by name.
    pub sinks: Vec<SinkConfig>,
    /// Routes, in file order.
    pub routes: Vec<RouteConfig>,
    /// `[admin]`: the admin listener; `None` (no listener) unless the section is present.
    pub admin: Option<AdminConfig>,
    /// `[notices]`: when hookrelay raises events about its own health.
    pub notices: NoticesConfig,
}

/// The source name of hookrelay's own notices; no `[sources.NAME]` may take it, and routes
/// may name it without one.
pub const NOTICE_SOURCE: &str = "hookrelay";

/// `[notices]`: hookrelay's events about itself (source [`NOTICE_SOURCE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticesConfig {
    /// Consecutive failed attempts after which a sink is unhealthy (at least 1).
    pub failures: u32,
    /// At most one notice of each type per subject (a sink, the store, the config) within
    /// this time; the ones held back are counted and summarised in the next.
    pub min_interval: Duration,
    /// The store is unhealthy while its file system has less free space than this, in
    /// bytes; 0 turns the check off.
    pub min_free: u64,
    /// How often the free space is checked.
    pub check_interval: Duration,
    /// The relay's name in notices; the host name when `None`.
    pub instance: Option<String>,
}

impl Default for NoticesConfig {
    /// The values an absent `[notices]` section stands for.
    fn default() -> NoticesConfig {
        NoticesConfig {
            failures: 5,
            min_interval: Duration::from_secs(10 * 60),
            min_free: 1 << 30,
            check_interval: Duration::from_secs(60),
            instance: None,
        }
    }
}

/// `[admin]`: health, metrics and the JSON API, on a listener apart from ingress.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address to bind; loopback unless a token is set.
    pub listen: SocketAddr,
    /// Bearer token every route but `/healthz` requires; `None` (loopback only) means open.
    pub token: Option<Secret>,
}

/// `[server]`: the ingress listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind, e.g. `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub max_body: u64,
    /// Time allowed to receive a request's headers; also how long an idle keep-alive connection stays open (hyper starts this timer while waiting for the next request).
    pub header_timeout: Duration,
    /// Time allowed to receive a request's whole body.
    pub body_timeout: Duration,
    /// On SIGTERM, how long in-flight deliveries may take before the process exits.
    pub shutdown_timeout: Duration,
    /// Most simultaneous ingress connections; further ones wait in the accept queue.
    pub max_connections: usize,
    /// Most request-body bytes held in memory at once, over all connections, from the first
    /// byte received until the store has answered; beyond it a request gets `503`.
    pub max_buffered: u64,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<ServerTls>,
}

/// `[storage]`: the redb file.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Path of the redb file; parent folders are created.
    pub path: PathBuf,
    /// Finished events older than this are removed.
    pub retention: Duration,
}

/// A secret value resolved from the file, `${env:NAME}` or `${file:PATH}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }
    /// The secret's bytes; callers must never log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[sources.NAME]`: one sender.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// The name in `/hooks/{name}`.
    pub name: String,
    /// A disabled source answers 404.
    pub enabled: bool,
    /// How requests are verified and where event type and delivery id come from.
    pub kind: SourceKind,
    /// `summary = { field = "/json/pointer" }`: summary fields read from the body, each
    /// replacing what the kind itself would fill in; in file order, each field once.
    pub summary: Vec<(SummaryField, String)>,
}

/// Where a value is read from in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldLocation {
    /// A request header.
    Header(HeaderName),
    /// An RFC 6901 JSON pointer into the body, e.g. `/event/type`.
    JsonPointer(String),
}

/// HMAC digest for `kind = "hmac"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    /// HMAC-SHA1 (Nexus).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Hexadecimal, either case.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// The verification scheme of a source, with its secrets.
///
/// Every secret field is a list: any one of them verifies, so secrets can be rotated.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// GitHub: `X-Hub-Signature-256`, `X-GitHub-Event`, `X-GitHub-Delivery`.
    Github { secrets: Vec<Secret> },
    /// GitLab: `X-Gitlab-Token` and/or Standard Webhooks signing with `whsec_` tokens.
    /// When both lists are non-empty, both checks must pass.
    Gitlab {
        tokens: Vec<Secret>,
        /// Already base64-decoded key bytes (the part after `whsec_`).
        signing_keys: Vec<Secret>,
        tolerance: Duration,
    },
    /// Standard Webhooks; event type from the JSON `type` field.
    Standard {
        /// Already base64-decoded key bytes (the part after `whsec_`).
        keys: Vec<Secret>,
        tolerance: Duration,
    },
    /// A generic HMAC signature header.
    Hmac {
        header: HeaderName,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        /// Text before the signature in the header, e.g. `sha256=`.
        prefix: Option<String>,
        secrets: Vec<Secret>,
        event_type: Option<FieldLocation>,
        delivery_id: Option<FieldLocation>,
    },
    /// A shared token sent verbatim in a header.
    Token {
        header: HeaderName,
        secrets: Vec<Secret>,
        event_type: Option<FieldLocation>,
        delivery_id: Option<FieldLocation>,
    },
    /// No verification at all (logged as a warning at start).
    None {
        event_type: Option<FieldLocation>,
        delivery_id: Option<FieldLocation>,
    },
    /// A product hookrelay knows (`nexus`, `artifactory`, `harbor`, `gitea`, `bitbucket`):
    /// its headers, algorithm, event type, delivery id and summary are built in.
    Preset {
        product: Product,
        scheme: PresetScheme,
        secrets: Vec<Secret>,
    },
}

/// A product whose webhooks hookrelay knows how to verify and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Sonatype Nexus Repository.
    Nexus,
    /// JFrog Artifactory.
    Artifactory,
    /// Harbor container registry.
    Harbor,
    /// Gitea and Forgejo.
    Gitea,
    /// Bitbucket Cloud and Bitbucket Data Center.
    Bitbucket,
}

impl Product {
    /// Every product, as written in `kind = "..."`.
    pub const ALL: [(&'static str, Product); 5] = [
        ("nexus", Product::Nexus),
        ("artifactory", Product::Artifactory),
        ("harbor", Product::Harbor),
        ("gitea", Product::Gitea),
        ("bitbucket", Product::Bitbucket),
    ];

    /// The `kind` string as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Product::Nexus => "nexus",
            Product::Artifactory => "artifactory",
            Product::Harbor => "harbor",
            Product::Gitea => "gitea",
            Product::Bitbucket => "bitbucket",
        }
    }
}

/// How a preset source checks its requests, where the product offers a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetScheme {
    /// An HMAC of the body under the shared secret (the default wherever the product signs).
    Signature,
    /// The shared secret itself, sent in a header (Harbor's only scheme; Artifactory's and
    /// Gitea's weaker one).
    Token,
}

/// A field of the event summary: what routes filter on and templates show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SummaryField {
    /// What happened: `uploaded`, `deleted`, `pushed`, `released`, …
    Action,
    /// Where it happened: the artifact repository or the source repository.
    Repository,
    /// The component, package or image concerned.
    Component,
    /// The path of the file concerned inside its repository.
    Path,
    /// The component's version or tag.
    Version,
    /// Who did it.
    Actor,
    /// A link to what changed.
    Url,
    /// The git ref concerned, e.g. `refs/heads/main`.
    Ref,
}

impl SummaryField {
    /// Every field, as written in the file and in templates.
    pub const ALL: [(&'static str, SummaryField); 8] = [
        ("action", SummaryField::Action),
        ("repository", SummaryField::Repository),
        ("component", SummaryField::Component),
        ("path", SummaryField::Path),
        ("version", SummaryField::Version),
        ("actor", SummaryField::Actor),
        ("url", SummaryField::Url),
        ("ref", SummaryField::Ref),
    ];

    /// The field's name as written in the file.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("", |(name, _)| name)
    }
}

impl SourceKind {
    /// The `kind` string as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Github { .. } => "github",
            SourceKind::Gitlab { .. } => "gitlab",
            SourceKind::Standard { .. } => "standard",
            SourceKind::Hmac { .. } => "hmac",
            SourceKind::Token { .. } => "token",
            SourceKind::None { .. } => "none",
            SourceKind::Preset { product, .. } => product.name(),
        }
    }

    /// Each key that holds shared secrets, with the secrets it holds (as used: a `whsec_`
    /// secret's decoded key bytes).
    /// The flag says whether the key takes `whsec_` secrets.
    pub fn secrets_by_key(&self) -> Vec<(&'static str, &[Secret], bool)> {
        match self {
            SourceKind::Github { secrets }
            | SourceKind::Hmac { secrets, .. }
            | SourceKind::Token { secrets, .. }
            | SourceKind::Preset { secrets, .. } => vec![("secret", secrets, false)],
            SourceKind::Gitlab {
                tokens,
                signing_keys,
                ..
            } => vec![
                ("token", tokens, false),
                ("signing_token", signing_keys, true),
            ],
            SourceKind::Standard { keys, .. } => vec![("secret", keys, true)],
            SourceKind::None { .. } => Vec::new(),
        }
    }
}

/// Shared secrets shorter than this are warned about: HMAC keys and tokens that short can be
/// guessed, and whoever guesses one can sign events (or, for a sink's `signing_secret`,
/// forge deliveries). 16 bytes is 128 bits; the Standard Webhooks spec asks for 24 to 64.
pub const MIN_SECRET_BYTES: usize = 16;

/// A sink's rate limit: `count` deliveries per `per`, with bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Deliveries allowed per period (at least 1).
    pub count: u32,
    /// The period: one second, minute or hour.
    pub per: Duration,
    /// Largest burst (at least 1); defaults to 1.
    pub burst: u32,
}

/// When and how often a failed delivery is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; after the last failure the entry is dead-lettered.
    pub max_attempts: u32,
    /// Upper bound of the first backoff.
    pub initial: Duration,
    /// Largest backoff between two attempts.
    pub max: Duration,
}

/// `[sinks.NAME]`: one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// The name routes refer to.
    pub name: String,
    /// A disabled sink gets nothing new queued.
    pub enabled: bool,
    /// A paused sink keeps queueing but delivers nothing (a maintenance window).
    pub paused: bool,
    /// `None` means unlimited.
    pub rate: Option<Rate>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Backoff and dead-letter policy.
    pub retry: RetryPolicy,
    /// Time allowed for one delivery attempt.
    pub timeout: Duration,
    /// Trust, client certificate and proxy for the sink's connections.
    pub outbound: Outbound,
    /// What the sink is.
    pub kind: SinkKind,
}

/// The kind of a sink, with its own settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// POST the original body, signed with Standard Webhooks headers.
    Webhook(WebhookSinkConfig),
    /// A Slack message, by incoming webhook or `chat.postMessage`.
    Slack(SlackSinkConfig),
    /// A Discord message through a channel webhook.
    Discord(DiscordSinkConfig),
    /// An Adaptive Card through a Microsoft Teams Workflows webhook.
    Teams(TeamsSinkConfig),
    /// An e-mail through an SMTP server.
    Smtp(SmtpSinkConfig),
    /// Upload the event's CycloneDX BOM to Dependency-Track.
    DependencyTrack(DependencyTrackSinkConfig),
    /// Export the event's SBOMs and attestations as files or objects GUAC ingests.
    Guac(GuacSinkConfig),
    /// Append every event to size-rotated JSON-lines files.
    Archive(ArchiveSinkConfig),
    /// Publish every event to a NATS JetStream stream.
    Nats(NatsSinkConfig),
}

/// Where a document sits in an event, and how it is written there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLocation {
    /// RFC 6901 JSON pointers into the body; empty means the body itself is the document.
    pub pointers: Vec<String>,
    /// How the document is written at that place.
    pub encoding: DocumentEncoding,
}

/// How a carried document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentEncoding {
    /// As is: JSON (an object, an array, or a string holding the document's text), or raw
    /// bytes when it is the body itself.
    Json,
    /// A base64 string (standard alphabet) of the document's bytes.
    Base64,
}

/// `kind = "dependency-track"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyTrackSinkConfig {
    /// The server's base URL (`http` or `https`), without `/api`.
    pub url: String,
    /// Sent as `X-Api-Key`.
    pub api_key: Secret,
    /// Which project the BOM belongs to.
    pub project: DependencyTrackProject,
    /// Where the BOM is in an event (one pointer at most).
    pub bom: DocumentLocation,
}

/// The Dependency-Track project a BOM is uploaded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyTrackProject {
    /// An existing project, by UUID.
    Uuid(String),
    /// By name and version, each a template rendered from the event (compiled when the
    /// sink is built, and by `hookrelay check`).
    Named {
        /// Template of the project name.
        name: TemplateSource,
        /// Template of the project version.
        version: TemplateSource,
        /// Whether Dependency-Track creates the project when it does not exist.
        auto_create: bool,
    },
}

/// `kind = "guac"`.
#[derive(Debug, Clone, PartialEq)]
pub struct GuacSinkConfig {
    /// Where the documents are in an event.
    pub documents: DocumentLocation,
    /// Where they are written.
    pub target: GuacTarget,
}

/// Where the GUAC sink writes documents.
#[derive(Debug, Clone, PartialEq)]
pub enum GuacTarget {
    /// A folder a GUAC file collector watches.
    Folder {
        /// The watched folder (created if missing).
        path: PathBuf,
        /// Where files are written before being renamed into `path`: on the same file
        /// system, outside `path`, since GUAC's file collector reads every file below it.
        tmp_path: PathBuf,
    },
    /// An S3-compatible bucket a GUAC S3 collector watches.
    S3(S3Config),
}

/// S3-compatible object storage.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, e.g. `sboms/` (may be empty).
    pub prefix: String,
    /// Endpoint URL; `None` means AWS's `https://s3.{region}.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Signing region, e.g. `us-east-1`.
    pub region: String,
    /// Access key id.
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
}

/// `kind = "archive"`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveSinkConfig {
    /// The folder holding the JSON-lines files (created if missing).
    pub path: PathBuf,
    /// A file is closed and the next begun before it would grow past this many bytes.
    pub max_file_size: u64,
}

/// `kind = "nats"`.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSinkConfig {
    /// Server URLs (`nats://`, `tls://`), tried in turn; the client learns the others of a
    /// cluster from the first it reaches. May carry credentials: never log them.
    pub servers: Vec<String>,
    /// Template of the subject, rendered from the event as plain text.
    pub subject: TemplateSource,
    /// How the client authenticates.
    pub auth: NatsAuth,
}

/// How the NATS sink authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    /// No credentials (or those in the URL).
    None,
    /// `username` and `password`.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// `token`.
    Token(Secret),
    /// `nkey`: an NKey user seed (`SU...`).
    NKey(Secret),
    /// `creds_file`: a JWT and NKey seed, as `nsc` writes them; the file's content.
    Creds(Secret),
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSinkConfig {
    /// Receiver URL (`http` or `https`). Often carries a secret: never log it.
    pub url: String,
    /// Decoded key bytes of each `whsec_` secret; with any, `webhook-signature` is sent,
    /// one `v1,` signature per key (several while a key is being rotated).
    pub signing_keys: Vec<Secret>,
    /// Static headers added to every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A message template as configured: its text, and where it was written (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSource {
    /// The template's text (read from `template_file` when that was given).
    pub text: String,
    /// Where it was written, e.g. `hookrelay.toml:14:12: sinks.chat.template`.
    pub at: String,
}

/// `kind = "slack"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackSinkConfig {
    /// Where messages go.
    pub target: SlackTarget,
    /// The message; the built-in one when `None`.
    pub template: Option<TemplateSource>,
}

/// How a Slack sink posts.
#[derive(Debug, Clone, PartialEq)]
pub enum SlackTarget {
    /// An incoming webhook URL (a secret in itself: never log it).
    Webhook {
        /// The `https://hooks.slack.com/services/...` URL.
        url: String,
    },
    /// The Web API's `chat.postMessage` with a bot token.
    Api {
        /// The `xoxb-...` token.
        token: Secret,
        /// The channel, templated (plain text).
        channel: TemplateSource,
        /// The Web API's base URL, `https://slack.com/api` unless overridden.
        api_url: String,
    },
}

/// `kind = "discord"`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordSinkConfig {
    /// The channel webhook URL (a secret in itself).
    pub url: String,
    /// Overrides the webhook's name.
    pub username: Option<String>,
    /// Overrides the webhook's avatar.
    pub avatar_url: Option<String>,
    /// The message; the built-in one when `None`.
    pub template: Option<TemplateSource>,
}

/// `kind = "teams"`.
#[derive(Debug, Clone, PartialEq)]
pub struct TeamsSinkConfig {
    /// The Workflows webhook URL (a secret in itself).
    pub url: String,
    /// The message; the built-in one when `None`.
    pub template: Option<TemplateSource>,
}

/// Whether `host` is this machine: a name or address that never leaves it.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Implicit,
    /// No encryption (port 25 by default); for a relay on the same host or network only.
    None,
}

/// `kind = "smtp"`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpSinkConfig {
    /// Server host name (also the name its certificate must carry).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// Login, when the server needs one.
    pub credentials: Option<(String, Secret)>,
    /// The `From` mailbox, e.g. `hookrelay <relay@example.com>`.
    pub from: String,
    /// The recipients (at least one).
    pub to: Vec<String>,
    /// The subject; the built-in one when `None`.
    pub subject: Option<TemplateSource>,
    /// The body; the built-in message when `None`.
    pub template: Option<TemplateSource>,
}

/// `[[routes]]`: which sinks get which events.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Source names this route applies to.
    pub from: Vec<String>,
    /// Glob patterns on the event type; empty matches every event.
    pub events: Vec<String>,
    /// Sink names.
    pub to: Vec<String>,
    /// `where = { ... }`: conditions on the event's summary and body, all of which must hold;
    /// empty takes every event.
    pub filter: Vec<Condition>,
}

/// One condition of a route's `where`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is tested.
    pub subject: Subject,
    /// How it is tested.
    pub test: Test,
}

/// What a route condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A field of the event summary.
    Summary(SummaryField),
    /// An RFC 6901 JSON pointer into the body, already checked.
    Pointer(String),
}

/// How a route condition tests its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// The value matches one of these glob patterns (a pattern without `* ? [ {` is plain
    /// equality). An absent value matches none.
    AnyOf(Vec<String>),
    /// The value is present (`true`) or absent (`false`).
    Present(bool),
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        validate::load(path)
    }

    /// Like [`Config::load`], for the offline commands, which use no secret: a
    /// `${env:..}` or `${file:..}` that cannot be read (systemd removes a stopped service's
    /// credentials) gets a stand-in value instead of failing the command.
    pub fn load_offline(path: &Path) -> Result<Config, ConfigError> {
        validate::load_offline(path)
    }

    /// Parses and validates `text`; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        validate::parse(text, origin)
    }

    /// Warnings about a file that is valid but likely not what its author meant, each with
    /// the key it is about: an enabled source that no route takes events from (they are
    /// stored and acknowledged, and sent nowhere), and a sink's client certificate that has
    /// expired or ends within two weeks. `check`, the start and every reload say them.
    pub fn warnings(&self) -> Vec<(String, String)> {
        let unrouted = self
            .sources
            .iter()
            .filter(|source| source.enabled)
            .filter(|source| !self.routes.iter().any(|r| r.from.contains(&source.name)))
            .map(|source| {
                (
                    format!("sources.{}", source.name),
                    format!(
                        "no route takes its events: they are stored and acknowledged, and sent \
                         nowhere; add a [[routes]] with from = \"{}\" (unless they are kept only \
                         for the admin API and export)",
                        source.name
                    ),
                )
            });
        let certificates = self
            .client_certificate_warnings()
            .into_iter()
            .map(|(sink, warning)| (format!("sinks.{sink}"), warning));
        // An empty or cut-short file reads as valid; a relay that takes nothing should say so.
        let no_source = (!self.sources.iter().any(|s| s.enabled)).then(|| {
            (
                "sources".to_string(),
                "no enabled [sources.NAME]: every webhook gets 404; add a source (see \
                 config/hookrelay.toml), or check that this is the file you meant"
                    .to_string(),
            )
        });
        let clear_passwords = self.sinks.iter().filter_map(|sink| match &sink.kind {
            SinkKind::Smtp(smtp)
                if smtp.tls == SmtpTls::None
                    && smtp.credentials.is_some()
                    && !is_loopback_host(&smtp.host) =>
            {
                Some((
                    format!("sinks.{}.tls", sink.name),
                    format!(
                        "tls = \"none\" with a username: the password crosses the network to {} \
                         in clear; use tls = \"starttls\" (port 587) or \"implicit\" (465)",
                        smtp.host
                    ),
                ))
            }
            _ => None,
        });
        no_source
            .into_iter()
            .chain(unrouted)
            .chain(certificates)
            .chain(clear_passwords)
            .chain(self.weak_secret_warnings())
            .collect()
    }

    /// Each key holding a secret shorter than [`MIN_SECRET_BYTES`], with what to do.
    fn weak_secret_warnings(&self) -> Vec<(String, String)> {
        let sources = self
            .sources
            .iter()
            .filter(|source| source.enabled)
            .flat_map(|source| {
                source
                    .kind
                    .secrets_by_key()
                    .into_iter()
                    .map(move |(key, secrets, whsec)| {
                        (format!("sources.{}.{key}", source.name), secrets, whsec)
                    })
            });
        let sinks = self.sinks.iter().filter_map(|sink| match &sink.kind {
            SinkKind::Webhook(webhook) => Some((
                format!("sinks.{}.signing_secret", sink.name),
                webhook.signing_keys.as_slice(),
                true,
            )),
            _ => None,
        });
        sources
            .chain(sinks)
            .filter_map(|(key, secrets, whsec)| {
                let shortest = secrets.iter().map(|s| s.expose().len()).min()?;
                (shortest < MIN_SECRET_BYTES).then(|| {
                    let which = if secrets.len() > 1 {
                        "one of its secrets"
                    } else {
                        "the secret"
                    };
                    let how = if whsec {
                        "`echo whsec_$(openssl rand -base64 32)` makes one"
                    } else {
                        "`openssl rand -hex 32` makes one"
                    };
                    (
                        key,
                        format!(
                            "{which} is {shortest} bytes: a short secret can be guessed, and \
                             whoever guesses it can sign; use at least {MIN_SECRET_BYTES} random \
                             bytes on both sides ({how})"
                        ),
                    )
                })
            })
            .collect()
    }

    /// Each sink whose client certificate has expired or ends within two weeks, with what
    /// to tell the operator: `check`, the start and every reload say it.
    fn client_certificate_warnings(&self) -> Vec<(&str, String)> {
        self.sinks
            .iter()
            .filter_map(|sink| {
                let identity = sink.outbound.identity.as_ref()?;
                Some((sink.name.as_str(), identity.expiry_warning()?))
            })
            .collect()
    }
}
