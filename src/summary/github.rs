//! GitHub, by event type (`X-GitHub-Event`): every event carries `repository.full_name` and
//! `sender.login`; `push` has the full `ref` and `compare`; `create` a short `ref` with
//! `ref_type`; `release` has `action` and `release.tag_name` / `html_url`; `pull_request` its
//! `html_url`. A push is `pushed`, a created tag `tag`, a published release `released`, a
//! pull request `merge request`, a deleted branch or tag (`delete`, or a `push` with
//! `deleted`) `deleted`; other events keep their type.

use serde_json::Value;

use super::{Summary, full_ref, text};

pub(super) fn fill(event_type: Option<&str>, json: &Value, s: &mut Summary) {
    s.repository = text(json, "/repository/full_name");
    s.actor = text(json, "/sender/login");
    s.action = match event_type {
        Some("push") => {
            s.git_ref = text(json, "/ref");
            s.url = text(json, "/compare");
            let deleted = json.pointer("/deleted") == Some(&Value::Bool(true));
            Some(if deleted { "deleted" } else { "pushed" }.into())
        }
        Some("delete") => {
            s.git_ref = full_ref(text(json, "/ref_type").as_deref(), text(json, "/ref"));
            Some("deleted".into())
        }
        Some("create") if text(json, "/ref_type").as_deref() == Some("tag") => {
            s.version = text(json, "/ref");
            s.git_ref = full_ref(Some("tag"), s.version.clone());
            Some("tag".into())
        }
        Some("release") => {
            s.version = text(json, "/release/tag_name");
            s.url = text(json, "/release/html_url");
            text(json, "/action").map(|a| match a.as_str() {
                "published" => "released".into(),
                _ => a,
            })
        }
        Some("pull_request") => {
            s.url = text(json, "/pull_request/html_url");
            Some("merge request".into())
        }
        other => other.map(str::to_owned),
    };
}

#[cfg(test)]
mod tests {
    use crate::config::SourceKind;
    use crate::summary::summarize;
    use crate::summary::tests::source;

    #[test]
    fn a_push_and_a_release() {
        let github = source(SourceKind::Github { secrets: vec![] }, &[]);
        let push = br#"{"ref":"refs/heads/main","compare":"https://github.com/o/r/compare/a...b","repository":{"full_name":"o/r"},"pusher":{"name":"ada"},"sender":{"login":"ada"}}"#;
        let s = summarize(&github, Some("push"), push);
        assert_eq!(s.action.as_deref(), Some("pushed"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(s.repository.as_deref(), Some("o/r"));
        assert_eq!(s.actor.as_deref(), Some("ada"));
        assert_eq!(
            s.url.as_deref(),
            Some("https://github.com/o/r/compare/a...b")
        );
        let release = br#"{"action":"published","release":{"tag_name":"v2","html_url":"https://github.com/o/r/releases/tag/v2"},"repository":{"full_name":"o/r"},"sender":{"login":"bob"}}"#;
        let s = summarize(&github, Some("release"), release);
        assert_eq!(s.action.as_deref(), Some("released"));
        assert_eq!(s.version.as_deref(), Some("v2"));
        assert_eq!(s.git_ref, None);
    }

    #[test]
    fn a_form_encoded_push_is_read_from_its_payload_field() {
        let github = source(SourceKind::Github { secrets: vec![] }, &[]);
        let json = r#"{"ref":"refs/heads/main","repository":{"full_name":"o/r+s t"},"pusher":{"name":"ada"}}"#;
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", json)
            .finish();
        assert!(form.starts_with("payload=%7B%22ref%22"), "{form}");
        let s = summarize(&github, Some("push"), form.as_bytes());
        assert_eq!(s, summarize(&github, Some("push"), json.as_bytes()));
        // `+` and `%20` both decode to a space, `%2B` to a plus.
        assert_eq!(s.repository.as_deref(), Some("o/r+s t"));
        // Neither JSON nor a form with a JSON payload: nothing to summarise.
        assert_eq!(crate::summary::body_json(b"payload=%7Bnot json"), None);
        assert_eq!(crate::summary::body_json(b"other=1"), None);
    }

    #[test]
    fn a_deleted_branch_is_deleted_not_pushed() {
        let github = source(SourceKind::Github { secrets: vec![] }, &[]);
        let push = br#"{"ref":"refs/heads/main","deleted":true,"repository":{"full_name":"o/r"}}"#;
        let s = summarize(&github, Some("push"), push);
        assert_eq!(s.action.as_deref(), Some("deleted"));
        let delete = br#"{"ref":"v1.2","ref_type":"tag","repository":{"full_name":"o/r"}}"#;
        let s = summarize(&github, Some("delete"), delete);
        assert_eq!(s.action.as_deref(), Some("deleted"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/tags/v1.2"));
    }
}
