//! Artifactory: `domain` and `event_type`, and `data` with `repo_key` and `path` (artifact,
//! docker), `image_name` and `tag` (docker), `build_name` and `build_number` (build). A
//! deploy of an artifact or a docker push is `uploaded`; other events keep Artifactory's
//! word (`deleted`, `moved`, `copied`, `cached`, `promoted`, …). Artifactory's payloads
//! name no user and no link.

use serde_json::Value;

use super::{Summary, text};

pub(super) fn fill(json: &Value, s: &mut Summary) {
    let domain = text(json, "/domain");
    let event = text(json, "/event_type");
    s.action = event.map(|e| match (domain.as_deref(), e.as_str()) {
        (Some("artifact"), "deployed") | (Some("docker"), "pushed") => "uploaded".to_owned(),
        _ => e,
    });
    s.repository = text(json, "/data/repo_key");
    s.path = text(json, "/data/path");
    s.component = text(json, "/data/image_name").or_else(|| text(json, "/data/build_name"));
    s.version = text(json, "/data/tag").or_else(|| text(json, "/data/build_number"));
}

#[cfg(test)]
mod tests {
    use crate::config::Product;
    use crate::summary::tests::{preset, sample};
    use crate::summary::{Summary, summarize};

    #[test]
    fn an_artifact_deploy() {
        let s = summarize(
            &preset(Product::Artifactory),
            Some("artifact.deployed"),
            &sample("artifactory-deployed.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("uploaded".into()),
                repository: Some("libs-release-local".into()),
                component: None,
                path: Some("com/example/demo-app/1.4.2/demo-app-1.4.2.jar".into()),
                version: None,
                actor: None,
                url: None,
                git_ref: None,
            }
        );
    }

    #[test]
    fn a_docker_push() {
        let s = summarize(
            &preset(Product::Artifactory),
            Some("docker.pushed"),
            &sample("artifactory-docker-pushed.json"),
        );
        assert_eq!(
            s,
            Summary {
                action: Some("uploaded".into()),
                repository: Some("docker-local".into()),
                component: Some("demo-app".into()),
                path: Some("demo-app/1.4.2/manifest.json".into()),
                version: Some("1.4.2".into()),
                actor: None,
                url: None,
                git_ref: None,
            }
        );
    }

    #[test]
    fn other_events_keep_their_word() {
        let body = br#"{"domain":"build","event_type":"promoted","data":{"build_name":"demo","build_number":"57"}}"#;
        let s = summarize(&preset(Product::Artifactory), None, body);
        assert_eq!(s.action.as_deref(), Some("promoted"));
        assert_eq!(s.component.as_deref(), Some("demo"));
        assert_eq!(s.version.as_deref(), Some("57"));
    }
}
