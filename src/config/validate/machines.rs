//! Validation of the machine-readable sinks: `dependency-track`, `guac` and `archive`.
//!
//! A child of `validate`, so it shares the [`Validator`] and its helpers; kept apart so the
//! keys of these kinds read in one place. Same invariants as the parent: every problem is
//! collected with its span, and no message quotes a secret or a URL.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::super::raw::{Entry, RawSink, Strings};
use super::super::{
    ArchiveSinkConfig, DependencyTrackProject, DependencyTrackSinkConfig, DocumentEncoding,
    DocumentLocation, GuacSinkConfig, GuacTarget, S3Config, SinkKind, TemplateSource,
};
use super::{Validator, check_pointer};

/// Archive files are rotated before they pass this size, unless `max_file_size` says otherwise.
const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;
/// The region S3-compatible servers that ignore regions (MinIO, moto, Ceph) are happy with.
const DEFAULT_REGION: &str = "us-east-1";

impl Validator<'_> {
    pub(super) fn dependency_track_sink(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let url = match &raw.url {
            Some(u) => self.url(u, &key("url")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing url; add url = \"https://dtrack.example.com\", the Dependency-Track \
                     server's base URL (without /api)",
            ),
        };
        let api_key = match &raw.api_key {
            Some(k) => self.secret(k, &key("api_key")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing api_key; add api_key = \"${env:DTRACK_API_KEY}\", a key with the \
                     BOM_UPLOAD permission",
            ),
        };
        let project = self.dependency_track_project(entry, raw, path);
        let bom = self.document_location(raw, path, true);
        Some(SinkKind::DependencyTrack(DependencyTrackSinkConfig {
            url: url?,
            api_key: api_key?,
            project: project?,
            bom: bom?,
        }))
    }

    fn dependency_track_project(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<DependencyTrackProject> {
        let key = |k: &str| format!("{path}.{k}");
        match (&raw.project, &raw.project_name, &raw.project_version) {
            (Some(uuid), None, None) => {
                if let Some(auto) = &raw.auto_create {
                    self.problem(
                        auto.span(),
                        key("auto_create"),
                        "only applies with project_name and project_version; remove it (a \
                         project given by UUID already exists)",
                    );
                    return None;
                }
                match uuid::Uuid::try_parse(uuid.get_ref()) {
                    Ok(u) => Some(DependencyTrackProject::Uuid(u.hyphenated().to_string())),
                    Err(_) => {
                        self.problem(
                            uuid.span(),
                            key("project"),
                            "is not a UUID; copy the project's UUID from Dependency-Track, or use \
                             project_name and project_version instead",
                        );
                        None
                    }
                }
            }
            (None, Some(name), Some(version)) => {
                let name = self.project_template(name, &key("project_name"));
                let version = self.project_template(version, &key("project_version"));
                Some(DependencyTrackProject::Named {
                    name: name?,
                    version: version?,
                    auto_create: raw.auto_create.as_ref().is_some_and(|a| *a.get_ref()),
                })
            }
            (Some(uuid), _, _) => {
                self.problem(
                    uuid.span(),
                    key("project"),
                    "is given with project_name or project_version; keep either project (a \
                     UUID) or project_name and project_version",
                );
                None
            }
            (None, Some(name), None) => {
                self.problem(
                    name.span(),
                    key("project_name"),
                    "needs project_version too, e.g. project_version = \"{{ event_type }}\"",
                );
                None
            }
            (None, None, Some(version)) => {
                self.problem(
                    version.span(),
                    key("project_version"),
                    "needs project_name too, e.g. project_name = \"{{ source }}\"",
                );
                None
            }
            (None, None, None) => {
                self.problem(
                    entry.name.span(),
                    path,
                    "missing project; add project = \"UUID\", or project_name and \
                     project_version (templates such as \"{{ source }}\")",
                );
                None
            }
        }
    }

    /// A project name or version template, recorded with its place; the sink compiles it
    /// (also at `hookrelay check`), through the same engine as every message template.
    fn project_template(&mut self, value: &Spanned<String>, key: &str) -> Option<TemplateSource> {
        if value.get_ref().trim().is_empty() {
            self.problem(
                value.span(),
                key,
                "is empty; write a name, or a template such as \"{{ source }}\"",
            );
            return None;
        }
        Some(self.source_of(value, key))
    }

    pub(super) fn guac_sink(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let documents = self.document_location(raw, path, false);
        let s3_keys = [
            ("prefix", raw.prefix.as_ref().map(Spanned::span)),
            ("endpoint", raw.endpoint.as_ref().map(Spanned::span)),
            ("region", raw.region.as_ref().map(Spanned::span)),
            (
                "access_key_id",
                raw.access_key_id.as_ref().map(Spanned::span),
            ),
            (
                "secret_access_key",
                raw.secret_access_key.as_ref().map(Spanned::span),
            ),
        ];
        let target = match (&raw.path, &raw.bucket) {
            (Some(folder), None) => {
                let mut ok = true;
                for (name, span) in s3_keys {
                    if let Some(span) = span {
                        ok = false;
                        self.problem(
                            span,
                            key(name),
                            "only applies with bucket; remove it, or replace path with bucket",
                        );
                    }
                }
                let folder = self.folder(folder, &key("path"));
                let tmp = match &raw.tmp_path {
                    Some(t) => self.folder(t, &key("tmp_path")),
                    None => folder.as_deref().map(default_tmp_path),
                };
                match (folder, tmp) {
                    (Some(path), Some(tmp_path)) if ok => {
                        if tmp_path.starts_with(&path) {
                            let span = raw.tmp_path.as_ref().map_or(0..0, Spanned::span);
                            self.problem(
                                span,
                                key("tmp_path"),
                                "is inside path, where GUAC's file collector would read half-written \
                                 files; choose a folder outside path on the same file system",
                            );
                            None
                        } else {
                            Some(GuacTarget::Folder { path, tmp_path })
                        }
                    }
                    _ => None,
                }
            }
            (None, Some(bucket)) => {
                if let Some(t) = &raw.tmp_path {
                    self.problem(
                        t.span(),
                        key("tmp_path"),
                        "only applies with path; remove it (objects are written with one PUT)",
                    );
                }
                self.s3(entry, raw, bucket, path).map(GuacTarget::S3)
            }
            (Some(folder), Some(_)) => {
                self.problem(
                    folder.span(),
                    key("path"),
                    "is given with bucket; keep path (a folder) or bucket (S3), not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    entry.name.span(),
                    path,
                    "missing path or bucket; add path = \"/var/lib/guac/inbox\" (a folder GUAC's \
                     file collector watches) or bucket = \"NAME\" (S3-compatible storage)",
                );
                None
            }
        };
        Some(SinkKind::Guac(GuacSinkConfig {
            documents: documents?,
            target: target?,
        }))
    }

    fn s3(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        bucket: &Spanned<String>,
        path: &str,
    ) -> Option<S3Config> {
        let key = |k: &str| format!("{path}.{k}");
        let b = bucket.get_ref();
        // The S3 naming rules, loosely: what the path of a request can carry unescaped.
        let bucket_ok = (3..=63).contains(&b.len())
            && b.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
        if !bucket_ok {
            self.problem(
                bucket.span(),
                key("bucket"),
                "is not a bucket name; use 3 to 63 characters of a-z 0-9 . -",
            );
        }
        let prefix = raw.prefix.as_ref().map_or(Some(String::new()), |p| {
            let text = p.get_ref();
            if text.starts_with('/') || text.contains("//") || text.chars().any(char::is_control) {
                self.problem(
                    p.span(),
                    key("prefix"),
                    "is not a key prefix; write it without a leading / and without //, e.g. \
                     \"sboms/\"",
                );
                None
            } else {
                Some(text.clone())
            }
        });
        let endpoint = match &raw.endpoint {
            None => Some(None),
            Some(e) => self.url(e, &key("endpoint")).map(Some),
        };
        let region = raw
            .region
            .as_ref()
            .map_or(Some(DEFAULT_REGION.to_string()), |r| {
                let text = r.get_ref();
                if !text.is_empty() && text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                {
                    Some(text.clone())
                } else {
                    self.problem(
                        r.span(),
                        key("region"),
                        "is not a region; write one such as \"us-east-1\"",
                    );
                    None
                }
            });
        let mut credential =
            |value: &Option<Spanned<String>>, name: &str, example: &str| match value {
                Some(v) => self.secret(v, &key(name)),
                None => self.missing(
                    entry.name.span(),
                    path,
                    format!("missing {name}; add {name} = \"${{env:{example}}}\""),
                ),
            };
        let access_key_id = credential(&raw.access_key_id, "access_key_id", "AWS_ACCESS_KEY_ID");
        let secret_access_key = credential(
            &raw.secret_access_key,
            "secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
        );
        if !bucket_ok {
            return None;
        }
        Some(S3Config {
            bucket: b.clone(),
            prefix: prefix?,
            endpoint: endpoint?,
            region: region?,
            access_key_id: access_key_id?,
            secret_access_key: secret_access_key?,
        })
    }

    pub(super) fn archive_sink(
        &mut self,
        entry: &Entry<RawSink>,
        raw: &RawSink,
        path: &str,
    ) -> Option<SinkKind> {
        let key = |k: &str| format!("{path}.{k}");
        let folder = match &raw.path {
            Some(p) => self.folder(p, &key("path")),
            None => self.missing(
                entry.name.span(),
                path,
                "missing path; add path = \"archive\", the folder of the JSON-lines files",
            ),
        };
        let max_file_size = self.size(
            raw.max_file_size.as_ref(),
            &key("max_file_size"),
            DEFAULT_MAX_FILE_SIZE,
        );
        Some(SinkKind::Archive(ArchiveSinkConfig {
            path: folder?,
            max_file_size: max_file_size?,
        }))
    }

    /// `pointer` and `encoding`; `single` allows one pointer at most.
    fn document_location(
        &mut self,
        raw: &RawSink,
        path: &str,
        single: bool,
    ) -> Option<DocumentLocation> {
        let key = format!("{path}.pointer");
        let pointers = match &raw.pointer {
            None => Some(Vec::new()),
            Some(list) => self.pointers(list, &key, single),
        };
        let encoding = self.choice(
            raw.encoding.as_ref(),
            &format!("{path}.encoding"),
            &[
                ("json", DocumentEncoding::Json),
                ("base64", DocumentEncoding::Base64),
            ],
            DocumentEncoding::Json,
        );
        Some(DocumentLocation {
            pointers: pointers?,
            encoding: encoding?,
        })
    }

    fn pointers(
        &mut self,
        list: &Spanned<Strings>,
        key: &str,
        single: bool,
    ) -> Option<Vec<String>> {
        let items = &list.get_ref().0;
        if items.is_empty() {
            self.problem(
                list.span(),
                key,
                "is an empty list; remove pointer to take the body itself, or name where the \
                 document is, e.g. \"/sbom\"",
            );
            return None;
        }
        if single && items.len() > 1 {
            self.problem(
                list.span(),
                key,
                "names more than one place; a Dependency-Track sink uploads one BOM per event, \
                 so give one pointer",
            );
            return None;
        }
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            match check_pointer(item.get_ref()) {
                Ok(()) if out.contains(item.get_ref()) => self.problem(
                    item.span(),
                    key,
                    format!("\"{}\" is listed twice; list it once", item.get_ref()),
                ),
                Ok(()) => out.push(item.get_ref().clone()),
                Err(message) => self.problem(item.span(), key, message),
            }
        }
        (out.len() == items.len()).then_some(out)
    }

    /// A folder path, resolved against the config file's folder.
    fn folder(&mut self, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
        if value.get_ref().is_empty() {
            self.problem(
                value.span(),
                key,
                "is empty; write a folder path, e.g. \"data/out\"",
            );
            return None;
        }
        if !self.literal_path(value, key) {
            return None;
        }
        // `join` keeps absolute paths as they are.
        Some(self.dir.join(value.get_ref()))
    }
}

