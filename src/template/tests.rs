//! Unit tests of templates: escaping per target, helpers, defaults, errors.

use super::*;
use bytes::Bytes;
use uuid::Uuid;

fn event(event_type: &str, body: serde_json::Value) -> EventContext {
    summarized(event_type, body, None)
}

/// An event as a preset source delivers it: with the summary its product's file derived.
fn summarized(
    event_type: &str,
    body: serde_json::Value,
    summary: Option<crate::summary::Summary>,
) -> EventContext {
    let delivery = Delivery {
        event: Arc::new(crate::store::StoredEvent {
            id: Uuid::now_v7(),
            source: Arc::from("github"),
            event_type: Some(event_type.to_string()),
            delivery_id: Some("d-1".to_string()),
            headers: vec![("X-GitHub-Event".to_string(), b"push".to_vec())],
            content_type: Some("application/json".to_string()),
            received_at_ms: 1_700_000_000_123,
            body: Bytes::from(body.to_string()),
        }),
        summary: summary.map(Arc::new),
        attempt: 1,
    };
    EventContext::new(&delivery)
}

/// Every target a template is compiled for.
const EVERY_TARGET: [Target; 5] = [
    Target::Slack,
    Target::Discord,
    Target::Teams,
    Target::Html,
    Target::Plain,
];

fn render(source: &str, target: Target, ev: &EventContext) -> String {
    Template::compile(source, target, "test.toml:1:1: sinks.s.template")
        .unwrap()
        .render(ev)
        .unwrap()
}

/// The built-in message as the chat and mail sinks compile it: every printed value folded.
fn built_in(target: Target, ev: &EventContext) -> String {
    Template::built_in(DEFAULT_MESSAGE, target, "built-in")
        .unwrap()
        .render(ev)
        .unwrap()
}

const EVIL: &str = "<!channel> @everyone <script>alert(1)</script> [x](https://evil.example) *b* &amp;\r\nBcc: victim@example.com";

#[test]
fn the_context_has_every_documented_field() {
    let ev = event("push", serde_json::json!({"a": {"b": 1}}));
    let out = render(
        "{{ source }}|{{ event_type }}|{{ delivery_id }}|{{ received_at }}|{{ headers['x-github-event'] }}|{{ body.a.b }}|{{ summary }}|{{ event_id|length }}",
        Target::Plain,
        &ev,
    );
    assert_eq!(out, "github|push|d-1|2023-11-14T22:13:20Z|push|1||36");
}

#[test]
fn a_body_that_is_not_json_is_null_and_missing_fields_print_nothing() {
    let mut ev = event("push", serde_json::json!({}));
    ev.body = serde_json::Value::Null;
    assert_eq!(render("[{{ body.x.y.z }}]", Target::Slack, &ev), "[]");
}

#[test]
fn printed_values_are_escaped_for_each_target() {
    let ev = event("push", serde_json::json!({ "t": EVIL }));
    let slack = render("{{ body.t }}", Target::Slack, &ev);
    assert!(!slack.contains('<') && !slack.contains('>'), "{slack}");
    assert!(
        slack.contains("&lt;!channel&gt;") && slack.contains("&amp;amp;"),
        "{slack}"
    );

    let discord = render("{{ body.t }}", Target::Discord, &ev);
    assert!(discord.contains("@\u{200B}everyone"), "{discord}");
    assert!(discord.contains("\\[x\\]\\(https"), "{discord}");
    assert!(discord.contains("\\<script\\>"), "{discord}");

    let teams = render("{{ body.t }}", Target::Teams, &ev);
    assert!(teams.contains("\\[x\\](https"), "{teams}");
    assert!(teams.contains("\\*b\\*"), "{teams}");

    let html = render("{{ body.t }}", Target::Html, &ev);
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
}

#[test]
fn bidirectional_controls_from_an_event_are_dropped_for_every_target() {
    // "Trojan Source": U+202E shows "txt.exe" as "exe.txt" and the like.
    let ev = event(
        "push",
        serde_json::json!({ "t": "fix \u{202E}txt.exe\u{202C} \u{2066}a\u{2069} \u{200F}ok" }),
    );
    for target in EVERY_TARGET {
        let out = render("{{ body.t }}", target, &ev);
        assert!(
            !out.contains(['\u{202E}', '\u{202C}', '\u{2066}', '\u{2069}']),
            "{target:?}: {out:?}"
        );
        // Other characters, right-to-left marks included, are left as they are.
        assert!(
            out.contains("txt.exe") && out.contains('\u{200F}'),
            "{target:?}: {out:?}"
        );
    }
}

#[test]
fn safe_whole_maps_and_concatenation_cannot_bypass_escaping() {
    let ev = event("push", serde_json::json!({ "t": "<!channel>" }));
    assert!(
        Template::compile("{{ body.t|safe }}", Target::Slack, "at").is_err(),
        "the safe filter is removed"
    );
    let out = render(
        "{{ body }} {{ body|string }} {{ '' ~ body.t }} {{ link('x') ~ body.t }}",
        Target::Slack,
        &ev,
    );
    assert!(!out.contains("<!channel>"), "{out}");
}

#[test]
fn links_are_written_per_target_and_only_for_http_urls() {
    let ev = event(
        "push",
        serde_json::json!({"u": "https://h.example/a?x=1&y=<2>|(3)", "t": "a|b <c>", "bad": "javascript:alert(1)"}),
    );
    assert_eq!(
        render("{{ link(body.u, body.t) }}", Target::Slack, &ev),
        "<https://h.example/a?x=1&amp;y=&lt;2&gt;%7C(3)|a|b &lt;c&gt;>"
    );
    assert_eq!(
        render("{{ link(body.u, 'go') }}", Target::Discord, &ev),
        "[go](https://h.example/a?x=1&y=%3C2%3E|%283%29)"
    );
    assert_eq!(
        render("{{ link(body.u, 'go') }}", Target::Html, &ev),
        "<a href=\"https://h.example/a?x=1&amp;y=&lt;2&gt;|(3)\">go</a>"
    );
    assert_eq!(
        render("{{ link(body.u, 'go') }}", Target::Plain, &ev),
        "go (https://h.example/a?x=1&y=<2>|(3))"
    );
    assert_eq!(
        render("{{ link(body.bad, 'click') }}", Target::Html, &ev),
        "click"
    );
    assert_eq!(
        render("{{ bold(body.t) }}", Target::Teams, &ev),
        "**a|b <c>**"
    );
}

