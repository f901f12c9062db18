//! Message templates: minijinja templates rendered from one event into the text a chat or
//! mail sink sends.
//!
//! Every template is compiled for one [`Target`] (Slack mrkdwn, Discord markdown, Adaptive
//! Card text, HTML mail, plain text). Whatever a template prints with `{{ … }}` goes through
//! this module's formatter, which escapes it for that target; only the values made by this
//! module's own helpers (`link`, `bold`) are written as markup, and they escape their own
//! arguments. So a template cannot forget to escape, and `|safe`, `|tojson` or string
//! concatenation cannot smuggle an event's text out as markup: an event can inject no
//! markup, link, mention or mail header (mail headers are folded by [`one_line`]).
//!
//! Invariant: a leaf like `sinks`' other helpers: it knows events only as a
//! [`crate::sinks::Delivery`] and knows nothing of HTTP, the store or the config file.

mod escape;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use minijinja::value::{Object, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

use crate::sinks::Delivery;

pub use escape::escape;

/// The built-in message template, used by every chat and mail sink without `template`.
pub const DEFAULT_MESSAGE: &str = include_str!("default_message.jinja");
/// The built-in mail subject.
pub const DEFAULT_SUBJECT: &str = include_str!("default_subject.jinja");

/// Upper bound on the work one render may do (minijinja fuel): a template looping over a
/// huge body stops with an error instead of holding a delivery slot.
const FUEL: u64 = 2_000_000;
/// How many characters `shorten` keeps by default.
const SHORTEN_DEFAULT: usize = 80;

/// What a rendered text is for; decides how printed values are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Slack mrkdwn: `&`, `<` and `>` become entities (Slack's own rule).
    Slack,
    /// Discord markdown: markdown characters are backslash-escaped, `@` cannot start a
    /// mention.
    Discord,
    /// Adaptive Card `TextBlock` markdown (Microsoft Teams).
    Teams,
    /// HTML (the mail's HTML part).
    Html,
    /// Plain text (the mail's text part, its subject, a Slack channel name): no markup.
    Plain,
}

/// What a template does with a value the event does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Prints nothing: a message stays readable when one sender lacks a field.
    Empty,
    /// Fails the render, naming the value: for a name that must be whole, such as a
    /// Dependency-Track project's. (Either way a top-level name outside [`EventContext`]'s
    /// fields is refused at compile time.)
    Fail,
}

/// The top-level names a template sees: [`EventContext`]'s fields.
pub const VARIABLES: &[&str] = &[
    "source",
    "event_type",
    "delivery_id",
    "event_id",
    "received_at",
    "headers",
    "body",
    "summary",
    "test",
];

/// A template that cannot be used: where it was written and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct TemplateError {
    /// Where the template was written, e.g. `hookrelay.toml:12:12: sinks.chat.template`.
    pub at: String,
    /// What is wrong, with the line inside the template when known.
    pub message: String,
}

/// One compiled template for one target.
pub struct Template {
    env: Environment<'static>,
    target: Target,
    at: Arc<str>,
    /// One of hookrelay's own messages (`Template::built_in`).
    built_in: bool,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("target", &self.target)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

/// The name the one template of an environment is stored under.
const NAME: &str = "message";

impl Template {
    /// Compiles `source` for `target`; `at` says where it was written, for errors. The
    /// template is then rendered once against a sample event, so an unknown filter or
    /// function on its main path is caught here (at `hookrelay check`) too.
    pub fn compile(source: &str, target: Target, at: &str) -> Result<Template, TemplateError> {
        Template::build(source, target, at, Missing::Empty, false)
    }

    /// [`Template::compile`] with a choice of what a missing value does.
    pub fn compile_with(
        source: &str,
        target: Target,
        at: &str,
        missing: Missing,
    ) -> Result<Template, TemplateError> {
        Template::build(source, target, at, missing, false)
    }

    /// Compiles one of hookrelay's built-in messages: like [`Template::compile`], and every
    /// printed value is folded onto one line ([`one_line`]), so a line break in an event's
    /// field (a pusher's name, a repository) cannot split the headline or add a line.
    pub fn built_in(source: &str, target: Target, at: &str) -> Result<Template, TemplateError> {
        Template::build(source, target, at, Missing::Empty, true)
    }

