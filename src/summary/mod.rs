//! The event summary: one small, documented record of what an event is about (`action`,
//! `repository`, `component`, `path`, `version`, `actor`, `url`, `ref`), the same for every
//! source kind. Routes filter on it (`where`), templates show it.
//!
//! Each product's file reads the fields from the body as that product sends it; a field the
//! product does not send stays `None`, never guessed. `action` is normalised across products
//! where the meaning is the same (an upload to Nexus, a deploy to Artifactory and a push to
//! Harbor are all `uploaded`), and is otherwise the product's own word. A source's
//! `summary = { field = "/json/pointer" }` fills or overrides fields from the body; for the
//! generic kinds (`standard`, `hmac`, `token`, `none`) that is the only way to fill one.
//!
//! Invariants: pure and synchronous; knows nothing of HTTP servers, the store or ingress.
//! Nothing here runs unless asked: a summary costs one JSON parse of the body, which routing
//! only pays for an event that reaches a route whose `where` needs it.

mod artifactory;
mod bitbucket;
mod gitea;
mod github;
mod gitlab;
mod harbor;
mod nexus;

use serde::Serialize;
use serde_json::Value;

use crate::config::{Product, SourceConfig, SourceKind, SummaryField};

/// What an event is about, as far as its body tells. Serialized as an object holding only
/// the known fields, under the names used in the config (`ref` for [`Summary::git_ref`]),
/// so a template's `summary.version is defined` says whether the event has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// What happened: `uploaded`, `deleted`, `downloaded`, `pushed`, `tag`, `released`,
    /// `merge request`, `pipeline`, `scanned`, …, else the product's own word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The artifact repository (Nexus, Artifactory), or the source or image repository
    /// (`owner/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The component, package, image or build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The path of the file inside its repository.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The component's version, image tag or release tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Who did it (a user name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// A link to what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The git ref, in full: `refs/heads/main`, `refs/tags/v1.2`.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

impl Summary {
    /// The value of one field.
    pub fn get(&self, field: SummaryField) -> Option<&str> {
        self.slot(field).as_deref()
    }

    fn slot(&self, field: SummaryField) -> &Option<String> {
        match field {
            SummaryField::Action => &self.action,
            SummaryField::Repository => &self.repository,
            SummaryField::Component => &self.component,
            SummaryField::Path => &self.path,
            SummaryField::Version => &self.version,
            SummaryField::Actor => &self.actor,
            SummaryField::Url => &self.url,
            SummaryField::Ref => &self.git_ref,
        }
    }

    fn slot_mut(&mut self, field: SummaryField) -> &mut Option<String> {
        match field {
            SummaryField::Action => &mut self.action,
            SummaryField::Repository => &mut self.repository,
            SummaryField::Component => &mut self.component,
            SummaryField::Path => &mut self.path,
            SummaryField::Version => &mut self.version,
            SummaryField::Actor => &mut self.actor,
            SummaryField::Url => &mut self.url,
            SummaryField::Ref => &mut self.git_ref,
        }
    }
}

/// Which built-in reading applies to a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    /// Generic kinds: only the configured pointers.
    Nothing,
    Github,
    Gitlab,
    Product(Product),
}

/// Computes the summaries of one source's events; built once per source. The default fills
/// nothing.
#[derive(Debug, Clone)]
pub struct Summarizer {
    builtin: Builtin,
    /// `summary = { field = "/pointer" }` of the source, applied after the built-in reading.
    pointers: Vec<(SummaryField, String)>,
}

impl Default for Summarizer {
    fn default() -> Summarizer {
        Summarizer {
            builtin: Builtin::Nothing,
            pointers: Vec::new(),
        }
    }
}

impl Summarizer {
    /// The summarizer for a validated source.
    pub fn new(source: &SourceConfig) -> Summarizer {
        let builtin = match &source.kind {
            SourceKind::Github { .. } => Builtin::Github,
            SourceKind::Gitlab { .. } => Builtin::Gitlab,
            SourceKind::Preset { product, .. } => Builtin::Product(*product),
            SourceKind::Standard { .. }
            | SourceKind::Hmac { .. }
            | SourceKind::Token { .. }
            | SourceKind::None { .. } => Builtin::Nothing,
        };
        Summarizer {
            builtin,
            pointers: source.summary.clone(),
        }
    }

    /// The summary of an event with this `event_type` and `body`; a body that is not JSON
    /// has an empty summary.
    pub fn summarize(&self, event_type: Option<&str>, body: &[u8]) -> Summary {
        match body_json(body) {
            Some(json) => self.summarize_json(event_type, &json),
            None => Summary::default(),
        }
    }

    /// Like [`Summarizer::summarize`], on a body already parsed.
    pub fn summarize_json(&self, event_type: Option<&str>, json: &Value) -> Summary {
        let mut summary = Summary::default();
        match self.builtin {
            Builtin::Nothing => {}
            Builtin::Github => github::fill(event_type, json, &mut summary),
            Builtin::Gitlab => gitlab::fill(json, &mut summary),
            Builtin::Product(Product::Nexus) => nexus::fill(json, &mut summary),
            Builtin::Product(Product::Artifactory) => artifactory::fill(json, &mut summary),
            Builtin::Product(Product::Harbor) => harbor::fill(json, &mut summary),
            Builtin::Product(Product::Gitea) => gitea::fill(event_type, json, &mut summary),
            Builtin::Product(Product::Bitbucket) => bitbucket::fill(event_type, json, &mut summary),
        }
        for (field, pointer) in &self.pointers {
            if let Some(value) = text(json, pointer) {
                *summary.slot_mut(*field) = Some(value);
            }
        }
        summary
    }
}

