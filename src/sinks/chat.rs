//! What the chat sinks (`slack`, `discord`, `teams`) share: an HTTP client that POSTs JSON
//! and reads a bounded answer, transport errors without the URL, and templates rendered with
//! a failure that says which template to fix.
//!
//! Invariant: no URL, token or body in any message built here (chat webhook URLs are
//! credentials); a template that cannot render an event fails that delivery permanently,
//! since every retry would fail alike (fix it, then replay the dead letter).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::webhook::{parse_retry_after, snippet};
use super::{Delivery, Outcome, SinkBuildError, SinkError};
use crate::config::{Outbound, Secret, TemplateSource};
use crate::template::{DEFAULT_MESSAGE, EventContext, Target, Template, TemplateError};

/// How much of an answer is read: enough for any chat API's JSON reply.
const READ_LIMIT: usize = 64 * 1024;

/// One sink's HTTP client.
#[derive(Debug)]
pub(super) struct Http {
    name: Arc<str>,
    client: reqwest::Client,
    timeout: Duration,
}

/// A service's answer: status, headers and the start of its body.
#[derive(Debug)]
pub(super) struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// Up to [`READ_LIMIT`] bytes of the body.
    pub body: Vec<u8>,
}

impl Answer {
    /// `Retry-After`, in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `status` and a one-line quote of the body, for error messages.
    pub fn describe(&self) -> String {
        let code = self.status.as_u16();
        let status = match self.status.canonical_reason() {
            Some(reason) => format!("{code} {reason}"),
            None => code.to_string(),
        };
        match snippet(&self.body) {
            Some(s) => format!("{status}: \"{s}\""),
            None => status,
        }
    }

    /// A redirect, which is never followed (it would send the message where the operator did
    /// not say): a dead letter saying which URL to fix. `said` quotes the answer; the
    /// `Location` is not quoted, since a chat webhook's URL is a secret.
    pub fn redirected(&self, sink: &str, said: String) -> Outcome {
        Outcome::Failed(self.error(format!(
            "{said}; not retrying. The URL redirects elsewhere: set [sinks.{sink}] url to the \
             final address."
        )))
    }

    /// A failure that carries this answer's status.
    pub fn error(&self, message: String) -> SinkError {
        SinkError::new(Some(self.status.as_u16()), message)
    }
}

impl Http {
    /// A client for sink `name` with its trust, client certificate and proxy settings;
    /// `timeout` bounds one whole attempt.
    pub fn new(name: &str, outbound: &Outbound, timeout: Duration) -> Result<Http, SinkBuildError> {
        let client = super::http::client(name, outbound, timeout)?;
        Ok(Http {
            name: Arc::from(name),
            client,
            timeout,
        })
    }

