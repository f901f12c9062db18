//! Gitea and Forgejo, by event type (`X-Gitea-Event`): `push` (full `ref`, `pusher`,
//! `compare_url`), `create` and `delete` (short `ref` with `ref_type`), `release`
//! (`release.tag_name`, `release.html_url`), `pull_request`. Every event carries
//! `repository.full_name` and `sender`. A push is `pushed`, a created tag `tag`, a published
//! release `released`, a pull request `merge request`; other events keep their type.

use serde_json::Value;

use super::{Summary, full_ref, text};

pub(super) fn fill(event_type: Option<&str>, json: &Value, s: &mut Summary) {
    s.repository = text(json, "/repository/full_name");
    s.actor = text(json, "/sender/login");
    match event_type {
        Some("push") => {
            s.action = Some("pushed".into());
            s.git_ref = text(json, "/ref");
            s.url = text(json, "/compare_url");
            s.actor = text(json, "/pusher/login").or(s.actor.take());
        }
        Some(event @ ("create" | "delete")) => {
            let kind = text(json, "/ref_type");
            let name = text(json, "/ref");
            s.action = Some(match (event, kind.as_deref()) {
                ("create", Some("tag")) => "tag".into(),
                ("create", _) => "created".into(),
                _ => "deleted".into(),
            });
            if kind.as_deref() == Some("tag") {
                s.version = name.clone();
            }
            s.git_ref = full_ref(kind.as_deref(), name);
        }
        Some("release") => {
            s.action = text(json, "/action").map(|a| match a.as_str() {
                "published" => "released".into(),
                _ => a,
            });
            s.version = text(json, "/release/tag_name");
            s.url = text(json, "/release/html_url");
        }
        Some(pr) if pr.starts_with("pull_request") => {
            s.action = Some("merge request".into());
            s.url = text(json, "/pull_request/html_url");
        }
        other => s.action = other.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Product;
    use crate::summary::tests::{preset, sample};
    use crate::summary::{Summary, summarize};

    #[test]
    fn a_push() {
        let s = summarize(
            &preset(Product::Gitea),
            Some("push"),
            &sample("gitea-push.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("pushed".into()),
                repository: Some("platform/demo-app".into()),
                component: None,
                path: None,
                version: None,
                actor: Some("ada".into()),
                url: Some("https://git.example.com/platform/demo-app/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a".into()),
                git_ref: Some("refs/heads/main".into()),
            }
        );
    }

    #[test]
    fn a_created_tag_and_a_published_release() {
        let tag = br#"{"sha":"bffeb742","ref":"v1.4.2","ref_type":"tag","repository":{"full_name":"platform/demo-app"},"sender":{"login":"ada"}}"#;
        let s = summarize(&preset(Product::Gitea), Some("create"), tag);
        assert_eq!(s.action.as_deref(), Some("tag"));
        assert_eq!(s.version.as_deref(), Some("v1.4.2"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/tags/v1.4.2"));
        assert_eq!(s.actor.as_deref(), Some("ada"));
        let release = br#"{"action":"published","release":{"tag_name":"v1.4.2","html_url":"https://git.example.com/platform/demo-app/releases/tag/v1.4.2"},"repository":{"full_name":"platform/demo-app"},"sender":{"login":"ada"}}"#;
        let s = summarize(&preset(Product::Gitea), Some("release"), release);
        assert_eq!(s.action.as_deref(), Some("released"));
        assert_eq!(s.version.as_deref(), Some("v1.4.2"));
        assert_eq!(s.git_ref, None);
    }

    #[test]
    fn other_events_keep_their_type() {
        let s = summarize(
            &preset(Product::Gitea),
            Some("issues"),
            br#"{"action":"opened","repository":{"full_name":"a/b"}}"#,
        );
        assert_eq!(s.action.as_deref(), Some("issues"));
        assert_eq!(s.repository.as_deref(), Some("a/b"));
    }
}
