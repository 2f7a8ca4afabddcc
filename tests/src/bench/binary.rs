//! Finding the `aws-hop` binary for `demo` and `bench`, and the workspace it is built from.
//!
//! Under `cargo run` (the `CARGO` variable is set), [`aws_hop`] first runs
//! `$CARGO build --workspace --bin aws-hop` in the workspace, with `--release` when hop-lab
//! itself is a release build, so the binary is as fresh as hop-lab. `--workspace`, not
//! `-p aws-hop`: features are then resolved as `cargo test --workspace` resolves them, so the
//! two share every compiled dependency instead of building a second flavour of some. Cargo's own progress
//! shows (on stderr): a first build compiles the AWS SDK and takes many minutes, and a new
//! user must see that it is working. Then it looks
//! next to the running `hop-lab` (the same target directory and profile), and last at
//! `AWS_HOP_BIN`. [`aws_hop_command`] is how both run it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A command for `aws-hop` as a careful caller runs it: `HOME` set to `home` (so the
/// user's `~/.ssh` is neither read nor written), no `AWS_*` variables and no
/// `SSH_AUTH_SOCK` (the lab never needs a real account or the user's agent), and
/// `NO_COLOR=1`. The caller adds the arguments.
pub(crate) fn aws_hop_command(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("AWS_") || name == "SSH_AUTH_SOCK" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("HOME", home).env("NO_COLOR", "1");
    cmd
}

/// The workspace root: the tests crate's parent directory, as it was at compile time.
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// Is this hop-lab a release build (so aws-hop should be one too)?
pub(crate) fn release_build() -> bool {
    !cfg!(debug_assertions)
}

/// The `aws-hop` binary to run; see the module docs. The error says how to get one.
pub(crate) fn aws_hop() -> Result<PathBuf> {
    if let Some(cargo) = env::var_os("CARGO").filter(|c| !c.is_empty()) {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--workspace", "--bin", "aws-hop"])
            .current_dir(workspace_root());
        if release_build() {
            cmd.arg("--release");
        }
        let status = cmd.status().context("cannot run cargo to build aws-hop")?;
        if !status.success() {
            bail!(
                "`cargo build --workspace --bin aws-hop` failed ({status}); see its errors above"
            );
        }
    }
    let exe = env::current_exe().context("cannot find the hop-lab executable")?;
    let beside = exe.parent().map(|dir| dir.join("aws-hop"));
    if let Some(path) = beside.as_ref().filter(|p| p.is_file()) {
        return Ok(path.clone());
    }
    if let Some(path) = env::var_os("AWS_HOP_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("AWS_HOP_BIN={} does not exist", path.display());
    }
    bail!(
        "the aws-hop binary is not next to hop-lab{}: build it with \
         `cargo build -p aws-hop{}`, run hop-lab through `cargo run -p aws-hop-lab --bin hop-lab`, \
         or set AWS_HOP_BIN",
        beside
            .map(|p| format!(" ({} does not exist)", p.display()))
            .unwrap_or_default(),
        if release_build() { " --release" } else { "" }
    )
}
