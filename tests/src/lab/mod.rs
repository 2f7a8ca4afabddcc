//! [`Lab`]: one running model of a VPC, and everything a test needs to know about it.
//!
//! [`Lab::new`] derives every name, address, port and path from a [`LabConfig`] without
//! touching the machine. [`Lab::up`] builds the lab (idempotent: a second `up` only
//! restarts dead daemons) and [`Lab::down`] removes it. [`Lab::env`] gives the same facts
//! as KEY=VALUE pairs, as `hop-lab env` prints them.
//!
//! One concept per module:
//! - `config`: [`LabConfig`] and where it comes from; `claim`: address-range claims;
//! - `state`: the tmpfs state directory and `lab.env`; `net`: namespaces, veths, routes,
//!   hosts files; `user`: the login account; `keys`: keys, known_hosts, ssh_config;
//! - `sshd`, `mariadb`, `postgres`: the daemons, each with its start/stop methods;
//! - `aws`: the AWS side (moto and the Python fakes in `<prefix>-aws`), [`AwsLab`];
//! - `teardown`: `down`; `preflight`: root and packages;
//! - `exec`, `process`, `netns`, `progress`: commands, PIDs, in-namespace sockets, logs.

mod aws;
mod claim;
mod config;
mod exec;
mod keys;
mod mariadb;
mod net;
mod netns;
mod postgres;
mod preflight;
mod process;
mod progress;
mod sshd;
mod state;
mod teardown;
mod user;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use std::{io, thread};

use anyhow::{Context, Result, bail};

pub use aws::{AwsIds, AwsLab, EiceTunnel, with_hosts_file};
pub use claim::CLAIM_DIR;
pub use config::{ENV_FILE, LabConfig};
pub use exec::{describe, ns_command, output_with_timeout};
pub use mariadb::MARIADB_MARKER;
pub use netns::{connect_in, in_netns, listen_in};
pub use postgres::POSTGRES_MARKER;
pub use process::{alive, ns_pids, start_time};
pub use progress::Progress;

/// SSH port of the bastion and the instance (inside their namespaces, not the host's).
pub const SSH_PORT: u16 = 22;
/// Port of the bastion's second sshd, which has `AllowTcpForwarding no`.
pub const NOFWD_PORT: u16 = 2222;
/// MariaDB's port.
pub const MARIADB_PORT: u16 = 3306;
/// PostgreSQL's port.
pub const POSTGRES_PORT: u16 = 5432;
/// Database user, on both databases.
pub const DB_USER: &str = "hop";
/// Database password, on both databases.
pub const DB_PASSWORD: &str = "hoppw";
/// Database name, on both databases.
pub const DB_NAME: &str = "hopdb";

/// One lab: its config and every derived name, address, port and file.
///
/// All fields are plain data, computed by [`Lab::new`]; they are true whether or not the
/// lab is up. Namespace names are what `ip netns` and [`Lab::run_in`] take.
#[derive(Debug)]
pub struct Lab {
    /// The four settings everything else derives from.
    pub config: LabConfig,
    /// The public subnet's namespace (`<prefix>-pub`): the bastion.
    pub ns_pub: String,
    /// The private subnet's namespace (`<prefix>-priv`): databases and the instance.
    pub ns_priv: String,
    /// `<prefix>.internal`: the private DNS domain.
    pub domain: String,
    /// The root namespace's address on the bastion link (`N.0.1`).
    pub laptop_ip: Ipv4Addr,
    /// The bastion's "public" address (`N.0.2`), where sshd listens on 22 and 2222.
    pub bastion_ip: Ipv4Addr,
    /// The bastion's address in the private subnet (`N.1.1`): the source address the
    /// databases see for tunnelled connections.
    pub bastion_priv_ip: Ipv4Addr,
    /// MariaDB (`N.1.10`).
    pub mariadb_ip: Ipv4Addr,
    /// PostgreSQL (`N.1.11`).
    pub postgres_ip: Ipv4Addr,
    /// The private instance's sshd (`N.1.20`).
    pub instance_ip: Ipv4Addr,
    /// A spare private address for test servers (`N.1.30`); see [`Lab::sink_addr`].
    pub sink_ip: Ipv4Addr,
    /// `bastion.<domain>`.
    pub bastion_host: String,
    /// `mariadb.<domain>`: resolves only inside the lab namespaces.
    pub mariadb_host: String,
    /// `postgres.<domain>`: resolves only inside the lab namespaces.
    pub postgres_host: String,
    /// `instance.<domain>`: resolves only inside the lab namespaces.
    pub instance_host: String,
    /// 22.
    pub ssh_port: u16,
    /// 2222: the bastion's listener that refuses port forwarding.
    pub nofwd_port: u16,
    /// 3306.
    pub mariadb_port: u16,
    /// 5432.
    pub postgres_port: u16,
    /// The login user on the bastion and the instance.
    pub user: String,
    /// The client's private key (ed25519, no passphrase); `.pub` beside it.
    pub ssh_key: PathBuf,
    /// known_hosts with the bastion (by IP and name, and `[IP]:2222`) and the instance.
    pub known_hosts: PathBuf,
    /// A client config: Host `bastion`, `bastion-nofwd`, and `instance` (ProxyJump).
    pub ssh_config: PathBuf,
    /// The bastion's host public key (also served on port 2222).
    pub bastion_host_key: PathBuf,
    /// The instance's host public key.
    pub instance_host_key: PathBuf,
    /// `hop`.
    pub db_user: &'static str,
    /// `hoppw`.
    pub db_password: &'static str,
    /// `hopdb`.
    pub db_name: &'static str,
    /// The AWS side: its namespace, addresses, credentials, CA and hosts file. Present
    /// whether or not [`LabConfig::aws`] is on (then nothing of it runs).
    pub aws: AwsLab,
    veth_root: String,
    veth_pub_tmp: String,
    veth_pub2_tmp: String,
    veth_priv_tmp: String,
    /// Next port [`Lab::sink_addr`] hands out.
    next_sink_port: AtomicU16,
}

