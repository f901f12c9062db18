//! The Discord sink (`kind = "discord"`): one embed per event through a channel webhook,
//! the headline as its title (plain: its first link becomes the embed's `url`, since Discord
//! makes no link in a title), the detail as its description, within Discord's documented
//! limits (title 256, description 4096, footer 2048, 6000 characters in all), cut cleanly.
//!
//! Answers: 200/204 delivered (with `wait=true` Discord answers 200 and the message, whose
//! id is recorded); 429 retried after `X-RateLimit-Reset-After`, else the JSON
//! `retry_after` (float seconds), else `Retry-After`; 5xx retried; 404 (webhook deleted), 401/403 and 400 permanent. When an
//! answer says `X-RateLimit-Remaining: 0`, the next attempt waits `X-RateLimit-Reset-After`
//! before sending (pacing, not a retry loop: dispatch still decides every retry).
//!
//! Invariants: every message carries `"allowed_mentions": {"parse": []}`, so no event can
//! ping `@everyone`, a role or a user; the webhook URL (a credential) is never logged.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::chat::{self, Answer, Http};
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{DiscordSinkConfig, Outbound};
use crate::template::{Target, Template};

const TITLE: usize = 256;
const DESCRIPTION: usize = 4096;
const FOOTER: usize = 2048;
const EMBED_TOTAL: usize = 6000;
/// The longest embed `url` sent: Discord has answered 400 to longer ones, refusing the whole
/// message; 2048 is the common URL limit of browsers and services.
const MAX_EMBED_URL: usize = 2048;

/// The API version a webhook URL without one is sent to.
const API_VERSION: &str = "v10";

/// Puts an API version into a webhook URL as Discord's UI hands it out
/// (`/api/webhooks/ID/TOKEN`): without one Discord answers as its oldest API, whose 429s
/// give `retry_after` and `Retry-After` in milliseconds, so a wait of 1.5 s would have held
/// the sink for 25 minutes. The versioned path is the same webhook (what Discord's own
/// libraries call); a URL that names a version, or another path (a proxy), is left alone.
fn pin_api_version(url: &mut reqwest::Url) {
    if let Some(rest) = url.path().strip_prefix("/api/webhooks/") {
        let path = format!("/api/{API_VERSION}/webhooks/{rest}");
        url.set_path(&path);
    }
}

/// Posts messages to a Discord channel webhook.
pub struct DiscordSink {
    name: String,
    http: Http,
    url: reqwest::Url,
    username: Option<String>,
    avatar_url: Option<String>,
    message: Template,
    /// Set when Discord said the bucket is empty: no request before this instant.
    paused_until: Mutex<Option<Instant>>,
    timeout: Duration,
}

// By hand: the URL is a credential.
impl fmt::Debug for DiscordSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordSink")
            .field("name", &self.name)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl DiscordSink {
    /// Builds the sink: its client and compiled template.
    pub fn new(
        name: &str,
        config: &DiscordSinkConfig,
        outbound: &Outbound,
        timeout: Duration,
    ) -> Result<DiscordSink, SinkBuildError> {
        let mut url = chat::parse_url(name, "url", &config.url)?;
        pin_api_version(&mut url);
        // Ask for the created message back, so its id can be recorded.
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "wait")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("wait", "true");
        Ok(DiscordSink {
            name: name.to_string(),
            http: Http::new(name, outbound, timeout)?,
            url,
            username: config.username.clone(),
            avatar_url: config.avatar_url.clone(),
            message: chat::message_template(name, config.template.as_ref(), Target::Discord)?,
            paused_until: Mutex::new(None),
            timeout,
        })
    }

    fn payload(&self, delivery: &Delivery, text: &str) -> serde_json::Value {
        let (title, description) = chat::headline(text);
        let (title, link) = plain_title(&title);
        let title = chat::cut_markup(&title, TITLE);
        let footer_text = match &delivery.event.event_type {
            Some(t) => format!("{} · {t}", delivery.event.source),
            None => delivery.event.source.to_string(),
        };
        // Discord shows a footer as plain text (no markdown, no mentions): escaping would
        // show its backslashes, as in `pull\_request`.
        let footer = chat::cut_markup(&footer_text, FOOTER);
        let room = EMBED_TOTAL
            .saturating_sub(title.chars().count() + footer.chars().count())
            .min(DESCRIPTION);
        let description = chat::cut_markup(&description, room);
        let mut embed = json!({
            "title": title,
            "footer": {"text": footer},
            "timestamp": chat::context(delivery).received_at,
        });
        // Discord refuses the whole message (400) for an embed URL it finds too long; the
        // title is worth more than its link.
        if let Some(url) = link.filter(|url| url.len() <= MAX_EMBED_URL) {
            embed["url"] = json!(url);
        }
        if !description.is_empty() {
            embed["description"] = json!(description);
        }
        let mut payload = json!({
            "embeds": [embed],
            "allowed_mentions": {"parse": []},
        });
        if let Some(u) = &self.username {
            payload["username"] = json!(u);
        }
        if let Some(a) = &self.avatar_url {
            payload["avatar_url"] = json!(a);
        }
        payload
    }

    /// Remembers an empty rate-limit bucket.
    fn note_bucket(&self, answer: &Answer) {
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if header("x-ratelimit-remaining") == Some("0")
            && let Some(after) = header("x-ratelimit-reset-after").and_then(seconds)
        {
            *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + after);
        }
    }
}

