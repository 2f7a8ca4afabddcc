//! [`Server`]: a `hop-lab serve MODE SINK_IP:0` in the lab's private subnet, the target
//! of the bench's forwards. The same server as the fixture's `TestServer`, started through
//! [`Spawned`] so that Ctrl-C stops it even in a lab this run did not bring up.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_hop_lab::{Lab, ServeMode};

use super::child::Spawned;

/// A running test server. Stopped on drop.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where it listens (SINK_IP and the port it was given).
    pub(crate) addr: SocketAddr,
    process: Spawned,
}

impl Server {
    /// Starts `hop-lab serve MODE SINK_IP:0` in the lab's private namespace and waits for
    /// its `listening on ADDR` line.
    pub(crate) fn start(lab: &Lab, mode: ServeMode) -> Result<Server> {
        let hop_lab = std::env::current_exe().context("cannot find the hop-lab executable")?;
        let mut cmd = lab.ns_command(&lab.ns_priv, hop_lab);
        cmd.arg("serve")
            .arg(mode.name())
            .arg(SocketAddr::from((lab.sink_ip, 0)).to_string());
        let process = Spawned::start(cmd)?;
        let line = process.wait_line(
            &format!("the {mode} server's `listening on` line"),
            |l| l.starts_with("listening on "),
            Duration::from_secs(10),
        )?;
        let addr = line
            .trim_start_matches("listening on ")
            .trim()
            .parse()
            .with_context(|| format!("bad address in {line:?}"))?;
        Ok(Server { addr, process })
    }

    /// What the server complained about so far (its stderr: one line per failed
    /// connection).
    pub(crate) fn complaints(&self) -> Vec<String> {
        self.process
            .lines()
            .into_iter()
            .filter(|l| !l.starts_with("listening on "))
            .collect()
    }
}
