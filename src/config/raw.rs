//! The file as written: TOML parsed into serde structs that mirror it, with a [`Spanned`] on
//! every value validation may reject, so each problem can point at its line and column.
//!
//! Each section and each `[sources.NAME]`, `[sinks.NAME]` and `[[routes]]` entry is
//! deserialized on its own, so one bad entry does not hide the problems of the others.
//! Unknown keys are found here, all of them, before serde (whose `deny_unknown_fields`
//! stays as a backstop and covers nested inline tables); everything else is judged in
//! `validate`. Nothing outside `config` sees these types.

use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// A problem found while reading the file's shape: where, under which key, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Issue {
    /// Byte range in the file; `None` when the problem has no place (never for TOML input).
    pub span: Option<Range<usize>>,
    /// Dotted key path, e.g. `sources.github.secret`; empty for syntax errors.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Issue {
    pub(super) fn new(
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            span: Some(span),
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole file, each part present only if it could be read.
#[derive(Debug, Default)]
pub(super) struct RawConfig {
    /// `[server]`; `None` when absent or unreadable.
    pub server: Option<RawServer>,
    /// `[storage]`; `None` when absent or unreadable.
    pub storage: Option<RawStorage>,
    /// `[admin]`; `None` when absent (no admin listener) or unreadable.
    pub admin: Option<RawAdmin>,
    /// `[sources.NAME]`; `validate` sorts the typed ones by name.
    pub sources: Vec<Entry<RawSource>>,
    /// `[sinks.NAME]`; `validate` sorts the typed ones by name.
    pub sinks: Vec<Entry<RawSink>>,
    /// `[[routes]]` in file order, with their index; unreadable ones are left out.
    pub routes: Vec<(usize, Spanned<RawRoute>)>,
    /// `[tls]`; `None` when absent or unreadable.
    pub tls: Option<RawTls>,
    /// `[notices]`; `None` when absent or unreadable.
    pub notices: Option<RawNotices>,
}

/// `[notices]`: hookrelay's events about its own health.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotices {
    pub failures: Option<Spanned<i64>>,
    pub min_interval: Option<Spanned<RawDuration>>,
    pub min_free: Option<Spanned<RawSize>>,
    pub check_interval: Option<Spanned<RawDuration>>,
    pub instance: Option<Spanned<String>>,
}

/// One named table such as `[sources.github]`.
#[derive(Debug)]
pub(super) struct Entry<T> {
    /// The name, spanned where it is written in the table header.
    pub name: Spanned<String>,
    /// The keys present, with their spans, for checks on which keys a kind takes.
    pub keys: Vec<(String, Range<usize>)>,
    /// The body; `None` when it could not be read (the reason is already an [`Issue`]).
    /// The name still counts, so routes to it are not reported as dangling.
    pub body: Option<T>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub max_body: Option<Spanned<RawSize>>,
    pub header_timeout: Option<Spanned<RawDuration>>,
    pub body_timeout: Option<Spanned<RawDuration>>,
    pub shutdown_timeout: Option<Spanned<RawDuration>>,
    pub max_connections: Option<Spanned<i64>>,
    pub max_buffered: Option<Spanned<RawSize>>,
    pub proxy: Option<Spanned<String>>,
    pub tls: Option<Spanned<RawServerTls>>,
}

/// `[server] tls = { cert_file, key_file, client_ca_file }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub client_ca_file: Option<Spanned<String>>,
}

/// `[tls]`: trust for every outbound connection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub ca_file: Option<Spanned<String>>,
    pub use_system_roots: Option<Spanned<bool>>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub path: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawDuration>>,
}

/// `[admin]`: the admin listener; its presence turns it on.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
}

/// `[sources.NAME]`: every key of every kind; `validate` rejects keys the kind does not take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub kind: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    pub secret: Option<Spanned<Strings>>,
    pub token: Option<Spanned<Strings>>,
    pub signing_token: Option<Spanned<Strings>>,
    pub tolerance: Option<Spanned<RawDuration>>,
    pub header: Option<Spanned<String>>,
    pub algorithm: Option<Spanned<String>>,
    pub encoding: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub event_type: Option<Spanned<RawField>>,
    pub delivery_id: Option<Spanned<RawField>>,
    pub scheme: Option<Spanned<String>>,
    pub summary: Option<Spanned<RawPairs<String>>>,
}

/// `{ header = "..." }` or `{ pointer = "/json/pointer" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub header: Option<Spanned<String>>,
    pub pointer: Option<Spanned<String>>,
}

