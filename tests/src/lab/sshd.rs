//! The lab's three OpenSSH servers, each with its own config, pid file and log:
//!
//! - [`Sshd::Bastion`]: the bastion, `BASTION_IP:22` in the public namespace;
//! - [`Sshd::NoForward`]: a second bastion listener, `BASTION_IP:2222`, with
//!   `AllowTcpForwarding no` and the bastion's host key, for "forward refused" tests;
//! - [`Sshd::Instance`]: the private instance, `INSTANCE_IP:22` in the private namespace.
//!
//! Each runs with `-f` (so the system `/etc/ssh/sshd_config` is not read), key-only
//! logins for the lab user, `UsePAM no`, and `StrictModes no` because the keys live under
//! /tmp (gotcha 4). sshd is started by absolute path (it re-execs itself), daemonizes and
//! writes its `PidFile`. [`Lab::stop_bastion`] kills the listener *and* its
//! per-connection children, since established sessions outlive the listener (gotcha 13).

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::Lab;
use super::exec::{self, ns_command};
use super::netns;
use super::process;
use super::progress::Progress;

const SSHD: &str = "/usr/sbin/sshd";

/// One of the lab's sshd instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sshd {
    /// The bastion on port 22.
    Bastion,
    /// The bastion's second listener on port 2222, forwarding disabled.
    NoForward,
    /// The private instance.
    Instance,
}

impl Sshd {
    /// All three, in start order.
    pub(super) const ALL: [Sshd; 3] = [Sshd::Bastion, Sshd::NoForward, Sshd::Instance];

    /// Short name: also the name of its directory under the state directory.
    pub(super) fn name(self) -> &'static str {
        match self {
            Sshd::Bastion => "bastion",
            Sshd::NoForward => "nofwd",
            Sshd::Instance => "instance",
        }
    }

    fn ns(self, lab: &Lab) -> &str {
        match self {
            Sshd::Bastion | Sshd::NoForward => &lab.ns_pub,
            Sshd::Instance => &lab.ns_priv,
        }
    }

    fn addr(self, lab: &Lab) -> SocketAddr {
        match self {
            Sshd::Bastion => SocketAddr::from((lab.bastion_ip, lab.ssh_port)),
            Sshd::NoForward => SocketAddr::from((lab.bastion_ip, lab.nofwd_port)),
            Sshd::Instance => SocketAddr::from((lab.instance_ip, lab.ssh_port)),
        }
    }

    fn dir(self, lab: &Lab) -> PathBuf {
        lab.config.dir.join(self.name())
    }

    /// Its pid file.
    pub(super) fn pid_file(self, lab: &Lab) -> PathBuf {
        self.dir(lab).join("sshd.pid")
    }

    /// Its log file (`-E`).
    pub(super) fn log_file(self, lab: &Lab) -> PathBuf {
        self.dir(lab).join("sshd.log")
    }

    fn host_key(self, lab: &Lab) -> PathBuf {
        match self {
            Sshd::Bastion | Sshd::NoForward => lab.bastion_host_key.with_extension(""),
            Sshd::Instance => lab.instance_host_key.with_extension(""),
        }
    }

    fn config(self, lab: &Lab) -> String {
        let forwarding = if self == Sshd::NoForward { "no" } else { "yes" };
        let eic_ip = match self {
            Sshd::Bastion | Sshd::NoForward => lab.bastion_ip,
            Sshd::Instance => lab.instance_ip,
        };
        let mut config = format!(
            "# Own config: the system /etc/ssh/sshd_config is NOT read when -f is given.\n\
             ListenAddress {addr}\n\
             HostKey {host_key}\n\
             PidFile {pid_file}\n\
             AuthorizedKeysFile {authorized}\n\
             AllowUsers {user}\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             # Keys live under /tmp (world-writable), which StrictModes would reject.\n\
             StrictModes no\n\
             AllowTcpForwarding {forwarding}\n\
             GatewayPorts no\n\
             X11Forwarding no\n\
             PrintMotd no\n\
             UseDNS no\n\
             LogLevel VERBOSE\n\
             Subsystem sftp internal-sftp\n\
             # Tests open many connections at once; the default 10:30:100 drops some pre-auth.\n\
             MaxStartups 200\n\
             MaxSessions 100\n",
            addr = self.addr(lab),
            host_key = self.host_key(lab).display(),
            pid_file = self.pid_file(lab).display(),
            authorized = lab.config.dir.join("keys/authorized_keys").display(),
            user = lab.user,
        );
        // Keys pushed by SendSSHPublicKey for this instance (by its private IP); the
        // command prints nothing when the AWS side is off.
        config.push_str(&super::aws::sshd_config_lines(lab, eic_ip));
        config
    }
}

