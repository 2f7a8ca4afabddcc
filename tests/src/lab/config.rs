//! [`LabConfig`]: the four settings that name a lab, and where they come from.
//!
//! A lab is fully determined by its name prefix (namespaces, interfaces, the DNS domain),
//! the first two octets of its address range, its state directory and its login user.
//! Every other name and address is derived from these by [`Lab::new`](super::Lab::new).
//!
//! Three sources: the built-in defaults with environment overrides ([`LabConfig::default`],
//! used by `hop-lab up`), a fresh collision-free config for parallel test runs
//! ([`LabConfig::unique`]), and the `lab.env` file that `up` writes into the state
//! directory ([`LabConfig::load`], used by `hop-lab down --dir` and the watch guard).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{claim, exec, user};

/// Name of the file, inside the state directory, that records the lab's settings
/// (KEY=VALUE lines, the same as `hop-lab env` prints).
pub const ENV_FILE: &str = "lab.env";

/// The settings that name one lab. See the module docs.
///
/// # Example
///
/// ```
/// use aws_hop_lab::LabConfig;
///
/// let config = LabConfig::builtin();
/// assert_eq!(config.prefix, "vpclab");
/// assert_eq!(config.net, "10.231");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabConfig {
    /// Prefix of the namespace names (`<prefix>-pub`, `<prefix>-priv`), of the root-side
    /// interface names (first 8 characters) and of the domain `<prefix>.internal`.
    pub prefix: String,
    /// The first two octets of the lab's range, e.g. `"10.231"`: the lab uses
    /// `<net>.0.0/16` and must be the only user of it on the host.
    pub net: String,
    /// State directory (a tmpfs while the lab is up): keys, configs, data dirs, logs,
    /// pid files and [`ENV_FILE`].
    pub dir: PathBuf,
    /// Local account the SSH logins use; created by `up` if missing (and then removed by
    /// `down`).
    pub user: String,
    /// Whether `up` also brings up the AWS side (the `<prefix>-aws` namespace with moto
    /// and the fakes, see `lab::aws`). On for `hop-lab up` unless `LAB_AWS=0`; off in
    /// [`LabConfig::unique`] (tests add it with `Lab::up_aws`).
    pub aws: bool,
}

/// Second octets that [`LabConfig::unique`] may pick: `10.200.0.0/16` to `10.250.0.0/16`.
const UNIQUE_OCTETS: std::ops::RangeInclusive<u16> = 200..=250;

impl Default for LabConfig {
    /// The built-in defaults (`vpclab`, `10.231`, `/tmp/vpc-lab`, `hoplab`, AWS side on),
    /// each overridden by `LAB_PREFIX`, `LAB_NET`, `LAB_DIR`, `LAB_USER` or `LAB_AWS`
    /// (`0` for off) when set.
    fn default() -> Self {
        let builtin = Self::builtin();
        let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        LabConfig {
            prefix: var("LAB_PREFIX").unwrap_or(builtin.prefix),
            net: var("LAB_NET").unwrap_or(builtin.net),
            dir: var("LAB_DIR").map_or(builtin.dir, PathBuf::from),
            user: var("LAB_USER").unwrap_or(builtin.user),
            aws: var("LAB_AWS").map_or(builtin.aws, |v| v != "0"),
        }
    }
}

impl LabConfig {
    /// The built-in defaults, ignoring the environment: the same as `vpc-lab.sh`.
    pub fn builtin() -> Self {
        LabConfig {
            prefix: "vpclab".into(),
            net: "10.231".into(),
            dir: PathBuf::from("/tmp/vpc-lab"),
            user: "hoplab".into(),
            aws: true,
        }
    }

    /// A config that collides with no other lab on this machine, for parallel test runs.
    ///
    /// Picks a second octet `N` in 200–250 whose `10.N.` range appears in neither
    /// `ip -o addr` nor `ip route` of the root namespace, and claims it atomically with a
    /// file under `/run/aws-hop-lab/` (removed by `down`; a claim whose owner died without
    /// leaving a lab behind is reused). The id is the octet, so every name is unique while
    /// the claim is held: prefix and user `hlN`, state directory `/tmp/aws-hop-lab-hlN`.
    /// Names still present from a crashed run (a namespace, a user, a directory) make it
    /// skip that octet.
    pub fn unique() -> Result<Self> {
        let used = used_ranges()?;
        let start = u16::try_from(std::process::id() % 51).unwrap_or(0);
        let span = UNIQUE_OCTETS.end() - UNIQUE_OCTETS.start() + 1;
        for i in 0..span {
            let octet = UNIQUE_OCTETS.start() + (start + i) % span;
            let net = format!("10.{octet}");
            if used
                .iter()
                .any(|token| token.starts_with(&format!("{net}.")))
            {
                continue;
            }
            let config = LabConfig {
                prefix: format!("hl{octet}"),
                net: net.clone(),
                dir: PathBuf::from(format!("/tmp/aws-hop-lab-hl{octet}")),
                user: format!("hl{octet}"),
                // The AWS side costs about 4 s at `up`; tests that need it add it with
                // `Lab::up_aws` (see `Lab::shared_aws`).
                aws: false,
            };
            if config.has_leftovers() {
                continue;
            }
            if claim::try_claim(&config)? {
                return Ok(config);
            }
        }
        bail!(
            "no free lab range in 10.200-10.250: every one is in use or claimed \
             (see /run/aws-hop-lab/ and `ip netns list`; `hop-lab down --dir DIR` removes a stale lab)"
        )
    }