/// The default folder for GUAC temp files: a hidden sibling of `path`, so it is outside the
/// watched tree yet (usually) on the same file system, where a rename is atomic.
fn default_tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "guac".into(), |n| n.to_string_lossy().into_owned());
    let parent = path.parent().unwrap_or(Path::new(""));
    parent.join(format!(".{name}.hookrelay-tmp"))
}

#[cfg(test)]
mod tests {
    use super::super::super::{Config, ConfigError, Secret};
    use super::*;

    const ROUTE: &str = "[sources.a]\nkind = \"none\"\n[[routes]]\nfrom = \"a\"\nto = [\"s\"]\n";

    fn parse(sink: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{ROUTE}[sinks.s]\n{sink}\n"), "t.toml")
    }

    fn kind(sink: &str) -> SinkKind {
        let config = parse(sink).unwrap_or_else(|e| panic!("{e}"));
        config.sinks[0].kind.clone()
    }

    /// The problems as `key: message`.
    fn problems(sink: &str) -> Vec<String> {
        let err = parse(sink).expect_err("the config is invalid");
        err.problems()
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect()
    }

    fn one_problem(sink: &str, key: &str, needle: &str) {
        let got = problems(sink);
        assert!(
            got.iter()
                .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(needle)),
            "expected {key}: ..{needle}.. in {got:#?}"
        );
    }

    #[test]
    fn dependency_track_by_name_with_templates() {
        let SinkKind::DependencyTrack(c) = kind(
            "kind = \"dependency-track\"\nurl = \"https://dt.example.com\"\napi_key = \"k\"\n\
             project_name = \"{{ source }}\"\nproject_version = \"{{ body.tag }}\"\n\
             auto_create = true\npointer = \"/sbom\"\nencoding = \"base64\"",
        ) else {
            panic!("not a dependency-track sink");
        };
        assert_eq!(c.api_key, Secret::new("k"));
        let DependencyTrackProject::Named {
            name,
            version,
            auto_create,
        } = &c.project
        else {
            panic!("not a named project: {:?}", c.project);
        };
        assert_eq!(name.text, "{{ source }}");
        assert!(
            name.at.starts_with("t.toml:") && name.at.ends_with(": sinks.s.project_name"),
            "{}",
            name.at
        );
        assert_eq!(version.text, "{{ body.tag }}");
        assert!(auto_create);
        assert_eq!(
            c.bom,
            DocumentLocation {
                pointers: vec!["/sbom".into()],
                encoding: DocumentEncoding::Base64
            }
        );
    }

    #[test]
    fn dependency_track_mistakes_are_named() {
        let base = "kind = \"dependency-track\"\nurl = \"https://dt\"\napi_key = \"k\"\n";
        one_problem(
            &format!("{base}project = \"nope\""),
            "sinks.s.project",
            "not a UUID",
        );
        one_problem(
            &format!(
                "{base}project = \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"\nproject_name = \"x\""
            ),
            "sinks.s.project",
            "keep either",
        );
        one_problem(
            &format!(
                "{base}project = \"7c9e6679-7425-40de-944b-e07fc1f90ae7\"\nauto_create = true"
            ),
            "sinks.s.auto_create",
            "only applies with project_name",
        );
        one_problem(
            &format!("{base}project_name = \"x\""),
            "sinks.s.project_name",
            "needs project_version",
        );
        one_problem(base, "sinks.s", "missing project");
        one_problem(
            &format!("{base}project_name = \" \"\nproject_version = \"1\""),
            "sinks.s.project_name",
            "is empty",
        );
        one_problem(
            &format!(
                "{base}project_name = \"a\"\nproject_version = \"1\"\npointer = [\"/a\", \"/b\"]"
            ),
            "sinks.s.pointer",
            "give one pointer",
        );
        one_problem(
            "kind = \"dependency-track\"\nurl = \"https://dt\"\nproject_name = \"a\"\nproject_version = \"1\"",
            "sinks.s",
            "missing api_key",
        );
    }

    #[test]
    fn guac_folder_defaults_its_temp_folder_outside_the_watched_one() {
        let SinkKind::Guac(c) = kind("kind = \"guac\"\npath = \"out/inbox\"") else {
            panic!("not a guac sink");
        };
        let GuacTarget::Folder { path, tmp_path } = c.target else {
            panic!("not a folder");
        };
        assert_eq!(path, Path::new("out/inbox"));
        assert_eq!(tmp_path, Path::new("out/.inbox.hookrelay-tmp"));
        assert!(c.documents.pointers.is_empty());
    }

    #[test]
    fn guac_s3_takes_its_keys_and_defaults_the_region() {
        let SinkKind::Guac(c) = kind(
            "kind = \"guac\"\nbucket = \"guac-inbox\"\nprefix = \"sboms/\"\n\
             access_key_id = \"AK\"\nsecret_access_key = \"SK\"\npointer = [\"/a\", \"/b\"]",
        ) else {
            panic!("not a guac sink");
        };
        let GuacTarget::S3(s3) = c.target else {
            panic!("not s3");
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("guac-inbox", "sboms/")
        );
        assert_eq!((s3.endpoint, s3.region.as_str()), (None, "us-east-1"));
        assert_eq!(c.documents.pointers, ["/a", "/b"]);
    }

    #[test]
    fn guac_mistakes_are_named() {
        one_problem("kind = \"guac\"", "sinks.s", "missing path or bucket");
        one_problem(
            "kind = \"guac\"\npath = \"a\"\nbucket = \"bbb\"",
            "sinks.s.path",
            "not both",
        );
        one_problem(
            "kind = \"guac\"\npath = \"a\"\nregion = \"x\"",
            "sinks.s.region",
            "only applies with bucket",
        );
        one_problem(
            "kind = \"guac\"\npath = \"a\"\ntmp_path = \"a/tmp\"",
            "sinks.s.tmp_path",
            "inside path",
        );
        one_problem(
            "kind = \"guac\"\nbucket = \"Bad_Bucket\"\naccess_key_id = \"a\"\nsecret_access_key = \"b\"",
            "sinks.s.bucket",
            "not a bucket name",
        );
        one_problem(
            "kind = \"guac\"\nbucket = \"bbb\"\nsecret_access_key = \"b\"",
            "sinks.s",
            "missing access_key_id",
        );
        one_problem(
            "kind = \"guac\"\npath = \"a\"\npointer = \"sbom\"",
            "sinks.s.pointer",
            "must start with /",
        );
        one_problem(
            "kind = \"guac\"\npath = \"a\"\nencoding = \"hex\"",
            "sinks.s.encoding",
            "unknown value \"hex\"",
        );
    }

    #[test]
    fn archive_takes_a_path_and_a_size() {
        let SinkKind::Archive(c) =
            kind("kind = \"archive\"\npath = \"arch\"\nmax_file_size = \"1MiB\"")
        else {
            panic!("not an archive sink");
        };
        assert_eq!(
            (c.path.as_path(), c.max_file_size),
            (Path::new("arch"), 1 << 20)
        );
        let SinkKind::Archive(c) = kind("kind = \"archive\"\npath = \"arch\"") else {
            panic!("not an archive sink");
        };
        assert_eq!(c.max_file_size, DEFAULT_MAX_FILE_SIZE);
        one_problem("kind = \"archive\"", "sinks.s", "missing path");
    }

    #[test]
    fn keys_of_another_sink_kind_say_which_kinds_take_them() {
        one_problem(
            "kind = \"archive\"\npath = \"a\"\nurl = \"https://h\"",
            "sinks.s.url",
            "kind \"archive\" takes no url; only kinds",
        );
        one_problem(
            "kind = \"webhook\"\nurl = \"https://h\"\nmax_file_size = \"1MiB\"",
            "sinks.s.max_file_size",
            "only kind \"archive\" takes it",
        );
    }

    #[test]
    fn the_sample_configs_commented_sinks_are_valid_when_uncommented() {
        let sample = include_str!("../../../config/hookrelay.toml");
        let at = sample
            .find("# More sinks")
            .expect("the sample has a block of commented sinks");
        let (head, examples) = sample.split_at(at);
        let uncommented: String = examples
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                // A table header or `key = value`; prose stays commented.
                Some(rest)
                    if rest.starts_with("[sinks.")
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(uncommented.contains("[sinks.dtrack]"));
        // SAFETY: no other test reads this variable.
        unsafe { std::env::set_var("DTRACK_API_KEY", "k") };
        let config = Config::parse(&format!("{head}{uncommented}"), "sample")
            .unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = config
            .sinks
            .iter()
            .map(|s| match s.kind {
                SinkKind::Webhook(_) => "webhook",
                SinkKind::DependencyTrack(_) => "dependency-track",
                SinkKind::Guac(_) => "guac",
                SinkKind::Archive(_) => "archive",
                _ => "message",
            })
            .collect();
        assert_eq!(
            kinds,
            ["archive", "dependency-track", "guac", "webhook"],
            "the message sinks above the block stay commented"
        );
    }
}
