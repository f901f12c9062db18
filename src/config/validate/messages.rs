//! Validation of the message sinks' keys (`slack`, `discord`, `teams`, `smtp`) and of which
//! sink kind takes which key.
//!
//! Templates are not compiled here (config imports no other part): a [`TemplateSource`]
//! records where it was written, and the sink that compiles it (also at `hookrelay check`)
//! reports errors at that place.

use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use toml::Spanned;

use super::super::raw::{Entry, RawSink};
use super::super::{
    DiscordSinkConfig, Rate, Secret, SinkKind, SlackSinkConfig, SlackTarget, SmtpSinkConfig,
    SmtpTls, TeamsSinkConfig, TemplateSource,
};
use super::{StandIn, Validator, locate};

/// For each sink key that only some kinds take, those kinds. `kind`, `enabled`, `paused`, `timeout`,
/// `concurrency`, `rate`, `burst` and `retry` are taken by all.
const SINK_KIND_KEYS: &[(&str, &[&str])] = &[
    (
        "url",
        &[
            "webhook",
            "slack",
            "discord",
            "teams",
            "dependency-track",
            "nats",
        ],
    ),
    ("signing_secret", &["webhook"]),
    ("headers", &["webhook"]),
    ("template", &["slack", "discord", "teams", "smtp"]),
    ("template_file", &["slack", "discord", "teams", "smtp"]),
    ("token", &["slack", "nats"]),
    ("channel", &["slack"]),
    ("api_url", &["slack"]),
    ("username", &["discord", "smtp", "nats"]),
    ("avatar_url", &["discord"]),
    ("host", &["smtp"]),
    ("port", &["smtp"]),
    ("tls", &["smtp"]),
    ("password", &["smtp", "nats"]),
    ("from", &["smtp"]),
    ("to", &["smtp"]),
    ("subject", &["smtp", "nats"]),
    // Machine-readable sinks (validated in `machines.rs`).
    ("api_key", &["dependency-track"]),
    ("project", &["dependency-track"]),
    ("project_name", &["dependency-track"]),
    ("project_version", &["dependency-track"]),
    ("auto_create", &["dependency-track"]),
    ("pointer", &["dependency-track", "guac"]),
    ("encoding", &["dependency-track", "guac"]),
    ("path", &["guac", "archive"]),
    ("tmp_path", &["guac"]),
    ("bucket", &["guac"]),
    ("prefix", &["guac"]),
    ("endpoint", &["guac"]),
    ("region", &["guac"]),
    ("access_key_id", &["guac"]),
    ("secret_access_key", &["guac"]),
    ("max_file_size", &["archive"]),
    ("nkey", &["nats"]),
    ("creds_file", &["nats"]),
    // Trust and client certificates: every sink that connects over TLS. `proxy` is for
    // HTTP clients only; SMTP and NATS connect directly.
    (
        "ca_file",
        &[
            "webhook",
            "slack",
            "discord",
            "teams",
            "dependency-track",
            "guac",
            "nats",
            "smtp",
        ],
    ),
    (
        "client_cert",
        &[
            "webhook",
            "slack",
            "discord",
            "teams",
            "dependency-track",
            "guac",
            "nats",
            "smtp",
        ],
    ),
    (
        "client_key",
        &[
            "webhook",
            "slack",
            "discord",
            "teams",
            "dependency-track",
            "guac",
            "nats",
            "smtp",
        ],
    ),
    (
        "proxy",
        &[
            "webhook",
            "slack",
            "discord",
            "teams",
            "dependency-track",
            "guac",
        ],
    ),
];

/// Slack's Web API, unless `api_url` says otherwise.
const SLACK_API: &str = "https://slack.com/api";

/// The rate a kind gets when the file names none: what the service documents.
pub(super) fn default_rate(kind: &str) -> Option<Rate> {
    match kind {
        // Slack: about one message per second per channel.
        "slack" => Some(Rate {
            count: 1,
            per: Duration::from_secs(1),
            burst: 1,
        }),
        // Discord: 30 messages a minute per channel webhook.
        "discord" => Some(Rate {
            count: 30,
            per: Duration::from_secs(60),
            burst: 5,
        }),
        _ => None,
    }
}

