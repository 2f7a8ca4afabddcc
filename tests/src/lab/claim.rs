//! Claims on address ranges: one file per range under `/run/aws-hop-lab/`, so that two
//! labs never pick or use the same `10.N.0.0/16`.
//!
//! The claim for `10.207` is `/run/aws-hop-lab/10.207`, created with `create_new` (atomic
//! on one machine) and holding `prefix=`, `dir=` and `pid=` lines. [`try_claim`] is how
//! [`LabConfig::unique`](super::LabConfig::unique) reserves a range; [`ensure`] is how
//! `up` checks (or takes) the claim for any config; [`release`] is the last step of
//! `down`. A claim is stale, and may be taken over, when the process that wrote it is
//! gone and no lab of that name exists (no namespace, no `lab.env`).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::config::{ENV_FILE, LabConfig};
use super::process;

/// Where the claim files live. `/run` is a tmpfs on most hosts, so claims do not survive
/// a reboot, and neither do the namespaces they protect.
pub const CLAIM_DIR: &str = "/run/aws-hop-lab";

/// The claim file of `config`'s range.
pub(super) fn claim_path(config: &LabConfig) -> PathBuf {
    Path::new(CLAIM_DIR).join(&config.net)
}

/// What a claim file says.
struct Claim {
    prefix: String,
    dir: PathBuf,
    pid: Option<u32>,
}

impl Claim {
    fn read(path: &Path) -> Option<Claim> {
        let text = fs::read_to_string(path).ok()?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
        };
        Some(Claim {
            prefix: get("prefix").unwrap_or_default(),
            dir: PathBuf::from(get("dir").unwrap_or_default()),
            pid: get("pid").and_then(|p| p.parse().ok()),
        })
    }

    /// The writer is gone and left no lab behind.
    fn is_stale(&self) -> bool {
        let writer_alive = self.pid.is_some_and(process::alive);
        let ns_exists = Path::new("/run/netns")
            .join(format!("{}-pub", self.prefix))
            .exists();
        let state_exists = self.dir.join(ENV_FILE).exists();
        !writer_alive && !ns_exists && !state_exists
    }
}

/// Atomically claims `config.net` for `config`. `Ok(false)`: someone else holds it.
pub(super) fn try_claim(config: &LabConfig) -> Result<bool> {
    let path = claim_path(config);
    // Two attempts: the second after removing a stale claim. A claim directory removed
    // by a concurrent `down` between create_dir_all and create_new gives NotFound: retry.
    for _ in 0..3 {
        fs::create_dir_all(CLAIM_DIR).with_context(|| format!("cannot create {CLAIM_DIR}"))?;
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                let text = format!(
                    "prefix={}\ndir={}\npid={}\n",
                    config.prefix,
                    config.dir.display(),
                    std::process::id()
                );
                file.write_all(text.as_bytes())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(true);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match Claim::read(&path) {
                Some(claim) if claim.is_stale() => {
                    let _ = fs::remove_file(&path);
                }
                // Unreadable: being written right now, or not ours to judge.
                _ => return Ok(false),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    Ok(false)
}

/// Makes sure `config` holds the claim on its range: takes it if free or stale, accepts
/// it if it already names this lab's prefix, and fails if another live lab holds it.
pub(super) fn ensure(config: &LabConfig) -> Result<()> {
    let path = claim_path(config);
    for _ in 0..3 {
        if try_claim(config)? {
            return Ok(());
        }
        match Claim::read(&path) {
            Some(claim) if claim.prefix == config.prefix => return Ok(()),
            Some(claim) => bail!(
                "the range {}.0.0/16 is claimed by lab {:?} (state in {}; claim file {}): \
                 pick another LAB_NET, or take that lab down with `hop-lab down --dir {}`",
                config.net,
                claim.prefix,
                claim.dir.display(),
                path.display(),
                claim.dir.display()
            ),
            // Vanished between the two reads: try again.
            None => {}
        }
    }
    bail!("cannot claim {} (it keeps changing)", path.display())
}

/// Removes the claim if it is this lab's, then the claim directory if it is empty.
pub(super) fn release(config: &LabConfig) {
    let path = claim_path(config);
    if Claim::read(&path).is_some_and(|c| c.prefix == config.prefix) {
        let _ = fs::remove_file(&path);
    }
    // Fails while other claims exist: fine.
    let _ = fs::remove_dir(CLAIM_DIR);
}