/// `[sinks.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub kind: Option<Spanned<String>>,
    pub enabled: Option<bool>,
    pub paused: Option<bool>,
    pub url: Option<Spanned<String>>,
    pub signing_secret: Option<Spanned<Strings>>,
    pub headers: Option<Spanned<RawHeaders>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub concurrency: Option<Spanned<i64>>,
    pub rate: Option<Spanned<String>>,
    pub burst: Option<Spanned<i64>>,
    pub retry: Option<Spanned<RawRetry>>,
    pub ca_file: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub proxy: Option<Spanned<String>>,
    // Message sinks (slack, discord, teams, smtp).
    pub template: Option<Spanned<String>>,
    pub template_file: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub api_url: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub avatar_url: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<Strings>>,
    pub subject: Option<Spanned<String>>,
    // dependency-track, guac and archive (validated in `validate/machines.rs`).
    pub api_key: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
    pub project_name: Option<Spanned<String>>,
    pub project_version: Option<Spanned<String>>,
    pub auto_create: Option<Spanned<bool>>,
    pub pointer: Option<Spanned<Strings>>,
    pub encoding: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub tmp_path: Option<Spanned<String>>,
    pub bucket: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub access_key_id: Option<Spanned<String>>,
    pub secret_access_key: Option<Spanned<String>>,
    pub max_file_size: Option<Spanned<RawSize>>,
    // nats (validated in `validate/nats.rs`).
    pub nkey: Option<Spanned<String>>,
    pub creds_file: Option<Spanned<String>>,
}

/// `retry = { max_attempts, initial, max }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub max_attempts: Option<Spanned<i64>>,
    pub initial: Option<Spanned<RawDuration>>,
    pub max: Option<Spanned<RawDuration>>,
}

/// `[[routes]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub from: Option<Spanned<Strings>>,
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    pub to: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "where")]
    pub filter: Option<Spanned<RawPairs<RawCondition>>>,
}

