//! Harbor: `type`, `operator`, and `event_data` with the `repository` (`repo_full_name`,
//! `project/name`) and its `resources` (`tag`, `digest`, `resource_url`). The first resource
//! is the one summarised (Harbor sends one per artifact event). `PUSH_ARTIFACT` is
//! `uploaded`, `PULL_ARTIFACT` `downloaded`, `DELETE_ARTIFACT` `deleted`,
//! `SCANNING_COMPLETED` `scanned`; other types are lowercased (`scanning_failed`,
//! `quota_exceed`, `replication`, …).

use serde_json::Value;

use super::{Summary, text};

pub(super) fn fill(json: &Value, s: &mut Summary) {
    s.action = text(json, "/type").map(|t| {
        match t.as_str() {
            "PUSH_ARTIFACT" => "uploaded",
            "PULL_ARTIFACT" => "downloaded",
            "DELETE_ARTIFACT" => "deleted",
            "SCANNING_COMPLETED" => "scanned",
            other => return other.to_ascii_lowercase(),
        }
        .to_owned()
    });
    s.repository = text(json, "/event_data/repository/repo_full_name");
    s.version = text(json, "/event_data/resources/0/tag");
    s.url = text(json, "/event_data/resources/0/resource_url");
    s.actor = text(json, "/operator");
}

#[cfg(test)]
mod tests {
    use crate::config::Product;
    use crate::summary::tests::{preset, sample};
    use crate::summary::{Summary, summarize};

    #[test]
    fn an_artifact_push() {
        let s = summarize(
            &preset(Product::Harbor),
            Some("PUSH_ARTIFACT"),
            &sample("harbor-push.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("uploaded".into()),
                repository: Some("platform/demo-app".into()),
                component: None,
                path: None,
                version: Some("1.4.2".into()),
                actor: Some("ci-bot".into()),
                url: Some("harbor.example.com/platform/demo-app:1.4.2".into()),
                git_ref: None,
            }
        );
    }

    #[test]
    fn new_types_are_lowercased_not_refused() {
        let s = summarize(
            &preset(Product::Harbor),
            None,
            br#"{"type":"TAG_RETENTION"}"#,
        );
        assert_eq!(s.action.as_deref(), Some("tag_retention"));
    }
}