impl Lab {
    /// Derives every name and address from `config` (validated). Touches nothing.
    pub fn new(config: LabConfig) -> Result<Lab> {
        config.validate()?;
        let ip = |tail: &str| -> Result<Ipv4Addr> {
            format!("{}.{tail}", config.net)
                .parse()
                .with_context(|| format!("bad lab net {}", config.net))
        };
        let domain = format!("{}.internal", config.prefix);
        // Interface names are limited to 15 characters.
        let short: String = config.prefix.chars().take(8).collect();
        let dir = config.dir.clone();
        Ok(Lab {
            ns_pub: format!("{}-pub", config.prefix),
            ns_priv: format!("{}-priv", config.prefix),
            laptop_ip: ip("0.1")?,
            bastion_ip: ip("0.2")?,
            bastion_priv_ip: ip("1.1")?,
            mariadb_ip: ip("1.10")?,
            postgres_ip: ip("1.11")?,
            instance_ip: ip("1.20")?,
            sink_ip: ip("1.30")?,
            bastion_host: format!("bastion.{domain}"),
            mariadb_host: format!("mariadb.{domain}"),
            postgres_host: format!("postgres.{domain}"),
            instance_host: format!("instance.{domain}"),
            domain,
            ssh_port: SSH_PORT,
            nofwd_port: NOFWD_PORT,
            mariadb_port: MARIADB_PORT,
            postgres_port: POSTGRES_PORT,
            user: config.user.clone(),
            ssh_key: dir.join("keys/id_ed25519"),
            known_hosts: dir.join("keys/known_hosts"),
            ssh_config: dir.join("ssh_config"),
            bastion_host_key: dir.join("bastion/ssh_host_ed25519_key.pub"),
            instance_host_key: dir.join("instance/ssh_host_ed25519_key.pub"),
            db_user: DB_USER,
            db_password: DB_PASSWORD,
            db_name: DB_NAME,
            veth_root: format!("{short}-r0"),
            veth_pub_tmp: format!("{short}-p0"),
            veth_pub2_tmp: format!("{short}-p1"),
            veth_priv_tmp: format!("{short}-v0"),
            next_sink_port: AtomicU16::new(20000),
            aws: AwsLab::new(&config.prefix, &config.net, &config.dir)?,
            config,
        })
    }

    /// The lab whose state is in `dir` (from its `lab.env`).
    pub fn from_dir(dir: &Path) -> Result<Lab> {
        Lab::new(LabConfig::load(dir)?)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Where logs of processes the tests start go: `<dir>/logs`.
    pub fn log_dir(&self) -> PathBuf {
        self.config.dir.join("logs")
    }

    /// The log files of the lab's daemons, for failure messages: three sshd logs,
    /// MariaDB's error log, PostgreSQL's log and, with the AWS side, moto's, the front's (with
    /// the fake gateway) and the SSM agent's.
    pub fn daemon_logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = sshd::Sshd::ALL.iter().map(|s| s.log_file(self)).collect();
        logs.push(mariadb::error_log(self));
        logs.push(postgres::log_file(self));
        if self.config.aws {
            logs.push(self.log_dir().join("moto.log"));
            logs.push(self.log_dir().join("aws-front.log"));
            logs.push(self.log_dir().join("ssm-agent.log"));
        }
        logs
    }

