//! Secret references: a configured string that is exactly `${env:NAME}` or `${file:PATH}` is
//! replaced by the variable's value or the file's contents; any other string is a literal.
//!
//! Invariants:
//! - No error message produced here contains a resolved value, nor the literal it replaced:
//!   messages name only the variable or the path.
//! - A string that starts with `${` is always treated as a reference, so a typo such as
//!   `${evn:X}` is an error instead of silently becoming a literal secret.
//! - Reading a reference never blocks or grows without bound: only regular files are read,
//!   and at most [`MAX_SECRET_FILE`] bytes of them (the config fuzzer resolves references in
//!   arbitrary input, and a path such as `/dev/zero` or a FIFO must not hang it).

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Largest secret file accepted. A secret or a URL is far smaller; a bigger file is almost
/// certainly the wrong path.
pub(super) const MAX_SECRET_FILE: u64 = 64 * 1024;

/// What a configured string refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reference<'a> {
    /// The string itself is the value.
    Literal(&'a str),
    /// `${env:NAME}`: the value of an environment variable.
    Env(&'a str),
    /// `${file:PATH}`: the contents of a file.
    File(&'a str),
}

impl Reference<'_> {
    /// True when the value does not come from the file's own text.
    pub(super) fn is_indirect(&self) -> bool {
        !matches!(self, Reference::Literal(_))
    }
}

/// Tells a literal from a reference, rejecting malformed references.
pub(super) fn classify(value: &str) -> Result<Reference<'_>, String> {
    let Some(rest) = value.strip_prefix("${") else {
        return Ok(Reference::Literal(value));
    };
    let malformed = || {
        "starts with \"${\" but is not a secret reference; write \"${env:NAME}\" or \
         \"${file:PATH}\""
            .to_string()
    };
    let inner = rest.strip_suffix('}').ok_or_else(malformed)?;
    let (scheme, target) = inner.split_once(':').ok_or_else(malformed)?;
    match scheme {
        "env" => {
            let valid = target
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                Ok(Reference::Env(target))
            } else {
                Err(format!(
                    "{:?} is not an environment variable name; use letters, digits and _, \
                     not starting with a digit, e.g. \"${{env:GITHUB_WEBHOOK_SECRET}}\"",
                    target
                ))
            }
        }
        "file" if target.is_empty() => {
            Err("\"${file:}\" names no file; write \"${file:PATH}\"".to_string())
        }
        "file" => Ok(Reference::File(target)),
        _ => Err(format!(
            "unknown secret reference \"${{{scheme}:...}}\"; the known ones are \
             \"${{env:NAME}}\" and \"${{file:PATH}}\""
        )),
    }
}

/// Resolves `value` to its bytes. Relative `${file:..}` paths are taken from `base` (the
/// config file's folder). Empty values are errors: an empty secret verifies nothing.
pub(super) fn resolve(value: &str, base: &Path) -> Result<Vec<u8>, String> {
    match classify(value)? {
        Reference::Literal("") => {
            Err("is empty; write the value, \"${env:NAME}\" or \"${file:PATH}\"".to_string())
        }
        Reference::Literal(text) => Ok(text.as_bytes().to_vec()),
        Reference::Env(name) => match std::env::var_os(name) {
            None => Err(format!(
                "environment variable {name} is not set; set it before starting hookrelay, \
                 or keep the value in a file and write \"${{file:PATH}}\""
            )),
            Some(v) if v.is_empty() => Err(format!(
                "environment variable {name} is set but empty; set it to the value"
            )),
            Some(v) => Ok(v.into_encoded_bytes()),
        },
        Reference::File(path) => read_secret_file(&base.join(path)),
    }
}

/// Reads one secret file, strips one trailing newline (`\n` or `\r\n`, as editors and
/// `echo` leave one) and refuses anything that is not a small regular file.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| {
        format!("cannot read secret file {shown}: {e}; create it or fix the path")
    };
    // Checked before opening: opening a FIFO would block until a writer appears.
    let meta = std::fs::metadata(path).map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_regular(path));
    }
    let file = File::open(path).map_err(cannot)?;
    // Checked again on the open handle, in case the path changed in between.
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(not_regular(path));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "secret file {shown} is larger than {} KiB; it should hold only the value",
            MAX_SECRET_FILE / 1024
        ));
    }
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    if bytes.is_empty() {
        return Err(format!(
            "secret file {shown} is empty; write the value into it"
        ));
    }
    Ok(bytes)
}