impl Validator<'_> {
    /// Reports every key the sink's kind does not take; true when there was one.
    pub(super) fn foreign_sink_keys(
        &mut self,
        entry: &Entry<RawSink>,
        kind: &str,
        path: &str,
    ) -> bool {
        self.foreign_keys(&entry.keys, SINK_KIND_KEYS, kind, path)
    }

    /// The keys of `slack`, `discord`, `teams` and `smtp`.
    pub(super) fn message_sink(
        &mut self,
        kind: &str,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let template = self.template(raw, path);
        match kind {
            "slack" => {
                let target = match (&raw.url, &raw.token) {
                    (Some(url), None) => {
                        if let Some(channel) = &raw.channel {
                            self.problem(
                                channel.span(),
                                key("channel"),
                                "only applies with token; an incoming webhook posts to its own \
                                 channel: remove channel, or use token instead of url",
                            );
                        }
                        self.url(url, &key("url"))
                            .map(|url| SlackTarget::Webhook { url })
                    }
                    (None, Some(token)) => {
                        let token = self.secret(token, &key("token"));
                        let channel = match &raw.channel {
                            Some(c) => Some(self.source_of(c, &key("channel"))),
                            None => {
                                self.problem(
                                    token_span(raw),
                                    key("token"),
                                    "needs a channel; add channel = \"#builds\" (a name or an \
                                     id such as \"C0123456789\"; templated)",
                                );
                                None
                            }
                        };
                        let api_url = match &raw.api_url {
                            Some(u) => self.url(u, &key("api_url")),
                            None => Some(SLACK_API.to_string()),
                        };
                        Some(SlackTarget::Api {
                            token: token?,
                            channel: channel?,
                            api_url: api_url?.trim_end_matches('/').to_string(),
                        })
                    }
                    (Some(url), Some(_)) => {
                        self.problem(
                            url.span(),
                            key("url"),
                            "give url (an incoming webhook) or token (a bot token, with \
                             channel), not both",
                        );
                        None
                    }
                    (None, None) => {
                        self.problem(
                            entry.name.span(),
                            path,
                            "missing url or token; add url = \"https://hooks.slack.com/services/...\" \
                             (an incoming webhook) or token = \"${env:SLACK_BOT_TOKEN}\" with channel",
                        );
                        None
                    }
                };
                if raw.api_url.is_some() && raw.token.is_none() {
                    let span = raw.api_url.as_ref().map_or(0..0, Spanned::span);
                    self.problem(
                        span,
                        key("api_url"),
                        "only applies with token (chat.postMessage); remove it",
                    );
                    return None;
                }
                Some(SinkKind::Slack(SlackSinkConfig {
                    target: target?,
                    template: template?,
                }))
            }
            "discord" => {
                let url = self.required_url(entry, raw, path, "the channel webhook's URL");
                let avatar_url = match &raw.avatar_url {
                    Some(u) => self.url(u, &key("avatar_url")).map(Some),
                    None => Some(None),
                };
                let username = match &raw.username {
                    Some(u) => self
                        .bounded_text(u, &key("username"), 80)
                        .and_then(|name| self.discord_name(u, &key("username"), name))
                        .map(Some),
                    None => Some(None),
                };
                Some(SinkKind::Discord(DiscordSinkConfig {
                    url: url?,
                    username: username?,
                    avatar_url: avatar_url?,
                    template: template?,
                }))
            }
            "teams" => {
                let url = self.required_url(entry, raw, path, "the Workflows webhook's URL");
                Some(SinkKind::Teams(TeamsSinkConfig {
                    url: url?,
                    template: template?,
                }))
            }
            _ => self.smtp(entry, raw, path, template).map(SinkKind::Smtp),
        }
    }

    fn smtp(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
        template: Option<Option<TemplateSource>>,
    ) -> Option<SmtpSinkConfig> {
        let key = |k: &str| format!("{path}.{k}");
        let host = match &raw.host {
            Some(h) if valid_host(h.get_ref()) => Some(h.get_ref().clone()),
            Some(h) => {
                self.problem(
                    h.span(),
                    key("host"),
                    "is not a host name; write the SMTP server's name, e.g. \"smtp.example.com\"",
                );
                None
            }
            None => self.missing(
                entry.name.span(),
                path,
                "missing host; add host = \"smtp.example.com\", the SMTP server",
            ),
        };
        let tls = self.choice(
            raw.tls.as_ref(),
            &key("tls"),
            &[
                ("starttls", SmtpTls::Starttls),
                ("implicit", SmtpTls::Implicit),
                ("none", SmtpTls::None),
            ],
            SmtpTls::Starttls,
        );
        let default_port = match tls {
            Some(SmtpTls::Implicit) => 465,
            Some(SmtpTls::None) => 25,
            _ => 587,
        };
        let port = self.integer(raw.port.as_ref(), &key("port"), default_port, 1..=65535);
        let credentials = match (&raw.username, &raw.password) {
            (None, None) => Some(None),
            (Some(user), Some(password)) => {
                let user = self.bounded_text(user, &key("username"), 320);
                let password = self.secret(password, &key("password"));
                user.zip(password).map(Some)
            }
            (Some(user), None) => {
                self.problem(
                    user.span(),
                    key("username"),
                    "needs a password; add password = \"${env:SMTP_PASSWORD}\"",
                );
                None
            }
            (None, Some(password)) => {
                self.problem(
                    password.span(),
                    key("password"),
                    "needs a username; add username = \"...\"",
                );
                None
            }
        };
        let from = match &raw.from {
            Some(f) => self.mailbox(f, &key("from")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing from; add from = \"hookrelay <relay@example.com>\"",
            ),
        };
        let to = match &raw.to {
            Some(list) if list.get_ref().0.is_empty() => {
                self.problem(
                    list.span(),
                    key("to"),
                    "is an empty list; give at least one recipient",
                );
                None
            }
            Some(list) => {
                let all: Vec<_> = list
                    .get_ref()
                    .0
                    .iter()
                    .map(|m| self.mailbox(m, &key("to")))
                    .collect();
                all.into_iter().collect::<Option<Vec<_>>>()
            }
            None => self.missing(
                entry.name.span(),
                path,
                "missing to; add to = [\"team@example.com\"], the recipients",
            ),
        };
        let subject = raw
            .subject
            .as_ref()
            .map(|s| self.source_of(s, &key("subject")));
        Some(SmtpSinkConfig {
            host: host?,
            port: u16::try_from(port?).ok()?,
            tls: tls?,
            credentials: credentials?,
            from: from?,
            to: to?,
            subject,
            template: template?,
        })
    }

    /// `template = "…"` or `template_file = "…"` (relative to the config file's folder).
    fn template(&mut self, raw: &RawSink, path: &str) -> Option<Option<TemplateSource>> {
        match (&raw.template, &raw.template_file) {
            (None, None) => Some(None),
            (Some(t), None) => Some(Some(self.source_of(t, &format!("{path}.template")))),
            (Some(_), Some(file)) => {
                self.problem(
                    file.span(),
                    format!("{path}.template_file"),
                    "give template or template_file, not both",
                );
                None
            }
            (None, Some(file)) => {
                let key = format!("{path}.template_file");
                let full = self.dir.join(file.get_ref());
                match std::fs::read_to_string(&full) {
                    Ok(text) => {
                        let (line, column, _) = locate(self.text, file.span());
                        Some(Some(TemplateSource {
                            text,
                            at: format!(
                                "{} (from {}:{line}:{column}: {key})",
                                full.display(),
                                self.origin
                            ),
                        }))
                    }
                    Err(e) => {
                        self.problem(
                            file.span(),
                            key,
                            format!(
                                "cannot read {}: {e}; the path is relative to the \
                                 configuration file's folder",
                                full.display()
                            ),
                        );
                        None
                    }
                }
            }
        }
    }

    /// A templated value written in the file, with its place.
    pub(super) fn source_of(&self, value: &Spanned<String>, key: &str) -> TemplateSource {
        let (line, column, _) = locate(self.text, value.span());
        TemplateSource {
            text: value.get_ref().clone(),
            at: format!("{}:{line}:{column}: {key}", self.origin),
        }
    }

    fn required_url(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
        what: &str,
    ) -> Option<String> {
        match &raw.url {
            Some(u) => self.url(u, &format!("{path}.url")),
            None => self.missing(
                entry.name.span(),
                path,
                format!("missing url; add url = \"https://...\", {what}"),
            ),
        }
    }

    /// One secret (`${env:..}`, `${file:..}` or inline), as text-free bytes.
    pub(super) fn secret(&mut self, value: &Spanned<String>, key: &str) -> Option<Secret> {
        match self.resolve(value.get_ref(), StandIn::Text) {
            Ok(bytes) if bytes.is_empty() => {
                self.problem(value.span(), key, "is empty; give the secret's value");
                None
            }
            Ok(bytes) => Some(Secret::new(bytes)),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }

    /// A mailbox such as `Team <team@example.com>` or `team@example.com`.
    fn mailbox(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        match lettre::message::Mailbox::from_str(value.get_ref()) {
            Ok(_) => Some(value.get_ref().clone()),
            Err(e) => {
                self.problem(
                    value.span(),
                    key,
                    format!(
                        "is not a mail address ({e}); write \"team@example.com\" or \
                         \"Team <team@example.com>\""
                    ),
                );
                None
            }
        }
    }

    /// Non-empty one-line text of at most `max` characters.
    fn bounded_text(&mut self, value: &Spanned<String>, key: &str, max: usize) -> Option<String> {
        let text = value.get_ref();
        let ok = !text.trim().is_empty()
            && text.chars().count() <= max
            && !text.chars().any(char::is_control);
        if !ok {
            self.problem(
                value.span(),
                key,
                format!("must be 1 to {max} characters on one line"),
            );
            return None;
        }
        Some(text.clone())
    }

    /// A name Discord takes for a webhook message: it answers `400` (and every message would
    /// become a dead letter) to one containing "discord", "clyde", `@`, `#`, `:` or three
    /// backticks, or one that is "everyone" or "here".
    fn discord_name(&mut self, value: &Spanned<String>, key: &str, name: String) -> Option<String> {
        let lower = name.to_lowercase();
        let refused = ["discord", "clyde", "@", "#", ":", "```"]
            .into_iter()
            .find(|part| lower.contains(part))
            .or_else(|| {
                ["everyone", "here"]
                    .into_iter()
                    .find(|n| lower.trim() == *n)
            });
        match refused {
            None => Some(name),
            Some(part) => {
                self.problem(
                    value.span(),
                    key,
                    format!(
                        "Discord refuses a webhook username with \"{part}\" in it (it also \
                         refuses \"discord\", \"clyde\", @, #, : and ```, and the names \
                         \"everyone\" and \"here\"); choose another name"
                    ),
                );
                None
            }
        }
    }
}

