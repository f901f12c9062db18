//! The Dependency-Track sink (`kind = "dependency-track"`): uploads the CycloneDX BOM an
//! event carries to `{url}/api/v1/bom` with the `X-Api-Key` header, into a project given by
//! UUID or by name and version (templates rendered from the event, with `autoCreate`).
//!
//! A BOM whose base64 form fits Dependency-Track's JSON string limit goes as
//! `PUT /api/v1/bom` with a JSON body; a larger one as `POST /api/v1/bom` multipart, which
//! has no such limit. Dependency-Track answers `{"token": "…"}` (the handle of its
//! asynchronous processing), recorded as the delivery's message id.
//!
//! Invariants: an event without a CycloneDX BOM is skipped (not retried, not dead-lettered);
//! 400, 401, 403 and 404 are permanent and carry Dependency-Track's reason; 408, 429, 5xx
//! and transport errors are retried. The API key, the URL and the BOM never appear in a
//! message or log line.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use rand::RngExt as _;

use super::machine::{self, Document, NoDocument};
use super::webhook::snippet;
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{
    DependencyTrackProject, DependencyTrackSinkConfig, DocumentLocation, Outbound,
};
use crate::template::{EventContext, Missing, Template};

/// Dependency-Track reads `PUT /api/v1/bom` with Jackson, whose default
/// `StreamReadConstraints` cap one JSON string at 20,000,000 characters; its API docs say
/// to use the multipart `POST` beyond that. The base64 `bom` is 4/3 of the BOM's size.
const PUT_LIMIT_BASE64: usize = 20_000_000;
/// How far into an XML document the CycloneDX namespace is looked for.
const XML_SNIFF: usize = 64 * 1024;
const API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// Uploads BOMs to one Dependency-Track server.
pub struct DependencyTrackSink {
    name: Arc<str>,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    api_key: HeaderValue,
    project: Project,
    bom: DocumentLocation,
    timeout: Duration,
}

/// The project, with its templates compiled once.
enum Project {
    Uuid(String),
    Named {
        /// Plain-text templates; a value the event lacks fails the render.
        name: Box<Template>,
        version: Box<Template>,
        auto_create: bool,
    },
}

// By hand: the URL and the key stay out of Debug.
impl fmt::Debug for DependencyTrackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyTrackSink")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The project fields of one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Uuid(String),
    Named {
        name: String,
        version: String,
        auto_create: bool,
    },
}

impl DependencyTrackSink {
    /// Builds the sink and its HTTP client (trust and proxy from `outbound`); `timeout`
    /// bounds one whole attempt.
    pub fn new(
        name: &str,
        config: &DependencyTrackSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<DependencyTrackSink, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        let mut endpoint = reqwest::Url::parse(&config.url).map_err(|e| {
            fail(format!(
                "url is not a valid URL ({e}); set [sinks.{name}] url to the server's base URL"
            ))
        })?;
        // Joined relative to the base, so a server under a path prefix keeps it.
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        let endpoint = endpoint
            .join("api/v1/bom")
            .map_err(|e| fail(format!("url cannot take the API path ({e})")))?;
        let mut api_key = HeaderValue::from_bytes(config.api_key.expose()).map_err(|_| {
            fail(format!(
                "api_key is not a valid header value; check [sinks.{name}] api_key for line breaks"
            ))
        })?;
        api_key.set_sensitive(true);
        let project = match &config.project {
            DependencyTrackProject::Uuid(uuid) => Project::Uuid(uuid.clone()),
            DependencyTrackProject::Named {
                name: name_template,
                version,
                auto_create,
            } => {
                // The message templates' engine, escaping and context; a field the event
                // lacks is an error, not an empty or partial project name.
                let compile = |source: &crate::config::TemplateSource| {
                    Template::compile_with(
                        &source.text,
                        crate::template::Target::Plain,
                        &source.at,
                        Missing::Fail,
                    )
                    .map(Box::new)
                    .map_err(|e| fail(e.to_string()))
                };
                Project::Named {
                    name: compile(name_template)?,
                    version: compile(version)?,
                    auto_create: *auto_create,
                }
            }
        };
        Ok(DependencyTrackSink {
            name: Arc::from(name),
            client: super::http::client(name, outbound, timeout)?,
            endpoint,
            api_key,
            project,
            bom: config.bom.clone(),
            timeout,
        })
    }

