//! The Slack sink (`kind = "slack"`): a mrkdwn message as `text` plus Block Kit `blocks`,
//! through an incoming webhook (`url`) or the Web API's `chat.postMessage` (`token` and a
//! templated `channel`).
//!
//! Answers, as Slack documents them. Incoming webhooks: 200 delivered; 429 retried after
//! its `Retry-After`; 5xx retried; 400, 403, 404, 410 (`invalid_payload`,
//! `action_prohibited`, `channel_not_found`, `channel_is_archived`…) permanent, with
//! Slack's plain-text reason. Web API: 200 with `{"ok": true, "ts": …}` delivered, the `ts`
//! recorded as the message id; `{"ok": false, "error": …}` retried for `ratelimited` and
//! Slack's server-side errors, permanent for the rest (`channel_not_found`,
//! `not_in_channel`, `invalid_auth`…).
//!
//! Invariants: the webhook URL and the token never appear in an error or a log line;
//! links do not unfurl, so an event cannot make Slack fetch a URL of its choosing.

use std::fmt;
use std::time::Duration;

use serde_json::json;

use super::chat::{self, Answer, Http};
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{Outbound, Secret, SlackSinkConfig, SlackTarget};
use crate::template::{Target, Template, one_line};

/// Slack's limit on a section block's text.
const SECTION_TEXT: usize = 3000;
/// Slack's limit on blocks per message.
const MAX_BLOCKS: usize = 50;
/// Most characters of section text in one message, all blocks together. Slack refuses a
/// message past about 12,000 (`msg_blocks_too_long`, or a 400 from an incoming webhook):
/// undocumented for sections, measured by users, and the documented total of its markdown
/// block. Kept under it with room for the blocks' own markup, so a long message is cut,
/// not dead-lettered.
const BLOCKS_TEXT: usize = 11_000;
/// Slack truncates `text` beyond this.
const MAX_TEXT: usize = 40_000;
/// Web API errors worth retrying: rate limits and Slack's own failures.
const RETRIABLE: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];
/// Waited when Slack says `ratelimited` without a `Retry-After`.
const RATELIMITED_DEFAULT: Duration = Duration::from_secs(30);

/// Posts messages to Slack.
pub struct SlackSink {
    name: String,
    http: Http,
    message: Template,
    via: Via,
}

/// Where the sink posts, resolved.
enum Via {
    Webhook(reqwest::Url),
    Api {
        url: reqwest::Url,
        token: Secret,
        channel: Box<Template>,
    },
}

// By hand: the URL and token are secrets.
impl fmt::Debug for SlackSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let via = match self.via {
            Via::Webhook(_) => "incoming webhook",
            Via::Api { .. } => "chat.postMessage",
        };
        f.debug_struct("SlackSink")
            .field("name", &self.name)
            .field("via", &via)
            .finish_non_exhaustive()
    }
}

impl SlackSink {
    /// Builds the sink: its client and compiled templates.
    pub fn new(
        name: &str,
        config: &SlackSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<SlackSink, SinkBuildError> {
        let message = chat::message_template(name, config.template.as_ref(), Target::Slack)?;
        let target = match &config.target {
            SlackTarget::Webhook { url } => Via::Webhook(chat::parse_url(name, "url", url)?),
            SlackTarget::Api {
                token,
                channel,
                api_url,
            } => Via::Api {
                url: chat::parse_url(name, "api_url", &format!("{api_url}/chat.postMessage"))?,
                token: token.clone(),
                channel: Box::new(
                    Template::compile(&channel.text, Target::Plain, &channel.at)
                        .map_err(|e| chat::template_build_error(name, &e))?,
                ),
            },
        };
        Ok(SlackSink {
            name: name.to_string(),
            http: Http::new(name, outbound, timeout)?,
            message,
            via: target,
        })
    }
}

impl Sink for SlackSink {
    fn kind(&self) -> &'static str {
        "slack"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let event = chat::context(delivery);
        let text = match chat::render(&self.message, &event) {
            Ok(text) => text,
            Err(outcome) => return outcome,
        };
        let mut payload = payload(&text);
        match &self.via {
            Via::Webhook(url) => match self.http.post_json(url, &payload, None).await {
                Ok(answer) => classify_webhook(&self.name, &answer),
                Err(outcome) => outcome,
            },
            Via::Api {
                url,
                token,
                channel,
            } => {
                let channel = match chat::render(channel, &event) {
                    Ok(c) => one_line(&c),
                    Err(outcome) => return outcome,
                };
                if channel.is_empty() {
                    return Outcome::Failed(SinkError::new(
                        None,
                        format!(
                            "the channel template rendered nothing for this event; fix \
                             [sinks.{}] channel",
                            self.name
                        ),
                    ));
                }
                payload["channel"] = json!(channel);
                match self.http.post_json(url, &payload, Some(token)).await {
                    Ok(answer) => classify_api(&self.name, &answer),
                    Err(outcome) => outcome,
                }
            }
        }
    }
}

