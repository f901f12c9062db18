//! Masks a sink's secrets in what its receiver says back. A receiver (or a proxy, or an
//! error page) may echo the request it got, URL and headers included, and that text becomes
//! an attempt's error: kept in the store, shown by the admin API, logged and carried by
//! notices to other sinks. Every secret the sink sends is replaced by `***` there first.
//!
//! The secrets: each URL the sink posts to, whole, and its password, the Basic credentials
//! made from it, its query values and its long path segments (Slack and Discord webhook
//! URLs carry their token in the path); the static header values and the credentials in
//! them (the token after `Bearer`, `Basic`'s password); and the sink kind's own credentials
//! (API key, token, password, S3 keys). What a receiver said reaches the mask already cut to
//! a snippet, so a secret's start that ends it is masked too.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::Outcome;
use crate::config::{
    NatsAuth, Proxy, Secret, SinkConfig, SinkKind, SlackTarget, WebhookSinkConfig,
};

/// Shorter values are not masked: they are not secrets worth the name, and masking them
/// would blank ordinary words in the receiver's text.
const SHORTEST: usize = 6;
/// The fewest characters of a secret masked where a cut snippet ends inside it: fewer tell
/// nothing, and masking them would blank ordinary endings.
const SHORTEST_CUT: usize = 6;
/// A URL path segment this long is taken for a token.
const TOKEN_SEGMENT: usize = 16;

/// The secrets of one sink, longest first, so a secret that contains another is masked
/// whole.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// The secrets `config`'s sink sends.
    pub fn new(config: &SinkConfig) -> Redactor {
        let mut secrets = Vec::new();
        let mut url = |u: &str| url_secrets(u, &mut secrets);
        match &config.kind {
            SinkKind::Webhook(WebhookSinkConfig {
                url: u, headers, ..
            }) => {
                url(u);
                for (_, value) in headers {
                    if let Ok(text) = value.to_str() {
                        header_secrets(text, &mut secrets);
                    }
                }
            }
            SinkKind::Slack(c) => match &c.target {
                SlackTarget::Webhook { url: u } => url(u),
                SlackTarget::Api { token, .. } => secrets.extend(text(token)),
            },
            SinkKind::Discord(c) => url(&c.url),
            SinkKind::Teams(c) => url(&c.url),
            SinkKind::DependencyTrack(c) => {
                url(&c.url);
                secrets.extend(text(&c.api_key));
            }
            SinkKind::Guac(c) => {
                if let crate::config::GuacTarget::S3(s3) = &c.target {
                    if let Some(endpoint) = &s3.endpoint {
                        url(endpoint);
                    }
                    secrets.extend(text(&s3.access_key_id));
                    secrets.extend(text(&s3.secret_access_key));
                }
            }
            SinkKind::Smtp(c) => {
                if let Some((_, password)) = &c.credentials {
                    secrets.extend(text(password));
                }
            }
            SinkKind::Nats(c) => {
                for server in &c.servers {
                    url(server);
                }
                match &c.auth {
                    NatsAuth::UserPassword { password, .. } => secrets.extend(text(password)),
                    NatsAuth::Token(s) | NatsAuth::NKey(s) | NatsAuth::Creds(s) => {
                        secrets.extend(text(s))
                    }
                    NatsAuth::None => {}
                }
            }
            SinkKind::Archive(_) => {}
        }
        if let Proxy::Url(proxy) = &config.outbound.proxy {
            url_secrets(proxy, &mut secrets);
        }
        secrets.retain(|s| s.len() >= SHORTEST);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with every secret replaced by `***`, and a secret's start that ends the text
    /// too: what a receiver said is cut to a snippet before it gets here, and the cut may
    /// fall inside a secret.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        // A value with a space is also listed by its parts (`Bearer` and the token): its
        // first word alone is no secret.
        for secret in self.secrets.iter().filter(|s| !s.contains(' ')) {
            while let Some(cut) = cut_secret(&out, secret) {
                out = Cow::Owned(format!("{}***{}", &out[..cut.start], &out[cut.end..]));
            }
        }
        out
    }

    /// `outcome` with its error message masked.
    pub fn outcome(&self, mut outcome: Outcome) -> Outcome {
        if let Outcome::Retry { error, .. } | Outcome::Failed(error) = &mut outcome
            && let Cow::Owned(masked) = self.text(&error.message)
        {
            error.message = masked;
        }
        outcome
    }
}