fn not_regular(path: &Path) -> String {
    format!(
        "secret file {} is not a regular file; point at a file holding only the value",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn literals_are_taken_verbatim() {
        assert_eq!(classify("s3cr3t"), Ok(Reference::Literal("s3cr3t")));
        assert_eq!(classify("$env:X"), Ok(Reference::Literal("$env:X")));
        assert_eq!(resolve("abc", Path::new("")).unwrap(), b"abc");
    }

    #[test]
    fn references_are_recognised() {
        assert_eq!(classify("${env:A_B1}"), Ok(Reference::Env("A_B1")));
        assert_eq!(classify("${file:/run/x}"), Ok(Reference::File("/run/x")));
        assert!(Reference::File("x").is_indirect());
        assert!(!Reference::Literal("x").is_indirect());
    }

    #[test]
    fn malformed_references_are_errors_not_literals() {
        for bad in [
            "${env:X",
            "${env}",
            "${evn:X}",
            "${env:}",
            "${env:1X}",
            "${env:A-B}",
        ] {
            assert!(classify(bad).is_err(), "{bad} should be rejected");
        }
        assert!(classify("${file:}").is_err());
        let e = classify("${evn:X}").unwrap_err();
        assert!(e.contains("${env:NAME}"), "{e}");
    }

    #[test]
    fn empty_literal_is_rejected() {
        assert!(resolve("", Path::new("")).unwrap_err().contains("empty"));
    }

    #[test]
    fn env_values_resolve_and_missing_ones_name_the_variable() {
        // Unique names: tests run in parallel threads of one process.
        // SAFETY: no other thread reads or writes this variable.
        unsafe { std::env::set_var("HOOKRELAY_TEST_SECRETS_ENV_SET", "v4lue") };
        assert_eq!(
            resolve("${env:HOOKRELAY_TEST_SECRETS_ENV_SET}", Path::new("")).unwrap(),
            b"v4lue"
        );
        let e = resolve("${env:HOOKRELAY_TEST_SECRETS_ENV_UNSET}", Path::new("")).unwrap_err();
        assert!(
            e.contains("HOOKRELAY_TEST_SECRETS_ENV_UNSET is not set"),
            "{e}"
        );
        // SAFETY: as above.
        unsafe { std::env::set_var("HOOKRELAY_TEST_SECRETS_ENV_EMPTY", "") };
        let e = resolve("${env:HOOKRELAY_TEST_SECRETS_ENV_EMPTY}", Path::new("")).unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn files_lose_exactly_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (content, want) in [
            (&b"abc\n"[..], &b"abc"[..]),
            (b"abc\r\n", b"abc"),
            (b"abc\n\n", b"abc\n"),
            (b"abc", b"abc"),
            (b" abc \n", b" abc "),
        ] {
            let path = dir.path().join("s");
            std::fs::write(&path, content).unwrap();
            assert_eq!(resolve("${file:s}", dir.path()).unwrap(), want);
        }
    }

    #[test]
    fn relative_file_paths_resolve_against_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/key"), "k\n").unwrap();
        assert_eq!(resolve("${file:sub/key}", dir.path()).unwrap(), b"k");
        let abs = dir.path().join("sub/key");
        let reference = format!("${{file:{}}}", abs.display());
        assert_eq!(
            resolve(&reference, Path::new("/nonexistent")).unwrap(),
            b"k"
        );
    }

    #[test]
    fn unreadable_empty_special_and_huge_files_are_errors_without_content() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve("${file:missing}", dir.path()).unwrap_err();
        assert!(e.contains("missing") && e.contains("cannot read"), "{e}");

        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        assert!(
            resolve("${file:empty}", dir.path())
                .unwrap_err()
                .contains("empty")
        );

        let e = resolve("${file:.}", dir.path()).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        #[cfg(unix)]
        {
            let e = resolve("${file:/dev/zero}", dir.path()).unwrap_err();
            assert!(e.contains("not a regular file"), "{e}");
        }

        let mut big = File::create(dir.path().join("big")).unwrap();
        let chunk = vec![b'x'; 1024];
        for _ in 0..=MAX_SECRET_FILE / 1024 {
            big.write_all(&chunk).unwrap();
        }
        drop(big);
        let e = resolve("${file:big}", dir.path()).unwrap_err();
        assert!(e.contains("larger than") && !e.contains("xxx"), "{e}");
    }
}
