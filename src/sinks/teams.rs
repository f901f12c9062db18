//! The Microsoft Teams sink (`kind = "teams"`): an Adaptive Card 1.4 posted to a Teams
//! Workflows webhook, in the envelope Workflows expects (the format that replaced the
//! retired Office 365 connectors):
//! `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":<card>}]}`.
//!
//! The card holds the headline (bold), the detail, and a fact set (source, event, received).
//! Adaptive Card markdown needs a blank line for a line break, so single newlines are
//! doubled. The whole request stays under 20 KiB, well within Teams' ~28 KB message limit
//! (which counts the rendered message): the detail is cut cleanly until it fits.
//!
//! Answers: any 2xx delivered (Workflows answers 202); 408, 429 and 5xx retried (429 after
//! its `Retry-After`); other 4xx permanent. The URL (a credential) is never logged.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use super::chat::{self, Answer, Http};
use super::{Delivery, Outcome, Sink, SinkBuildError};
use crate::config::{Outbound, TeamsSinkConfig};
use crate::template::{EventContext, Target, Template, escape};

/// The most a request body may weigh. Teams refuses messages above about 28 KB, counted on
/// the message as it stores it, HTML included, which weighs more than the card's JSON; and
/// a Workflows webhook answers 202 before it posts, so a card refused then is lost without
/// a word. Hence a wide margin.
const MAX_BYTES: usize = 20 * 1024;

/// Posts Adaptive Cards to a Teams Workflows webhook.
pub struct TeamsSink {
    name: String,
    http: Http,
    url: reqwest::Url,
    message: Template,
}

// By hand: the URL is a credential.
impl fmt::Debug for TeamsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TeamsSink {
    /// Builds the sink: its client and compiled template.
    pub fn new(
        name: &str,
        config: &TeamsSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<TeamsSink, SinkBuildError> {
        Ok(TeamsSink {
            name: name.to_string(),
            http: Http::new(name, outbound, timeout)?,
            url: chat::parse_url(name, "url", &config.url)?,
            message: chat::message_template(name, config.template.as_ref(), Target::Teams)?,
        })
    }
}

impl Sink for TeamsSink {
    fn kind(&self) -> &'static str {
        "teams"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let event = chat::context(delivery);
        let text = match chat::render(&self.message, &event) {
            Ok(text) => text,
            Err(outcome) => return outcome,
        };
        let payload = payload(&event, &text);
        match self.http.post_json(&self.url, &payload, None).await {
            Ok(answer) => classify(&self.name, &answer),
            Err(outcome) => outcome,
        }
    }
}

/// The Workflows envelope around a card, under [`MAX_BYTES`].
pub(super) fn payload(event: &EventContext, text: &str) -> serde_json::Value {
    let (title, detail) = chat::headline(text);
    // Markdown in a TextBlock: one newline is no line break, a blank line is.
    let detail = detail.lines().collect::<Vec<_>>().join("\n\n");
    let size =
        |envelope: &serde_json::Value| serde_json::to_vec(envelope).map_or(usize::MAX, |v| v.len());
    let whole = envelope(event, &title, &detail);
    if size(&whole) <= MAX_BYTES {
        return whole;
    }
    // The most detail that fits, by bisection on characters kept: bytes per character vary
    // (CJK, emoji and JSON escapes take several), so no ratio guesses it.
    let (mut fits, mut too_long) = (0, detail.chars().count());
    let mut best = envelope(event, &title, &chat::cut_markup(&detail, 0));
    while too_long - fits > 1 {
        let keep = fits + (too_long - fits) / 2;
        let candidate = envelope(event, &title, &chat::cut_markup(&detail, keep));
        if size(&candidate) <= MAX_BYTES {
            fits = keep;
            best = candidate;
        } else {
            too_long = keep;
        }
    }
    best
}

