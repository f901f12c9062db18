//! Validation of `kind = "nats"`: the servers, the subject template and the credentials.
//!
//! The subject template is compiled by the sink (at start and at `hookrelay check`), like
//! the message templates; here it only gets its place. At most one way to authenticate is
//! accepted, and a creds file is read while loading so a missing one is reported at once.
//! No message quotes a URL, a seed, a token or a password.

use toml::Spanned;

use super::super::raw::{Entry, RawSink};
use super::super::{NatsAuth, NatsSinkConfig, SinkKind, TemplateSource};
use super::{StandIn, Validator, locate};

/// The URL schemes the NATS client speaks (websockets are left out of the build).
const SCHEMES: &[&str] = &["nats", "tls"];

impl Validator<'_> {
    pub(super) fn nats_sink(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let servers = match &raw.url {
            Some(u) => self.nats_servers(u, &key("url")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing url; add url = \"nats://host:4222\" (several servers: \
                     \"nats://a:4222,nats://b:4222\")",
            ),
        };
        let subject = match &raw.subject {
            Some(s) if s.get_ref().trim().is_empty() => {
                self.problem(
                    s.span(),
                    key("subject"),
                    "is empty; write a subject such as \"hooks.{{ source }}.{{ event_type }}\"",
                );
                None
            }
            Some(s) => {
                let (line, column, _) = locate(self.text, s.span());
                Some(TemplateSource {
                    text: s.get_ref().clone(),
                    at: format!("{}:{line}:{column}: {}", self.origin, key("subject")),
                })
            }
            None => self.missing(
                entry.name.span(),
                path,
                "missing subject; add subject = \"hooks.{{ source }}.{{ event_type }}\" \
                     (a stream must listen on the subjects it renders)",
            ),
        };
        let auth = self.nats_auth(raw, path);
        Some(SinkKind::Nats(NatsSinkConfig {
            servers: servers?,
            subject: subject?,
            auth: auth?,
        }))
    }

    /// `url`: one server, or several separated by commas (the NATS tools' convention).
    fn nats_servers(&mut self, value: &Spanned<String>, key: &str) -> Option<Vec<String>> {
        let checked = self
            .resolve(value.get_ref(), StandIn::NatsServers)
            .and_then(|bytes| {
                let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
                let mut servers = Vec::new();
                for (i, part) in text.split(',').map(str::trim).enumerate() {
                    let nth = i + 1;
                    let url = reqwest::Url::parse(part).map_err(|e| {
                        format!(
                            "server {nth} is not a valid URL ({e}); write \"nats://host:4222\", \
                         several separated by commas"
                        )
                    })?;
                    if !SCHEMES.contains(&url.scheme()) {
                        return Err(format!(
                            "server {nth} must be a nats:// or tls:// URL (tls:// requires TLS)"
                        ));
                    }
                    if url.host_str().is_none_or(str::is_empty) {
                        return Err(format!(
                            "server {nth} has no host; write \"nats://host:4222\""
                        ));
                    }
                    servers.push(part.to_string());
                }
                Ok(servers)
            });
        match checked {
            Ok(servers) => Some(servers),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
    }

    /// At most one of `username`/`password`, `token`, `nkey`, `creds_file`.
    fn nats_auth(&mut self, raw: &RawSink, path: &str) -> Option<NatsAuth> {
        let key = |k: &str| format!("{path}.{k}");
        let given: Vec<(&str, &Spanned<String>)> = [
            ("username", raw.username.as_ref()),
            ("token", raw.token.as_ref()),
            ("nkey", raw.nkey.as_ref()),
            ("creds_file", raw.creds_file.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
        if let [_, (second, value), ..] = given.as_slice() {
            self.problem(
                value.span(),
                key(second),
                format!(
                    "give one way to authenticate, not {} and {second}",
                    given[0].0
                ),
            );
            return None;
        }
        if let (Some(password), None) = (&raw.password, &raw.username) {
            self.problem(
                password.span(),
                key("password"),
                "needs username too; add username = \"...\"",
            );
            return None;
        }
        match given.first() {
            None => Some(NatsAuth::None),
            Some(("username", user)) => {
                let Some(password) = &raw.password else {
                    self.problem(
                        user.span(),
                        key("username"),
                        "needs password too; add password = \"${env:NATS_PASSWORD}\"",
                    );
                    return None;
                };
                let password = self.secret(password, &key("password"))?;
                Some(NatsAuth::UserPassword {
                    user: user.get_ref().clone(),
                    password,
                })
            }
            Some(("token", token)) => self.secret(token, &key("token")).map(NatsAuth::Token),
            Some(("nkey", seed)) => {
                let secret = self.secret(seed, &key("nkey"))?;
                let text = std::str::from_utf8(secret.expose()).unwrap_or("");
                if !text.trim().starts_with("SU") {
                    self.problem(
                        seed.span(),
                        key("nkey"),
                        "is not an NKey user seed (it starts with SU); give the seed that \
                         `nsc` or `nk -gen user` wrote, e.g. nkey = \"${file:user.nk}\"",
                    );
                    return None;
                }
                Some(NatsAuth::NKey(secret))
            }
            Some((_, file)) => {
                let full = self.dir.join(file.get_ref());
                match std::fs::read(&full) {
                    Ok(bytes)
                        if std::str::from_utf8(&bytes).is_ok_and(|t| {
                            t.contains("BEGIN NATS USER JWT") && t.contains("BEGIN USER NKEY SEED")
                        }) =>
                    {
                        Some(NatsAuth::Creds(super::Secret::new(bytes)))
                    }
                    Ok(_) => {
                        self.problem(
                            file.span(),
                            key("creds_file"),
                            format!(
                                "{} is not a NATS creds file (a user JWT and NKey seed, as \
                                 `nsc generate creds` writes)",
                                full.display()
                            ),
                        );
                        None
                    }
                    Err(e) => {
                        self.problem(
                            file.span(),
                            key("creds_file"),
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
}

#[cfg(test)]
mod tests {
    use super::super::super::{Config, ConfigError};
    use super::*;

    const ROUTE: &str = "[sources.a]\nkind = \"none\"\n[[routes]]\nfrom = \"a\"\nto = [\"s\"]\n";

    fn parse(sink: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{ROUTE}[sinks.s]\n{sink}\n"), "t.toml")
    }

    fn nats(sink: &str) -> NatsSinkConfig {
        match parse(sink).unwrap_or_else(|e| panic!("{e}")).sinks[0]
            .kind
            .clone()
        {
            SinkKind::Nats(c) => c,
            other => panic!("not a nats sink: {other:?}"),
        }
    }

    fn one_problem(sink: &str, key: &str, needle: &str) {
        let err = parse(sink).expect_err("the config is invalid");
        let got: Vec<String> = err
            .problems()
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect();
        assert!(
            got.iter()
                .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(needle)),
            "expected {key}: ..{needle}.. in {got:#?}"
        );
    }

    const BASE: &str =
        "kind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\nsubject = \"h.{{ source }}\"\n";

    #[test]
    fn takes_servers_a_subject_and_no_credentials() {
        let c = nats(BASE);
        assert_eq!(c.servers, ["nats://127.0.0.1:4222"]);
        assert_eq!(c.subject.text, "h.{{ source }}");
        assert!(
            c.subject.at.starts_with("t.toml:9:11: sinks.s.subject"),
            "{}",
            c.subject.at
        );
        assert!(matches!(c.auth, NatsAuth::None));
        let c = nats(
            "kind = \"nats\"\nurl = \"nats://a:4222, tls://b:4222\"\nsubject = \"x\"\n\
             username = \"u\"\npassword = \"p\"",
        );
        assert_eq!(c.servers, ["nats://a:4222", "tls://b:4222"]);
        assert!(matches!(c.auth, NatsAuth::UserPassword { ref user, .. } if user == "u"));
    }

    #[test]
    fn mistakes_are_named() {
        one_problem("kind = \"nats\"\nsubject = \"x\"", "sinks.s", "missing url");
        one_problem(
            "kind = \"nats\"\nurl = \"nats://a\"",
            "sinks.s",
            "missing subject",
        );
        one_problem(
            "kind = \"nats\"\nurl = \"http://a:4222\"\nsubject = \"x\"",
            "sinks.s.url",
            "server 1 must be a nats:// or tls:// URL",
        );
        one_problem(
            &format!("{BASE}token = \"t\"\nnkey = \"SUAAA\""),
            "sinks.s.nkey",
            "not token and nkey",
        );
        one_problem(
            &format!("{BASE}password = \"p\""),
            "sinks.s.password",
            "needs username",
        );
        one_problem(
            &format!("{BASE}nkey = \"UAAA\""),
            "sinks.s.nkey",
            "not an NKey user seed",
        );
        one_problem(
            &format!("{BASE}creds_file = \"/nonexistent/x.creds\""),
            "sinks.s.creds_file",
            "cannot read",
        );
        one_problem(
            &format!("{BASE}proxy = \"none\""),
            "sinks.s.proxy",
            "takes no proxy",
        );
    }
}