/// Teams' mobile clients show backslash escapes as written, so only an `_` that can make
/// emphasis is escaped.
#[test]
fn teams_escapes_an_underscore_only_where_it_can_make_emphasis() {
    assert_eq!(
        escape(Target::Teams, "quota_exceed _x_ a__b *y*"),
        "quota_exceed \\_x\\_ a\\_\\_b \\*y\\*"
    );
}

/// Discord shows backslash escapes inside a masked link's label as written (a repository
/// `octo-org/app` read `octo\-org/app`): a label goes unescaped where nothing in it can form
/// markup, and is left as text beside its address otherwise.
#[test]
fn a_discord_link_label_is_never_backslash_escaped() {
    let ev = event(
        "push",
        serde_json::json!({"u": "https://h.example/x", "plain": "octo-org/my_app #12", "marked": "a*b*c [x]", "at": "@everyone", "underscored": "_config_ loader"}),
    );
    let discord = |t: &str| render(t, Target::Discord, &ev);
    assert_eq!(
        discord("{{ link(body.u, body.plain) }}"),
        "[octo-org/my_app #12](https://h.example/x)"
    );
    assert_eq!(
        discord("{{ link(body.u, body.marked) }}"),
        "a\\*b\\*c \\[x\\] (<https://h.example/x>)"
    );
    assert_eq!(
        discord("{{ link(body.u, body.underscored) }}"),
        "\\_config\\_ loader (<https://h.example/x>)"
    );
    assert_eq!(
        discord("{{ link(body.u, body.at) }}"),
        "[@\u{200B}everyone](https://h.example/x)"
    );
}

/// Found by the `template_render` fuzz target (a GitHub push whose `compare` URL held an
/// `@`): the built-in Discord message printed it raw inside the link target.
#[test]
fn regression_an_at_in_a_discord_link_url_cannot_start_a_mention() {
    let ev = event(
        "push",
        serde_json::json!({"u": "https://h.example/@everyone/x?to=a@b.example"}),
    );
    let out = render("{{ link(body.u, 'go') }}", Target::Discord, &ev);
    assert_eq!(
        out,
        "[go](https://h.example/%40everyone/x?to=a%40b.example)"
    );
    assert_eq!(
        render("{{ link(body.u, 'go') }}", Target::Teams, &ev),
        "[go](https://h.example/@everyone/x?to=a@b.example)"
    );
}

/// Found by the `template_render` fuzz target (a GitHub push whose commit `id` was an
/// object): the built-in message sliced it and failed, so the event was dead-lettered with
/// "fix the template" for a template the user cannot change.
#[test]
fn regression_the_built_in_message_renders_whatever_type_a_field_has() {
    let odd = [
        serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "p"},
            "repository": {"full_name": "o/a"}, "commits": [{"id": {"name": "x"}}, {"id": 42}, 7, null]}),
        serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "p"},
            "repository": {"full_name": "o/a"}, "commits": {"id": "0123456789"}}),
        serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "p"},
            "repository": {"full_name": "o/a"}, "commits": "many"}),
        serde_json::json!({"object_kind": "push", "user_name": "u", "total_commits_count": "9",
            "commits": [{"id": ["a"]}], "project": {"path_with_namespace": "g/p"}}),
        serde_json::json!({"object_kind": "push", "user_name": "u", "total_commits_count": 9,
            "commits": {"0": 1}, "project": {"path_with_namespace": "g/p"}}),
        serde_json::json!({"repositoryName": "r", "action": 3, "component": {"name": ["n"], "group": 1}}),
        serde_json::json!({"object_kind": "push", "user_name": "u", "after": 0, "before": ["0"],
            "project": {"path_with_namespace": "g/p"}}),
        serde_json::json!({"ref": 5, "ref_type": "tag", "repository": {"full_name": 1}, "sender": "s"}),
        serde_json::json!({"action": ["closed"], "pull_request": {"merged": "yes", "head": 1, "base": {}},
            "repository": {"full_name": "o/r"}, "review": {"state": {}}}),
        serde_json::json!({"workflow_run": {"name": ["CI"], "conclusion": null, "display_title": 4},
            "repository": {"full_name": "o/r"}}),
        serde_json::json!({"pullrequest": {"id": {}, "links": [], "source": "x"}, "repository": {"full_name": "p/r"}}),
        serde_json::json!({"pullRequest": {"toRef": {"repository": 1}, "links": {"self": ["a", 2]}}}),
        serde_json::json!({"pullRequest": {"toRef": {}, "links": {"self": "x"}}}),
        serde_json::json!({"event_data": {"resources": [{"scan_overview": {"a": {"severity": 1, "summary": {"summary": []}}, "b": 2}}]}}),
        serde_json::json!({"event_data": {"resources": "x"}}),
    ];
    for body in odd {
        let ev = event("push", body.clone());
        for target in EVERY_TARGET {
            let template = Template::built_in(DEFAULT_MESSAGE, target, "built-in").unwrap();
            let out = template
                .render(&ev)
                .unwrap_or_else(|e| panic!("{target:?} on {body}: {}", e.message));
            assert!(!out.trim().is_empty(), "{target:?} on {body}");
        }
    }
    // The usual case still reads as before.
    let ev = event(
        "push",
        serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "p"},
            "repository": {"full_name": "o/a", "html_url": "https://github.com/o/a"},
            "commits": [{"id": "0123456789abcdef", "message": "Fix it", "url": "https://github.com/o/a/commit/0123456",
                         "author": {"name": "A"}}]}),
    );
    let plain = Template::built_in(DEFAULT_MESSAGE, Target::Plain, "built-in")
        .unwrap()
        .render(&ev)
        .unwrap();
    assert!(
        plain.contains("0123456 (https://github.com/o/a/commit/0123456) Fix it (A)"),
        "{plain}"
    );
}

#[test]
fn syntax_errors_say_where() {
    let err = Template::compile(
        "line one\n{{ body.x ",
        Target::Slack,
        "f.toml:3:12: sinks.s.template",
    )
    .unwrap_err();
    assert_eq!(err.at, "f.toml:3:12: sinks.s.template");
    assert!(
        err.message
            .starts_with("line 2 of the template: syntax error"),
        "{}",
        err.message
    );
}

