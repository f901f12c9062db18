//! Fault helpers: a size-limited tmpfs for disk-full tests, raw sockets for hostile
//! clients, and POSIX signals for the relay process.
//!
//! Mounting needs root (or CAP_SYS_ADMIN); CI runs as root. When the mount is refused the
//! test fails with a message that says so, never silently passes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a folder; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `"4m"`) on `path`,
    /// creating the folder.
    pub fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        match output {
            Ok(o) if o.status.success() => Tmpfs {
                path: path.to_path_buf(),
            },
            Ok(o) => panic!(
                "this test needs a size-limited filesystem: `mount -t tmpfs -o size={size} tmpfs {}` \
                 failed ({}): {}\nrun the tests as root (CI does) or with CAP_SYS_ADMIN",
                path.display(),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(err) => panic!(
                "this test needs the `mount` command (util-linux) to make a size-limited tmpfs: {err}"
            ),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a relay that is still being killed may hold the file a moment longer.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Sends `signal` (e.g. `"KILL"`, `"TERM"`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

impl super::Relay {
    /// The relay's process id, for signals other than the ones `Relay` offers.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl super::Receiver {
    /// The next request, or `None` if none arrives within `wait`.
    pub async fn next_within(&mut self, wait: std::time::Duration) -> Option<super::Received> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}