/// Where to point when a Slack token lacks its channel.
fn token_span(raw: &RawSink) -> Range<usize> {
    raw.token.as_ref().map_or(0..0, Spanned::span)
}

/// A DNS name or an IP address: no scheme, port, path or spaces.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::parse;
    use super::*;

    /// Bad message-sink values: text, key, and a part of the message; run by validate's
    /// `bad_values_say_what_is_allowed`.
    pub(in super::super) const BAD_VALUES: &[(&str, &str, &str)] = &[
        (
            "[sinks.s]\nkind = \"slack\"\nurl = \"https://h\"\ntoken = \"xoxb-1\"\n",
            "sinks.s.url",
            "not both",
        ),
        (
            "[sinks.s]\nkind = \"slack\"\ntoken = \"xoxb-1\"\n",
            "sinks.s.token",
            "needs a channel",
        ),
        (
            "[sinks.s]\nkind = \"slack\"\nurl = \"https://h\"\nchannel = \"#a\"\n",
            "sinks.s.channel",
            "only applies with token",
        ),
        (
            "[sinks.s]\nkind = \"discord\"\nurl = \"https://h\"\ntoken = \"t\"\n",
            "sinks.s.token",
            "kind \"discord\" takes no token; only kinds \"slack\" or \"nats\" take it",
        ),
        (
            "[sinks.s]\nkind = \"teams\"\nurl = \"https://h\"\ntemplate = \"x\"\ntemplate_file = \"t.j2\"\n",
            "sinks.s.template_file",
            "not both",
        ),
        (
            "[sinks.s]\nkind = \"teams\"\nurl = \"https://h\"\ntemplate_file = \"/nonexistent/t.j2\"\n",
            "sinks.s.template_file",
            "cannot read /nonexistent/t.j2",
        ),
        (
            "[sinks.s]\nkind = \"smtp\"\nhost = \"mail\"\nto = \"a@b.example\"\n",
            "sinks.s",
            "missing from",
        ),
        (
            "[sinks.s]\nkind = \"smtp\"\nhost = \"mail\"\nfrom = \"a@b.example\"\nto = [\"not an address\"]\n",
            "sinks.s.to",
            "is not a mail address",
        ),
        (
            "[sinks.s]\nkind = \"smtp\"\nhost = \"mail\"\nfrom = \"a@b.example\"\nto = \"c@d.example\"\ntls = \"ssl\"\n",
            "sinks.s.tls",
            "unknown value \"ssl\"",
        ),
        (
            "[sinks.s]\nkind = \"discord\"\nurl = \"https://discord.example/api/webhooks/1/x\"\nusername = \"Discord Release Bot\"\n",
            "sinks.s.username",
            "Discord refuses a webhook username with \"discord\" in it",
        ),
        (
            "[sinks.s]\nkind = \"discord\"\nurl = \"https://discord.example/api/webhooks/1/x\"\nusername = \"Here\"\n",
            "sinks.s.username",
            "with \"here\" in it",
        ),
        (
            "[sinks.s]\nkind = \"smtp\"\nhost = \"mail\"\nfrom = \"a@b.example\"\nto = \"c@d.example\"\nusername = \"u\"\n",
            "sinks.s.username",
            "needs a password",
        ),
        (
            "[sinks.s]\nkind = \"smtp\"\nhost = \"smtp://mail\"\nfrom = \"a@b.example\"\nto = \"c@d.example\"\n",
            "sinks.s.host",
            "is not a host name",
        ),
    ];

    #[test]
    fn message_sinks_parse_with_defaults_and_template_places() {
        let text = "\
[sinks.chat]
kind = \"slack\"
token = \"xoxb-test\"
channel = \"#{{ source }}\"
template = \"{{ event_type }}\"

[sinks.hook]
kind = \"slack\"
url = \"https://hooks.slack.example/services/T/B/X\"

[sinks.mail]
kind = \"smtp\"
host = \"mail.example.com\"
tls = \"implicit\"
username = \"relay\"
password = \"pw\"
from = \"hookrelay <relay@example.com>\"
to = [\"a@example.com\", \"B <b@example.com>\"]
subject = \"{{ source }}\"
";
        let c = parse(text, "hookrelay.toml").unwrap();
        let SinkKind::Slack(chat) = &c.sinks[0].kind else {
            panic!("chat is slack")
        };
        assert_eq!(c.sinks[0].rate, default_rate("slack"));
        let SlackTarget::Api {
            channel, api_url, ..
        } = &chat.target
        else {
            panic!("token means the Web API")
        };
        assert_eq!(api_url, SLACK_API);
        assert_eq!(channel.at, "hookrelay.toml:4:11: sinks.chat.channel");
        assert_eq!(
            chat.template.as_ref().unwrap().at,
            "hookrelay.toml:5:12: sinks.chat.template"
        );
        let SinkKind::Smtp(mail) = &c.sinks[2].kind else {
            panic!("mail is smtp")
        };
        assert_eq!(mail.port, 465);
        assert_eq!(mail.tls, SmtpTls::Implicit);
        assert_eq!(mail.to.len(), 2);
        assert_eq!(
            mail.credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.expose())),
            Some(("relay", &b"pw"[..]))
        );
        assert_eq!(c.sinks[2].rate, None);
    }

    #[test]
    fn a_password_sent_in_clear_is_warned_about_unless_the_server_is_local() {
        let mail = |host: &str, tls: &str| {
            format!(
                "[sinks.mail]\nkind = \"smtp\"\nhost = \"{host}\"\ntls = \"{tls}\"\n\
                 username = \"relay\"\npassword = \"pw\"\nfrom = \"r@example.com\"\n\
                 to = [\"a@example.com\"]\n"
            )
        };
        let warned = |text: &str| {
            parse(text, "t.toml")
                .unwrap()
                .warnings()
                .into_iter()
                .filter(|(key, _)| key == "sinks.mail.tls")
                .map(|(_, warning)| warning)
                .collect::<Vec<_>>()
        };
        let clear = warned(&mail("smtp.example.com", "none"));
        assert_eq!(clear.len(), 1);
        assert!(clear[0].contains("in clear"), "{clear:?}");
        assert!(warned(&mail("smtp.example.com", "starttls")).is_empty());
        assert!(warned(&mail("127.0.0.1", "none")).is_empty());
        assert!(warned(&mail("localhost", "none")).is_empty());
    }
}