    /// POSTs `body` as JSON to `url`, with a bearer token when given. A transport failure
    /// is already an outcome (retry, without the URL).
    pub async fn post_json(
        &self,
        url: &reqwest::Url,
        body: &serde_json::Value,
        bearer: Option<&Secret>,
    ) -> Result<Answer, Outcome> {
        let mut request = self
            .client
            .post(url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(serde_json::to_vec(body).expect("a JSON value always serializes"));
        if let Some(token) = bearer {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(token.expose());
            let mut value = HeaderValue::from_bytes(&value).map_err(|_| {
                Outcome::Failed(SinkError::new(
                    None,
                    format!(
                        "the token is not a valid header value; fix [sinks.{}] token",
                        self.name
                    ),
                ))
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let mut response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        super::http::proxy_refused(&self.name, status)?;
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while body.len() < READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = READ_LIMIT - body.len();
                    body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                // The status is what counts; a body cut short changes nothing.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn transport(&self, err: reqwest::Error) -> Outcome {
        Outcome::Retry {
            after: None,
            error: super::http::transport_error(&self.name, err, self.timeout),
        }
    }
}

/// Parses a URL checked by config; the error never echoes it.
pub(super) fn parse_url(name: &str, key: &str, text: &str) -> Result<reqwest::Url, SinkBuildError> {
    reqwest::Url::parse(text).map_err(|e| SinkBuildError {
        sink: name.to_string(),
        message: format!("{key} is not a valid URL ({e}); fix [sinks.{name}] {key}"),
    })
}

/// Compiles a configured template, or the built-in message, for `target`.
pub(super) fn compile(
    name: &str,
    source: Option<&TemplateSource>,
    default: &str,
    target: Target,
) -> Result<Template, SinkBuildError> {
    match source {
        Some(s) => Template::compile(&s.text, target, &s.at),
        // Built-in messages fold each event value onto one line: their first line is a
        // headline (an embed or card title, a mail's subject).
        None => Template::built_in(
            default,
            target,
            &format!("built-in template of sink \"{name}\""),
        ),
    }
    .map_err(|e| template_build_error(name, &e))
}

/// The build error for a template that does not compile.
pub(super) fn template_build_error(name: &str, err: &TemplateError) -> SinkBuildError {
    SinkBuildError {
        sink: name.to_string(),
        // `file:line:col: key: what`, as the config loader words a problem.
        message: err.to_string(),
    }
}

/// Compiles the message template of a chat sink.
pub(super) fn message_template(
    name: &str,
    source: Option<&TemplateSource>,
    target: Target,
) -> Result<Template, SinkBuildError> {
    compile(name, source, DEFAULT_MESSAGE, target)
}

/// Renders `template` for `delivery`; a failure of the user's template is permanent for
/// this event. A built-in message that fails (a defect of hookrelay's) falls back to one
/// line naming the event, and says so in the log.
pub(super) fn render(template: &Template, event: &EventContext) -> Result<String, Outcome> {
    template.render(event).or_else(|e| {
        if template.is_built_in() {
            tracing::warn!(template = %e.at, error = %e.message, source = %event.source, event_id = %event.event_id, "a built-in message could not render this event; sent a one-line fallback (please report it)");
            return Ok(template.fallback(event));
        }
        Err(e)
    }).map_err(|e| {
        Outcome::Failed(SinkError::new(
            None,
            format!(
                "template at {} cannot render this event: {}; fix the template, then replay \
                 the dead letter",
                e.at, e.message
            ),
        ))
    })
}

/// The context of a delivery, parsed once per attempt.
pub(super) fn context(delivery: &Delivery) -> EventContext {
    EventContext::new(delivery)
}

/// Splits rendered text into its headline (first non-empty line) and the rest, both trimmed.
pub(super) fn headline(text: &str) -> (String, String) {
    let text = text.trim();
    match text.split_once('\n') {
        Some((first, rest)) => (first.trim().to_string(), rest.trim().to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// At most `max` characters of markup, cut cleanly: at a line end when one is near, never
/// inside a `<…>` (Slack link or mention), a `[label](url)` (markdown link) or an `&…;`
/// entity, nor after a lone backslash; a cut text ends with `…`.
///
/// Only a construct that is whole in `text` and spans the cut moves it: a lone `&`, `<` or
/// `[` that an event brought in (Discord and Teams keep `&`, Slack keeps `[`) is plain text,
/// and cutting after it loses nothing.
pub(super) fn cut_markup(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
    // Prefer the last line break in the final fifth.
    if let Some(nl) = text[..end].rfind('\n')
        && text[..nl].chars().count() >= keep * 4 / 5
    {
        end = nl;
    }
    // Each step moves the cut to a construct's start, strictly left: this ends.
    while let Some(start) = construct_across(text, end) {
        end = start;
    }
    let mut head = text[..end].trim_end().to_string();
    while head.ends_with('\\') && !head.ends_with("\\\\") {
        head.pop();
    }
    head.push('…');
    head
}

/// The start of a whole markup construct that begins before byte `cut` and ends after it.
fn construct_across(text: &str, cut: usize) -> Option<usize> {
    let before = &text[..cut];
    // An entity: `&` then letters, digits or `#`, then `;` at or past the cut. The longest
    // the escapers write (`&#x1F600;`) is short, so only the last few bytes can hold its start.
    if let Some(amp) = before.rfind('&').filter(|&amp| cut - amp <= 10) {
        let name = text[amp + 1..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
            .count();
        let semicolon = amp + 1 + name;
        if name > 0 && semicolon >= cut && text[semicolon..].starts_with(';') {
            return Some(amp);
        }
    }
    // An angle construct on one line: `<` before the cut, its `>` at or after it.
    if let Some(open) = before.rfind('<') {
        let inside = &before[open..];
        if !inside.contains(['>', '\n'])
            && let Some(close) = text[cut..].find(['>', '<', '\n'])
            && text[cut + close..].starts_with('>')
        {
            return Some(open);
        }
    }
    // A markdown link `[label](url)` on one line whose `[` is not escaped.
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    let mut search = &before[line_start..];
    while let Some(open) = search.rfind('[') {
        let start = line_start + open;
        if !text[..start].ends_with('\\')
            && let Some(end) = markdown_link_end(&text[start..])
        {
            return (start + end > cut).then_some(start);
        }
        search = &search[..open];
    }
    None
}

/// The length of the `[label](url)` link at the start of `text`, if one is there: the label
/// without a line break or unescaped `]`, then `(`, then a url without spaces up to `)`.
fn markdown_link_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b']' => break,
            b'\n' => return None,
            _ => i += 1,
        }
    }
    if bytes.get(i) != Some(&b']') || bytes.get(i + 1) != Some(&b'(') {
        return None;
    }
    let url = &text[i + 2..];
    let close = url.find([')', ' ', '\n'])?;
    url[close..].starts_with(')').then_some(i + 2 + close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A template that reads fine on the sample event and fails on one whose `boom` is an
    /// object (slicing a map).
    const FAILS_ON_BOOM: &str = "{% if body.boom is defined %}{{ body.boom[:1] }}{% endif %}x";

    fn boom_event() -> EventContext {
        let mut delivery = crate::sinks::test_delivery();
        let event = std::sync::Arc::make_mut(&mut delivery.event);
        event.source = std::sync::Arc::from("gh");
        event.event_type = Some("push <@here>".into());
        event.body = bytes::Bytes::from_static(br#"{"boom": {"a": 1}}"#);
        context(&delivery)
    }

    #[test]
    fn a_built_in_message_that_cannot_render_falls_back_to_one_escaped_line() {
        let built_in = Template::built_in(FAILS_ON_BOOM, Target::Slack, "built-in").unwrap();
        assert_eq!(
            render(&built_in, &boom_event()).unwrap(),
            "push &lt;@here&gt; from gh"
        );
    }

    #[test]
    fn a_users_template_that_cannot_render_is_a_permanent_failure_naming_it() {
        let own = Template::compile(FAILS_ON_BOOM, Target::Slack, "f.toml:3:1: sinks.s.template")
            .unwrap();
        match render(&own, &boom_event()) {
            Err(Outcome::Failed(error)) => assert!(
                error
                    .message
                    .starts_with("template at f.toml:3:1: sinks.s.template cannot render"),
                "{}",
                error.message
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cutting_never_splits_a_link_an_entity_or_an_escape() {
        assert_eq!(cut_markup("abc", 3), "abc");
        assert_eq!(
            cut_markup("see <https://x.example/a|label> now", 20),
            "see…"
        );
        assert_eq!(cut_markup("a &amp; b", 5), "a…");
        assert_eq!(cut_markup("x [label](https://x.example) y", 15), "x…");
        assert_eq!(cut_markup("abcd\\*efgh", 6), "abcd…");
        let long = format!("{}\n{}", "a".repeat(90), "b".repeat(50));
        assert_eq!(cut_markup(&long, 100), format!("{}…", "a".repeat(90)));
        for max in 1..40 {
            let out = cut_markup("<https://x|y> &lt; [a](b) \\* tail text", max);
            assert!(out.chars().count() <= max, "{max}: {out}");
        }
    }

    #[test]
    fn a_lone_ampersand_angle_or_bracket_from_an_event_does_not_pull_the_cut_back() {
        let lines: Vec<String> = (0..100)
            .map(|i| format!("line {i} {}", "x".repeat(100)))
            .collect();
        for lone in ["Fix A & B", "a < b", "[JIRA-1] fix", "see [notes] later"] {
            let text = format!("{lone}\n{}", lines.join("\n"));
            let cut = cut_markup(&text, 4000);
            assert!(
                cut.chars().count() > 3800,
                "{lone:?} pulled the cut back to {} chars",
                cut.chars().count()
            );
            assert!(cut.chars().count() <= 4000);
        }
        // Whole constructs spanning the cut still move it, wherever they are.
        let text = format!("{} [label](https://x.example/path) tail", "a".repeat(50));
        assert_eq!(cut_markup(&text, 60), format!("{}…", "a".repeat(50)));
        let text = format!("{} <https://x.example/a|label> tail", "a".repeat(50));
        assert_eq!(cut_markup(&text, 60), format!("{}…", "a".repeat(50)));
        let text = format!("{} &#x1F600; tail", "a".repeat(50));
        assert_eq!(cut_markup(&text, 55), format!("{}…", "a".repeat(50)));
        // An escaped bracket opens no link.
        let text = format!("\\[{}](u) tail", "a".repeat(50));
        assert_eq!(cut_markup(&text, 20).chars().count(), 20);
    }

    #[test]
    fn headline_splits_off_the_first_line() {
        assert_eq!(
            headline("\n Title \nbody\nmore\n"),
            ("Title".to_string(), "body\nmore".to_string())
        );
        assert_eq!(headline("one"), ("one".to_string(), String::new()));
    }
}