/// An event's body as JSON, for summaries, routes' `where` and templates: the body itself,
/// or, for a form-encoded body (GitHub's "application/x-www-form-urlencoded" content type),
/// the JSON in its `payload` field. `None` when it is neither. The body stored and relayed is
/// always the one received.
pub fn body_json(body: &[u8]) -> Option<Value> {
    match serde_json::from_slice(body) {
        Ok(json) => Some(json),
        // A JSON body never starts with a letter; a form body names its fields.
        Err(_) if body.starts_with(b"payload=") => form_urlencoded::parse(body)
            .find(|(name, _)| name == "payload")
            .and_then(|(_, payload)| serde_json::from_str(&payload).ok()),
        Err(_) => None,
    }
}

/// The summary of an event of `source`, from its event type and body: for templates and
/// the admin view, which hold a stored event rather than a request.
pub fn summarize(source: &SourceConfig, event_type: Option<&str>, body: &[u8]) -> Summary {
    Summarizer::new(source).summarize(event_type, body)
}

/// The text of the value at `pointer`: a non-empty string, or a number or boolean as JSON
/// writes it. `None` for anything else (absent, null, empty, object, array).
pub fn text(json: &Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `refs/heads/NAME` or `refs/tags/NAME` for a branch or tag given by kind and short name,
/// as forges that send them apart (`ref_type`, `type`) describe them.
fn full_ref(kind: Option<&str>, name: Option<String>) -> Option<String> {
    let prefix = match kind? {
        "branch" | "BRANCH" => "refs/heads/",
        "tag" | "TAG" => "refs/tags/",
        _ => return None,
    };
    Some(format!("{prefix}{}", name?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::PresetScheme;

    /// A documented sample body from `tests/fixtures/presets/`.
    pub(crate) fn sample(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/presets/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub(crate) fn source(kind: SourceKind, summary: &[(SummaryField, &str)]) -> SourceConfig {
        SourceConfig {
            name: "s".into(),
            enabled: true,
            kind,
            summary: summary.iter().map(|(f, p)| (*f, p.to_string())).collect(),
        }
    }

    pub(crate) fn preset(product: Product) -> SourceConfig {
        source(
            SourceKind::Preset {
                product,
                scheme: PresetScheme::Signature,
                secrets: Vec::new(),
            },
            &[],
        )
    }

    #[test]
    fn serializes_the_known_fields_under_their_config_names() {
        let s = Summary {
            action: Some("pushed".into()),
            git_ref: Some("refs/heads/main".into()),
            ..Summary::default()
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action": "pushed", "ref": "refs/heads/main"})
        );
        let full = Summary {
            action: Some("a".into()),
            repository: Some("b".into()),
            component: Some("c".into()),
            path: Some("d".into()),
            version: Some("e".into()),
            actor: Some("f".into()),
            url: Some("g".into()),
            git_ref: Some("h".into()),
        };
        let json = serde_json::to_value(&full).unwrap();
        assert_eq!(json.as_object().unwrap().len(), SummaryField::ALL.len());
        for (name, field) in SummaryField::ALL {
            assert_eq!(field.name(), name);
            assert_eq!(full.get(field), json[name].as_str(), "{name}");
        }
    }

    #[test]
    fn generic_sources_fill_only_their_pointers_and_pointers_override_presets() {
        let none = source(
            SourceKind::None {
                event_type: None,
                delivery_id: None,
            },
            &[
                (SummaryField::Repository, "/repo/name"),
                (SummaryField::Version, "/build"),
                (SummaryField::Actor, "/who"),
            ],
        );
        let body = br#"{"repo":{"name":"app"},"build":42,"who":""}"#;
        let s = summarize(&none, Some("x"), body);
        assert_eq!(s.repository.as_deref(), Some("app"));
        assert_eq!(s.version.as_deref(), Some("42"));
        assert_eq!(s.actor, None, "an empty string is not a value");
        assert_eq!(s.action, None, "never guessed from the event type");
        assert_eq!(summarize(&none, None, b"not json"), Summary::default());

        let mut nexus = preset(Product::Nexus);
        nexus.summary = vec![(SummaryField::Repository, "/nodeId".into())];
        let s = summarize(&nexus, None, &sample("nexus-component.json"));
        assert_eq!(
            s.repository.as_deref(),
            Some("52905B51-085CCABB-CEBBEAAD-16F1B5D0-B3F1CA50")
        );
        assert_eq!(
            s.version.as_deref(),
            Some("1.4.2"),
            "the rest is the preset's"
        );
    }

    #[test]
    fn full_refs_only_for_known_kinds() {
        assert_eq!(
            full_ref(Some("tag"), Some("v1".into())).as_deref(),
            Some("refs/tags/v1")
        );
        assert_eq!(
            full_ref(Some("BRANCH"), Some("main".into())).as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(full_ref(Some("commit"), Some("x".into())), None);
        assert_eq!(full_ref(None, Some("x".into())), None);
    }
}