    fn build(
        source: &str,
        target: Target,
        at: &str,
        missing: Missing,
        fold: bool,
    ) -> Result<Template, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(match missing {
            Missing::Empty => UndefinedBehavior::Chainable,
            Missing::Fail => UndefinedBehavior::Strict,
        });
        env.set_fuel(Some(FUEL));
        // Keep whitespace as people expect from a message: no newline after a block tag.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_formatter(move |out, _state, value| {
            if let Some(markup) = value.downcast_object_ref::<Markup>() {
                out.write_str(&markup.0)?;
            } else if !(value.is_undefined() || value.is_none()) {
                let text = value.to_string();
                let text = if fold { spaced_one_line(&text) } else { text };
                out.write_str(&escape(target, &text))?;
            }
            Ok(())
        });
        // `safe` would print an event's text as markup; nothing needs it.
        env.remove_filter("safe");
        env.add_function("link", move |url: Value, text: Option<Value>| {
            link(target, fold, &url, text.as_ref())
        });
        env.add_function("bold", move |text: Value| bold(target, fold, &text));
        env.add_filter("firstline", |text: Value| firstline(&text));
        env.add_filter("shorten", |text: Value, chars: Option<usize>| {
            shorten(&text, chars.unwrap_or(SHORTEN_DEFAULT))
        });
        env.add_filter("branch", |text: Value| branch(&text));
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| error(at, &e))?;
        let template = Template {
            env,
            target,
            at: Arc::from(at),
            built_in: fold,
        };
        // Whatever a missing value does, a name no event has is a typo (`sorce`): it would
        // print nothing, or leave a NATS subject or a mail subject empty, on every event.
        template.known_variables_only()?;
        match template.render_value(&sample()) {
            Ok(_) => Ok(template),
            // The sample event need not carry the fields a strict template reads.
            Err(e) if missing == Missing::Fail && e.kind() == ErrorKind::UndefinedError => {
                Ok(template)
            }
            Err(e) => Err(error(at, &e)),
        }
    }

    /// The target it escapes for.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Whether it is one of hookrelay's own messages, which a user cannot fix.
    pub fn is_built_in(&self) -> bool {
        self.built_in
    }

    /// What a sink sends when a built-in message cannot render an event (a defect of the
    /// message, never of the event): one escaped line naming the event, so the event is
    /// still announced instead of dead-lettered.
    pub fn fallback(&self, event: &EventContext) -> String {
        let line = format!(
            "{} from {}",
            event.event_type.as_deref().unwrap_or("event"),
            event.source
        );
        escape(self.target, &one_line(&line))
    }

    /// Renders the template for one event.
    pub fn render(&self, event: &EventContext) -> Result<String, TemplateError> {
        self.render_value(event).map_err(|e| error(&self.at, &e))
    }

    fn render_value(&self, event: &EventContext) -> Result<String, minijinja::Error> {
        self.env
            .get_template(NAME)?
            .render(Value::from(minijinja::value::Serde(event)))
    }

    /// Refuses a top-level name that is neither an [`EventContext`] field nor a function.
    fn known_variables_only(&self) -> Result<(), TemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| error(&self.at, &e))?;
        let globals: Vec<&str> = self.env.globals().map(|(name, _)| name).collect();
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !VARIABLES.contains(&v.as_str()) && !globals.contains(&v.as_str()))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        Err(TemplateError {
            at: self.at.to_string(),
            message: format!(
                "uses unknown variable{} {}; a template may use {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                VARIABLES.join(", ")
            ),
        })
    }
}

fn error(at: &str, err: &minijinja::Error) -> TemplateError {
    let kind = match err.kind() {
        ErrorKind::SyntaxError => "syntax error".to_string(),
        ErrorKind::UnknownFilter => "unknown filter".to_string(),
        ErrorKind::UnknownFunction => "unknown function".to_string(),
        ErrorKind::UnknownTest => "unknown test".to_string(),
        ErrorKind::OutOfFuel => {
            "too much work for one message (a loop over a huge list?)".to_string()
        }
        other => other.to_string(),
    };
    let detail = err.detail().map_or(String::new(), |d| format!(": {d}"));
    let line = err
        .line()
        .map_or(String::new(), |l| format!("line {l} of the template: "));
    TemplateError {
        at: at.to_string(),
        message: format!("{line}{kind}{detail}"),
    }
}

