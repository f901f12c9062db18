//! One folder, one writer: two sinks that write files (`archive`'s `path`, `guac`'s `path`
//! and `tmp_path`) into the same folder are refused at load, each problem at its own line
//! and naming the other sink's key and line.
//!
//! Two archive sinks in one folder would append to the same JSON-lines files and rotate
//! them under each other; two GUAC exports would write one file name per event and
//! document, so one would overwrite the other (and share temp files mid-rename); an archive
//! in a GUAC folder hands its JSON lines to GUAC's collector. Folders are compared after
//! resolving them against the config file's folder and removing `.` and `..` lexically.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use super::super::raw::{Entry, RawSink};
use super::super::{GuacTarget, SinkConfig, SinkKind};
use super::{Validator, locate};

/// One folder a sink writes, and where the config says so.
struct Writer<'a> {
    sink: &'a str,
    key: &'static str,
    folder: PathBuf,
    span: Range<usize>,
}

impl Validator<'_> {
    /// Reports every pair of sinks that write the same folder. `sinks` are the checked
    /// forms of `raw`, in the same order (`None` where a sink had problems of its own).
    pub(super) fn shared_folders(&mut self, raw: &[Entry<RawSink>], sinks: &[Option<SinkConfig>]) {
        let mut writers = Vec::new();
        for (entry, sink) in raw.iter().zip(sinks) {
            let (Some(body), Some(sink)) = (&entry.body, sink) else {
                continue;
            };
            let span_of = |value: &Option<Spanned<String>>| {
                value
                    .as_ref()
                    .map_or_else(|| entry.name.span(), Spanned::span)
            };
            let mut add = |key, folder: &Path, span| {
                writers.push(Writer {
                    sink: entry.name.get_ref(),
                    key,
                    folder: normalize(folder),
                    span,
                });
            };
            match &sink.kind {
                SinkKind::Archive(archive) => add("path", &archive.path, span_of(&body.path)),
                SinkKind::Guac(guac) => {
                    if let GuacTarget::Folder { path, tmp_path } = &guac.target {
                        add("path", path, span_of(&body.path));
                        add("tmp_path", tmp_path, span_of(&body.tmp_path));
                    }
                }
                _ => {}
            }
        }
        for (i, a) in writers.iter().enumerate() {
            for b in &writers[i + 1..] {
                if a.sink == b.sink || a.folder != b.folder {
                    continue;
                }
                self.report(a, b);
                self.report(b, a);
            }
        }
    }

    /// Reports at `this` that `other` writes its folder too.
    fn report(&mut self, this: &Writer<'_>, other: &Writer<'_>) {
        let (line, column, _) = locate(self.text, other.span.clone());
        let default = if this.key == "tmp_path" {
            " (the default tmp_path beside path)"
        } else {
            ""
        };
        self.problem(
            this.span.clone(),
            format!("sinks.{}.{}", this.sink, this.key),
            format!(
                "is the folder \"{}\"{default}, which sink \"{}\" writes too (sinks.{}.{} at \
                 {}:{line}:{column}); two sinks in one folder overwrite or mix each other's \
                 files: give each sink a folder of its own",
                this.folder.display(),
                other.sink,
                other.sink,
                other.key,
                self.origin,
            ),
        );
    }
}

/// `path` without `.` components, with each `..` removing the component before it.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::Config;
    use super::*;

    fn problems(sinks: &str) -> Vec<String> {
        let text = format!(
            "[sources.a]\nkind = \"none\"\n\n{sinks}\n[[routes]]\nfrom = \"a\"\nto = [\"one\"]\n"
        );
        match Config::parse(&text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(e) => e
                .problems()
                .iter()
                .map(|p| format!("t.toml:{}:{}: {}: {}", p.line, p.column, p.key, p.message))
                .collect(),
        }
    }

    #[test]
    fn two_archives_in_one_folder_are_refused_at_both_lines() {
        let got = problems(
            "[sinks.one]\nkind = \"archive\"\npath = \"data/audit\"\n\n\
             [sinks.two]\nkind = \"archive\"\npath = \"./data/x/../audit/\"\n",
        );
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(
            got[0].starts_with("t.toml:6:8: sinks.one.path: is the folder")
                && got[0].contains("which sink \"two\" writes too (sinks.two.path at t.toml:10:8)"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("t.toml:10:8: sinks.two.path:")
                && got[1].contains("(sinks.one.path at t.toml:6:8)"),
            "{got:#?}"
        );
    }

    #[test]
    fn two_guac_folders_and_an_archive_in_a_guac_temp_folder_are_refused() {
        let got = problems(
            "[sinks.one]\nkind = \"guac\"\npath = \"export\"\n\n\
             [sinks.two]\nkind = \"guac\"\npath = \"export\"\ntmp_path = \"tmp\"\n\n\
             [sinks.three]\nkind = \"archive\"\npath = \".export.hookrelay-tmp\"\n",
        );
        let joined = got.join("\n");
        assert!(
            joined.contains("sinks.one.path: is the folder")
                && joined.contains("(sinks.two.path at t.toml:10:8)"),
            "{joined}"
        );
        assert!(
            joined.contains("sinks.one.tmp_path: is the folder")
                && joined.contains("(the default tmp_path beside path)")
                && joined.contains("(sinks.three.path at t.toml:15:8)"),
            "{joined}"
        );
        assert_eq!(got.len(), 4, "{joined}");
    }

    #[test]
    fn sinks_in_folders_of_their_own_pass() {
        let got = problems(
            "[sinks.one]\nkind = \"archive\"\npath = \"audit\"\n\n\
             [sinks.two]\nkind = \"archive\"\npath = \"audit/../audit2\"\n\n\
             [sinks.three]\nkind = \"guac\"\npath = \"export\"\n",
        );
        assert!(got.is_empty(), "{got:#?}");
    }

    #[test]
    fn normalizing_removes_dots_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }
}