    /// The last `lines` lines of each non-empty daemon log, for a failure message (the logs
    /// are gone once the lab is down).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for log in self.daemon_logs() {
            let Ok(content) = std::fs::read_to_string(&log) else {
                continue;
            };
            let all: Vec<&str> = content.lines().collect();
            if all.is_empty() {
                continue;
            }
            let tail = &all[all.len().saturating_sub(lines)..];
            let _ = write!(
                text,
                "\n--- {} (last {} lines) ---\n{}",
                log.display(),
                tail.len(),
                tail.join("\n")
            );
        }
        text
    }

    /// Brings the lab up: state directory, network, user and keys, then the three sshds,
    /// MariaDB, PostgreSQL and, with [`LabConfig::aws`], the AWS side (in parallel). Idempotent: what exists is kept and only dead
    /// daemons are restarted. Progress goes to stderr; on error, what failed and the log
    /// to read. A failed `up` leaves its partial state for inspection: run [`Lab::down`].
    pub fn up(&self) -> Result<()> {
        let progress = Progress::new(&self.config.prefix, "up");
        preflight::check()?;
        if self.config.aws {
            aws::preflight()?;
        }
        progress.step(&format!("state in {}", self.config.dir.display()));
        self.prepare_state()?;
        progress.step("namespaces + veth");
        net::up(self)?;
        // Before any sshd starts: their configs name it.
        aws::install_authorized_keys_command()?;
        progress.step("user + keys");
        user::up(self)?;
        keys::up(self)?;

        let results: Vec<Result<()>> = thread::scope(|s| {
            let sshds = s.spawn(|| {
                sshd::Sshd::ALL
                    .iter()
                    .try_for_each(|&which| sshd::up(self, which, &progress))
            });
            let mariadb = s.spawn(|| mariadb::up(self, &progress));
            let postgres = s.spawn(|| postgres::up(self, &progress));
            let aws = s.spawn(|| {
                if self.config.aws {
                    aws::net_up(self).and_then(|()| aws::up(self, &progress))
                } else {
                    Ok(())
                }
            });
            [sshds, mariadb, postgres, aws]
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(Result::err)
            .map(|e| format!("{e:#}"))
            .collect();
        if !errors.is_empty() {
            bail!(
                "lab {} up failed: {}",
                self.config.prefix,
                errors.join("; ")
            );
        }
        progress.step(&format!("up in {:.2} s", progress.elapsed_secs()));
        Ok(())
    }

    /// Brings up the AWS side alone (see `lab::aws`) on a lab that is up, whatever
    /// [`LabConfig::aws`] says: for tests that need it on a lab brought up without it.
    /// Idempotent.
    pub fn up_aws(&self) -> Result<()> {
        let progress = Progress::new(&self.config.prefix, "up-aws");
        aws::preflight()?;
        aws::net_up(self)?;
        aws::up(self, &progress)?;
        progress.step(&format!("aws up in {:.2} s", progress.elapsed_secs()));
        Ok(())
    }

    /// The lab as KEY=VALUE pairs (`tests/README.md` describes each key).
    pub fn env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        let mut env = [
            ("LAB_PREFIX", self.config.prefix.clone()),
            ("LAB_NET", self.config.net.clone()),
            ("LAB_DIR", path(&self.config.dir)),
            ("LAB_USER", self.user.clone()),
            ("LAB_DOMAIN", self.domain.clone()),
            ("NS_PUB", self.ns_pub.clone()),
            ("NS_PRIV", self.ns_priv.clone()),
            ("LAPTOP_IP", self.laptop_ip.to_string()),
            ("BASTION_IP", self.bastion_ip.to_string()),
            ("BASTION_PRIV_IP", self.bastion_priv_ip.to_string()),
            ("BASTION_HOST", self.bastion_host.clone()),
            ("SSH_PORT", self.ssh_port.to_string()),
            ("NOFWD_PORT", self.nofwd_port.to_string()),
            ("MARIADB_IP", self.mariadb_ip.to_string()),
            ("MARIADB_HOST", self.mariadb_host.clone()),
            ("MARIADB_PORT", self.mariadb_port.to_string()),
            ("POSTGRES_IP", self.postgres_ip.to_string()),
            ("POSTGRES_HOST", self.postgres_host.clone()),
            ("POSTGRES_PORT", self.postgres_port.to_string()),
            ("INSTANCE_IP", self.instance_ip.to_string()),
            ("INSTANCE_HOST", self.instance_host.clone()),
            ("SINK_IP", self.sink_ip.to_string()),
            ("SSH_KEY", path(&self.ssh_key)),
            ("KNOWN_HOSTS", path(&self.known_hosts)),
            ("SSH_CONFIG", path(&self.ssh_config)),
            ("BASTION_HOST_KEY", path(&self.bastion_host_key)),
            ("INSTANCE_HOST_KEY", path(&self.instance_host_key)),
            ("DB_USER", self.db_user.to_owned()),
            ("DB_PASSWORD", self.db_password.to_owned()),
            ("DB_NAME", self.db_name.to_owned()),
            (
                "LAB_AWS",
                if self.config.aws { "1" } else { "0" }.to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<Vec<_>>();
        if self.config.aws || self.aws.ids().is_ok() {
            let aws = &self.aws;
            env.extend(
                [
                    ("NS_AWS", aws.ns.clone()),
                    ("AWS_API_IP", aws.api_ip.to_string()),
                    ("AWS_EICE_IP", aws.eice_ip.to_string()),
                    ("AWS_SUBNET_IP", aws.subnet_ip.to_string()),
                    ("AWS_REGION", aws.region.to_owned()),
                    ("AWS_ACCESS_KEY_ID", aws.access_key_id.to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", aws.secret_access_key.to_owned()),
                    ("AWS_CA", path(&aws.ca)),
                    ("AWS_HOSTS", path(&aws.hosts)),
                    ("AWS_VENV", aws::VENV.to_owned()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
            );
            // Known once seeded: ids, the endpoint, the RDS endpoint.
            if let Ok(ids) = aws.ids() {
                env.extend(ids.values);
            }
        }
        env
    }

    /// [`Lab::env`] as text: one `KEY=VALUE` line each.
    pub fn env_lines(&self) -> String {
        self.env().iter().fold(String::new(), |mut text, (k, v)| {
            let _ = writeln!(text, "{k}={v}");
            text
        })
    }

    /// A command that runs `program` inside namespace `ns` (`ip netns exec`), where the
    /// lab's host names resolve.
    pub fn ns_command(&self, ns: &str, program: impl AsRef<OsStr>) -> Command {
        ns_command(ns, program)
    }

    /// Runs `program args...` inside namespace `ns` to completion; its stdout, or an
    /// error with its stderr.
    ///
    /// ```no_run
    /// # let lab = aws_hop_lab::Lab::new(aws_hop_lab::LabConfig::builtin())?;
    /// let hosts = lab.run_in(&lab.ns_pub, "getent", ["-s", "files", "hosts", &lab.mariadb_host])?;
    /// assert!(hosts.starts_with(&lab.mariadb_ip.to_string()));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn run_in<I, S>(&self, ns: &str, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        exec::run(ns_command(ns, program).args(args))
    }

    /// Starts a long-lived `program args...` inside namespace `ns`, with stdin from
    /// /dev/null and stdout and stderr appended to `<dir>/logs/<log_name>` (never the
    /// caller's pipes, gotcha 9), in its own process group. `ip netns exec` execs, so the
    /// child's PID is the program's. `down` kills it if the caller does not.
    pub fn spawn_in<I, S>(
        &self,
        ns: &str,
        program: impl AsRef<OsStr>,
        args: I,
        log_name: &str,
    ) -> Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        exec::spawn_logged(
            ns_command(ns, program).args(args),
            &self.log_dir().join(log_name),
        )
    }

    /// Connects to `addr` from inside namespace `ns`, from this process (see
    /// [`in_netns`]): e.g. a client on the bastion.
    pub fn connect_in(
        &self,
        ns: &str,
        addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        connect_in(ns, addr, timeout)
    }

    /// Binds a listener on `addr` inside namespace `ns`, from this process: e.g. a test
    /// server at [`Lab::sink_addr`] in the private subnet.
    pub fn listen_in(&self, ns: &str, addr: SocketAddr) -> io::Result<TcpListener> {
        listen_in(ns, addr)
    }

    /// A fresh `SINK_IP:port` (ports 20000 and up, never the same twice from one `Lab`;
    /// below that, tests may pick fixed ports),
    /// so parallel tests can run their own servers in the private subnet.
    pub fn sink_addr(&self) -> SocketAddr {
        let port = self.next_sink_port.fetch_add(1, Ordering::Relaxed);
        SocketAddr::from((self.sink_ip, port))
    }

    /// The live PID of each daemon (`None` if it is not running): `bastion`, `nofwd`,
    /// `instance` (the three sshd listeners), `mariadb`, `postgres`.
    pub fn daemon_pids(&self) -> Vec<(&'static str, Option<u32>)> {
        let mut pids: Vec<(&'static str, Option<u32>)> = sshd::Sshd::ALL
            .iter()
            .map(|s| (s.name(), process::live_pid(&s.pid_file(self))))
            .collect();
        pids.push(("mariadb", process::live_pid(&mariadb::pid_file(self))));
        pids.push(("postgres", process::live_pid(&postgres::pid_file(self))));
        pids
    }

    /// Fails unless this process runs as root and every program the lab needs is
    /// installed; the message names `tests/setup.sh`.
    pub fn preflight() -> Result<()> {
        preflight::check()
    }
}