/// Everything a template sees of one event.
#[derive(Debug, Clone, Serialize)]
pub struct EventContext {
    /// The source's name.
    pub source: String,
    /// The sender's event type, when known.
    pub event_type: Option<String>,
    /// The sender's delivery id, when known.
    pub delivery_id: Option<String>,
    /// hookrelay's id for the event.
    pub event_id: String,
    /// When hookrelay accepted it, RFC 3339 in UTC.
    pub received_at: String,
    /// The headers kept with the event (secrets were dropped at ingress), lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The parsed JSON body (of a form-encoded body, its `payload` field); `null` when it is
    /// not JSON.
    pub body: serde_json::Value,
    /// A normalized summary of the event, when one is known for its kind; `null` otherwise.
    pub summary: serde_json::Value,
    /// True for `hookrelay test-sink`'s message.
    pub test: bool,
}

impl EventContext {
    /// The context of one delivery.
    pub fn new(delivery: &Delivery) -> EventContext {
        let received = UNIX_EPOCH + Duration::from_millis(delivery.event.received_at_ms);
        EventContext {
            source: delivery.event.source.to_string(),
            event_type: delivery.event.event_type.clone(),
            delivery_id: delivery.event.delivery_id.clone(),
            event_id: delivery.event.id.hyphenated().to_string(),
            received_at: humantime::format_rfc3339_seconds(received).to_string(),
            headers: delivery
                .event
                .headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into_owned(),
                    )
                })
                .collect(),
            body: crate::summary::body_json(&delivery.event.body)
                .unwrap_or(serde_json::Value::Null),
            summary: delivery
                .summary
                .as_deref()
                .and_then(|summary| serde_json::to_value(summary).ok())
                .unwrap_or(serde_json::Value::Null),
            test: delivery.event.source.as_ref() == crate::sinks::TEST_SOURCE,
        }
    }
}

/// The event every template is tried on when compiled: a GitHub push.
fn sample() -> EventContext {
    EventContext {
        source: "github".to_string(),
        event_type: Some("push".to_string()),
        delivery_id: Some("00000000-0000-0000-0000-000000000000".to_string()),
        event_id: "00000000-0000-7000-8000-000000000000".to_string(),
        received_at: "2025-01-01T00:00:00Z".to_string(),
        headers: BTreeMap::from([("x-github-event".to_string(), "push".to_string())]),
        body: serde_json::json!({
            "ref": "refs/heads/main",
            "compare": "https://github.com/octo/app/compare/1...2",
            "pusher": {"name": "octocat"},
            "sender": {"login": "octocat"},
            "repository": {"full_name": "octo/app", "html_url": "https://github.com/octo/app"},
            "commits": [{"id": "0123456789abcdef", "message": "Fix it\n\nLonger text",
                         "url": "https://github.com/octo/app/commit/0123456789abcdef",
                         "author": {"name": "Octo Cat"}}],
        }),
        summary: serde_json::Value::Null,
        test: false,
    }
}

/// Markup made by this module's helpers for the environment's target; printed as is.
#[derive(Debug)]
struct Markup(String);

impl Object for Markup {
    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Reached only when a template turns markup back into a string (`~`): that string
        // is then escaped like any other, so the markup shows as text, harmlessly.
        f.write_str(&self.0)
    }
}

fn markup(text: String) -> Value {
    Value::from_object(Markup(text))
}

/// The text of a value, empty for none and undefined.
fn text_of(value: &Value) -> String {
    if value.is_undefined() || value.is_none() {
        String::new()
    } else {
        value.to_string()
    }
}

