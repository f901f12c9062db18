//! GitLab, by the body's `object_kind` (GitLab's own event name): every event has
//! `project.path_with_namespace`; `push` and `tag_push` have the full `ref` and
//! `user_username`; `merge_request`, `pipeline` and others have `user.username` and
//! `object_attributes` (`url`, and `ref` for pipelines); `release` has `tag` and `url`.
//! A push is `pushed`, a tag push `tag`, either with an all-zero `after` (the ref was
//! removed) `deleted`, a merge request `merge request`, a pipeline `pipeline`, a release
//! `released` (its `action` `update` is `updated`, `delete` `deleted`); other kinds keep
//! their name.

use serde_json::Value;

use super::{Summary, text};

pub(super) fn fill(json: &Value, s: &mut Summary) {
    s.repository = text(json, "/project/path_with_namespace");
    s.actor = text(json, "/user_username").or_else(|| text(json, "/user/username"));
    let kind = text(json, "/object_kind");
    // GitLab marks a removed branch or tag by an `after` of forty zeros.
    let removed =
        text(json, "/after").is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b == b'0'));
    s.action = match kind.as_deref() {
        Some("push" | "tag_push") if removed => {
            s.git_ref = text(json, "/ref");
            Some("deleted".into())
        }
        Some("push") => {
            s.git_ref = text(json, "/ref");
            s.url = text(json, "/project/web_url");
            Some("pushed".into())
        }
        Some("tag_push") => {
            s.git_ref = text(json, "/ref");
            s.version = s
                .git_ref
                .as_deref()
                .and_then(|r| r.strip_prefix("refs/tags/"))
                .map(str::to_owned);
            Some("tag".into())
        }
        Some("merge_request") => {
            s.url = text(json, "/object_attributes/url");
            Some("merge request".into())
        }
        Some("pipeline") => {
            let r = text(json, "/object_attributes/ref");
            // A pipeline's ref is a short branch or tag name; `tag` says which.
            let tag = json.pointer("/object_attributes/tag") == Some(&Value::Bool(true));
            s.git_ref = r.map(|r| {
                let prefix = if tag { "refs/tags/" } else { "refs/heads/" };
                format!("{prefix}{r}")
            });
            s.url = text(json, "/object_attributes/url");
            Some("pipeline".into())
        }
        Some("release") => {
            s.version = text(json, "/tag");
            s.url = text(json, "/url");
            Some(match text(json, "/action").as_deref() {
                Some("delete") => "deleted".into(),
                Some("update") => "updated".into(),
                _ => "released".into(),
            })
        }
        _ => kind,
    };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::SourceKind;
    use crate::summary::summarize;
    use crate::summary::tests::source;

    #[test]
    fn removals_and_release_actions_are_told_apart() {
        let gitlab = source(
            SourceKind::Gitlab {
                tokens: vec![],
                signing_keys: vec![],
                tolerance: Duration::from_secs(1),
            },
            &[],
        );
        let zeros = "0".repeat(40);
        let tag_removed = format!(
            r#"{{"object_kind":"tag_push","ref":"refs/tags/v1","after":"{zeros}","project":{{"path_with_namespace":"g/p"}}}}"#
        );
        let s = summarize(&gitlab, Some("Tag Push Hook"), tag_removed.as_bytes());
        assert_eq!(s.action.as_deref(), Some("deleted"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/tags/v1"));
        for (action, word) in [
            ("create", "released"),
            ("update", "updated"),
            ("delete", "deleted"),
        ] {
            let release = format!(
                r#"{{"object_kind":"release","action":"{action}","tag":"v1","project":{{"path_with_namespace":"g/p"}}}}"#
            );
            let s = summarize(&gitlab, Some("Release Hook"), release.as_bytes());
            assert_eq!(s.action.as_deref(), Some(word), "{action}");
        }
    }

    #[test]
    fn a_push_and_a_pipeline() {
        let gitlab = source(
            SourceKind::Gitlab {
                tokens: vec![],
                signing_keys: vec![],
                tolerance: Duration::from_secs(1),
            },
            &[],
        );
        let push = br#"{"object_kind":"push","ref":"refs/heads/main","user_username":"ada","project":{"path_with_namespace":"grp/app","web_url":"https://gitlab.example.com/grp/app"}}"#;
        let s = summarize(&gitlab, Some("Push Hook"), push);
        assert_eq!(s.action.as_deref(), Some("pushed"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(s.repository.as_deref(), Some("grp/app"));
        assert_eq!(s.actor.as_deref(), Some("ada"));
        let pipeline = br#"{"object_kind":"pipeline","object_attributes":{"ref":"main","tag":false,"status":"failed","url":"https://gitlab.example.com/grp/app/-/pipelines/31"},"user":{"username":"bob"},"project":{"path_with_namespace":"grp/app"}}"#;
        let s = summarize(&gitlab, Some("Pipeline Hook"), pipeline);
        assert_eq!(s.action.as_deref(), Some("pipeline"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(s.actor.as_deref(), Some("bob"));
        assert_eq!(
            s.url.as_deref(),
            Some("https://gitlab.example.com/grp/app/-/pipelines/31")
        );
    }
}
