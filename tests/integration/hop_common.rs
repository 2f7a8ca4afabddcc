//! Helpers shared by the aws-hop end-to-end tests.

use std::net::Ipv4Addr;
use std::time::Duration;

use std::path::PathBuf;

use aws_hop_lab::fixture::ScratchDir;
use aws_hop_lab::{HopCmd, HopOutput, HopProcess, Lab, TestHome};

/// How long a script may take to print its READY line.
pub(crate) const READY: Duration = Duration::from_secs(30);

/// A HOME whose ~/.ssh has the lab key (as id_ed25519) and the lab's host keys, so scripts
/// use aws-hop's defaults exactly as a user would.
pub(crate) fn trusted_home(lab: &Lab) -> TestHome {
    let home = TestHome::new(lab);
    home.trust_lab_hosts();
    home
}

/// `user@bastion-ip`.
pub(crate) fn bastion_dest(lab: &Lab) -> String {
    format!("{}@{}", lab.user, lab.bastion_ip)
}

/// Waits for the script's `READY a b ...` line and returns the numbers on it.
pub(crate) fn ready_ports(proc: &mut HopProcess) -> Vec<u16> {
    let line = proc.wait_for_line("READY", READY);
    line.split_whitespace()
        .skip_while(|w| *w != "READY")
        .skip(1)
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("bad READY line {line:?}"))
        })
        .collect()
}

/// Starts `script` against the lab's AWS with HOME=`home` and waits for its READY line:
/// the process and the ports on that line.
pub(crate) fn spawn_aws_ready(
    lab: &Lab,
    home: &TestHome,
    script: impl Into<String>,
) -> (HopProcess, Vec<u16>) {
    let mut proc = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(script)
        .spawn();
    let ports = ready_ports(&mut proc);
    (proc, ports)
}

/// Asserts that the script's `PREFIX ...` line (the output of `hostname -I` on the far
/// side) lists `ip`: the command ran on that host. The lab's hosts share the machine's
/// hostname (a network namespace has no UTS namespace of its own), so addresses are what
/// tell them apart.
#[track_caller]
pub(crate) fn assert_ran_on(out: &HopOutput, prefix: &str, ip: Ipv4Addr) {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {prefix} line\n{}", out.report()));
    assert!(
        line.split_whitespace().any(|w| w == ip.to_string()),
        "the command did not run on {ip}: {prefix} {line}\n{}",
        out.report()
    );
}

/// Ctrl-C, then the script must exit 0 having closed its forwards.
pub(crate) fn interrupt_and_expect_clean_exit(mut proc: HopProcess) {
    proc.interrupt();
    let out = proc.wait_exit(Duration::from_secs(15));
    out.assert_success();
    out.assert_stderr_contains("forwards closed");
}

/// Writes `text` to `name` in `dir`; returns the path.
pub(crate) fn write_file(dir: &ScratchDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}
