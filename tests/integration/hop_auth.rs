//! Authentication through a real ssh-agent: the default when no key is given, and the way
//! passphrase-protected keys are used (aws-hop never asks for a passphrase).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_hop_lab::{HopCmd, TestHome};

use crate::hop_common::bastion_dest;
use crate::lab;

/// A private `ssh-agent -D` on its own socket, killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Agent { child, socket }
    }

    fn add(&self, key: &Path) {
        let ok = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "ssh-add {} failed", key.display());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login_script(dest: &str, opts: &str) -> String {
    format!("print(bastion(\"{dest}\"{opts}).exec(\"echo agent-ok\").stdout);")
}

#[test]
fn the_agent_signs_when_no_key_file_is_available() {
    let lab = lab();
    let home = TestHome::new(lab);
    home.trust_lab_hosts();
    std::fs::remove_file(home.key_path()).unwrap(); // nothing in ~/.ssh to fall back on
    let agent = Agent::start(home.path());
    agent.add(&lab.ssh_key);
    HopCmd::new()
        .home(home.path())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .script(login_script(&bastion_dest(lab), ""))
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains("agent-ok");
    // Without the agent, the same run fails and says there was nothing to offer.
    HopCmd::new()
        .home(home.path())
        .script(login_script(&bastion_dest(lab), ""))
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("there was none to offer");
}

#[test]
fn a_passphrase_protected_key_is_used_through_the_agent() {
    let lab = lab();
    let home = TestHome::new(lab);
    home.trust_lab_hosts();
    // The lab key, protected by a passphrase.
    let locked = home.ssh_dir().join("locked_ed25519");
    std::fs::copy(&lab.ssh_key, &locked).unwrap();
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "correct horse", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(ok.success());
    let opts = format!(", #{{ key: \"{}\" }}", locked.display());
    // No agent: the error says what to do.
    HopCmd::new()
        .home(home.path())
        .script(login_script(&bastion_dest(lab), &opts))
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("protected by a passphrase")
        .assert_stderr_contains(&format!("ssh-add {}", locked.display()));
    // With the key in the agent, the same script works.
    let agent = Agent::start(home.path());
    agent.add(&lab.ssh_key);
    HopCmd::new()
        .home(home.path())
        .env("SSH_AUTH_SOCK", &agent.socket)
        .script(login_script(&bastion_dest(lab), &opts))
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains("agent-ok");
}