/// `text` and `blocks` for a rendered message, within Slack's limits.
pub(super) fn payload(text: &str) -> serde_json::Value {
    let text = text.trim();
    let text = if text.is_empty() {
        "(empty message)"
    } else {
        text
    };
    // Whole lines per section; a line too long for one section is cut cleanly.
    let mut sections: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = chat::cut_markup(line, SECTION_TEXT);
        let needed = current.chars().count() + 1 + line.chars().count();
        if !current.is_empty() && needed > SECTION_TEXT {
            sections.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        sections.push(current);
    }
    let blocks: Vec<_> = within_budget(sections)
        .into_iter()
        .map(|t| json!({"type": "section", "text": {"type": "mrkdwn", "text": t}}))
        .collect();
    json!({
        "text": chat::cut_markup(text, MAX_TEXT),
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// The sections that fit in [`MAX_BLOCKS`] blocks and [`BLOCKS_TEXT`] characters; the last
/// one kept is cut cleanly and ends with `…` when anything was left out.
fn within_budget(sections: Vec<String>) -> Vec<String> {
    let total = sections.len();
    let mut room = BLOCKS_TEXT;
    let mut kept = Vec::with_capacity(total.min(MAX_BLOCKS));
    for (index, section) in sections.into_iter().enumerate() {
        let length = section.chars().count();
        let more_after = index + 1 < total;
        if length <= room && !(more_after && kept.len() + 1 == MAX_BLOCKS) {
            room -= length;
            kept.push(section);
            continue;
        }
        let mut cut = chat::cut_markup(&section, room.min(length).saturating_sub(1));
        if !cut.ends_with('…') {
            cut.push('…');
        }
        kept.push(cut);
        break;
    }
    kept
}

/// An incoming webhook's answer.
fn classify_webhook(name: &str, answer: &Answer) -> Outcome {
    let code = answer.status.as_u16();
    if answer.status.is_success() {
        return Outcome::Delivered {
            status: Some(code),
            message_id: None,
        };
    }
    let said = format!("Slack answered {}", answer.describe());
    match code {
        429 => Outcome::Retry {
            after: answer.retry_after(),
            error: answer.error(said),
        },
        500..=599 => Outcome::Retry {
            after: answer.retry_after(),
            error: answer.error(said),
        },
        300..=399 => answer.redirected(name, said),
        403 | 404 | 410 => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. The webhook's channel is gone, archived or closed to it: \
             fix [sinks.{name}] url or disable the sink."
        ))),
        _ => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. Slack refused this message; see its reason."
        ))),
    }
}

