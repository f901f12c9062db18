//! Validation of `[notices]` and of the name their source reserves.
//!
//! A child of `validate`, sharing the [`Validator`]; same invariants as the parent: every
//! problem is collected with its span and says what to write instead.

use toml::Spanned;

use super::super::raw::{RawNotices, RawSize};
use super::super::{NOTICE_SOURCE, NoticesConfig};
use super::{LONGEST_NAME, Validator, parse_size};

/// More consecutive failures than this would never call any sink unhealthy in practice.
const MOST_FAILURES: i64 = 10_000;

impl Validator<'_> {
    pub(super) fn notices(&mut self, raw: RawNotices) -> Option<NoticesConfig> {
        let defaults = NoticesConfig::default();
        let failures = self.integer(
            raw.failures.as_ref(),
            "notices.failures",
            i64::from(defaults.failures),
            1..=MOST_FAILURES,
        );
        // Zero is meaningful: no rate limit at all.
        let min_interval = self.duration(
            raw.min_interval.as_ref(),
            "notices.min_interval",
            defaults.min_interval,
            true,
        );
        let min_free = match &raw.min_free {
            None => Some(defaults.min_free),
            Some(value) => self.min_free(value),
        };
        let check_interval = self.duration(
            raw.check_interval.as_ref(),
            "notices.check_interval",
            defaults.check_interval,
            false,
        );
        let instance = match &raw.instance {
            None => Some(None),
            Some(name) => self.instance(name).map(Some),
        };
        Some(NoticesConfig {
            failures: u32::try_from(failures?).ok()?,
            min_interval: min_interval?,
            min_free: min_free?,
            check_interval: check_interval?,
            instance: instance?,
        })
    }

    /// `min_free`: a size, where 0 turns the check off (unlike the other sizes, no upper
    /// bound: volumes are large).
    fn min_free(&mut self, value: &Spanned<RawSize>) -> Option<u64> {
        let bytes = match value.get_ref() {
            RawSize::Text(text) => parse_size(text),
            RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| {
                "must be a size such as \"1GiB\", or 0 to turn the free-space check off".to_string()
            }),
        };
        match bytes {
            Ok(n) => Some(n),
            Err(message) => {
                self.problem(value.span(), "notices.min_free", message);
                None
            }
        }
    }

    fn instance(&mut self, name: &Spanned<String>) -> Option<String> {
        let text = name.get_ref().trim();
        if text.is_empty()
            || text.chars().count() > LONGEST_NAME
            || text.chars().any(char::is_control)
        {
            self.problem(
                name.span(),
                "notices.instance",
                format!(
                    "must be 1 to {LONGEST_NAME} printable characters, e.g. \"relay-eu-1\"; \
                     leave it out to use the host name"
                ),
            );
            return None;
        }
        Some(text.to_string())
    }

    /// Reports a `[sources.NAME]` that takes the notices' reserved name; true if it does.
    pub(super) fn reserved_source(&mut self, name: &Spanned<String>, path: &str) -> bool {
        if name.get_ref() != NOTICE_SOURCE {
            return false;
        }
        self.problem(
            name.span(),
            path,
            format!(
                "\"{NOTICE_SOURCE}\" is reserved for hookrelay's own notices (routes may name \
                 it without a [sources.{NOTICE_SOURCE}] table); choose another name"
            ),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{Config, NoticesConfig};

    fn error(text: &str) -> String {
        Config::parse(text, "hookrelay.toml")
            .expect_err("the config should be refused")
            .to_string()
    }

    #[test]
    fn an_absent_section_takes_the_defaults_and_every_key_is_read() {
        let c = Config::parse("", "t").unwrap();
        assert_eq!(c.notices, NoticesConfig::default());
        let c = Config::parse(
            "[notices]\nfailures = 3\nmin_interval = \"0s\"\nmin_free = \"2GiB\"\n\
             check_interval = \"5s\"\ninstance = \" relay-eu-1 \"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.notices,
            NoticesConfig {
                failures: 3,
                min_interval: Duration::ZERO,
                min_free: 2 << 30,
                check_interval: Duration::from_secs(5),
                instance: Some("relay-eu-1".into()),
            }
        );
        assert_eq!(
            Config::parse("[notices]\nmin_free = 0\n", "t")
                .unwrap()
                .notices
                .min_free,
            0,
            "0 turns the free-space check off"
        );
    }

    #[test]
    fn bad_values_are_reported_at_their_place() {
        let text = "[notices]\nfailures = 0\ncheck_interval = \"0s\"\nmin_free = \"lots\"\n\
                    instance = \"\"\nfailure = 3\n";
        let message = error(text);
        for expected in [
            "hookrelay.toml:2:12: notices.failures: must be from 1 to 10000",
            "hookrelay.toml:3:18: notices.check_interval: must be longer than zero",
            "hookrelay.toml:4:12: notices.min_free: is not a size",
            "hookrelay.toml:5:12: notices.instance: must be 1 to 64 printable characters",
            "hookrelay.toml:6:1: notices.failure: unknown key (did you mean \"failures\"?)",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} not in:\n{message}"
            );
        }
    }

    #[test]
    fn the_notice_source_is_reserved_but_routes_may_name_it() {
        let message = error("[sources.hookrelay]\nkind = \"none\"\n");
        assert!(
            message.contains(
                "hookrelay.toml:1:10: sources.hookrelay: \"hookrelay\" is reserved for \
                 hookrelay's own notices"
            ),
            "{message}"
        );
        let c = Config::parse(
            "[sinks.chat]\nkind = \"webhook\"\nurl = \"https://h/\"\n\
             [[routes]]\nfrom = \"hookrelay\"\nevents = [\"sink.*\"]\nto = [\"chat\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.routes[0].from, ["hookrelay"]);
        assert!(c.sources.is_empty());
    }
}