/// A table whose keys are the user's (`summary`, `where`), in file order, keys and values
/// spanned.
#[derive(Debug)]
pub(super) struct RawPairs<T>(pub Vec<(Spanned<String>, Spanned<T>)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for RawPairs<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = RawPairs<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table, e.g. { repository = \"releases\" }")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawPairs<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<T>>()? {
                    items.push(entry);
                }
                // Tables arrive sorted by key; problems read best in file order.
                items.sort_by_key(|(key, _)| key.span().start);
                Ok(RawPairs(items))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// One condition of `where`: `"value"`, `["a", "b*"]` or `{ present = true }`.
#[derive(Debug)]
pub(super) enum RawCondition {
    /// One pattern or a list of them, each spanned.
    AnyOf(Vec<Spanned<String>>),
    /// `{ present = bool }`.
    Present(bool),
}

impl<'de> Deserialize<'de> for RawCondition {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// `{ present = bool }`, the only table a condition can be.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Presence {
            present: bool,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCondition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a string, a list of strings, or { present = true/false } (quote numbers: \"42\")",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawCondition, E> {
                // The span of a lone string is the condition's own, set by the caller.
                Ok(RawCondition::AnyOf(vec![Spanned::new(0..0, s.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCondition, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(RawCondition::AnyOf(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCondition, A::Error> {
                let p = Presence::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawCondition::Present(p.present))
            }
        }
        d.deserialize_any(V)
    }
}

/// A string or a list of strings, each spanned.
#[derive(Debug)]
pub(super) struct Strings(pub Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A lone string becomes a one-element list carrying its own span.
        let value = Spanned::<StringOrSeq>::deserialize(d)?;
        let span = value.span();
        Ok(match value.into_inner() {
            StringOrSeq::One(s) => Strings(vec![Spanned::new(span, s)]),
            StringOrSeq::Many(items) => Strings(items),
        })
    }
}

/// Helper for [`Strings`]: the two shapes, told apart by the visitor method serde calls.
enum StringOrSeq {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for StringOrSeq {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrSeq;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StringOrSeq, E> {
                Ok(StringOrSeq::One(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrSeq, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<String>>()? {
                    items.push(item);
                }
                Ok(StringOrSeq::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration as written, e.g. `"30s"`; parsed in `validate`.
#[derive(Debug)]
pub(super) struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a duration string such as \"100ms\", \"30s\", \"5m\", \"1h\" or \"7d\"",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(s.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// A size as written: a string with a unit (`"25MiB"`) or a plain number of bytes.
#[derive(Debug)]
pub(super) enum RawSize {
    Text(String),
    Bytes(i64),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"64KiB\", \"25MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// `headers = { "Name" = "value" }`, in file order, names and values spanned.
#[derive(Debug)]
pub(super) struct RawHeaders(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of header names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeaders, A::Error> {
                let mut items = Vec::new();
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<String>>()? {
                    items.push(entry);
                }
                // Tables arrive sorted by key; headers are sent in the order written.
                items.sort_by_key(|(name, _)| name.span().start);
                Ok(RawHeaders(items))
            }
        }
        d.deserialize_map(V)
    }
}

/// Top-level keys, in the order the file usually has them.
const SECTIONS: &[&str] = &[
    "server", "storage", "sources", "sinks", "routes", "tls", "admin", "notices",
];

/// TOML's own "duplicate key" names neither the key nor the way out: a table header written
/// twice is the usual slip in a long file, so that case says where the keys belong.
fn defined_twice(text: &str, span: std::ops::Range<usize>) -> String {
    let line_start = text
        .get(..span.start)
        .and_then(|before| before.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    if line.starts_with('[') && !line.starts_with("[[") {
        let header = line.split(']').next().unwrap_or(line);
        return format!(
            "{header}] appears twice; TOML allows each table once: move the keys of the second \
             {header}] under the first"
        );
    }
    let name = text.get(span).unwrap_or("").trim();
    format!("`{name}` is set twice in this table; TOML allows each key once: keep one of them")
}

/// Reads the file's shape. Syntax errors stop here (nothing after them can be trusted);
/// otherwise every shape problem is returned beside whatever could be read.
pub(super) fn read(text: &str) -> (RawConfig, Vec<Issue>) {
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end();
            let message = match message {
                "duplicate key" => defined_twice(text, span.clone()),
                other => other.to_string(),
            };
            return (RawConfig::default(), vec![Issue::new(span, "", message)]);
        }
    };
    let mut issues = Vec::new();
    let mut raw = RawConfig::default();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "server" => raw.server = section(value, "server", &mut issues),
            "storage" => raw.storage = section(value, "storage", &mut issues),
            "admin" => {
                // Present but unreadable still counts as configured: its problems are
                // reported, and the relay does not start without the listener it asked for.
                raw.admin = Some(section(value, "admin", &mut issues).unwrap_or_default())
            }
            "sources" => raw.sources = named(value, "sources", "source", &mut issues),
            "sinks" => raw.sinks = named(value, "sinks", "sink", &mut issues),
            "routes" => raw.routes = routes(value, &mut issues),
            "tls" => raw.tls = section(value, "tls", &mut issues),
            "notices" => raw.notices = section(value, "notices", &mut issues),
            other => issues.push(Issue::new(
                key.span(),
                segment(other),
                format!(
                    "unknown section{}",
                    hint(other, SECTIONS, "the sections are")
                ),
            )),
        }
    }
    (raw, issues)
}

/// One `[server]`-like table.
fn section<T: for<'de> Deserialize<'de>>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let Some(table) = value.get_ref().as_table() else {
        issues.push(Issue::new(
            value.span(),
            path,
            format!("must be a table; write [{path}] and its keys below it"),
        ));
        return None;
    };
    let known = known_keys::<T>(value, table, path, issues);
    deserialize(&known, path, issues)
}

/// `[sources.NAME]` or `[sinks.NAME]` tables.
fn named<T: for<'de> Deserialize<'de>>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    what: &str,
    issues: &mut Vec<Issue>,
) -> Vec<Entry<T>> {
    let Some(table) = value.get_ref().as_table() else {
        issues.push(Issue::new(
            value.span(),
            path,
            format!("must be a table of {path}; write one [{path}.NAME] table per {what}"),
        ));
        return Vec::new();
    };
    let mut entries = Vec::new();
    for (name, body) in table.iter() {
        let entry_path = format!("{path}.{}", segment(name.get_ref()));
        let name = Spanned::new(name.span(), name.get_ref().to_string());
        let Some(fields) = body.get_ref().as_table() else {
            issues.push(Issue::new(
                body.span(),
                &entry_path,
                format!("must be a table; write [{entry_path}] and its keys below it"),
            ));
            entries.push(Entry {
                name,
                keys: Vec::new(),
                body: None,
            });
            continue;
        };
        let keys = fields
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), k.span()))
            .collect();
        let known = known_keys::<T>(body, fields, &entry_path, issues);
        let body = deserialize(&known, &entry_path, issues);
        entries.push(Entry { name, keys, body });
    }
    entries
}

/// `[[routes]]`.
fn routes(
    value: &Spanned<DeValue<'_>>,
    issues: &mut Vec<Issue>,
) -> Vec<(usize, Spanned<RawRoute>)> {
    let Some(items) = value.get_ref().as_array() else {
        issues.push(Issue::new(
            value.span(),
            "routes",
            "must be an array of tables; write each route as [[routes]] (double brackets)",
        ));
        return Vec::new();
    };
    let mut routes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("routes[{i}]");
        let Some(table) = item.get_ref().as_table() else {
            issues.push(Issue::new(
                item.span(),
                &path,
                "must be a table with from, events and to; write it as [[routes]]",
            ));
            continue;
        };
        let known = known_keys::<RawRoute>(item, table, &path, issues);
        if let Some(route) = deserialize::<RawRoute>(&known, &path, issues) {
            routes.push((i, Spanned::new(item.span(), route)));
        }
    }
    routes
}

/// Reports every key of `table` that `T` does not take, and returns `value` without them, so
/// the rest of the entry is still checked: one misspelt key must not hide other problems.
fn known_keys<'i, T: for<'de> Deserialize<'de>>(
    value: &Spanned<DeValue<'i>>,
    table: &DeTable<'i>,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Spanned<DeValue<'i>> {
    let allowed = struct_fields::<T>();
    let mut ok = true;
    for (key, _) in table.iter() {
        let key_str = key.get_ref().as_ref();
        if !allowed.contains(&key_str) {
            ok = false;
            issues.push(Issue::new(
                key.span(),
                format!("{path}.{}", segment(key_str)),
                format!("unknown key{}", hint(key_str, allowed, "the keys here are")),
            ));
        }
    }
    if ok {
        return value.clone();
    }
    let mut known = DeTable::new();
    for (key, item) in table.iter() {
        if allowed.contains(&key.get_ref().as_ref()) {
            known.insert(key.clone(), item.clone());
        }
    }
    Spanned::new(value.span(), DeValue::Table(known))
}

/// Deserializes one value, turning a serde error into an [`Issue`] at the key it concerns.
fn deserialize<T: for<'de> Deserialize<'de>>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    match T::deserialize(ValueDeserializer::from(value.clone())) {
        Ok(t) => Some(t),
        Err(e) => {
            let span = e.span().unwrap_or_else(|| value.span());
            let key = key_at(path.to_string(), value, &span);
            // serde names Rust types; say what the file needs instead.
            let mut message = e
                .message()
                .trim_end()
                .replace("expected i64", "expected a whole number");
            if message.contains("expected a string") {
                message.push_str(string_form(&key));
            }
            issues.push(Issue::new(span, key, message));
            None
        }
    }
}

/// For a key given as a number where a string is needed: the form of the string, when the
/// key is a rate, a duration or a size (`rate = 5` is meant as `"5/s"`).
fn string_form(key: &str) -> &'static str {
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "rate" => {
            "; write a rate in quotes with its period, such as \"5/s\", \"100/m\" or \"1000/h\""
        }
        "max_body" | "max_buffered" | "max_file_size" => {
            "; write a size in quotes with its unit, such as \"25MiB\" or \"512KiB\""
        }
        "timeout" | "initial" | "max" | "retention" | "tolerance" | "header_timeout"
        | "body_timeout" | "shutdown_timeout" | "check_interval" | "interval" => {
            "; write a duration in quotes with its unit, such as \"30s\", \"5m\" or \"7d\""
        }
        _ => "",
    }
}