    /// The project of this event: the UUID, or the rendered name and version.
    fn target(&self, delivery: &Delivery) -> Result<Target, String> {
        let (name, version, auto_create) = match &self.project {
            Project::Uuid(uuid) => return Ok(Target::Uuid(uuid.clone())),
            Project::Named {
                name,
                version,
                auto_create,
            } => (name, version, *auto_create),
        };
        let event = EventContext::new(delivery);
        let render = |key: &str, template: &Template| -> Result<String, String> {
            let text = template.render(&event).map_err(|e| {
                format!(
                    "project_{key} cannot be rendered for this event: {}; fix [sinks.{}] \
                     project_{key}",
                    e.message, self.name
                )
            })?;
            let text = text.trim().to_string();
            if text.is_empty() || text.chars().any(char::is_control) {
                return Err(format!(
                    "project_{key} renders {} for this event; fix [sinks.{}] project_{key}",
                    if text.is_empty() {
                        "empty"
                    } else {
                        "a control character"
                    },
                    self.name
                ));
            }
            Ok(text)
        };
        Ok(Target::Named {
            name: render("name", name)?,
            version: render("version", version)?,
            auto_create,
        })
    }

    /// `PUT /api/v1/bom` with the BOM base64-encoded in JSON.
    fn put(&self, target: &Target, bom_base64: String) -> reqwest::RequestBuilder {
        let mut body = serde_json::Map::new();
        match target {
            Target::Uuid(uuid) => {
                body.insert("project".into(), uuid.clone().into());
            }
            Target::Named {
                name,
                version,
                auto_create,
            } => {
                body.insert("projectName".into(), name.clone().into());
                body.insert("projectVersion".into(), version.clone().into());
                body.insert("autoCreate".into(), (*auto_create).into());
            }
        }
        body.insert("bom".into(), bom_base64.into());
        let bytes = serde_json::to_vec(&body).expect("a JSON map always serializes");
        self.client
            .put(self.endpoint.clone())
            .header(API_KEY, self.api_key.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(bytes)
    }

    /// `POST /api/v1/bom` as `multipart/form-data`, the BOM as a file part.
    fn post(&self, target: &Target, bom: &Bytes) -> reqwest::RequestBuilder {
        let boundary = format!("hookrelay-{:032x}", rand::rng().random::<u128>());
        let mut fields: Vec<(&str, String)> = Vec::new();
        match target {
            Target::Uuid(uuid) => fields.push(("project", uuid.clone())),
            Target::Named {
                name,
                version,
                auto_create,
            } => {
                fields.push(("projectName", name.clone()));
                fields.push(("projectVersion", version.clone()));
                fields.push(("autoCreate", auto_create.to_string()));
            }
        }
        let (file, mime) = if looks_like_xml(bom) {
            ("bom.xml", "application/xml")
        } else {
            ("bom.json", "application/json")
        };
        let body = multipart(&boundary, &fields, file, mime, bom);
        self.client
            .post(self.endpoint.clone())
            .header(API_KEY, self.api_key.clone())
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
    }

    /// What Dependency-Track's answer means.
    fn classify(&self, answer: machine::Answer) -> Outcome {
        let status = answer.status;
        let code = status.as_u16();
        if status.is_success() {
            let token = serde_json::from_slice::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("token")?.as_str().map(str::to_string));
            // The token (Dependency-Track's handle on its processing of this BOM) is
            // recorded with the attempt and logged as the delivery's message id.
            return Outcome::Delivered {
                status: Some(code),
                message_id: token,
            };
        }
        let reason = reason(&answer.body).map_or(String::new(), |r| format!(": \"{r}\""));
        let answered = format!(
            "Dependency-Track answered {}{reason}",
            machine::status_text(status)
        );
        let error = |message: String| SinkError::new(Some(code), message);
        if machine::transient(status) {
            return Outcome::Retry {
                after: answer.retry_after,
                error: error(answered),
            };
        }
        let name = &self.name;
        let fix = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => format!(
                "Give the key in [sinks.{name}] api_key the BOM_UPLOAD permission (and \
                 PROJECT_CREATION_UPLOAD with auto_create) and access to the project."
            ),
            StatusCode::BAD_REQUEST => {
                "Dependency-Track rejected this BOM; see its reason.".to_string()
            }
            StatusCode::PAYLOAD_TOO_LARGE => "The BOM is larger than the server takes, most \
                 often a proxy in front of Dependency-Track (nginx's client_max_body_size is \
                 1 MB by default): raise that limit for /api/v1/bom."
                .to_string(),
            StatusCode::NOT_FOUND => format!(
                "Fix [sinks.{name}] project or project_name/project_version, or set \
                 auto_create = true."
            ),
            _ if status.is_redirection() => {
                format!("Set [sinks.{name}] url to the server's final base URL.")
            }
            _ => "Dependency-Track refused the upload; see its reason.".to_string(),
        };
        Outcome::Failed(error(format!("{answered}; not retrying. {fix}")))
    }
}

