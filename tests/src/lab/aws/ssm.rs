//! The fake SSM Session Manager of the lab (`tests/aws_fakes/ssm_*.py`, written from
//! `protocols/ssm.md` only): the session API in the front, the Message Gateway Service on
//! `N.2.4:443` (`ssmmessages.<region>.amazonaws.com`), and web-1's agent, a process in the
//! private subnet's namespace bound to the instance's address.
//!
//! Tests steer it through its control API (plain HTTP on `N.2.4:8080`): see
//! [`AwsLab::ssm_control`], [`AwsLab::ssm_stats`] and `book/src/lab.md`. The controls are
//! global to the lab, so a test that sets them (or asserts on counters) holds
//! [`AwsLab::ssm_lock`], which serializes such tests within the test process and resets
//! the fake on both ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::super::exec::{self, ns_command};
use super::super::progress::Progress;
use super::super::{Lab, process};
use super::{AwsLab, VENV};

/// Serializes the tests that change the fake's controls (one test process shares one lab).
static SSM_LOCK: Mutex<()> = Mutex::new(());

/// Held by a test that changes the SSM fake's controls or reads its counters: see
/// [`AwsLab::ssm_lock`]. Resets the fake (controls and counters) when dropped.
pub struct SsmLock<'a> {
    aws: &'a AwsLab,
    _guard: MutexGuard<'static, ()>,
}

impl Drop for SsmLock<'_> {
    fn drop(&mut self) {
        let _ = self.aws.ssm_control(r#"{"reset": true}"#);
    }
}

impl AwsLab {
    /// The port of the SSM fake's control API on [`AwsLab::ssm_ip`].
    pub const SSM_CONTROL_PORT: u16 = 8080;

    /// `ssmmessages.<region>.amazonaws.com`, the gateway's name (it resolves to
    /// [`AwsLab::ssm_ip`] in the laptop's hosts file).
    pub fn ssm_messages_host(&self) -> String {
        format!("ssmmessages.{}.amazonaws.com", self.region)
    }

    pub(super) fn ssm_agent_pid_file(&self) -> std::path::PathBuf {
        self.dir.join("ssm-agent.pid")
    }

    /// Sends `json` (an object of controls, see `book/src/lab.md`) to the SSM fake's
    /// control API; returns the controls now in force (JSON). An unknown key is an error.
    ///
    /// ```no_run
    /// # let lab = aws_hop_lab::Lab::new(aws_hop_lab::LabConfig::builtin())?;
    /// lab.aws.ssm_control(r#"{"drop_to_client": 0.1, "seed": 7}"#)?;
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn ssm_control(&self, json: &str) -> Result<String> {
        self.ssm_http("POST", "/control", json)
    }

    /// The SSM fake's counters, controls, online agents and the sessions started since
    /// the last reset, as JSON text (Python's `json.dumps(indent=1)`: `"key": value`).
    pub fn ssm_stats(&self) -> Result<String> {
        self.ssm_http("GET", "/stats", "")
    }

    /// One top-level counter of [`AwsLab::ssm_stats`] (e.g. `dropped_to_client`).
    pub fn ssm_counter(&self, key: &str) -> Result<u64> {
        let stats = self.ssm_stats()?;
        let re = regex::Regex::new(&format!(r#""{}": (\d+)"#, regex::escape(key)))?;
        let caps = re
            .captures(&stats)
            .with_context(|| format!("no counter {key:?} in the SSM stats: {stats}"))?;
        Ok(caps[1].parse()?)
    }

    /// Takes the process-wide SSM lock (tests that change controls or assert on counters
    /// run one at a time) and resets the fake; dropping the guard resets it again.
    pub fn ssm_lock(&self) -> Result<SsmLock<'_>> {
        let guard = SSM_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.ssm_control(r#"{"reset": true}"#)?;
        Ok(SsmLock {
            aws: self,
            _guard: guard,
        })
    }

    fn ssm_http(&self, method: &str, path: &str, body: &str) -> Result<String> {
        let addr = SocketAddr::from((self.ssm_ip, Self::SSM_CONTROL_PORT));
        let what = format!("SSM control {method} http://{addr}{path}");
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("{what}: cannot connect (is the AWS side of the lab up?)"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .with_context(|| what.clone())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .with_context(|| what.clone())?;
        let (head, text) = answer
            .split_once("\r\n\r\n")
            .with_context(|| format!("{what}: bad answer {answer:?}"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            bail!(
                "{what}: {}: {text}",
                head.lines().next().unwrap_or_default()
            );
        }
        Ok(text.to_owned())
    }
}

impl Lab {
    /// Runs `ssm_probe.py ARGS...` (boto3 + websockets, a Session Manager client
    /// independent of aws-hop) as a client on the laptop, like [`Lab::aws_client`].
    /// Returns its output whatever the exit status.
    pub fn ssm_probe<I, S>(&self, args: I) -> Result<std::process::Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.python_client("ssm_probe.py", args)
    }
}

/// Starts web-1's agent in the private namespace unless it runs, and waits until the
/// gateway lists it online.
pub(super) fn agent_up(lab: &Lab, progress: &Progress) -> Result<()> {
    let aws = &lab.aws;
    let pid_file = aws.ssm_agent_pid_file();
    if process::live_pid(&pid_file).is_some() {
        return Ok(());
    }
    let ids = aws.ids()?;
    let web1 = ids.get("WEB1_ID");
    progress.step(&format!(
        "aws: ssm agent of {web1} in {} ({})",
        lab.ns_priv, lab.instance_ip
    ));
    let mut cmd = ns_command(&lab.ns_priv, Path::new(VENV).join("bin/python"));
    cmd.env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .arg(aws.fakes_dir().join("ssm_agent.py"))
        .arg(aws.config_file())
        .arg(web1)
        .arg(lab.instance_ip.to_string());
    let log = lab.log_dir().join("ssm-agent.log");
    let agent = exec::spawn_logged(&mut cmd, &log)?;
    std::fs::write(&pid_file, format!("{}\n", agent.id()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let online = aws.ssm_stats().is_ok_and(|stats| {
            stats
                .split_once("\"agents_online\": [")
                .and_then(|(_, rest)| rest.split_once(']'))
                .is_some_and(|(list, _)| list.contains(&format!("\"{web1}\"")))
        });
        if online {
            return Ok(());
        }
        if process::live_pid(&pid_file).is_none() {
            bail!("the ssm agent exited (see {})", log.display());
        }
        if Instant::now() > deadline {
            bail!(
                "the ssm agent did not come online in 20 s (see {})",
                log.display()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}