/// The dotted path of the innermost key whose key or value covers `span`.
fn key_at(mut path: String, value: &Spanned<DeValue<'_>>, span: &Range<usize>) -> String {
    let covers = |outer: Range<usize>| outer.start <= span.start && span.end <= outer.end;
    match value.get_ref() {
        DeValue::Table(table) => {
            for (k, v) in table.iter() {
                if covers(k.span()) || covers(v.span()) {
                    path.push('.');
                    path.push_str(&segment(k.get_ref()));
                    return key_at(path, v, span);
                }
            }
        }
        DeValue::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if covers(v.span()) {
                    path.push_str(&format!("[{i}]"));
                    return key_at(path, v, span);
                }
            }
        }
        _ => {}
    }
    path
}

/// A key as it appears in a dotted path: bare when TOML allows it, else quoted.
pub(super) fn segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// ` (did you mean "x"?)` for a near miss, else `; {intro}: a, b, c`.
pub(super) fn hint(got: &str, candidates: &[&str], intro: &str) -> String {
    match nearest(got, candidates.iter().copied()) {
        Some(best) => format!(" (did you mean \"{best}\"?)"),
        None if candidates.is_empty() => String::new(),
        None => format!("; {intro}: {}", candidates.join(", ")),
    }
}

/// The candidate closest to `got` by edit distance, if it is close enough to be a typo.
pub(super) fn nearest<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let got_lower = got.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (levenshtein(&got_lower, &c.to_ascii_lowercase()), c))
        .filter(|&(d, c)| d <= 2.max(c.chars().count() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by chars.
pub(super) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The field names a derived `Deserialize` struct accepts, read from serde itself so the
/// unknown-key check can never disagree with the struct.
pub(super) fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_or_table_written_twice_is_named() {
        let (_, issues) = read("[server]\nlisten = \"a\"\nlisten = \"b\"\n");
        assert_eq!(
            issues[0].message,
            "`listen` is set twice in this table; TOML allows each key once: keep one of them"
        );
        let (_, issues) = read("[sinks.chat]\nkind = \"slack\"\n\n[sinks.chat]\nurl = \"x\"\n");
        assert_eq!(
            issues[0].message,
            "[sinks.chat] appears twice; TOML allows each table once: move the keys of the \
             second [sinks.chat] under the first"
        );
    }

    #[test]
    fn struct_fields_lists_every_field() {
        assert_eq!(struct_fields::<RawStorage>(), &["path", "retention"]);
        assert_eq!(
            struct_fields::<RawRoute>(),
            &["from", "events", "to", "where"]
        );
        assert!(struct_fields::<RawSource>().contains(&"signing_token"));
    }

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("build-slack", "builds-slack"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn nearest_only_suggests_near_misses() {
        assert_eq!(nearest("sorces", SECTIONS.iter().copied()), Some("sources"));
        assert_eq!(nearest("Sinks", SECTIONS.iter().copied()), Some("sinks"));
        assert_eq!(nearest("zzzzzzzz", SECTIONS.iter().copied()), None);
    }

    #[test]
    fn segment_quotes_keys_that_need_it() {
        assert_eq!(segment("github"), "github");
        assert_eq!(segment("a.b"), "\"a.b\"");
        assert_eq!(segment(""), "\"\"");
    }

    #[test]
    fn a_string_or_list_keeps_each_span() {
        let text = "[sources.a]\nsecret = \"x\"\n[sources.b]\nsecret = [\"y\", \"z\"]\n";
        let (raw, issues) = read(text);
        assert!(issues.is_empty(), "{issues:?}");
        let a = raw.sources[0]
            .body
            .as_ref()
            .unwrap()
            .secret
            .as_ref()
            .unwrap();
        assert_eq!(a.get_ref().0.len(), 1);
        assert_eq!(&text[a.get_ref().0[0].span()], "\"x\"");
        let b = raw.sources[1]
            .body
            .as_ref()
            .unwrap()
            .secret
            .as_ref()
            .unwrap();
        let spans: Vec<_> = b.get_ref().0.iter().map(|s| &text[s.span()]).collect();
        assert_eq!(spans, ["\"y\"", "\"z\""]);
    }

    #[test]
    fn every_unknown_key_is_reported_and_the_rest_is_still_read() {
        let text = "[sources.a]\nkind = \"github\"\nsecrt = \"x\"\nenabld = true\n\
                    [sources.b]\nkind = \"none\"\n";
        let (raw, issues) = read(text);
        let keys: Vec<_> = issues.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["sources.a.enabld", "sources.a.secrt"]);
        assert!(
            issues[1].message.contains("did you mean \"secret\""),
            "{issues:?}"
        );
        // The entry's known keys are still read, so its other problems are found too.
        let a = raw.sources[0]
            .body
            .as_ref()
            .expect("known keys of sources.a are read");
        assert!(a.secret.is_none());
        assert!(raw.sources[1].body.is_some());
    }

    #[test]
    fn type_errors_name_the_nested_key() {
        let text = "[sinks.s]\nretry = { max_attempts = \"many\" }\n";
        let (_, issues) = read(text);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "sinks.s.retry.max_attempts");
        assert_eq!(&text[issues[0].span.clone().unwrap()], "\"many\"");
    }
}