/// Starts `which` unless it is already running (idempotent).
pub(super) fn up(lab: &Lab, which: Sshd, progress: &Progress) -> Result<()> {
    let pid_file = which.pid_file(lab);
    if process::live_pid(&pid_file).is_some() {
        return Ok(());
    }
    progress.step(&format!("sshd {} on {}", which.name(), which.addr(lab)));
    let dir = which.dir(lab);
    fs::create_dir_all(&dir)?;
    // sshd, even `sshd -t`, needs its privilege-separation directory; on hosts without
    // systemd nothing creates it (gotcha 3). Shared by all labs, never removed.
    fs::create_dir_all("/run/sshd").context("cannot create /run/sshd")?;

    let config_file = dir.join("sshd_config");
    let mut config = which.config(lab);
    // OpenSSH >= 9.8 penalises sources with failed auths; negative tests from one
    // address would lock out later tests. Older sshd rejects the keyword.
    fs::write(&config_file, &config)?;
    let accepts_penalties = exec::succeeds(
        Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config_file)
            .args(["-o", "PerSourcePenalties=no"]),
    );
    if accepts_penalties {
        config.push_str("PerSourcePenalties no\n");
        fs::write(&config_file, &config)?;
    } else {
        // Rejected: an older sshd, or a bad config. This run says which.
        exec::run(Command::new(SSHD).arg("-t").arg("-f").arg(&config_file))
            .with_context(|| format!("bad sshd config {}", config_file.display()))?;
    }

    let log = which.log_file(lab);
    let _ = fs::remove_file(&pid_file);
    // sshd daemonizes: the command returns once the listener is forked off.
    exec::run(
        ns_command(which.ns(lab), SSHD)
            .arg("-f")
            .arg(&config_file)
            .arg("-E")
            .arg(&log),
    )
    .with_context(|| {
        format!(
            "sshd {} did not start (see {})",
            which.name(),
            log.display()
        )
    })?;
    netns::wait_tcp(
        which.ns(lab),
        which.addr(lab),
        Duration::from_secs(10),
        || None,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "sshd {} did not come up: {e} (see {})",
            which.name(),
            log.display()
        )
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while process::live_pid(&pid_file).is_none() {
        if Instant::now() > deadline {
            bail!(
                "sshd {} wrote no pid file {} (see {})",
                which.name(),
                pid_file.display(),
                log.display()
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Stops `which`: the listener from its pid file and every process in its namespace
/// that descends from it (the per-connection children that keep sessions alive).
pub(super) fn down(lab: &Lab, which: Sshd, progress: &Progress) {
    let Some(listener) = process::live_pid(&which.pid_file(lab)) else {
        return;
    };
    let candidates = process::ns_pids(which.ns(lab));
    let targets: Vec<_> = process::tree(listener, &candidates)
        .into_iter()
        .map(|pid| {
            let what = if pid == listener {
                format!("sshd {} listener", which.name())
            } else {
                format!(
                    "sshd {} session: {}",
                    which.name(),
                    process::short_cmdline(pid)
                )
            };
            (pid, Signal::SIGTERM, what)
        })
        .collect();
    process::stop(&targets, progress);
}

impl Lab {
    /// "The bastion is down": kills the bastion sshd on port 22 and all its sessions, so
    /// established tunnels through it break too. The port-2222 listener is left running.
    ///
    /// The lab is shared by the tests of one process: a test that stops the bastion
    /// should use its own lab ([`OwnedLab`](crate::fixture::OwnedLab)).
    pub fn stop_bastion(&self) -> Result<()> {
        down(
            self,
            Sshd::Bastion,
            &Progress::new(&self.config.prefix, "stop-bastion"),
        );
        Ok(())
    }

    /// Starts the bastion sshd again (no-op if it runs), with the same host key.
    pub fn start_bastion(&self) -> Result<()> {
        up(
            self,
            Sshd::Bastion,
            &Progress::new(&self.config.prefix, "start-bastion"),
        )
    }

    /// Kills the private instance's sshd and all its sessions.
    pub fn stop_instance(&self) -> Result<()> {
        down(
            self,
            Sshd::Instance,
            &Progress::new(&self.config.prefix, "stop-instance"),
        );
        Ok(())
    }

    /// Starts the private instance's sshd again (no-op if it runs).
    pub fn start_instance(&self) -> Result<()> {
        up(
            self,
            Sshd::Instance,
            &Progress::new(&self.config.prefix, "start-instance"),
        )
    }
}
