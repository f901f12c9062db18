//! Fuzzes message rendering on arbitrary events: the built-in message and subject and two
//! user templates (one printing every field an event brings, one building links and bold
//! text from them), for every target (Slack, Discord, Teams, HTML, plain). Input: a byte
//! picking the target (high nibble) and the source kind whose summary the event gets (low
//! nibble), then
//! `source \0 event type \0 delivery id \0 header lines \0 body`, one `name: value` per
//! `\n`-separated header line.
//!
//! Whatever the event holds, rendering must never panic, the built-in templates (and these
//! well-formed user ones) must render, and no event text may become markup: printed values
//! put no `<` or `>` into Slack or HTML output, and no `@` can start a Discord mention.
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use hookrelay::config::Config;
use hookrelay::sinks::Delivery;
use hookrelay::summary::Summarizer;
use hookrelay::template::{DEFAULT_MESSAGE, DEFAULT_SUBJECT, EventContext, Target, Template};
use libfuzzer_sys::fuzz_target;

const TARGETS: &[Target] = &[
    Target::Slack,
    Target::Discord,
    Target::Teams,
    Target::Html,
    Target::Plain,
];

/// Prints every value an event brings, through every filter, and no markup of its own.
const PRINTS: &str = r#"{{ source }} {{ event_type }} {{ delivery_id }} {{ event_id }} {{ received_at }} {{ test }}
{% for name, value in headers|items %}{{ name }}: {{ value|shorten(40) }} {{ value|firstline }}
{% endfor %}
{{ body }} {{ body.message|firstline }} {{ body.ref|branch }} {{ body.text|shorten }}
{% if body is mapping %}{% for key, value in body|items %}{{ key }}={{ value }} {{ value|string|shorten(3) }}
{% endfor %}{% endif %}
{% if body is sequence %}{% for value in body %}{{ loop.index }}:{{ value }}
{% endfor %}{% endif %}
{{ summary }} {{ summary.action }} {{ summary.repository }} {{ summary.component }} {{ summary.path }}
{{ summary.version }} {{ summary.actor }} {{ summary.url }} {{ summary.ref|branch }}
{{ summary.repository ~ "/" ~ summary.component }} {{ body|string }} {{ headers }}
"#;

/// Markup only through the helpers, from the event's own values.
const LINKS: &str = r#"{{ link(summary.url, summary.repository) }}
{{ link(body.url, body.title) }}
{{ link(headers["x-link"]) }}
{{ bold(event_type) }}"#;

/// The sources whose summaries an event may get, in the order the first byte picks them.
const CONFIG: &str = concat!(
    include_str!("every_summarized_source.toml"),
    r#"
[sources.plain]
kind = "none"
summary = { url = "/url", repository = "/title", action = "/a" }
"#
);

struct Templates {
    /// Per target: built-in message, built-in subject, prints, links.
    by_target: Vec<(Target, [Template; 4])>,
    summarizers: Vec<Summarizer>,
}

static TEMPLATES: LazyLock<Templates> = LazyLock::new(|| {
    let compile = |source: &str, target: Target, at: &str| {
        Template::compile(source, target, at).unwrap_or_else(|e| panic!("{at}: {e}"))
    };
    let by_target = TARGETS
        .iter()
        .map(|&target| {
            (
                target,
                [
                    compile(DEFAULT_MESSAGE, target, "built-in message"),
                    compile(DEFAULT_SUBJECT, target, "built-in subject"),
                    compile(PRINTS, target, "prints"),
                    compile(LINKS, target, "links"),
                ],
            )
        })
        .collect();
    let config = Config::parse(CONFIG, "fuzz.toml").expect("the fuzz config is valid");
    Templates {
        by_target,
        summarizers: config.sources.iter().map(Summarizer::new).collect(),
    }
});

/// The latest time `EventContext` is asked to print: 9999-12-31, the end of RFC 3339.
const LAST_MS: u64 = 253_402_300_799_999;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let templates = &*TEMPLATES;
    let mut parts = rest.splitn(5, |&b| b == 0);
    let mut text = || {
        parts
            .next()
            .and_then(|s| std::str::from_utf8(s).ok())
            .map(str::to_owned)
    };
    let source = text().unwrap_or_default();
    let event_type = text();
    let delivery_id = text();
    let lines = parts.next().unwrap_or_default();
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let headers = lines
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = String::from_utf8_lossy(&line[..colon]).into_owned();
            Some((name, line[colon + 1..].to_vec()))
        })
        .collect();
    let summarizer = &templates.summarizers[usize::from(pick & 0x0f) % templates.summarizers.len()];
    // One target per input: each render costs, and the fuzzer reaches every target anyway.
    let (target, [message, subject, prints, links]) =
        &templates.by_target[usize::from(pick >> 4) % templates.by_target.len()];
    let summary = summarizer.summarize(event_type.as_deref(), &body);
    let stamp = u64::from_le_bytes(std::array::from_fn(|i| body.get(i).copied().unwrap_or(0)));
    let delivery = Delivery {
        event_id: uuid::Uuid::from_u64_pair(stamp, stamp.rotate_left(17)),
        source: Arc::from(source.as_str()),
        event_type,
        delivery_id,
        headers,
        content_type: Some("application/json".to_owned()),
        received_at_ms: stamp % (LAST_MS + 1),
        body,
        attempt: 1,
        summary: Some(Arc::new(summary)),
    };
    let event = EventContext::new(&delivery);

    {
        for (name, template) in [
            ("message", message),
            ("subject", subject),
            ("prints", prints),
        ] {
            let out = template
                .render(&event)
                .unwrap_or_else(|e| panic!("{target:?} {name} failed on an event: {e}"));
            match target {
                Target::Slack | Target::Html if name == "prints" => assert!(
                    !out.contains(['<', '>']),
                    "{target:?}: event text became markup: {out}"
                ),
                Target::Discord => assert!(
                    out.match_indices('@')
                        .all(|(i, _)| out[i + 1..].starts_with('\u{200B}')),
                    "Discord {name}: an @ can start a mention: {out}"
                ),
                _ => {}
            }
        }
        let out = links
            .render(&event)
            .unwrap_or_else(|e| panic!("{target:?} links failed on an event: {e}"));
        match target {
            // Three links at most, each `<url|label>`; bold is `*…*`.
            Target::Slack => assert!(
                out.matches('<').count() <= 3 && out.matches('>').count() <= 3,
                "Slack: event text opened markup: {out}"
            ),
            // Three `<a href="…">…</a>` at most, and one `<b>…</b>`.
            Target::Html => assert!(
                out.matches('<').count() <= 8,
                "HTML: event text opened markup: {out}"
            ),
            _ => {}
        }
    }
});