#[test]
fn an_unknown_filter_is_caught_when_compiling() {
    let err = Template::compile("{{ body.ref|nosuchfilter }}", Target::Plain, "at").unwrap_err();
    assert!(err.message.contains("unknown filter"), "{}", err.message);
}

#[test]
fn a_runaway_loop_runs_out_of_fuel() {
    let ev = event("push", serde_json::json!({}));
    let t = Template::compile(
        "{% if body.go %}{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}{% endif %}",
        Target::Plain,
        "at",
    )
    .unwrap();
    assert_eq!(t.render(&ev).unwrap(), "");
    let ev = event("push", serde_json::json!({"go": true}));
    let err = t.render(&ev).unwrap_err();
    assert!(err.message.contains("too much work"), "{}", err.message);
}

fn github_push() -> serde_json::Value {
    serde_json::json!({
        "ref": "refs/heads/main",
        "deleted": false,
        "compare": "https://github.com/octo/app/compare/a...b",
        "pusher": {"name": "mona"},
        "repository": {"full_name": "octo/app", "html_url": "https://github.com/octo/app"},
        "commits": [
            {"id": "1111111aaaa", "message": "First\n\nbody", "url": "https://github.com/octo/app/commit/1111111aaaa", "author": {"name": "Mona"}},
            {"id": "2222222bbbb", "message": "Second", "url": "https://github.com/octo/app/commit/2222222bbbb", "author": {"name": "Hu"}}
        ]
    })
}

#[test]
fn the_default_message_tells_who_pushed_what_where() {
    let ev = event("push", github_push());
    let out = built_in(Target::Plain, &ev);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "mona pushed 2 commits to main of octo/app (https://github.com/octo/app)"
    );
    assert_eq!(
        lines[1],
        "• 1111111 (https://github.com/octo/app/commit/1111111aaaa) First (Mona)"
    );
    assert_eq!(
        lines.last().unwrap(),
        &"Compare changes (https://github.com/octo/app/compare/a...b)"
    );
    let slack = built_in(Target::Slack, &ev);
    assert!(
        slack.starts_with(
            "*mona* pushed 2 commits to *main* of <https://github.com/octo/app|octo/app>"
        ),
        "{slack}"
    );
}

#[test]
fn the_default_message_covers_releases_gitlab_and_artifact_repositories() {
    let cases = [
        (
            "release",
            serde_json::json!({"action": "published", "release": {"tag_name": "v1.2.0", "html_url": "https://github.com/octo/app/releases/v1.2.0"}, "repository": {"full_name": "octo/app", "html_url": "https://github.com/octo/app"}, "sender": {"login": "mona"}}),
            "octo/app: release v1.2.0 published",
        ),
        (
            "Push Hook",
            serde_json::json!({"object_kind": "push", "ref": "refs/heads/dev", "user_name": "Ann", "total_commits_count": 1, "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"}, "commits": [{"id": "abcdef012345", "message": "Fix", "url": "https://gitlab.example/c", "author": {"name": "Ann"}}]}),
            "Ann pushed 1 commit to dev of g/p",
        ),
        (
            "Tag Push Hook",
            serde_json::json!({"object_kind": "tag_push", "ref": "refs/tags/v2", "user_name": "Ann", "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"}}),
            "Ann pushed tag v2 to g/p",
        ),
        (
            "Merge Request Hook",
            serde_json::json!({"object_kind": "merge_request", "user": {"name": "Ann"}, "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"}, "object_attributes": {"iid": 7, "title": "Add x", "action": "open", "url": "https://gitlab.example/g/p/-/merge_requests/7", "source_branch": "x", "target_branch": "main"}}),
            "g/p: merge request !7 opened by Ann",
        ),
        (
            "Pipeline Hook",
            serde_json::json!({"object_kind": "pipeline", "project": {"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"}, "object_attributes": {"id": 31, "status": "failed", "ref": "main"}}),
            "g/p: pipeline #31 failed on main",
        ),
        (
            "rm:repository:component",
            serde_json::json!({"action": "CREATED", "repositoryName": "maven-releases", "initiator": "ci", "component": {"format": "maven2", "group": "org.acme", "name": "app", "version": "1.0"}}),
            "created: org.acme:app 1.0 in maven-releases",
        ),
        (
            "deployed",
            serde_json::json!({"domain": "artifact", "event_type": "deployed", "data": {"repo_key": "libs", "path": "org/acme/app-1.0.jar", "name": "app-1.0.jar"}}),
            "deployed: app-1.0.jar in libs",
        ),
        (
            "ping",
            serde_json::json!({"zen": "Keep it simple.", "hook_id": 5, "hook": {"x": 1}}),
            "ping from github",
        ),
    ];
    for (event_type, body, headline) in cases {
        let out = built_in(Target::Plain, &event(event_type, body));
        let first = out.lines().next().unwrap_or("");
        assert!(
            strip_links(first).starts_with(headline),
            "{event_type}: {first:?} does not start with {headline:?}"
        );
    }
    let generic = render(
        DEFAULT_MESSAGE,
        Target::Plain,
        &event(
            "ping",
            serde_json::json!({"zen": "Keep it simple.", "hook_id": 5, "hook": {"x": 1}}),
        ),
    );
    // Fields in key order; nested objects are left out of the compact summary.
    assert_eq!(
        generic,
        "ping from github\nhook_id: 5\nzen: Keep it simple.\n"
    );
}

