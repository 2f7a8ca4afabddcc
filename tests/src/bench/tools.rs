//! The tools being compared, and how each one is started with a set of forwards through
//! the lab's bastion.
//!
//! - [`Tool::AwsHop`]: one `aws-hop run SCRIPT` process; the script opens one session with
//!   `bastion("USER@BASTION_IP", #{ key: KEY, known_hosts: KNOWN_HOSTS })`, one
//!   `forward(PORT, "TARGET", b)` per forward, prints `READY <port>...` and `wait()`s;
//!   after Ctrl-C it prints `STATS connections=N failed=N last_error=...`, the sum of
//!   its forwards' counters.
//! - [`Tool::Ssh`]: `ssh -N -L 127.0.0.1:PORT:TARGET ...` with the fixture's strict options
//!   ([`ssh_args`]) and OpenSSH's default cipher (chacha20-poly1305 on 9.x).
//! - [`Tool::SshAesGcm`]: the same with `-c aes256-gcm@openssh.com`, OpenSSH's fastest
//!   cipher on a CPU with AES instructions.
//! - [`Tool::AwsHopEice`] (the EICE section only, not in [`Tool::ALL`]): the aws-hop script
//!   with `eic_endpoint("web-1").ssh(USER)` instead of the bastion, run as a laptop client
//!   of the lab's AWS side (its hosts file, CA and fake keys, as the tests' `HopCmd::aws`).
//! - [`Tool::AwsHopSsm`] and [`Tool::AwsHopSsm32k`] (the SSM section only): the aws-hop
//!   script with `ssm("web-1")` (default `chunk_size`, 8192) or
//!   `ssm("web-1", #{ chunk_size: 32768 })` instead of the bastion, started like the EICE
//!   one; the lab's fake agent dials the targets from web-1.
//!
//! [`Launcher`] builds the command lines (the bench header prints them), for the caller
//! to start and time ([`Launcher::command`]), or starts them and waits until every forward
//! listens ([`Launcher::open`]), giving a [`Tunnel`].

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_hop_lab::Lab;
use aws_hop_lab::fixture::clients::{free_port, is_listening};
use aws_hop_lab::fixture::{ScratchDir, ssh_args};
use aws_hop_lab::lab::{describe, with_hosts_file};
use nix::sys::signal::Signal;

use super::binary::aws_hop_command;
use super::child::Spawned;

/// Index of the forward to the `sink` server in a bench tunnel's forwards.
pub(crate) const SINK: usize = 0;
/// Index of the forward to the `source` server.
pub(crate) const SOURCE: usize = 1;
/// Index of the forward to MariaDB.
pub(crate) const MARIADB: usize = 2;

/// How long a tool may take to get every forward listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One of the compared tools; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tool {
    AwsHop,
    Ssh,
    SshAesGcm,
    AwsHopEice,
    AwsHopSsm,
    AwsHopSsm32k,
}

impl Tool {
    /// Every tool, aws-hop first.
    pub(crate) const ALL: [Tool; 3] = [Tool::AwsHop, Tool::Ssh, Tool::SshAesGcm];

    /// The name in the tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Tool::AwsHop => "aws-hop",
            Tool::Ssh => "ssh",
            Tool::SshAesGcm => "ssh aes256-gcm",
            Tool::AwsHopEice => "aws-hop eice",
            Tool::AwsHopSsm => "aws-hop ssm",
            Tool::AwsHopSsm32k => "aws-hop ssm chunk 32k",
        }
    }

    /// Whether this is an aws-hop run (as opposed to OpenSSH).
    fn is_aws_hop(self) -> bool {
        !matches!(self, Tool::Ssh | Tool::SshAesGcm)
    }

    /// The signal that ends the tool cleanly: SIGINT (Ctrl-C) for aws-hop, which then
    /// closes its forwards and exits 0; SIGTERM for ssh.
    fn stop_signal(self) -> Signal {
        if self.is_aws_hop() {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        }
    }
}

/// One forward: a local port on 127.0.0.1 (0 = aws-hop picks one; ssh needs a real
/// port) and the `host:port` it reaches, resolved on the bastion.
#[derive(Clone, Debug)]
pub(crate) struct Forward {
    pub(crate) port: u16,
    pub(crate) target: String,
}

/// Starts tools against one lab: holds aws-hop's throw-away `HOME` and its scripts.
#[derive(Debug)]
pub(crate) struct Launcher<'a> {
    lab: &'a Lab,
    aws_hop: PathBuf,
    /// `HOME` of every aws-hop run (empty: all settings are in the script).
    home: ScratchDir,
    /// The generated scripts.
    scripts: ScratchDir,
    /// Every port handed out by [`Launcher::port`], so none is given twice.
    ports: Mutex<HashSet<u16>>,
    /// Numbers the script files.
    next_script: AtomicU32,
}

