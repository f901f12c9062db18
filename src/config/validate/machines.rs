//! Validation of the machine-readable sinks: `dependency-track`, `guac` and `archive`.
//!
//! A child of `validate`, so it shares the [`Validator`] and its helpers; kept apart so the
//! keys of these kinds read in one place. Same invariants as the parent: every problem is
//! collected with its span, and no message quotes a secret or a URL.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::super::raw::{Entry, RawSink, Strings};
use super::super::secrets;
use super::super::{
    ArchiveSinkConfig, DependencyTrackProject, DependencyTrackSinkConfig, DocumentEncoding,
    DocumentLocation, GuacSinkConfig, GuacTarget, S3Config, Secret, SinkKind,
};
use super::{Validator, check_pointer};

/// Archive files are rotated before they pass this size, unless `max_file_size` says otherwise.
const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;
/// The region S3-compatible servers that ignore regions (MinIO, moto, Ceph) are happy with.
const DEFAULT_REGION: &str = "us-east-1";
/// The variables a Dependency-Track project template may use.
pub(in crate::config) const TEMPLATE_VARIABLES: &[&str] =
    &["source", "event_type", "delivery_id", "id", "body"];

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
            None => {
                self.problem(
                    entry.name.span(),
                    path,
                    "missing url; add url = \"https://dtrack.example.com\", the Dependency-Track \
                     server's base URL (without /api)",
                );
                None
            }
        };
        let api_key = match &raw.api_key {
            Some(k) => self.secret(k, &key("api_key")),
            None => {
                self.problem(
                    entry.name.span(),
                    path,
                    "missing api_key; add api_key = \"${env:DTRACK_API_KEY}\", a key with the \
                     BOM_UPLOAD permission",
                );
                None
            }
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

    /// A project name or version template: it must compile and use only known variables.
    fn project_template(&mut self, value: &Spanned<String>, key: &str) -> Option<String> {
        let source = value.get_ref();
        let env = minijinja::Environment::new();
        let message = match env.template_from_str(source) {
            Err(e) => format!(
                "is not a valid template: {}",
                e.detail().unwrap_or("syntax error")
            ),
            Ok(t) => {
                let mut unknown: Vec<String> = t
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !TEMPLATE_VARIABLES.contains(&v.as_str()))
                    .collect();
                if unknown.is_empty() && !source.trim().is_empty() {
                    return Some(source.clone());
                }
                if unknown.is_empty() {
                    "is empty; write a name, or a template such as \"{{ source }}\"".to_string()
                } else {
                    unknown.sort();
                    format!(
                        "uses unknown variable{} {}; a template may use {}",
                        if unknown.len() == 1 { "" } else { "s" },
                        unknown.join(", "),
                        TEMPLATE_VARIABLES.join(", ")
                    )
                }
            }
        };
        self.problem(value.span(), key, message);
        None
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
                None => {
                    self.problem(
                        entry.name.span(),
                        path,
                        format!("missing {name}; add {name} = \"${{env:{example}}}\""),
                    );
                    None
                }
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
            None => {
                self.problem(
                    entry.name.span(),
                    path,
                    "missing path; add path = \"archive\", the folder of the JSON-lines files",
                );
                None
            }
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
        // `join` keeps absolute paths as they are.
        Some(self.dir.join(value.get_ref()))
    }

    /// One secret value (inline, `${env:..}` or `${file:..}`), never empty.
    fn secret(&mut self, value: &Spanned<String>, key: &str) -> Option<Secret> {
        match secrets::resolve(value.get_ref(), self.dir) {
            Ok(bytes) if bytes.is_empty() => {
                self.problem(value.span(), key, "is empty; set the credential");
                None
            }
            Ok(bytes) => Some(Secret::new(bytes)),
            Err(message) => {
                self.problem(value.span(), key, message);
                None
            }
        }
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