/// `link(url, text)`: a link in the target's syntax; just the (escaped) text when `url` is
/// not an http(s) URL, so an event cannot make a `javascript:` or `mailto:` link.
fn link(target: Target, fold: bool, url: &Value, text: Option<&Value>) -> Value {
    let url = text_of(url);
    let text = text
        .map(|t| folded(fold, text_of(t)))
        .filter(|t| !t.is_empty());
    let lower = url.to_ascii_lowercase();
    let usable = (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    if !usable {
        let shown = text.unwrap_or_else(|| folded(fold, url));
        return markup(escape(target, &shown));
    }
    let label = text.as_deref().unwrap_or(&url);
    let out = match target {
        // Slack wants `&`, `<`, `>` as entities in the URL too; `|` ends the URL part.
        Target::Slack => format!(
            "<{}|{}>",
            escape(Target::Slack, &url).replace('|', "%7C"),
            escape(Target::Slack, label)
        ),
        // In Discord an `@` is percent-encoded too: event text is never left able to read
        // as a mention, even inside a link target (`allowed_mentions` is the other guard).
        Target::Discord => {
            let url = percent_brackets(&url).replace('@', "%40");
            match escape::discord_link_label(label) {
                Some(label) => format!("[{label}]({url})"),
                // Discord shows a label's escapes as written: such a label stays text, and
                // the address follows it (`<…>` keeps Discord from previewing it).
                None => format!("{} (<{url}>)", escape(target, label)),
            }
        }
        Target::Teams => format!("[{}]({})", escape(target, label), percent_brackets(&url)),
        Target::Html => format!(
            "<a href=\"{}\">{}</a>",
            escape(Target::Html, &url),
            escape(Target::Html, label)
        ),
        Target::Plain => match &text {
            Some(t) if *t != url => format!("{t} ({url})"),
            _ => url,
        },
    };
    markup(out)
}

/// Percent-encodes what would end a markdown link's URL early.
fn percent_brackets(url: &str) -> String {
    url.replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E")
}

/// `bold(text)`: strong text in the target's syntax.
fn bold(target: Target, fold: bool, text: &Value) -> Value {
    let text = folded(fold, text_of(text));
    if text.is_empty() {
        return markup(String::new());
    }
    let inner = escape(target, &text);
    markup(match target {
        Target::Slack => format!("*{inner}*"),
        Target::Discord | Target::Teams => format!("**{inner}**"),
        Target::Html => format!("<b>{inner}</b>"),
        Target::Plain => inner,
    })
}

/// `text` on one line when `fold` (a built-in message), as is otherwise.
fn folded(fold: bool, text: String) -> String {
    if fold { one_line(&text) } else { text }
}

/// `|firstline`: the first non-empty line, trimmed (a commit message's subject).
fn firstline(text: &Value) -> String {
    text_of(text)
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// `|shorten(n)`: at most `n` characters, cut with `…`.
fn shorten(text: &Value, chars: usize) -> String {
    cut(&text_of(text), chars)
}

/// `|branch`: `refs/heads/main` → `main`, `refs/tags/v1` → `v1`.
fn branch(text: &Value) -> String {
    let text = text_of(text);
    for prefix in ["refs/heads/", "refs/tags/"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return rest.to_string();
        }
    }
    text
}

/// At most `chars` characters of `text`; a cut one ends with `…` (counted).
pub fn cut(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let keep = chars.saturating_sub(1);
    let mut out: String = text.chars().take(keep).collect();
    // Do not leave a dangling escape that would swallow the ellipsis.
    while out.ends_with('\\') {
        out.pop();
    }
    if chars > 0 {
        out.push('…');
    }
    out
}

/// One line for a mail header or a channel name: control characters (CR and LF included)
/// become spaces, runs of whitespace one space, trimmed.
pub fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// [`one_line`] for a printed value, which may be the template's own text (`{{ ", " }}`):
/// a space at either end stays, so the words around it stay apart.
fn spaced_one_line(text: &str) -> String {
    let blank = |c: char| c.is_whitespace() || c.is_control();
    let core = one_line(text);
    let lead = if text.starts_with(blank) { " " } else { "" };
    let trail = if text.ends_with(blank) && !core.is_empty() {
        " "
    } else {
        ""
    };
    format!("{lead}{core}{trail}")
}

#[cfg(test)]
mod tests;
