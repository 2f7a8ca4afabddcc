//! What the lab needs from the machine: root, and the programs that `tests/setup.sh`
//! installs. Checked before `up` touches anything, so a missing package is one clear
//! message rather than a failure halfway through.

use std::path::Path;

use anyhow::{Result, bail};

use super::postgres;

/// Programs the lab runs, by absolute path or looked up in PATH.
const PROGRAMS: &[&str] = &[
    "ip",
    "/usr/sbin/sshd",
    "ssh",
    "ssh-keygen",
    "/usr/sbin/mariadbd",
    "mariadb-install-db",
    "mariadb",
    "psql",
    "setpriv",
    "useradd",
    "usermod",
    "userdel",
    "getent",
    "mount",
    "umount",
    "chown",
    "sysctl",
];

/// Is `program` an existing file (absolute path) or found in PATH?
pub(super) fn have(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into());
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// Fails, naming `tests/setup.sh`, unless running as root with every program present.
pub(super) fn check() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "the aws-hop lab needs root (network namespaces, tmpfs, useradd); \
             run the tests as root, after `sudo tests/setup.sh` has installed the packages"
        );
    }
    let mut missing: Vec<&str> = PROGRAMS.iter().copied().filter(|p| !have(p)).collect();
    if postgres::bin_dir().is_none() {
        missing.push("/usr/lib/postgresql/*/bin/initdb");
    }
    if !missing.is_empty() {
        bail!(
            "the aws-hop lab is missing {}: run `sudo tests/setup.sh` (installs openssh-server, \
             mariadb-server, postgresql and friends)",
            missing.join(", ")
        );
    }
    Ok(())
}
