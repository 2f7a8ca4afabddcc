//! The local account that SSH logins to the bastion and the instance use.
//!
//! `up` creates it if missing and records that in `<dir>/.created-user`, so `down`
//! removes only an account the lab made. The password field is set to `*`: `useradd`
//! leaves `!` (locked), and with `UsePAM no` sshd refuses locked accounts even for key
//! authentication (gotcha 5).
//!
//! `useradd`, `usermod` and `userdel` lock `/etc/passwd`; two labs coming up at once may
//! meet that lock, so these commands are retried for a few seconds.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use anyhow::Result;

use super::Lab;
use super::exec;

/// Does the account exist (`getent passwd`)?
pub(super) fn exists(user: &str) -> bool {
    exec::succeeds(Command::new("getent").args(["passwd", user]))
}

fn marker(lab: &Lab) -> PathBuf {
    lab.config.dir.join(".created-user")
}

/// Runs a shadow-utils command, retrying while another one holds the passwd lock.
fn run_locked(mut make: impl FnMut() -> Command) -> Result<String> {
    let mut attempt = 0;
    loop {
        match exec::run(&mut make()) {
            Err(e) if attempt < 50 && format!("{e:#}").contains("lock") => {
                attempt += 1;
                thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// Creates the account if needed and makes it usable for key logins.
pub(super) fn up(lab: &Lab) -> Result<()> {
    let user = &lab.user;
    if !exists(user) {
        run_locked(|| {
            let mut cmd = Command::new("useradd");
            cmd.args(["--create-home", "--shell", "/bin/bash", user]);
            cmd
        })?;
        fs::write(marker(lab), format!("{user}\n"))?;
    }
    run_locked(|| {
        let mut cmd = Command::new("usermod");
        cmd.args(["-p", "*", user]);
        cmd
    })?;
    Ok(())
}

/// Removes the account (and its home) if `up` created it.
pub(super) fn down(lab: &Lab) -> Result<()> {
    if !marker(lab).exists() || !exists(&lab.user) {
        return Ok(());
    }
    let user = &lab.user;
    run_locked(|| {
        let mut cmd = Command::new("userdel");
        cmd.args(["-r", user]);
        cmd
    })
    .or_else(|e| {
        // userdel -r fails (status 12) when it cannot remove the mail spool or home, but
        // the account itself is gone by then; anything else is a real failure.
        if exists(user) {
            Err(e)
        } else {
            Ok(String::new())
        }
    })?;
    Ok(())
}