fn envelope(event: &EventContext, title: &str, detail: &str) -> serde_json::Value {
    // A plain name (`pull_request`, `PUSH_ARTIFACT`) comes out of the escape as it is.
    let fact =
        |name: &str, value: &str| json!({"title": name, "value": escape(Target::Teams, value)});
    let mut facts = vec![fact("Source", &event.source)];
    if let Some(t) = &event.event_type {
        facts.push(fact("Event", t));
    }
    facts.push(fact("Received", &event.received_at));
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": chat::cut_markup(title, 1000),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if !detail.is_empty() {
        body.push(json!({"type": "TextBlock", "text": detail, "wrap": true}));
    }
    body.push(json!({"type": "FactSet", "facts": facts}));
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                // 1.4: every element used exists since 1.0, and some Teams clients show "this card
                // couldn't be displayed" for a 1.5 card posted by a Workflows flow.
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

fn classify(name: &str, answer: &Answer) -> Outcome {
    let code = answer.status.as_u16();
    if answer.status.is_success() {
        return Outcome::Delivered {
            status: Some(code),
            message_id: None,
        };
    }
    let said = format!("Teams answered {}", answer.describe());
    match code {
        408 | 429 | 500..=599 => Outcome::Retry {
            after: answer.retry_after(),
            error: answer.error(said),
        },
        300..=399 => answer.redirected(name, said),
        401 | 403 | 404 | 410 => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. The workflow was deleted or its URL is wrong: fix \
             [sinks.{name}] url or disable the sink."
        ))),
        _ => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. Teams refused this card; see its answer."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event() -> EventContext {
        EventContext {
            source: "nexus".into(),
            event_type: Some("rm:repository:component".into()),
            delivery_id: None,
            event_id: "e".into(),
            received_at: "2025-01-01T00:00:00Z".into(),
            headers: BTreeMap::new(),
            body: serde_json::Value::Null,
            summary: serde_json::Value::Null,
            test: false,
        }
    }

    #[test]
    fn a_facts_plain_name_is_not_escaped_and_markup_is() {
        let fact_value = |value: &str| escape(Target::Teams, value);
        assert_eq!(fact_value("pull_request"), "pull_request");
        assert_eq!(fact_value("PUSH_ARTIFACT"), "PUSH_ARTIFACT");
        assert_eq!(
            fact_value("rm:repository:component"),
            "rm:repository:component"
        );
        assert_eq!(fact_value("_x_"), "\\_x\\_");
        assert_eq!(fact_value("**b** [l](u)"), "\\*\\*b\\*\\* \\[l\\](u)");
    }

    #[test]
    fn a_huge_message_is_cut_under_the_limit() {
        let text = format!("Title\n{}", "x \\* y\n".repeat(20_000));
        let p = payload(&event(), &text);
        let size = serde_json::to_vec(&p).unwrap().len();
        assert!(size <= MAX_BYTES, "{size}");
        let detail = p["attachments"][0]["content"]["body"][1]["text"]
            .as_str()
            .unwrap();
        assert!(
            detail.ends_with('…') && detail.len() > 10_000,
            "{}",
            detail.len()
        );
    }

    #[test]
    fn wide_characters_keep_as_much_detail_as_fits() {
        // Three bytes per character, and emoji four: a ratio of bytes to characters would
        // shrink these to nothing.
        for line in [
            "漢字テキスト".repeat(20),
            "🚀".repeat(100),
            "\u{1}\"<>".repeat(30),
        ] {
            let text = format!("Title\n{}", vec![line.as_str(); 300].join("\n"));
            let p = payload(&event(), &text);
            let size = serde_json::to_vec(&p).unwrap().len();
            assert!(size <= MAX_BYTES, "{size}");
            let kept = serde_json::to_vec(&p["attachments"][0]["content"]["body"][1]["text"])
                .unwrap()
                .len();
            assert!(
                kept > MAX_BYTES * 3 / 4,
                "only {kept} bytes of detail for {line:?}"
            );
        }
    }
}