impl<'a> Launcher<'a> {
    /// A launcher for `lab`, running the aws-hop binary at `aws_hop`.
    pub(crate) fn new(lab: &'a Lab, aws_hop: PathBuf) -> Result<Launcher<'a>> {
        Ok(Launcher {
            lab,
            aws_hop,
            home: ScratchDir::new("bench-home")?,
            scripts: ScratchDir::new("bench-scripts")?,
            ports: Mutex::new(HashSet::new()),
            next_script: AtomicU32::new(0),
        })
    }

    /// A local port that was free a moment ago and that this launcher has not handed out
    /// before.
    pub(crate) fn port(&self) -> u16 {
        let mut given = self
            .ports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            let port = free_port();
            if given.insert(port) {
                return port;
            }
        }
    }

    /// The aws-hop script of `tool` for `forwards`: through the bastion, EICE or SSM.
    fn script(&self, forwards: &[Forward], tool: Tool) -> String {
        let lab = self.lab;
        let hop = if matches!(tool, Tool::AwsHopSsm | Tool::AwsHopSsm32k) {
            let opts = if tool == Tool::AwsHopSsm32k {
                ", #{ chunk_size: 32768 }"
            } else {
                ""
            };
            format!(
                "// hop-lab bench: {} forward(s) through SSM Session Manager to web-1\n\
                 let b = ssm(\"web-1\"{opts});\n",
                forwards.len(),
            )
        } else if tool == Tool::AwsHopEice {
            format!(
                "// hop-lab bench: {} forward(s) through EICE to web-1\n\
                 let b = eic_endpoint(\"web-1\").ssh(\"{}\", #{{ known_hosts: \"accept-new\" }});\n",
                forwards.len(),
                lab.user,
            )
        } else {
            format!(
                "// hop-lab bench: {} forward(s) through the lab's bastion\n\
                 let b = bastion(\"{}@{}\", #{{ key: {:?}, known_hosts: {:?} }});\n",
                forwards.len(),
                lab.user,
                lab.bastion_ip,
                lab.ssh_key.display().to_string(),
                lab.known_hosts.display().to_string(),
            )
        };
        let mut text = format!("{hop}let ready = \"READY\";\nlet fs = [];\n");
        for f in forwards {
            let _ = writeln!(
                text,
                "fs.push(forward({}, {:?}, b)); ready += ` ${{fs[-1].local_port}}`;",
                f.port, f.target
            );
        }
        text.push_str(
            "print(ready);\n\
             wait();\n\
             let connections = 0; let failed = 0; let last_error = \"\";\n\
             for f in fs {\n\
             \x20   let s = f.stats();\n\
             \x20   connections += s.connections; failed += s.failed;\n\
             \x20   if s.last_error != () { last_error = s.last_error; }\n\
             }\n\
             print(`STATS connections=${connections} failed=${failed} last_error=${last_error}`);\n",
        );
        text
    }

    /// The command that starts `tool` with `forwards` (for aws-hop, writes its script
    /// now, so that starting the command later does no extra work).
    pub(crate) fn command(&self, tool: Tool, forwards: &[Forward]) -> Result<Command> {
        match tool {
            Tool::AwsHop => {
                let file = self.write_script(forwards, tool)?;
                let mut cmd = aws_hop_command(&self.aws_hop, self.home.path());
                cmd.arg("run").arg(file);
                Ok(cmd)
            }
            Tool::AwsHopEice | Tool::AwsHopSsm | Tool::AwsHopSsm32k => {
                self.aws_command(tool, forwards, false)
            }
            Tool::Ssh | Tool::SshAesGcm => {
                let mut cmd = Command::new("ssh");
                cmd.args(ssh_args(self.lab));
                if tool == Tool::SshAesGcm {
                    cmd.args(["-c", "aes256-gcm@openssh.com"]);
                }
                cmd.arg("-N");
                for f in forwards {
                    cmd.arg("-L")
                        .arg(format!("127.0.0.1:{}:{}", f.port, f.target));
                }
                cmd.arg("-p")
                    .arg(self.lab.ssh_port.to_string())
                    .arg(format!("{}@{}", self.lab.user, self.lab.bastion_ip));
                Ok(cmd)
            }
        }
    }

    /// Writes the aws-hop script for `forwards` to a new file; returns its path.
    fn write_script(&self, forwards: &[Forward], tool: Tool) -> Result<PathBuf> {
        let n = self.next_script.fetch_add(1, Ordering::Relaxed);
        let file = self.scripts.path().join(format!("forwards-{n}.rhai"));
        fs::write(&file, self.script(forwards, tool))
            .with_context(|| format!("cannot write {}", file.display()))?;
        Ok(file)
    }

    /// `aws-hop run [-vv] SCRIPT` with `forwards` over `eic_endpoint("web-1").ssh(USER)`,
    /// as a laptop client of the lab's AWS side: in a private mount namespace whose
    /// `/etc/hosts` maps the AWS names to the fakes, with the lab CA and fake keys. The
    /// process id is aws-hop's (`unshare` and `sh` exec it). `verbose` adds `-vv`, whose
    /// `eice timing:` lines the setup breakdown reads.
    pub(crate) fn eice_command(&self, forwards: &[Forward], verbose: bool) -> Result<Command> {
        self.aws_command(Tool::AwsHopEice, forwards, verbose)
    }

