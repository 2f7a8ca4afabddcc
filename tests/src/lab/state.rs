//! The state directory: a tmpfs mounted on `LAB_DIR`, holding every file of the lab, and
//! `lab.env` in it, which records the lab's config so that `hop-lab down --dir` and the
//! watch guard can tear the lab down from the directory alone.
//!
//! A tmpfs makes database initialisation about 6x faster than on disk and makes teardown
//! an `umount` instead of an `rm -rf` of ~200 MB (gotcha 15).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::config::ENV_FILE;
use super::{Lab, claim, exec};

/// Is `path` a mount point (listed in /proc/self/mountinfo)?
pub(super) fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    // Field 5 is the mount point (octal escapes for spaces; lab paths have none).
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_ref()))
}

impl Lab {
    /// Claims the address range, mounts the tmpfs state directory and writes `lab.env`.
    /// Idempotent; the first step of [`Lab::up`], exposed so a guard can be started
    /// after it and before anything else is created.
    pub fn prepare_state(&self) -> Result<()> {
        claim::ensure(&self.config)?;
        let dir = &self.config.dir;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        if !is_mountpoint(dir) {
            exec::run(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=1g,mode=755"])
                    .arg(format!("{}-state", self.config.prefix))
                    .arg(dir),
            )?;
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        fs::create_dir_all(self.log_dir())?;
        let file = dir.join(ENV_FILE);
        fs::write(&file, self.env_lines())
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(())
    }
}

/// Unmounts (lazily if busy) and removes the state directory.
pub(super) fn down(lab: &Lab) -> Result<()> {
    let dir = &lab.config.dir;
    if is_mountpoint(dir) && exec::run(Command::new("umount").arg(dir)).is_err() {
        exec::run(Command::new("umount").arg("-l").arg(dir))?;
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}
