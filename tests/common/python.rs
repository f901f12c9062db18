//! A Python interpreter that has the test peers installed (independent reference
//! implementations such as `standardwebhooks`).
//!
//! The system `python3` is used when it already has the modules (CI installs them with pip);
//! otherwise a virtualenv is made once under the target dir and the packages are installed
//! there from PyPI, so `cargo test` works on a fresh machine as the README says.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static LOCK: Mutex<()> = Mutex::new(());

/// Returns a python executable that can import every module in `modules`, installing the
/// matching `packages` into a virtualenv if needed.
pub fn python_with(modules: &[&str], packages: &[&str]) -> PathBuf {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let imports = modules.join(", ");
    let check = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", &format!("import {imports}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let system = PathBuf::from("python3");
    if check(&system) {
        return system;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("py-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the cross-check tests");
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
    }
    if !check(&python) {
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .status()
            .expect("run pip");
        assert!(
            status.success(),
            "pip install {} failed: the cross-check tests need these PyPI packages",
            packages.join(" ")
        );
    }
    assert!(
        check(&python),
        "python cannot import {imports} after installing {packages:?}"
    );
    python
}
