//! Nexus Repository: `repositoryName`, `initiator` (`user/ip`), and a `component` (name,
//! version) or an `asset` (its path as `name`); repository events carry `repository.name`.
//! `action` is `CREATED`, `UPDATED` or `DELETED`: for components and assets, created is
//! `uploaded`.

use serde_json::Value;

use super::{Summary, text};

pub(super) fn fill(json: &Value, s: &mut Summary) {
    s.repository = text(json, "/repositoryName").or_else(|| text(json, "/repository/name"));
    s.component = text(json, "/component/name");
    s.version = text(json, "/component/version");
    s.path = text(json, "/asset/name");
    // The initiator is `userId/remoteIp`; the user is what identifies the actor.
    s.actor = text(json, "/initiator").map(|i| match i.rsplit_once('/') {
        Some((user, _)) => user.to_owned(),
        None => i,
    });
    let content = json.get("component").is_some() || json.get("asset").is_some();
    s.action = text(json, "/action").map(|a| match (content, a.as_str()) {
        (true, "CREATED") => "uploaded".to_owned(),
        _ => a.to_ascii_lowercase(),
    });
}

#[cfg(test)]
mod tests {
    use crate::config::Product;
    use crate::summary::tests::{preset, sample};
    use crate::summary::{Summary, summarize};

    #[test]
    fn a_component_upload() {
        let s = summarize(
            &preset(Product::Nexus),
            Some("rm:repository:component"),
            &sample("nexus-component.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("uploaded".into()),
                repository: Some("releases".into()),
                component: Some("demo-app".into()),
                path: None,
                version: Some("1.4.2".into()),
                actor: Some("ci-bot".into()),
                url: None,
                git_ref: None,
            }
        );
    }

    #[test]
    fn an_asset_deletion() {
        let s = summarize(
            &preset(Product::Nexus),
            Some("rm:repository:asset"),
            &sample("nexus-asset.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("deleted".into()),
                repository: Some("releases".into()),
                component: None,
                path: Some("com/example/demo-app/1.4.2/demo-app-1.4.2.jar".into()),
                version: None,
                actor: Some("ci-bot".into()),
                url: None,
                git_ref: None,
            }
        );
    }

    #[test]
    fn a_repository_event_is_created_not_uploaded() {
        let body = br#"{"initiator":"admin/127.0.0.1","action":"CREATED","repository":{"format":"npm","name":"npm-proxy","type":"proxy"}}"#;
        let s = summarize(&preset(Product::Nexus), Some("rm:repository"), body);
        assert_eq!(s.action.as_deref(), Some("created"));
        assert_eq!(s.repository.as_deref(), Some("npm-proxy"));
        assert_eq!(s.actor.as_deref(), Some("admin"));
    }
}