    /// Reads the config that `up` recorded in `dir/lab.env`.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = dir.join(ENV_FILE);
        let text = fs::read_to_string(&file).with_context(|| {
            format!(
                "cannot read {} (is there a lab in {}?)",
                file.display(),
                dir.display()
            )
        })?;
        let get = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_owned)
                .with_context(|| format!("{} has no {key}= line", file.display()))
        };
        let config = LabConfig {
            prefix: get("LAB_PREFIX")?,
            net: get("LAB_NET")?,
            dir: PathBuf::from(get("LAB_DIR")?),
            user: get("LAB_USER")?,
            // Absent in a lab.env written before the AWS side existed.
            aws: get("LAB_AWS").is_ok_and(|v| v != "0"),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the names are usable: prefix of lowercase letters, digits and `-`
    /// (at most 12 characters), `net` of the form `A.B`, an absolute directory.
    pub fn validate(&self) -> Result<()> {
        let ok_prefix = !self.prefix.is_empty()
            && self.prefix.len() <= 12
            && self.prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok_prefix {
            bail!(
                "bad lab prefix {:?}: use 1-12 characters a-z, 0-9 or '-', starting with a letter",
                self.prefix
            );
        }
        let octets: Vec<&str> = self.net.split('.').collect();
        if octets.len() != 2 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
            bail!(
                "bad LAB_NET {:?}: expected the first two octets, e.g. 10.231",
                self.net
            );
        }
        if !self.dir.is_absolute() {
            bail!(
                "the lab directory must be absolute, got {}",
                self.dir.display()
            );
        }
        if self.user.is_empty() || self.user.contains(|c: char| c.is_whitespace() || c == ':') {
            bail!("bad lab user {:?}", self.user);
        }
        Ok(())
    }

    /// Is anything with this config's names already on the machine?
    fn has_leftovers(&self) -> bool {
        let ns_file =
            |suffix: &str| Path::new("/run/netns").join(format!("{}-{suffix}", self.prefix));
        ns_file("pub").exists()
            || ns_file("priv").exists()
            || ns_file("aws").exists()
            || Path::new("/etc/netns")
                .join(format!("{}-pub", self.prefix))
                .exists()
            || self.dir.exists()
            || user::exists(&self.user)
    }
}

/// Every whitespace-separated token of `ip -o addr` and `ip route` in the root netns.
fn used_ranges() -> Result<Vec<String>> {
    let mut tokens = Vec::new();
    for args in [&["-o", "addr"][..], &["route"][..]] {
        let out = exec::run(Command::new("ip").args(args))?;
        tokens.extend(out.split_whitespace().map(str::to_owned));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_the_reference_script() {
        let config = LabConfig::builtin();
        assert_eq!(
            (
                config.prefix.as_str(),
                config.net.as_str(),
                config.user.as_str()
            ),
            ("vpclab", "10.231", "hoplab")
        );
        assert_eq!(config.dir, Path::new("/tmp/vpc-lab"));
        config.validate().unwrap();
    }

    #[test]
    fn validate_rejects_bad_names() {
        let bad = |f: fn(&mut LabConfig)| {
            let mut config = LabConfig::builtin();
            f(&mut config);
            config.validate().unwrap_err()
        };
        bad(|c| c.prefix = "Upper".into());
        bad(|c| c.prefix = "much-too-long-prefix".into());
        bad(|c| c.net = "10.300".into());
        bad(|c| c.net = "10.1.2".into());
        bad(|c| c.dir = "relative".into());
    }

    #[test]
    fn load_reads_the_env_file() {
        let dir =
            std::env::temp_dir().join(format!("aws-hop-lab-config-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(ENV_FILE),
            "LAB_PREFIX=hl207\nLAB_NET=10.207\nLAB_DIR=/tmp/aws-hop-lab-hl207\nLAB_USER=hl207\nNS_PUB=hl207-pub\n",
        )
        .unwrap();
        let config = LabConfig::load(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.prefix, "hl207");
        assert_eq!(config.net, "10.207");
        assert_eq!(config.dir, Path::new("/tmp/aws-hop-lab-hl207"));
        assert_eq!(config.user, "hl207");
    }
}