impl Sink for DiscordSink {
    fn kind(&self) -> &'static str {
        "discord"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let paused = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused {
            let wait = until.saturating_duration_since(Instant::now());
            if wait >= self.timeout / 2 {
                // Too long to hold this slot: let dispatch schedule it.
                return Outcome::Retry {
                    after: Some(wait),
                    error: SinkError::new(
                        None,
                        "Discord's rate limit bucket is empty; waiting for its reset".to_string(),
                    ),
                };
            }
            tokio::time::sleep_until(until).await;
        }
        let event = chat::context(delivery);
        let text = match chat::render(&self.message, &event) {
            Ok(text) => text,
            Err(outcome) => return outcome,
        };
        let payload = self.payload(delivery, &text);
        let answer = match self.http.post_json(&self.url, &payload, None).await {
            Ok(answer) => answer,
            Err(outcome) => return outcome,
        };
        self.note_bucket(&answer);
        classify(&self.name, &answer)
    }
}

/// Float seconds, as Discord writes them.
/// An embed title from a rendered headline: Discord shows an embed title bold and makes
/// no link of `[label](url)` in it, so the template's links become their labels (the first
/// one's URL is returned, for the embed's own `url`, which links the whole title) and its
/// `**` markers are dropped. It shows backslash escapes as written, so they are resolved
/// here: an event's `\*` shows as the `*` it wrote, and no link forms from event text.
fn plain_title(headline: &str) -> (String, Option<String>) {
    let chars: Vec<char> = headline.chars().collect();
    let mut out = String::with_capacity(headline.len());
    let mut first_url = None;
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            // Discord shows a title as plain text, escapes included: the escaped
            // character itself is what the event said.
            '\\' if i + 1 < chars.len() => {
                out.push(chars[i + 1]);
                i += 2;
            }
            '*' if chars.get(i + 1) == Some(&'*') => i += 2,
            '[' => match link_at(&chars, i) {
                Some((label, url, end)) => {
                    out.push_str(&label);
                    first_url.get_or_insert(url);
                    i = end;
                }
                None => {
                    out.push('[');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    (out, first_url)
}

/// The `[label](url)` starting at `chars[start]`: its label (escapes kept), URL, and the
/// index after it. Labels never hold an unescaped `]` and URLs never a `)` (the template's
/// `link` escapes and percent-encodes them).
fn link_at(chars: &[char], start: usize) -> Option<(String, String, usize)> {
    let mut i = start + 1;
    let mut label = String::new();
    while i < chars.len() && chars[i] != ']' {
        if chars[i] == '\\' && i + 1 < chars.len() {
            i += 1;
        }
        label.push(chars[i]);
        i += 1;
    }
    if chars.get(i + 1) != Some(&'(') {
        return None;
    }
    let url_start = i + 2;
    let close = (url_start..chars.len()).find(|&j| chars[j] == ')')?;
    let url: String = chars[url_start..close].iter().collect();
    let label = label.replace("**", "");
    (url.starts_with("https://") || url.starts_with("http://")).then_some((label, url, close + 1))
}

fn seconds(text: &str) -> Option<Duration> {
    let s: f64 = text.parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)))
}

