//! The e-mail sink (`kind = "smtp"`): one mail per event through an SMTP server, with lettre
//! over rustls (`tls = "starttls"` required, `"implicit"` from the first byte, or `"none"`).
//!
//! The mail is `multipart/alternative`: a plain-text part and an HTML part rendered from the
//! same template (escaped for each), CRLF line endings. The subject is rendered as plain text
//! and folded onto one line, so an event cannot add a header (`\r\nBcc: …`); lettre encodes
//! what is left. The `Message-ID` is derived from the event id, the same on every attempt,
//! so a mail system can drop a duplicate after a retry.
//!
//! Answers: a 2xx reply delivered; a permanent rejection (5xx) is never retried; a transient
//! one (4xx), a timeout and any connection or TLS failure retry. One pooled connection per
//! sink. The password never appears in an error or a log line.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::chat;
use super::{Delivery, Outcome, Sink, SinkBuildError, SinkError};
use crate::config::{SmtpSinkConfig, SmtpTls};
use crate::template::{DEFAULT_SUBJECT, Target, Template, one_line};

/// Idle pooled connections are closed after this long (servers drop them at about 5 min).
const POOL_IDLE: Duration = Duration::from_secs(60);
/// The longest subject sent, in characters.
const MAX_SUBJECT: usize = 200;

/// Sends mail through one SMTP server.
pub struct SmtpSink {
    name: String,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Template,
    text: Template,
    html: Template,
}

impl fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSink")
            .field("name", &self.name)
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Builds the sink: its transport (no connection yet) and compiled templates.
    pub fn new(
        name: &str,
        config: &SmtpSinkConfig,
        timeout: Duration,
    ) -> Result<SmtpSink, SinkBuildError> {
        let fail = |message: String| SinkBuildError {
            sink: name.to_string(),
            message,
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = match config.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host),
            SmtpTls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &config.host,
            )),
        }
        .map_err(|e| fail(format!("cannot set up TLS for the SMTP server: {e}")))?;
        let mut builder = builder
            .port(config.port)
            .timeout(Some(timeout))
            .pool_config(PoolConfig::new().max_size(1).idle_timeout(POOL_IDLE));
        if let Some((user, password)) = &config.credentials {
            let password = String::from_utf8(password.expose().to_vec())
                .map_err(|_| fail(format!("[sinks.{name}] password is not UTF-8 text")))?;
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let mailbox = |text: &str, key: &str| {
            Mailbox::from_str(text)
                .map_err(|e| fail(format!("[sinks.{name}] {key} is not a mail address ({e})")))
        };
        let message = config.template.as_ref();
        Ok(SmtpSink {
            name: name.to_string(),
            transport: builder.build(),
            from: mailbox(&config.from, "from")?,
            to: config
                .to
                .iter()
                .map(|t| mailbox(t, "to"))
                .collect::<Result<_, _>>()?,
            subject: chat::compile(
                name,
                config.subject.as_ref(),
                DEFAULT_SUBJECT,
                Target::Plain,
            )?,
            text: chat::message_template(name, message, Target::Plain)?,
            html: chat::message_template(name, message, Target::Html)?,
        })
    }

    fn message(&self, delivery: &Delivery) -> Result<Message, Outcome> {
        let event = chat::context(delivery);
        let subject = chat::render(&self.subject, &event)?;
        let subject = crate::template::cut(&one_line(&subject), MAX_SUBJECT);
        let text = crlf(chat::render(&self.text, &event)?.trim());
        let html = chat::render(&self.html, &event)?;
        let html = crlf(&format!(
            "<!DOCTYPE html>\n<html><body>\n<div style=\"font-family: sans-serif; white-space: pre-wrap\">{}</div>\n</body></html>\n",
            html.trim()
        ));
        let domain = self.from.email.domain();
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<{}@{domain}>",
                delivery.event_id.hyphenated()
            )));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(text),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(html),
                    ),
            )
            .map_err(|e| {
                Outcome::Failed(SinkError {
                    status: None,
                    message: format!("cannot build the mail: {e}"),
                })
            })
    }
}

impl Sink for SmtpSink {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    async fn deliver(&self, delivery: &Delivery) -> Outcome {
        let message = match self.message(delivery) {
            Ok(m) => m,
            Err(outcome) => return outcome,
        };
        match self.transport.send(message).await {
            Ok(response) => {
                tracing::debug!(sink = %self.name, code = %response.code(), "mail accepted");
                Outcome::Delivered {
                    status: None,
                    message_id: None,
                }
            }
            Err(err) => classify(&self.name, &err),
        }
    }
}

/// What an SMTP failure means.
fn classify(name: &str, err: &lettre::transport::smtp::Error) -> Outcome {
    let code = err.status().map(|c| c.to_string());
    let what = one_line(&err.to_string());
    let error = SinkError {
        status: None,
        message: match &code {
            Some(code) => format!("SMTP server answered {code}: {what}"),
            None => format!("SMTP failed: {what}"),
        },
    };
    if err.is_permanent() {
        Outcome::Failed(SinkError {
            message: format!(
                "{}; not retrying. Check [sinks.{name}] from, to and credentials.",
                error.message
            ),
            ..error
        })
    } else if err.is_client() {
        Outcome::Failed(error)
    } else {
        // 4xx, timeouts, TLS and connection failures.
        Outcome::Retry { after: None, error }
    }
}

/// `text` with every line ending as CRLF.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_become_crlf() {
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc\r\n");
        assert_eq!(crlf(""), "");
    }
}