impl Sink for DependencyTrackSink {
    fn kind(&self) -> &'static str {
        "dependency-track"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let bom = match machine::find(&delivery.event.body, &self.bom, false) {
            Ok(mut docs) => docs.swap_remove(0),
            Err(NoDocument::Missing(why)) => {
                return Outcome::Skipped {
                    reason: format!("no CycloneDX BOM in this event: {why}"),
                };
            }
            Err(NoDocument::Invalid(why)) => {
                return Outcome::Failed(SinkError::new(
                    None,
                    format!("the event's BOM cannot be read: {why}"),
                ));
            }
        };
        if let Err(why) = check_cyclonedx(&bom) {
            return Outcome::Skipped {
                reason: format!("no CycloneDX BOM in this event: {why}"),
            };
        }
        let target = match self.target(delivery) {
            Ok(target) => target,
            Err(message) => {
                return Outcome::Failed(SinkError::new(None, message));
            }
        };
        let request = if base64_len(bom.bytes.len()) <= PUT_LIMIT_BASE64 {
            self.put(&target, BASE64.encode(&bom.bytes))
        } else {
            self.post(&target, &bom.bytes)
        };
        match machine::send(request, &self.name, self.timeout).await {
            Ok(answer) => self.classify(answer),
            Err(outcome) => outcome,
        }
    }
}

/// Length of the padded base64 form of `n` bytes.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

/// Whether a document is a CycloneDX BOM: JSON with `"bomFormat": "CycloneDX"`, or XML in
/// the CycloneDX namespace. Says what it found otherwise.
fn check_cyclonedx(doc: &Document) -> Result<(), String> {
    if looks_like_xml(&doc.bytes) {
        let head = &doc.bytes[..doc.bytes.len().min(XML_SNIFF)];
        let needle = b"http://cyclonedx.org/schema/bom";
        if head.windows(needle.len()).any(|w| w == needle) {
            return Ok(());
        }
        return Err("the document is XML outside the CycloneDX namespace".to_string());
    }
    match serde_json::from_slice::<serde_json::Value>(&doc.bytes) {
        Ok(v) if v.get("bomFormat").and_then(|f| f.as_str()) == Some("CycloneDX") => Ok(()),
        Ok(_) => Err("the document is JSON without \"bomFormat\": \"CycloneDX\"".to_string()),
        Err(_) => Err("the document is neither JSON nor XML".to_string()),
    }
}

/// Whether a document starts (after whitespace and a byte order mark) with `<`.
fn looks_like_xml(bytes: &[u8]) -> bool {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// Most entries of a problem document's `errors` quoted in a reason.
const MAX_ERRORS: usize = 3;

/// Dependency-Track's reason: the `detail` or `title` of a problem document, with the
/// first of its `errors` (for an invalid BOM, the schema violations: the part that says
/// what to fix), else the start of the body.
fn reason(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let errors: Vec<&str> = v
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|list| {
                list.iter()
                    .filter_map(|e| e.as_str())
                    .take(MAX_ERRORS)
                    .collect()
            })
            .unwrap_or_default();
        let headline = ["detail", "title", "message"]
            .into_iter()
            .find_map(|field| v.get(field).and_then(|t| t.as_str()));
        let text = match (headline, errors.is_empty()) {
            (Some(headline), true) => headline.to_string(),
            (Some(headline), false) => format!("{headline}: {}", errors.join("; ")),
            (None, false) => errors.join("; "),
            (None, true) => return snippet(body),
        };
        return snippet(text.as_bytes());
    }
    snippet(body)
}

/// A `multipart/form-data` body: text fields, then the file part `bom`.
fn multipart(
    boundary: &str,
    fields: &[(&str, String)],
    file: &str,
    mime: &str,
    content: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 512);
    for (name, value) in fields {
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"bom\"; filename=\"{file}\"\r\n\
             Content-Type: {mime}\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(content);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_boms_reason_keeps_the_schema_errors() {
        let body = br#"{"status":400,"title":"The uploaded BOM is invalid","detail":"Schema validation failed","errors":["$.components[0].type: does not have a value in the enumeration [application, library]","$.metadata: is missing",7]}"#;
        assert_eq!(
            reason(body).unwrap(),
            "Schema validation failed: $.components[0].type: does not have a value in the \
             enumeration [application, library]; $.metadata: is missing"
        );
        assert_eq!(reason(br#"{"title":"Forbidden"}"#).unwrap(), "Forbidden");
        assert_eq!(
            reason(br#"{"errors":["a","b","c","d"]}"#).unwrap(),
            "a; b; c"
        );
        assert_eq!(
            reason(b"<html><title>413 Request Entity Too Large</title></html>").unwrap(),
            "<html><title>413 Request Entity Too Large</title></html>"
        );
        assert_eq!(reason(b"  "), None);
    }
}