/// `label (url)` → `label`, for comparing plain headlines.
fn strip_links(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find(" (http") {
        out.push_str(&rest[..i]);
        match rest[i..].find(')') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_default_message_renders_hostile_events_harmlessly() {
    let mut body = github_push();
    body["pusher"]["name"] = serde_json::json!(EVIL);
    body["commits"][0]["message"] = serde_json::json!(EVIL);
    body["repository"]["full_name"] = serde_json::json!(EVIL);
    let ev = event("push", body);
    let slack = built_in(Target::Slack, &ev);
    assert!(
        !slack.contains("<!channel>") && !slack.contains("<script"),
        "{slack}"
    );
    let discord = built_in(Target::Discord, &ev);
    assert!(
        !discord.contains("@everyone") && !discord.contains("[x](https://evil"),
        "{discord}"
    );
    let html = built_in(Target::Html, &ev);
    assert!(!html.contains("<script"), "{html}");
    let subject = one_line(&render(DEFAULT_SUBJECT, Target::Plain, &ev));
    assert!(
        !subject.contains('\n') && !subject.contains('\r'),
        "{subject}"
    );
}

#[test]
fn the_built_in_subject_names_the_artifact_and_repository_from_the_summary() {
    let summary = crate::summary::Summary {
        action: Some("uploaded".into()),
        repository: Some("platform/shop".into()),
        component: Some("shop".into()),
        version: Some("1.4.0".into()),
        ..Default::default()
    };
    let ev = summarized(
        "PUSH_ARTIFACT",
        serde_json::json!({"type": "PUSH_ARTIFACT"}),
        Some(summary),
    );
    assert_eq!(
        one_line(&render(DEFAULT_SUBJECT, Target::Plain, &ev)),
        "[github] PUSH_ARTIFACT: shop 1.4.0 in platform/shop"
    );
    // A Maven component by group:name; an artifact known by its path.
    let maven = crate::summary::Summary {
        component: Some("app".into()),
        version: Some("1.0".into()),
        repository: Some("releases".into()),
        ..Default::default()
    };
    let body = serde_json::json!({"repositoryName": "releases", "component": {"group": "org.acme", "name": "app", "format": "maven2"}});
    let ev = summarized("rm:repository:component", body, Some(maven));
    assert_eq!(
        one_line(&render(DEFAULT_SUBJECT, Target::Plain, &ev)),
        "[github] rm:repository:component: org.acme:app 1.0 in releases"
    );
    let deployed = crate::summary::Summary {
        path: Some("org/acme/app-1.0.jar".into()),
        repository: Some("libs".into()),
        ..Default::default()
    };
    let ev = summarized("deployed", serde_json::json!({}), Some(deployed));
    assert_eq!(
        one_line(&render(DEFAULT_SUBJECT, Target::Plain, &ev)),
        "[github] deployed: org/acme/app-1.0.jar in libs"
    );
}

#[test]
fn cut_and_one_line() {
    assert_eq!(cut("abcdef", 4), "abc…");
    assert_eq!(cut("abc", 3), "abc");
    assert_eq!(cut("ab\\cdef", 4), "ab…");
    assert_eq!(one_line(" a\r\nBcc: x\t y "), "a Bcc: x y");
}

#[test]
fn the_event_summary_reaches_templates_escaped() {
    let delivery = Delivery {
        event: Arc::new(crate::store::StoredEvent {
            id: Uuid::now_v7(),
            source: Arc::from("nexus"),
            event_type: Some("rm:repository:component".to_string()),
            delivery_id: None,
            headers: Vec::new(),
            content_type: None,
            received_at_ms: 0,
            body: Bytes::from_static(b"{}"),
        }),
        summary: Some(Arc::new(crate::summary::Summary {
            action: Some("uploaded".to_string()),
            repository: Some("releases <b>".to_string()),
            version: Some("1.4.2".to_string()),
            ..Default::default()
        })),
        attempt: 1,
    };
    let ev = EventContext::new(&delivery);
    let out = render(
        "{{ summary.action }} {{ summary.repository }} {{ summary.version }}|{{ summary.actor is defined }}",
        Target::Html,
        &ev,
    );
    assert_eq!(out, "uploaded releases &lt;b&gt; 1.4.2|False");
}

#[test]
fn the_built_in_message_names_a_grouped_component_group_colon_name() {
    let nexus_upload = |group: serde_json::Value| {
        let body = serde_json::json!({"action": "CREATED", "repositoryName": "maven-releases",
            "component": {"format": "maven2", "group": group, "name": "app", "version": "1.0"}});
        let summary = crate::summary::Summary {
            action: Some("uploaded".to_string()),
            repository: Some("maven-releases".to_string()),
            component: Some("app".to_string()),
            version: Some("1.0".to_string()),
            ..Default::default()
        };
        let ev = summarized("rm:repository:component", body, Some(summary));
        let out = built_in(Target::Plain, &ev);
        out.lines().next().unwrap_or("").to_string()
    };
    assert_eq!(
        nexus_upload(serde_json::json!("org.acme")),
        "uploaded: org.acme:app 1.0 in maven-releases"
    );
    // A scoped npm package reads as npm writes it.
    let body = serde_json::json!({"action": "CREATED", "repositoryName": "npm-hosted",
        "component": {"format": "npm", "group": "acme", "name": "logger", "version": "2.0.1"}});
    let summary = crate::summary::Summary {
        action: Some("uploaded".to_string()),
        repository: Some("npm-hosted".to_string()),
        component: Some("logger".to_string()),
        version: Some("2.0.1".to_string()),
        ..Default::default()
    };
    let ev = summarized("rm:repository:component", body.clone(), Some(summary));
    let out = built_in(Target::Plain, &ev);
    assert!(
        out.starts_with("uploaded: @acme/logger 2.0.1 in npm-hosted"),
        "{out}"
    );
    // Without a summary (a Nexus source of kind hmac), the same.
    let out = render(
        DEFAULT_MESSAGE,
        Target::Plain,
        &event("rm:repository:component", body),
    );
    assert!(
        out.starts_with("created: @acme/logger 2.0.1 in npm-hosted"),
        "{out}"
    );
    // Unscoped npm and raw components have no group; a group of another JSON type is not
    // shown.
    for no_group in [
        serde_json::Value::Null,
        serde_json::json!(""),
        serde_json::json!(7),
    ] {
        assert_eq!(
            nexus_upload(no_group),
            "uploaded: app 1.0 in maven-releases"
        );
    }
}

#[test]
fn without_a_component_the_built_in_message_names_the_repository() {
    let headline = |event_type: &str, summary: crate::summary::Summary| {
        let ev = summarized(event_type, serde_json::json!({}), Some(summary));
        let out = built_in(Target::Plain, &ev);
        out.lines().next().unwrap_or("").to_string()
    };
    // Harbor names an image by its repository and tag.
    let harbor = crate::summary::Summary {
        action: Some("uploaded".to_string()),
        repository: Some("platform/demo-app".to_string()),
        version: Some("1.4.2".to_string()),
        ..Default::default()
    };
    assert_eq!(
        headline("PUSH_ARTIFACT", harbor),
        "uploaded: platform/demo-app 1.4.2"
    );
    let ping = crate::summary::Summary {
        repository: Some("demo/app".to_string()),
        ..Default::default()
    };
    assert_eq!(headline("ping", ping), "ping: demo/app");
    // A component without a repository: no dangling "in".
    let loose = crate::summary::Summary {
        component: Some("app".to_string()),
        ..Default::default()
    };
    assert_eq!(headline("upload", loose), "upload: app");
}

fn strict(source: &str) -> Result<Template, TemplateError> {
    Template::compile_with(
        source,
        Target::Plain,
        "t.toml:3:16: sinks.dt.project_name",
        Missing::Fail,
    )
}

#[test]
fn a_strict_template_refuses_unknown_names_and_bad_syntax_at_compile_time() {
    let err = strict("{{ sorce }}-{{ repo }}").unwrap_err();
    assert_eq!(err.at, "t.toml:3:16: sinks.dt.project_name");
    assert!(
        err.message
            .starts_with("uses unknown variables repo, sorce; a template may use source,"),
        "{err}"
    );
    let err = strict("{{ source ").unwrap_err();
    assert!(err.message.contains("syntax error"), "{err}");
    // Fields the sample event lacks are fine; functions and filters are not variables.
    strict("{{ body.sbom.metadata.component.name | lower }}{{ range(1)|length }}").unwrap();
}

#[test]
fn any_template_refuses_a_name_no_event_has() {
    // A NATS or mail subject with a typo printed nothing for every event: a subject of
    // "hooks." and every delivery a dead letter.
    let err = Template::compile(
        "hooks.{{ sorce }}",
        Target::Plain,
        "t.toml:9:11: sinks.bus.subject",
    )
    .unwrap_err();
    assert!(
        err.message.starts_with("uses unknown variable sorce;"),
        "{err}"
    );
    let err = Template::compile("{{ nosuchvar.x }} hello", Target::Slack, "t").unwrap_err();
    assert!(err.message.contains("nosuchvar"), "{err}");
    // Loop and set names are the template's own; fields an event lacks still print nothing.
    Template::compile(
        "{% set n = body.commits|length %}{% for c in body.commits %}{{ c.id }}{% endfor %}{{ n }}{{ body.nothing.here }}",
        Target::Slack,
        "t",
    )
    .unwrap();
}

#[test]
fn a_strict_template_fails_on_a_field_the_event_lacks_instead_of_printing_nothing() {
    let template = strict("{{ source }}-{{ body.component.name }}").unwrap();
    let ev = event("push", serde_json::json!({"component": {"name": "shop"}}));
    assert_eq!(template.render(&ev).unwrap(), "github-shop");
    let ev = event("push", serde_json::json!({"other": 1}));
    let err = template.render(&ev).unwrap_err();
    assert!(err.message.contains("undefined value"), "{err}");
}

#[test]
fn a_strict_template_prints_event_text_as_is() {
    // Plain target: the same escaping rule as a mail's text part, so a project name keeps
    // its characters (Dependency-Track shows them as text).
    let template = strict("{{ body.name }}").unwrap();
    let ev = event("push", serde_json::json!({"name": "a&b <c>"}));
    assert_eq!(template.render(&ev).unwrap(), "a&b <c>");
}

/// Regression: a line break in an event field split the built-in message's headline.
#[test]
fn regression_a_newline_in_an_event_field_does_not_split_the_headline() {
    let ev = event(
        "push",
        serde_json::json!({
            "ref": "refs/heads/main",
            "pusher": {"name": "mona\r\nBcc: x@example.com"},
            "repository": {"full_name": "octo/app\n\u{2028}more", "html_url": "https://github.com/octo/app"},
            "commits": [{"id": "0123456789abcdef", "message": "Fix", "url": "https://x.example/c",
                         "author": {"name": "Mo\nna"}}],
        }),
    );
    for target in EVERY_TARGET {
        let out = Template::built_in(DEFAULT_MESSAGE, target, "built-in")
            .unwrap()
            .render(&ev)
            .unwrap();
        let lines: Vec<&str> = out.trim().lines().collect();
        assert_eq!(lines.len(), 2, "{target:?}: {out}");
        assert!(
            lines[0].contains("Bcc: x") && lines[0].contains("more"),
            "{target:?}: {out}"
        );
        assert!(lines[1].contains("Mo na"), "{target:?}: {out}");
    }
    // A template of one's own prints values as they are.
    let own = render("{{ body.pusher.name }}", Target::Plain, &ev);
    assert_eq!(own, "mona\r\nBcc: x@example.com");
}

fn notice(body: serde_json::Value) -> EventContext {
    let kind = body["type"].as_str().unwrap().to_string();
    let mut ev = event(&kind, body);
    ev.source = "hookrelay".to_string();
    ev.headers.clear();
    ev
}

#[test]
fn the_default_message_reads_hookrelay_notices() {
    let unhealthy = notice(serde_json::json!({
        "type": "sink.unhealthy", "sink": "audit", "since": "2025-01-01T12:03:10Z",
        "consecutive_failures": 5, "last_error": "receiver answered 503",
        "reason": "5 failed attempts in a row", "suppressed": 0, "instance": "relay-1",
        "time": "2025-01-01T12:05:00Z",
    }));
    assert_eq!(
        built_in(Target::Slack, &unhealthy).trim(),
        "Sink *audit* is unhealthy: 5 failed attempts since 12:03 UTC; last error: receiver answered 503\nRelay relay-1"
    );
    assert_eq!(
        render(DEFAULT_SUBJECT, Target::Plain, &unhealthy).trim(),
        "[hookrelay] sink.unhealthy: audit"
    );
    let mut dead = unhealthy.clone();
    dead.body["reason"] =
        serde_json::json!("a delivery became a dead letter after 1 failed attempt in a row");
    assert!(
        built_in(Target::Plain, &dead)
            .contains("\nAn event is now a dead letter: replay it once the sink works again.\n"),
        "{}",
        built_in(Target::Plain, &dead)
    );

    let recovered = notice(serde_json::json!({
        "type": "sink.recovered", "sink": "audit", "since": "2024-12-31T23:59:00Z",
        "consecutive_failures": 1, "last_error": "could not connect", "recovered_after_s": 245,
        "reason": "working again", "suppressed": 3, "instance": "relay-1",
        "time": "2025-01-01T00:03:05Z",
    }));
    assert_eq!(
        built_in(Target::Plain, &recovered).trim(),
        "Sink audit recovered after 4 min\n\
         It had 1 failed attempt since 2024-12-31 23:59 UTC; last error: could not connect\n\
         Relay relay-1; 3 notices about it held back since the last one"
    );

    let storage = notice(serde_json::json!({
        "type": "storage.unhealthy", "store": "/var/lib/hookrelay/hookrelay.redb",
        "since": "2025-01-01T12:03:00Z", "consecutive_failures": 0, "last_error": null,
        "reason": "100.0 MiB free on the store's file system, under [notices] min_free 1.0 GiB",
        "suppressed": 0, "instance": "relay-1", "time": "2025-01-01T12:03:00Z",
    }));
    let text = built_in(Target::Plain, &storage);
    assert!(
        text.starts_with("Storage is unhealthy: 100.0 MiB free on the store's file system"),
        "{text}"
    );
    assert!(!text.contains("Last error"), "{text}");

    let reload = notice(serde_json::json!({
        "type": "config.reload_failed", "config": "hookrelay.toml",
        "errors": ["hookrelay.toml:3:7: routes[0].to: no sink \"x\""], "error_count": 1,
        "reason": "1 problem in hookrelay.toml; the previous configuration keeps running",
        "suppressed": 0, "instance": "relay-1", "time": "2025-01-01T12:03:00Z",
    }));
    assert_eq!(
        built_in(Target::Plain, &reload).trim(),
        "Config reload failed: 1 problem in hookrelay.toml; the previous configuration keeps running\n\
         • hookrelay.toml:3:7: routes[0].to: no sink \"x\"\n\
         Relay relay-1"
    );
}

#[test]
fn a_notice_is_escaped_like_any_event() {
    let hostile = notice(serde_json::json!({
        "type": "sink.unhealthy", "sink": "audit", "since": "2025-01-01T12:03:10Z",
        "consecutive_failures": 5, "last_error": "<!channel> answered",
        "reason": "5 failed attempts in a row", "instance": "relay-1",
        "time": "2025-01-01T12:05:00Z",
    }));
    let slack = built_in(Target::Slack, &hostile);
    assert!(slack.contains("&lt;!channel&gt; answered"), "{slack}");
}

#[test]
fn the_readmes_nats_subject_turns_spaces_into_underscores() {
    let ev = summarized("Push Hook", serde_json::json!({}), None);
    assert_eq!(
        render(
            "hooks.{{ source }}.{{ event_type|replace(' ', '_') }}",
            Target::Plain,
            &ev
        ),
        "hooks.github.Push_Hook"
    );
}

#[test]
fn the_built_in_push_message_reads_gitea_pushers_and_tag_pushes() {
    let headline = |body: serde_json::Value| {
        let ev = summarized("push", body, None);
        built_in(Target::Plain, &ev)
    };
    // Gitea and Forgejo: `pusher.login` and `compare_url`.
    let gitea = headline(serde_json::json!({
        "ref": "refs/heads/main",
        "compare_url": "https://gitea.example/p/demo-app/compare/a...b",
        "pusher": {"login": "ada", "username": "ada"},
        "repository": {"full_name": "p/demo-app", "html_url": "https://gitea.example/p/demo-app"},
        "commits": [{"id": "0123456789", "message": "fix", "url": "https://gitea.example/c/1", "author": {"name": "Ada"}}]
    }));
    assert!(
        gitea.starts_with("ada pushed 1 commit to main of p/demo-app"),
        "{gitea}"
    );
    assert!(gitea.contains("Compare changes"), "{gitea}");
    // A tag push has no commits to count.
    let tag = headline(serde_json::json!({
        "ref": "refs/tags/v1.2",
        "pusher": {"name": "ada"},
        "repository": {"full_name": "o/r", "html_url": "https://github.com/o/r"},
        "commits": []
    }));
    assert!(tag.starts_with("ada pushed tag v1.2 to o/r"), "{tag}");
}

#[test]
fn the_built_in_message_tells_deletions_new_branches_pull_requests_and_runs() {
    let zeros = "0".repeat(40);
    let gitlab =
        serde_json::json!({"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"});
    let github = serde_json::json!({"full_name": "o/r", "html_url": "https://github.com/o/r"});
    let cases = [
        (
            "Push Hook",
            serde_json::json!({"object_kind": "push", "ref": "refs/heads/feature/x", "before": "1a2b", "after": zeros, "user_name": "Ann", "total_commits_count": 0, "project": gitlab}),
            "Ann deleted branch feature/x of g/p",
        ),
        (
            "Tag Push Hook",
            serde_json::json!({"object_kind": "tag_push", "ref": "refs/tags/v2", "before": "1a2b", "after": zeros, "user_name": "Ann", "project": gitlab}),
            "Ann deleted tag v2 of g/p",
        ),
        (
            "Push Hook",
            serde_json::json!({"object_kind": "push", "ref": "refs/heads/new", "before": zeros, "after": "1a2b", "user_name": "Ann", "total_commits_count": 0, "project": gitlab}),
            "Ann created branch new in g/p",
        ),
        (
            "push",
            serde_json::json!({"ref": "refs/heads/new", "created": true, "pusher": {"name": "mona"}, "repository": github, "commits": []}),
            "mona created branch new in o/r",
        ),
        (
            "push",
            serde_json::json!({"ref": "refs/heads/main", "forced": true, "pusher": {"name": "mona"}, "repository": github, "commits": [{"id": "0123456789", "message": "m"}, {"id": "abcdef0123", "message": "n"}]}),
            "mona force-pushed 2 commits to main of o/r",
        ),
        (
            "delete",
            serde_json::json!({"ref": "feature", "ref_type": "branch", "repository": github, "sender": {"login": "mona"}}),
            "mona deleted branch feature of o/r",
        ),
        (
            "create",
            serde_json::json!({"ref": "v1.0", "ref_type": "tag", "repository": github, "sender": {"login": "mona"}}),
            "mona created tag v1.0 in o/r",
        ),
        (
            "pull_request",
            serde_json::json!({"action": "opened", "number": 7, "pull_request": {"number": 7, "title": "Add x", "html_url": "https://github.com/o/r/pull/7", "head": {"ref": "x"}, "base": {"ref": "main"}}, "repository": github, "sender": {"login": "mona"}}),
            "o/r: pull request #7 opened by mona\nAdd x\nx → main",
        ),
        (
            "pull_request",
            serde_json::json!({"action": "closed", "number": 7, "pull_request": {"number": 7, "title": "Add x", "merged": true}, "repository": github, "sender": {"login": "mona"}}),
            "o/r: pull request #7 merged by mona\nAdd x",
        ),
        (
            "workflow_run",
            serde_json::json!({"action": "completed", "workflow_run": {"name": "CI", "conclusion": "failure", "status": "completed", "head_branch": "main", "html_url": "https://github.com/o/r/actions/runs/1", "display_title": "Fix the build"}, "repository": github}),
            "o/r: workflow CI failure on main\nFix the build",
        ),
        (
            "pullrequest:created",
            serde_json::json!({"actor": {"display_name": "Ada Lovelace"}, "pullrequest": {"id": 3, "title": "Add y", "links": {"html": {"href": "https://bitbucket.org/p/r/pull-requests/3"}}, "source": {"branch": {"name": "y"}}, "destination": {"branch": {"name": "main"}}}, "repository": {"full_name": "p/r", "links": {"html": {"href": "https://bitbucket.org/p/r"}}}}),
            "p/r: pull request #3 created by Ada Lovelace\nAdd y\ny → main",
        ),
        (
            "pr:opened",
            serde_json::json!({"actor": {"name": "ada"}, "pullRequest": {"id": 9, "title": "Add z", "fromRef": {"displayId": "z"}, "toRef": {"displayId": "main", "repository": {"slug": "demo-app"}}, "links": {"self": [{"href": "https://bb.example/pr/9"}]}}}),
            "demo-app: pull request #9 opened by ada\nAdd z\nz → main",
        ),
    ];
    for (event_type, body, expected) in cases {
        let out = built_in(Target::Plain, &event(event_type, body));
        let shown: Vec<String> = out.lines().map(strip_links).collect();
        assert!(
            shown.join("\n").starts_with(expected),
            "{event_type}: {out:?} does not start with {expected:?}"
        );
    }
}

#[test]
fn the_built_in_message_gives_harbor_scan_results_and_the_actor() {
    let body = serde_json::json!({"type": "SCANNING_COMPLETED", "operator": "auto", "event_data": {"repository": {"repo_full_name": "platform/shop"}, "resources": [{"tag": "1.4.0", "scan_overview": {"application/vnd.security.vulnerability.report; version=1.1": {"severity": "Critical", "summary": {"total": 5, "summary": {"Low": 4, "Critical": 2, "Medium": 1, "High": 3}}}}}]}});
    let summary = crate::summary::Summary {
        action: Some("scanned".into()),
        repository: Some("platform/shop".into()),
        version: Some("1.4.0".into()),
        actor: Some("auto".into()),
        ..Default::default()
    };
    let ev = summarized("SCANNING_COMPLETED", body, Some(summary));
    assert_eq!(
        built_in(Target::Plain, &ev),
        "scanned: platform/shop 1.4.0\nSeverity Critical: 2 critical, 3 high, 1 medium, 4 low\nBy auto\n"
    );
}

#[test]
fn the_built_in_message_tells_other_forge_events_what_happened_to_what() {
    let github = serde_json::json!({"full_name": "o/r", "html_url": "https://github.com/o/r"});
    let gitlab =
        serde_json::json!({"path_with_namespace": "g/p", "web_url": "https://gitlab.example/g/p"});
    let cases = [
        (
            "issues",
            serde_json::json!({"action": "opened", "issue": {"number": 12, "title": "Crash on start", "html_url": "https://github.com/o/r/issues/12"}, "repository": github, "sender": {"login": "mona"}}),
            "o/r: issue opened by mona\n#12 Crash on start\n",
        ),
        (
            "issue_comment",
            serde_json::json!({"action": "created", "issue": {"number": 12, "title": "Crash on start"}, "comment": {"body": "Same here.\nLog attached."}, "repository": github, "sender": {"login": "ada"}}),
            "o/r: issue comment created by ada\n#12 Crash on start\nSame here.\n",
        ),
        (
            "issue_comment",
            serde_json::json!({"action": "created", "issue": {"number": 7, "title": "Add x", "pull_request": {"url": "https://api.github.com/repos/o/r/pulls/7"}}, "comment": {"body": "Looks good"}, "repository": github, "sender": {"login": "ada"}}),
            "o/r: pull request comment created by ada\n#7 Add x\nLooks good\n",
        ),
        (
            "star",
            serde_json::json!({"action": "created", "repository": github, "sender": {"login": "ada"}}),
            "o/r: star created by ada\n",
        ),
        (
            "Job Hook",
            serde_json::json!({"object_kind": "build", "build_id": 77, "build_name": "test", "build_status": "failed", "user": {"name": "Ann"}, "project": gitlab}),
            "g/p: job failed by Ann\ntest\n",
        ),
        (
            "Note Hook",
            serde_json::json!({"object_kind": "note", "user": {"name": "Ann"}, "project": gitlab, "object_attributes": {"note": "Looks good", "url": "https://gitlab.example/g/p/-/issues/1#note_5"}}),
            "g/p: note by Ann\nLooks good\n",
        ),
        (
            "Issue Hook",
            serde_json::json!({"object_kind": "issue", "user": {"name": "Ann"}, "project": gitlab, "object_attributes": {"iid": 4, "title": "Docs", "action": "reopen", "url": "https://gitlab.example/g/p/-/issues/4"}}),
            "g/p: issue reopened by Ann\n#4 Docs\n",
        ),
    ];
    for (event_type, body, expected) in cases {
        let out = built_in(Target::Plain, &event(event_type, body));
        let shown: Vec<String> = out.lines().map(strip_links).collect();
        assert_eq!(shown.join("\n") + "\n", expected, "{event_type}: {out:?}");
    }
    let more = [
        (
            "Release Hook",
            serde_json::json!({"object_kind": "release", "action": "create", "name": "v1.1", "tag": "v1.1", "url": "https://gitlab.example/g/p/-/releases/v1.1", "project": gitlab}),
            "g/p: release v1.1 created\nTag v1.1\n",
        ),
        (
            "Note Hook",
            serde_json::json!({"object_kind": "note", "user": {"name": "Ann"}, "project": gitlab, "merge_request": {"iid": 1, "title": "Add x"}, "object_attributes": {"note": "LGTM", "action": "create", "url": "https://gitlab.example/g/p/-/merge_requests/1#note_9"}}),
            "g/p: note created by Ann\n!1 Add x\nLGTM\n",
        ),
        (
            "workflow_job",
            serde_json::json!({"action": "completed", "workflow_job": {"name": "build", "status": "completed", "conclusion": "failure", "html_url": "https://github.com/o/r/actions/runs/1/job/2"}, "repository": github, "sender": {"login": "ada"}}),
            "o/r: workflow job failure by ada\nbuild\n",
        ),
        (
            "deployment_status",
            serde_json::json!({"action": "created", "deployment_status": {"state": "failure", "environment": "production"}, "deployment": {"environment": "production"}, "repository": github, "sender": {"login": "ada"}}),
            "o/r: deployment status failure by ada\nEnvironment production\n",
        ),
        (
            "pull_request_review_comment",
            serde_json::json!({"action": "created", "comment": {"body": "Nit: rename.\nMore.", "html_url": "https://github.com/o/r/pull/7#discussion_r1"}, "pull_request": {"number": 7, "title": "Add x"}, "repository": github, "sender": {"login": "ada"}}),
            "o/r: ada commented on pull request #7\nAdd x\nNit: rename.\n",
        ),
    ];
    for (event_type, body, expected) in more {
        let out = built_in(Target::Plain, &event(event_type, body));
        let shown: Vec<String> = out.lines().map(strip_links).collect();
        assert_eq!(shown.join("\n") + "\n", expected, "{event_type}: {out:?}");
    }
    // GitLab's summary names the username; the message names the person, as its merge
    // request and push lines do.
    let summary = crate::summary::Summary {
        actor: Some("root".into()),
        repository: Some("g/p".into()),
        ..Default::default()
    };
    let body = serde_json::json!({"object_kind": "issue", "user": {"name": "Administrator", "username": "root"}, "project": gitlab, "object_attributes": {"iid": 4, "title": "Docs", "action": "open"}});
    let out = built_in(
        Target::Plain,
        &summarized("Issue Hook", body, Some(summary)),
    );
    assert!(
        out.starts_with("g/p (https://gitlab.example/g/p): issue opened by Administrator\n"),
        "{out}"
    );
    // Bitbucket: a tag pushed, a branch deleted.
    for (action, expected) in [
        ("tag", "Ada pushed tag v2 to p/r\n"),
        ("deleted", "Ada deleted v2 of p/r\n"),
    ] {
        let summary = crate::summary::Summary {
            action: Some(action.into()),
            repository: Some("p/r".into()),
            git_ref: Some("refs/tags/v2".into()),
            actor: Some("Ada".into()),
            ..Default::default()
        };
        let body = serde_json::json!({"repository": {"full_name": "p/r"}, "push": {"changes": []}});
        let out = built_in(Target::Plain, &summarized("repo:push", body, Some(summary)));
        assert_eq!(out, expected);
    }
    // Bitbucket Cloud: the summary's ref and the change's commits.
    let summary = crate::summary::Summary {
        action: Some("pushed".into()),
        repository: Some("p/r".into()),
        git_ref: Some("refs/heads/main".into()),
        actor: Some("Ada".into()),
        ..Default::default()
    };
    let body = serde_json::json!({"actor": {"display_name": "Ada"}, "repository": {"full_name": "p/r", "links": {"html": {"href": "https://bitbucket.org/p/r"}}}, "push": {"changes": [{"new": {"name": "main", "type": "branch"}, "commits": [{"hash": "0123456789ab", "message": "Fix it\n", "author": {"raw": "Ada <ada@example.com>"}}]}]}});
    let out = built_in(Target::Plain, &summarized("repo:push", body, Some(summary)));
    assert_eq!(
        out,
        "Ada pushed to main of p/r (https://bitbucket.org/p/r)\n• 0123456 Fix it (Ada <ada@example.com>)\n"
    );
    let summary = crate::summary::Summary {
        action: Some("pushed".into()),
        git_ref: Some("refs/heads/main".into()),
        actor: Some("Ada".into()),
        ..Default::default()
    };
    let body = serde_json::json!({"repository": {"full_name": "p/r"}, "push": {"changes": [{"truncated": true, "commits": [{"hash": "0123456789ab", "message": "Fix"}]}]}});
    let out = built_in(Target::Plain, &summarized("repo:push", body, Some(summary)));
    assert_eq!(
        out,
        "Ada pushed to main of p/r\n• 0123456 Fix\n… and more\n"
    );
}

#[test]
fn a_gitea_push_counts_every_commit_not_just_those_listed() {
    let commits: Vec<_> = (0..5)
        .map(|i| serde_json::json!({"id": format!("{i:040}"), "message": "m", "author": {"name": "a"}}))
        .collect();
    let body = serde_json::json!({"ref": "refs/heads/develop", "pusher": {"login": "ada"}, "repository": {"full_name": "g/w"}, "commits": commits, "total_commits": 12});
    let out = built_in(Target::Plain, &event("push", body));
    assert!(
        out.starts_with("ada pushed 12 commits to develop of g/w\n"),
        "{out}"
    );
    assert!(out.contains("… and 7 more\n"), "{out}");
}

#[test]
fn a_commit_without_an_author_or_that_is_no_object_prints_no_empty_parts() {
    let body = serde_json::json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}, "repository": {"full_name": "o/r"}, "commits": [{"id": "0123456789", "message": "fix"}, 7, null]});
    let out = built_in(Target::Plain, &event("push", body));
    assert_eq!(out, "ada pushed 3 commits to main of o/r\n• 0123456 fix\n");
}