    /// `aws-hop run [-vv] SCRIPT` of `tool` (EICE or SSM) with `forwards`, as a laptop
    /// client of the lab's AWS side: see [`Launcher::eice_command`].
    fn aws_command(&self, tool: Tool, forwards: &[Forward], verbose: bool) -> Result<Command> {
        let file = self.write_script(forwards, tool)?;
        let mut cmd = with_hosts_file(&self.lab.aws.hosts, &self.aws_hop);
        for (key, _) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if name.starts_with("AWS_") || name == "SSH_AUTH_SOCK" || name == "SSL_CERT_DIR" {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", self.home.path())
            .env("NO_COLOR", "1")
            .envs(self.lab.aws.client_env());
        cmd.arg("run");
        if verbose {
            // After `run`: clap refuses `aws-hop -vv run` (the global flag before the subcommand).
            cmd.arg("-vv");
        }
        cmd.arg(file);
        Ok(cmd)
    }

    /// How `tool` is run with `forwards`, for the report: the command line and, for
    /// aws-hop, the script.
    pub(crate) fn describe(&self, tool: Tool, forwards: &[Forward]) -> Result<String> {
        let cmd = self.command(tool, forwards)?;
        let mut text = describe(&cmd);
        match tool {
            Tool::AwsHop => {
                let _ = write!(
                    text,
                    "   (HOME={}; no AWS_* variables, no SSH_AUTH_SOCK)\n{}",
                    self.home.path().display(),
                    self.script(forwards, tool)
                );
            }
            Tool::AwsHopEice | Tool::AwsHopSsm | Tool::AwsHopSsm32k => {
                let _ = write!(
                    text,
                    "   (HOME={}; the lab's AWS_* variables and CA only)\n{}",
                    self.home.path().display(),
                    self.script(forwards, tool)
                );
            }
            Tool::Ssh | Tool::SshAesGcm => {}
        }
        Ok(text)
    }

    /// Starts `tool` with `forwards` and waits until every forward listens (aws-hop: its
    /// `READY` line; ssh: every port in LISTEN, which ssh reaches only after logging in).
    pub(crate) fn open(&self, tool: Tool, forwards: &[Forward]) -> Result<Tunnel> {
        let mut process = Spawned::start(self.command(tool, forwards)?)?;
        let ports = match tool {
            Tool::AwsHop | Tool::AwsHopEice | Tool::AwsHopSsm | Tool::AwsHopSsm32k => {
                let line = process.wait_line(
                    "aws-hop's READY line",
                    |l| l.starts_with("READY"),
                    READY_TIMEOUT,
                )?;
                let ports: Vec<u16> = line
                    .split_whitespace()
                    .skip(1)
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("bad READY line {line:?}"))?;
                if ports.len() != forwards.len() {
                    bail!(
                        "aws-hop printed {} ports for {} forwards: {line:?}",
                        ports.len(),
                        forwards.len()
                    );
                }
                ports
            }
            Tool::Ssh | Tool::SshAesGcm => {
                let ports: Vec<u16> = forwards.iter().map(|f| f.port).collect();
                let deadline = Instant::now() + READY_TIMEOUT;
                while !ports.iter().all(|&p| is_listening(p)) {
                    if let Some(status) = process.try_status() {
                        bail!(
                            "ssh exited ({status}) before listening\n{}",
                            process.report()
                        );
                    }
                    if Instant::now() >= deadline {
                        bail!(
                            "ssh not listening after {READY_TIMEOUT:?}\n{}",
                            process.report()
                        );
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                ports
            }
        };
        Ok(Tunnel {
            tool,
            ports,
            process,
        })
    }
}

/// A tool holding its forwards open.
#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) tool: Tool,
    /// The local port of each forward, in the order they were asked for.
    pub(crate) ports: Vec<u16>,
    pub(crate) process: Spawned,
}

impl Tunnel {
    /// The tool's process id (for CPU and memory figures).
    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Fails, with the tool's output, if it has exited.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.process.try_status() {
            bail!(
                "{} exited unexpectedly ({status})\n{}",
                self.tool.label(),
                self.process.report()
            );
        }
        Ok(())
    }

    /// Stops the tool cleanly (see [`stop`]); returns the stopped process, whose output
    /// stays readable (aws-hop's `STATS` line).
    pub(crate) fn close(mut self) -> Result<Spawned> {
        stop(self.tool, &mut self.process)?;
        Ok(self.process)
    }
}

/// Ends a running tool with its stop signal. aws-hop must then exit 0 having printed
/// `forwards closed`; ssh's status after SIGTERM is not checked.
pub(crate) fn stop(tool: Tool, process: &mut Spawned) -> Result<()> {
    let status = process.stop(tool.stop_signal(), Duration::from_secs(15))?;
    if tool.is_aws_hop() && !(status.success() && process.output_contains("forwards closed")) {
        bail!(
            "aws-hop did not close cleanly after SIGINT ({status})\n{}",
            process.report()
        );
    }
    Ok(())
}