fn classify(name: &str, answer: &Answer) -> Outcome {
    let code = answer.status.as_u16();
    if answer.status.is_success() {
        return Outcome::Delivered {
            status: Some(code),
            message_id: answer
                .json()
                .and_then(|b| b["id"].as_str().map(str::to_string)),
        };
    }
    let said = format!("Discord answered {}", answer.describe());
    match code {
        429 => {
            // `X-RateLimit-Reset-After` is seconds in every API version; the body's
            // `retry_after` is seconds since v8 (the URL is pinned to one, see
            // `pin_api_version`); a global limit sends only the body and `Retry-After`.
            let after = answer
                .headers
                .get("x-ratelimit-reset-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| seconds(v.trim()))
                .or_else(|| {
                    answer
                        .json()
                        .and_then(|b| b["retry_after"].as_f64())
                        .and_then(|s| seconds(&s.to_string()))
                })
                .or_else(|| answer.retry_after());
            Outcome::Retry {
                after,
                error: answer.error(said),
            }
        }
        500..=599 => Outcome::Retry {
            after: answer.retry_after(),
            error: answer.error(said),
        },
        300..=399 => answer.redirected(name, said),
        401 | 403 | 404 => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. The webhook was deleted or its token is wrong: fix \
             [sinks.{name}] url or disable the sink."
        ))),
        _ => Outcome::Failed(answer.error(format!(
            "{said}; not retrying. Discord refused this message; see its answer."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_is_plain_text_without_markdown_escapes() {
        let config = DiscordSinkConfig {
            url: "https://discord.example/api/webhooks/1/t".into(),
            username: None,
            avatar_url: None,
            template: None,
        };
        let sink = DiscordSink::new(
            "chat",
            &config,
            &Outbound::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut delivery = crate::sinks::test_delivery();
        let event = std::sync::Arc::make_mut(&mut delivery.event);
        event.source = std::sync::Arc::from("my_forge");
        event.event_type = Some("pull_request".into());
        let payload = sink.payload(&delivery, "title\ndetail");
        assert_eq!(
            payload["embeds"][0]["footer"]["text"],
            "my_forge · pull_request"
        );
        // A title linking to a very long URL keeps its text and loses only the link.
        let long = format!("[title](https://h.example/{})\ndetail", "a".repeat(3000));
        let payload = sink.payload(&delivery, &long);
        assert_eq!(payload["embeds"][0]["title"], "title");
        assert!(payload["embeds"][0].get("url").is_none(), "{payload}");
        let payload = sink.payload(&delivery, "[title](https://h.example/a)\ndetail");
        assert_eq!(payload["embeds"][0]["url"], "https://h.example/a");
    }

    #[test]
    fn a_webhook_url_from_discords_ui_is_pinned_to_an_api_version() {
        let pinned = |url: &str| {
            let mut url: reqwest::Url = url.parse().unwrap();
            pin_api_version(&mut url);
            url.to_string()
        };
        assert_eq!(
            pinned("https://discord.com/api/webhooks/123/tok-en?thread_id=9"),
            "https://discord.com/api/v10/webhooks/123/tok-en?thread_id=9"
        );
        for kept in [
            "https://discord.com/api/v9/webhooks/123/token",
            "https://proxy.example/discord/api/webhooks/123/token",
            "http://127.0.0.1:9000/hook",
        ] {
            assert_eq!(pinned(kept), kept);
        }
    }

    #[test]
    fn a_429_waits_for_the_bucket_reset_before_the_bodys_retry_after() {
        let answer = |headers: &[(&'static str, &str)], body: &str| {
            let mut map = http::HeaderMap::new();
            for (name, value) in headers {
                map.insert(*name, value.parse().unwrap());
            }
            Answer {
                status: http::StatusCode::TOO_MANY_REQUESTS,
                headers: map,
                body: body.as_bytes().to_vec(),
            }
        };
        let after = |a: &Answer| match classify("chat", a) {
            Outcome::Retry { after, .. } => after,
            other => panic!("not a retry: {other:?}"),
        };
        let body = r#"{"message":"You are being rate limited.","retry_after":1500,"global":false}"#;
        assert_eq!(
            after(&answer(
                &[("x-ratelimit-reset-after", "1.5"), ("retry-after", "1500")],
                body
            )),
            Some(Duration::from_millis(1500))
        );
        // A global limit: no bucket headers, the body's seconds.
        let global =
            r#"{"message":"You are being rate limited.","retry_after":0.25,"global":true}"#;
        assert_eq!(
            after(&answer(&[("retry-after", "1")], global)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            after(&answer(&[("retry-after", "2")], "not json")),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn a_title_shows_link_labels_and_links_the_embed_to_the_first() {
        let (title, url) = plain_title(
            "**mona** pushed 3 commits to **main** of [octo\\-org/shop](https://github.com/octo-org/shop)",
        );
        assert_eq!(title, "mona pushed 3 commits to main of octo-org/shop");
        assert_eq!(url.as_deref(), Some("https://github.com/octo-org/shop"));
        // An event's escaped text shows as written, and makes no link.
        let evil = "\\[click\\](https://evil.example) \\*\\*b\\*\\*";
        let (title, url) = plain_title(evil);
        assert_eq!(title, "[click](https://evil.example) **b**");
        assert_eq!(url, None);
        let (title, url) = plain_title("[a](https://a.example): [b](https://b.example)");
        assert_eq!(title, "a: b");
        assert_eq!(url.as_deref(), Some("https://a.example"));
    }
}