/// A `chat.postMessage` answer.
fn classify_api(name: &str, answer: &Answer) -> Outcome {
    let code = answer.status.as_u16();
    if code == 429 || answer.status.is_server_error() {
        return Outcome::Retry {
            after: answer.retry_after(),
            error: answer.error(format!("Slack answered {}", answer.describe())),
        };
    }
    let body = answer.json();
    let ok = body.as_ref().and_then(|b| b["ok"].as_bool());
    match (answer.status.is_success(), ok) {
        (true, Some(true)) => Outcome::Delivered {
            status: Some(code),
            message_id: body
                .as_ref()
                .and_then(|b| b["ts"].as_str())
                .map(str::to_string),
        },
        (true, Some(false)) => {
            let error = body
                .as_ref()
                .and_then(|b| b["error"].as_str())
                .unwrap_or("unknown_error");
            // Slack's error codes are short identifiers; keep ours one clean line.
            let error: String = error
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            if RETRIABLE.contains(&error.as_str()) {
                Outcome::Retry {
                    after: answer
                        .retry_after()
                        .or((error.contains("rate")).then_some(RATELIMITED_DEFAULT)),
                    error: answer.error(format!("chat.postMessage failed: {error}")),
                }
            } else {
                let fix = match error.as_str() {
                    "channel_not_found" | "not_in_channel" | "is_archived" => {
                        format!("Invite the bot to the channel or fix [sinks.{name}] channel.")
                    }
                    "invalid_auth" | "not_authed" | "token_revoked" | "token_expired"
                    | "account_inactive" | "missing_scope" => {
                        format!("Fix [sinks.{name}] token (a bot token with chat:write).")
                    }
                    _ => "Slack refused this message.".to_string(),
                };
                Outcome::Failed(answer.error(format!(
                    "chat.postMessage failed: {error}; not retrying. {fix}"
                )))
            }
        }
        _ => Outcome::Failed(answer.error(format!(
            "Slack answered {}, not a chat.postMessage reply; not retrying. Check [sinks.{name}] \
             api_url.",
            answer.describe()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_split_into_sections_within_limits() {
        let line = format!("{}\n", "wörd ".repeat(100));
        let text = line.repeat(400);
        let p = payload(&text);
        let blocks = p["blocks"].as_array().unwrap();
        let mut total = 0;
        for b in blocks {
            let t = b["text"]["text"].as_str().unwrap();
            assert!(t.chars().count() <= SECTION_TEXT, "{}", t.len());
            total += t.chars().count();
        }
        assert!(total <= BLOCKS_TEXT, "{total}");
        assert!(total > BLOCKS_TEXT - SECTION_TEXT, "{total}: cut too early");
        assert!(p["text"].as_str().unwrap().chars().count() <= MAX_TEXT);
        assert!(
            blocks.last().unwrap()["text"]["text"]
                .as_str()
                .unwrap()
                .ends_with('…')
        );
    }

    #[test]
    fn sections_are_kept_whole_within_the_budget_and_the_block_count() {
        let whole = vec!["a".repeat(3000), "b".repeat(3000), "c".repeat(3000)];
        assert_eq!(within_budget(whole.clone()), whole);
        // Past the text budget: the section that crosses it is cut and marked.
        let four = vec!["a".repeat(3000); 4];
        let kept = within_budget(four);
        assert_eq!(kept.len(), 4);
        let room = BLOCKS_TEXT - 9000;
        assert!(
            (room - 10..=room).contains(&kept[3].chars().count()),
            "{}",
            kept[3].len()
        );
        assert!(kept[3].ends_with('…'));
        // Past the block count: the last block says something was left out.
        let many = vec!["x".to_string(); MAX_BLOCKS + 5];
        let kept = within_budget(many);
        assert_eq!(kept.len(), MAX_BLOCKS);
        assert_eq!(kept[MAX_BLOCKS - 1], "…");
        assert!(kept[..MAX_BLOCKS - 1].iter().all(|s| s == "x"));
        let exact = vec!["x".to_string(); MAX_BLOCKS];
        assert_eq!(within_budget(exact.clone()), exact);
    }

    #[test]
    fn a_short_message_is_one_section() {
        let p = payload("*hi* <https://x|y>\n");
        assert_eq!(p["text"], "*hi* <https://x|y>");
        assert_eq!(p["blocks"].as_array().unwrap().len(), 1);
        assert_eq!(p["blocks"][0]["text"]["type"], "mrkdwn");
    }
}
