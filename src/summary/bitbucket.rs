//! Bitbucket, by event key (`X-Event-Key`). Cloud: `repository.full_name` and
//! `repository.links.html.href`, `actor.nickname`, and for `repo:push` the first change's
//! `new` branch or tag. Data Center (a repository with `project.key` and no `full_name`):
//! `repository.project.key` and `repository.slug` (written `KEY/slug`), `actor.name`, and for `repo:refs_changed` the first change's `refId`. A push
//! is `pushed`, a pushed tag `tag` (with its name as the version), a deleted branch or tag
//! `deleted`, a pull request event (`pullrequest:*`, `pr:*`) `merge request`; other events
//! keep their key. A Data Center pull request has no top-level repository: it is the target
//! branch's (`pullRequest.toRef.repository`).

use serde_json::Value;

use super::{Summary, full_ref, text};

pub(super) fn fill(event_type: Option<&str>, json: &Value, s: &mut Summary) {
    // A Data Center repository has a project key and a slug, and no `full_name`: a Cloud
    // repository in a project has a project key too. A Data Center pull request names its
    // repository only under its target branch.
    let data_center = ["/repository", "/pullRequest/toRef/repository"]
        .into_iter()
        .find(|at| {
            json.pointer(&format!("{at}/project/key")).is_some()
                && json.pointer(&format!("{at}/full_name")).is_none()
        });
    match data_center {
        Some(repository) => {
            let project = text(json, &format!("{repository}/project/key"));
            s.repository = text(json, &format!("{repository}/slug"))
                .zip(project)
                .map(|(slug, project)| format!("{project}/{slug}"));
            s.actor = text(json, "/actor/name");
        }
        None => {
            s.repository = text(json, "/repository/full_name");
            s.url = text(json, "/repository/links/html/href");
            s.actor = text(json, "/actor/nickname").or_else(|| text(json, "/actor/display_name"));
        }
    }
    s.action = match event_type {
        Some("repo:push") => {
            // A deleted branch or tag has no `new`, only `old`.
            let deleted = json
                .pointer("/push/changes/0/new")
                .is_none_or(Value::is_null);
            let side = if deleted { "old" } else { "new" };
            let kind = text(json, &format!("/push/changes/0/{side}/type"));
            let name = text(json, &format!("/push/changes/0/{side}/name"));
            s.git_ref = full_ref(kind.as_deref(), name.clone());
            Some(ref_action(deleted, s, name))
        }
        Some("repo:refs_changed") => {
            s.git_ref = text(json, "/changes/0/refId");
            let deleted = text(json, "/changes/0/type").as_deref() == Some("DELETE");
            let tag = s
                .git_ref
                .as_deref()
                .and_then(|r| r.strip_prefix("refs/tags/"))
                .map(str::to_owned);
            Some(ref_action(deleted, s, tag.filter(|_| !deleted)))
        }
        Some(key) if key.starts_with("pullrequest:") || key.starts_with("pr:") => {
            s.url = text(json, "/pullrequest/links/html/href")
                .or_else(|| text(json, "/pullRequest/links/self/0/href"))
                .or(s.url.take());
            Some("merge request".into())
        }
        other => other.map(str::to_owned),
    };
}

/// `deleted`, `tag` (a pushed tag, named as the version) or `pushed`, for a ref change.
fn ref_action(deleted: bool, s: &mut Summary, tag_name: Option<String>) -> String {
    let is_tag = s
        .git_ref
        .as_deref()
        .is_some_and(|r| r.starts_with("refs/tags/"));
    if deleted {
        "deleted".into()
    } else if is_tag {
        s.version = tag_name;
        "tag".into()
    } else {
        "pushed".into()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Product;
    use crate::summary::tests::{preset, sample};
    use crate::summary::{Summary, summarize};

    #[test]
    fn a_cloud_push() {
        let s = summarize(
            &preset(Product::Bitbucket),
            Some("repo:push"),
            &sample("bitbucket-cloud-push.json"),
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
                url: Some("https://bitbucket.org/platform/demo-app".into()),
                git_ref: Some("refs/heads/main".into()),
            }
        );
    }

    #[test]
    fn a_data_center_refs_change() {
        let s = summarize(
            &preset(Product::Bitbucket),
            Some("repo:refs_changed"),
            &sample("bitbucket-dc-refs-changed.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("pushed".into()),
                repository: Some("PLAT/demo-app".into()),
                component: None,
                path: None,
                version: None,
                actor: Some("ada".into()),
                url: None,
                git_ref: Some("refs/heads/main".into()),
            }
        );
    }

    #[test]
    fn tags_and_deletions_are_told_from_pushes() {
        let cloud_tag = br#"{"repository":{"full_name":"p/r"},"push":{"changes":[{"new":{"type":"tag","name":"v1.4.2"},"old":null}]}}"#;
        let s = summarize(&preset(Product::Bitbucket), Some("repo:push"), cloud_tag);
        assert_eq!(s.action.as_deref(), Some("tag"));
        assert_eq!(s.version.as_deref(), Some("v1.4.2"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/tags/v1.4.2"));
        let cloud_deleted = br#"{"repository":{"full_name":"p/r"},"push":{"changes":[{"new":null,"old":{"type":"branch","name":"main"}}]}}"#;
        let s = summarize(
            &preset(Product::Bitbucket),
            Some("repo:push"),
            cloud_deleted,
        );
        assert_eq!(s.action.as_deref(), Some("deleted"));
        assert_eq!(s.git_ref.as_deref(), Some("refs/heads/main"));
        let dc = |change: &str| {
            let body = format!(
                r#"{{"repository":{{"slug":"r","project":{{"key":"P"}}}},"changes":[{change}]}}"#
            );
            summarize(
                &preset(Product::Bitbucket),
                Some("repo:refs_changed"),
                body.as_bytes(),
            )
        };
        let s = dc(r#"{"refId":"refs/heads/main","type":"DELETE"}"#);
        assert_eq!(s.action.as_deref(), Some("deleted"));
        let s = dc(r#"{"refId":"refs/tags/v2","type":"ADD"}"#);
        assert_eq!(
            (s.action.as_deref(), s.version.as_deref()),
            (Some("tag"), Some("v2"))
        );
    }

    #[test]
    fn a_data_center_pull_request_names_its_target_repository() {
        let body = br#"{"actor":{"name":"ada"},"pullRequest":{"toRef":{"repository":{"slug":"demo-app","project":{"key":"PLAT"}}},"links":{"self":[{"href":"https://bb.example/projects/PLAT/repos/demo-app/pull-requests/7"}]}}}"#;
        let s = summarize(&preset(Product::Bitbucket), Some("pr:opened"), body);
        assert_eq!(s.action.as_deref(), Some("merge request"));
        assert_eq!(s.repository.as_deref(), Some("PLAT/demo-app"));
        assert_eq!(s.actor.as_deref(), Some("ada"));
        assert_eq!(
            s.url.as_deref(),
            Some("https://bb.example/projects/PLAT/repos/demo-app/pull-requests/7")
        );
    }

    #[test]
    fn pull_requests_are_merge_requests() {
        let s = summarize(&preset(Product::Bitbucket), Some("pr:opened"), b"{}");
        assert_eq!(s.action.as_deref(), Some("merge request"));
        let s = summarize(&preset(Product::Bitbucket), Some("repo:fork"), b"{}");
        assert_eq!(s.action.as_deref(), Some("repo:fork"));
    }
}
