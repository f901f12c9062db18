//! Fuzzes the event summary on arbitrary bodies for every source kind that reads one
//! (`github`, `gitlab`, each product preset) and for configured `summary` pointers: the
//! input's first byte picks the source, the rest is `event type \0 body`. Whatever the body
//! (not JSON, a form with a `payload`, wrong types where strings are expected, deep nesting,
//! huge numbers), the summary must never panic, the router's reading of a parsed body must
//! equal the templates' reading of the raw one, and it must serialize as templates see it.
#![no_main]

use std::sync::LazyLock;

use hookrelay::config::{Config, SummaryField};
use hookrelay::summary::Summarizer;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = concat!(
    include_str!("every_summarized_source.toml"),
    r#"
[sources.pointers]
kind = "none"
summary = { action = "/a", repository = "/r/0", component = "/c~1d", path = "/p/~0", version = "/v", actor = "/x/y/z", url = "/", ref = "/ref" }

[sources.github-pointers]
kind = "github"
secret = "s"
summary = { version = "/release/tag_name", repository = "/repository/name" }
"#
);

const FIELDS: &[SummaryField] = &[
    SummaryField::Action,
    SummaryField::Repository,
    SummaryField::Component,
    SummaryField::Path,
    SummaryField::Version,
    SummaryField::Actor,
    SummaryField::Url,
    SummaryField::Ref,
];

static SUMMARIZERS: LazyLock<Vec<Summarizer>> = LazyLock::new(|| {
    let config = Config::parse(CONFIG, "fuzz.toml").expect("the fuzz config is valid");
    config.sources.iter().map(Summarizer::new).collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let summarizer = &SUMMARIZERS[usize::from(pick) % SUMMARIZERS.len()];
    let mut parts = rest.splitn(2, |&b| b == 0);
    let event_type = parts.next().and_then(|s| std::str::from_utf8(s).ok());
    let body = parts.next().unwrap_or_default();

    let summary = summarizer.summarize(event_type, body);
    // The JSON a body holds: itself, or a form's `payload` field (GitHub's form content type).
    match hookrelay::summary::body_json(body) {
        Some(json) => assert_eq!(
            summarizer.summarize_json(event_type, &json),
            summary,
            "routing and templates read different summaries"
        ),
        None => assert_eq!(
            summary,
            Default::default(),
            "a summary from a body that holds no JSON"
        ),
    }
    let shown = serde_json::to_value(&summary).expect("a summary serializes");
    let object = shown
        .as_object()
        .expect("a summary serializes as an object");
    let known = FIELDS.iter().filter(|&&f| summary.get(f).is_some()).count();
    assert_eq!(
        object.len(),
        known,
        "templates see exactly the known fields: {shown}"
    );
});
