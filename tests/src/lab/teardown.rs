//! `down`: stop everything this lab started and remove everything it created, in an
//! order that works from any partial state and that may be repeated.
//!
//! 1. The daemons, by their pid files: the three sshds (TERM), mariadbd (TERM), the
//!    postmaster (INT, PostgreSQL's fast shutdown), moto and the AWS front (TERM); KILL
//!    after 10 s.
//! 2. Whatever still runs inside the lab's namespaces: per-connection sshd children that
//!    keep tunnels alive after their listener died (gotcha 13), remote commands, test
//!    servers. `ip netns pids` lists them; nothing outside the namespaces is touched.
//! 3. The namespaces (their veths go with them), the root-side interface, the unreachable
//!    route and `/etc/netns/<ns>`.
//! 4. The login user, if `up` created it.
//! 5. The state directory's tmpfs, then the claim on the address range.
//!
//! Liveness checks treat zombies as dead (gotcha 10), so a slow-reaping init does not
//! make `down` wait.

use anyhow::{Result, bail};
use nix::sys::signal::Signal;

use super::progress::Progress;
use super::sshd::Sshd;
use super::{Lab, aws, claim, mariadb, net, postgres, process, state, user};

impl Lab {
    /// Stops and removes everything this lab started or created (see the module docs).
    /// Idempotent: a second `down`, or a `down` of a lab that never came up, is fine.
    /// Returns an error only if something could not be removed; it still does every step.
    pub fn down(&self) -> Result<()> {
        let progress = Progress::new(&self.config.prefix, "down");
        let mut daemons = Vec::new();
        for which in Sshd::ALL {
            if let Some(pid) = process::live_pid(&which.pid_file(self)) {
                daemons.push((pid, Signal::SIGTERM, format!("sshd {}", which.name())));
            }
        }
        daemons.extend(mariadb::stop_target(self));
        daemons.extend(postgres::stop_target(self));
        daemons.extend(aws::stop_targets(self));
        process::stop(&daemons, &progress);

        let mut leftovers = Vec::new();
        for ns in [&self.ns_pub, &self.ns_priv, &self.aws.ns] {
            for pid in process::ns_pids(ns) {
                if process::alive(pid) {
                    let what = format!("leftover in {ns}: {}", process::short_cmdline(pid));
                    leftovers.push((pid, Signal::SIGTERM, what));
                }
            }
        }
        process::stop(&leftovers, &progress);

        progress.step("deleting namespaces, interface, route, /etc/netns entries");
        net::down(self);

        let mut failures = Vec::new();
        if let Err(e) = user::down(self) {
            failures.push(format!("removing user {}: {e:#}", self.user));
        }
        progress.step(&format!("removing {}", self.config.dir.display()));
        if let Err(e) = state::down(self) {
            failures.push(format!("removing the state directory: {e:#}"));
        }
        claim::release(&self.config);
        progress.step("down");
        if !failures.is_empty() {
            bail!(
                "lab {} down, with failures: {}",
                self.config.prefix,
                failures.join("; ")
            );
        }
        Ok(())
    }

    /// What is still on the machine from this lab: namespaces, interfaces, routes,
    /// `/etc/netns` entries, an account with the lab's user name (so, for a lab whose
    /// user existed before `up`, that account too), the mount, the state directory, the claim, and processes whose
    /// command line mentions the state directory. Empty after a clean [`Lab::down`].
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = net::leftovers(self);
        if user::exists(&self.user) {
            found.push(format!("user {}", self.user));
        }
        if state::is_mountpoint(&self.config.dir) {
            found.push(format!("mount on {}", self.config.dir.display()));
        }
        if self.config.dir.exists() {
            found.push(format!("directory {}", self.config.dir.display()));
        }
        if claim::claim_path(&self.config).exists() {
            found.push(format!(
                "claim {}",
                claim::claim_path(&self.config).display()
            ));
        }
        let dir = self.config.dir.to_string_lossy().into_owned();
        for pid in all_pids() {
            if process::alive(pid) && process::cmdline(pid).contains(&dir) {
                found.push(format!("process {pid}: {}", process::cmdline(pid)));
            }
        }
        found
    }
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