/// Where the start of `secret` (at least [`SHORTEST_CUT`] characters, not all of it) ends a
/// snippet in `text`: at the text's end, or before the `…` or `"` that close a receiver's
/// answer quoted in an error message.
fn cut_secret(text: &str, secret: &str) -> Option<std::ops::Range<usize>> {
    let shortest = secret.char_indices().nth(SHORTEST_CUT)?.0;
    let mut from = 0;
    while let Some(found) = text[from..].find(&secret[..shortest]) {
        let start = from + found;
        let matched = text[start..]
            .char_indices()
            .zip(secret.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        let end = start + matched;
        let closes = text[end..].is_empty() || text[end..].starts_with(['…', '"']);
        if matched < secret.len() && closes {
            return Some(start..end);
        }
        from = start + text[start..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

/// A static header's value, and the credentials in it: the token after an auth scheme
/// (`Bearer abc…`), and for `Basic` the decoded `user:password` and password, each as a
/// receiver could echo it.
fn header_secrets(value: &str, out: &mut Vec<String>) {
    out.push(value.to_owned());
    let mut parts = value.split_whitespace();
    let scheme = parts.next().unwrap_or("");
    for credential in parts {
        out.push(credential.to_owned());
        if scheme.eq_ignore_ascii_case("basic")
            && let Some(pair) = BASE64
                .decode(credential)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
        {
            if let Some((_, password)) = pair.split_once(':') {
                out.push(password.to_owned());
            }
            out.push(pair);
        }
    }
}

/// A secret's text, when it is text.
fn text(secret: &Secret) -> Option<String> {
    std::str::from_utf8(secret.expose()).ok().map(str::to_owned)
}

/// The parts of `url` that may be secret, in the forms a receiver could echo them.
fn url_secrets(url: &str, out: &mut Vec<String>) {
    out.push(url.to_owned());
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return;
    };
    if let Some(password) = parsed.password() {
        out.push(password.to_owned());
        let user = parsed.username();
        out.push(BASE64.encode(format!("{user}:{password}")));
        let decoded = crate::admin::percent_decode(password);
        out.push(BASE64.encode(format!("{user}:{decoded}")));
        out.push(decoded);
    }
    if let Some(query) = parsed.query() {
        out.push(query.to_owned());
    }
    for (_, value) in parsed.query_pairs() {
        out.push(value.into_owned());
    }
    for segment in parsed.path_segments().into_iter().flatten() {
        if segment.len() >= TOKEN_SEGMENT {
            out.push(segment.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn redactor(sink: &str) -> Redactor {
        let text = format!("[sources.s]\nkind = \"none\"\n\n[sinks.x]\n{sink}");
        let config = Config::parse(&text, "t.toml").unwrap();
        Redactor::new(&config.sinks[0])
    }

    #[test]
    fn a_header_credential_echoed_alone_or_cut_short_is_masked() {
        let basic = BASE64.encode("svc:basic-pass-42");
        let r = redactor(&format!(
            "kind = \"webhook\"\nurl = \"https://h.example/in\"\n\
             headers = {{ Authorization = \"Bearer echosecrettoken777\", X-Proxy = \"Basic {basic}\" }}\n"
        ));
        assert_eq!(
            r.text("401 invalid token echosecrettoken777"),
            "401 invalid token ***"
        );
        assert_eq!(
            r.text("bad password basic-pass-42 for svc"),
            "bad password *** for svc"
        );
        // The snippet was cut inside the token, with or without an ellipsis after it, and
        // quoted in the attempt's error.
        assert_eq!(
            r.text("got Authorization: Bearer echosecre"),
            "got Authorization: Bearer ***"
        );
        assert_eq!(r.text("got echosecrettok…"), "got ***…");
        assert_eq!(
            r.text("receiver answered 400: \"xxx Bearer echosecretto\"; not retrying. See"),
            "receiver answered 400: \"xxx Bearer ***\"; not retrying. See"
        );
        // A secret's start followed by other text was not cut there: it is some other word.
        assert_eq!(r.text("echosecre is fine"), "echosecre is fine");
        // A few characters tell little and may be an ordinary ending.
        assert_eq!(r.text("the echo"), "the echo");
        assert_eq!(r.text("the echos"), "the echos");
        assert_eq!(r.text("Bearer"), "Bearer");
    }

    #[test]
    fn a_webhook_url_and_headers_echoed_back_are_masked() {
        let r = redactor(
            "kind = \"webhook\"\nurl = \"https://bob:p%40ss-word@h.example/in?api_key=SINKURLTOKEN_888&x=1\"\n\
             headers = { Authorization = \"Bearer header-token-123\" }\n",
        );
        let basic = BASE64.encode("bob:p@ss-word");
        let echoed = format!(
            "500: \"got POST /in?api_key=SINKURLTOKEN_888&x=1 authorization: Basic {basic} \
             and Bearer header-token-123; password p@ss-word\""
        );
        let masked = r.text(&echoed);
        for secret in ["SINKURLTOKEN_888", &basic, "header-token-123", "p@ss-word"] {
            assert!(!masked.contains(secret), "{secret} in {masked}");
        }
        assert!(masked.contains("got POST /in?***"), "{masked}");
        // Nothing to mask: the text is not copied.
        assert!(matches!(r.text("plain error"), Cow::Borrowed(_)));
    }

    #[test]
    fn chat_webhook_tokens_in_the_path_and_api_keys_are_masked() {
        let r = redactor(
            "kind = \"slack\"\nurl = \"https://hooks.slack.example/services/T0001/B0001/abcdefghijklmnopqrstuvwx\"\n",
        );
        assert_eq!(
            r.text("no_service for services/T0001/B0001/abcdefghijklmnopqrstuvwx"),
            "no_service for services/T0001/B0001/***"
        );
        let r = redactor(
            "kind = \"dependency-track\"\nurl = \"https://dt.example\"\napi_key = \"odt_secretkey42\"\nproject = \"00000000-0000-0000-0000-000000000000\"\n",
        );
        assert_eq!(r.text("key odt_secretkey42 refused"), "key *** refused");
    }

    #[test]
    fn an_outcome_keeps_its_kind_and_status() {
        let r = redactor("kind = \"webhook\"\nurl = \"https://h.example/in?token=abcdef123\"\n");
        let outcome = r.outcome(Outcome::Failed(super::super::SinkError::new(
            Some(400),
            "bad token=abcdef123".into(),
        )));
        let Outcome::Failed(error) = outcome else {
            panic!("still failed")
        };
        assert_eq!(error.status, Some(400));
        // The whole query string is one of the secrets.
        assert_eq!(error.message, "bad ***");
    }
}
