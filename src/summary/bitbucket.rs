//! Bitbucket, by event key (`X-Event-Key`). Cloud: `repository.full_name` and
//! `repository.links.html.href`, `actor.nickname`, and for `repo:push` the first change's
//! `new` branch or tag. Data Center: `repository.project.key` and `repository.slug` (written
//! `KEY/slug`), `actor.name`, and for `repo:refs_changed` the first change's `refId`. A push
//! is `pushed`, a pull request event (`pullrequest:*`, `pr:*`) `merge request`; other events
//! keep their key.

use serde_json::Value;

use super::{Summary, full_ref, text};

pub(super) fn fill(event_type: Option<&str>, json: &Value, s: &mut Summary) {
    let data_center = text(json, "/repository/project/key");
    match &data_center {
        Some(project) => {
            s.repository = text(json, "/repository/slug").map(|slug| format!("{project}/{slug}"));
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
            s.git_ref = full_ref(
                text(json, "/push/changes/0/new/type").as_deref(),
                text(json, "/push/changes/0/new/name"),
            );
            Some("pushed".into())
        }
        Some("repo:refs_changed") => {
            s.git_ref = text(json, "/changes/0/refId");
            Some("pushed".into())
        }
        Some(key) if key.starts_with("pullrequest:") || key.starts_with("pr:") => {
            s.url = text(json, "/pullrequest/links/html/href").or(s.url.take());
            Some("merge request".into())
        }
        other => other.map(str::to_owned),
    };
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
    fn pull_requests_are_merge_requests() {
        let s = summarize(&preset(Product::Bitbucket), Some("pr:opened"), b"{}");
        assert_eq!(s.action.as_deref(), Some("merge request"));
        let s = summarize(&preset(Product::Bitbucket), Some("repo:fork"), b"{}");
        assert_eq!(s.action.as_deref(), Some("repo:fork"));
    }
}