#[test]
fn the_built_in_message_keeps_the_spaces_of_its_own_text() {
    let body = serde_json::json!({"action": "published", "release": {"tag_name": "v1.4.2", "name": null, "prerelease": true}, "repository": {"full_name": "o/r"}, "sender": {"login": "zoë"}});
    let out = built_in(Target::Plain, &event("release", body));
    assert!(out.contains("Tag v1.4.2 by zoë (pre-release)\n"), "{out}");
}

#[test]
fn the_built_in_listing_shows_at_most_eight_fields() {
    let mut body = serde_json::Map::new();
    for i in 0..40 {
        body.insert(format!("field{i:02}"), serde_json::json!("x"));
    }
    let out = built_in(
        Target::Plain,
        &event("custom", serde_json::Value::Object(body)),
    );
    assert_eq!(out.lines().count(), 1 + 8, "{out}");
}

#[test]
fn the_built_in_listing_writes_json_values_as_json_does() {
    let ev = event(
        "diagnostics:ping",
        serde_json::json!({"test": true, "n": 3, "none": null, "s": "x"}),
    );
    let out = built_in(Target::Plain, &ev);
    assert!(out.contains("test: true\n"), "{out}");
    assert!(out.contains("n: 3\n") && out.contains("s: x\n"), "{out}");
}
