//! MariaDB in the private namespace, at `MARIADB_IP:3306`.
//!
//! Initialised once per state directory with `mariadb-install-db --no-defaults` (ignoring
//! the system's `/etc/mysql`), then run as `mariadbd --no-defaults --user=mysql` bound to
//! the lab address only. The first start bootstraps, over the Unix socket as
//! `root@localhost`, the user `hop@'%'` (tunnelled connections arrive from the bastion's
//! private address, gotcha 8), the database `hopdb` and the marker table `whoami`.
//!
//! Files: `<dir>/mariadb/{data,run/mariadbd.pid,run/mysqld.sock,error.log,install.log}`.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;

use super::exec::{self, ns_command};
use super::progress::Progress;
use super::{Lab, netns, process};

/// What `SELECT name FROM hopdb.whoami` answers on the lab's MariaDB.
pub const MARIADB_MARKER: &str = "vpc-lab private mariadb";

fn dir(lab: &Lab) -> PathBuf {
    lab.config.dir.join("mariadb")
}

/// mariadbd's pid file.
pub(super) fn pid_file(lab: &Lab) -> PathBuf {
    dir(lab).join("run/mariadbd.pid")
}

/// mariadbd's error log: the file to read when it does not start.
pub(super) fn error_log(lab: &Lab) -> PathBuf {
    dir(lab).join("error.log")
}

/// Initialises (first time) and starts mariadbd unless it is running.
pub(super) fn up(lab: &Lab, progress: &Progress) -> Result<()> {
    if process::live_pid(&pid_file(lab)).is_some() {
        return Ok(());
    }
    progress.step(&format!(
        "mariadb on {}:{}",
        lab.mariadb_ip, lab.mariadb_port
    ));
    let d = dir(lab);
    let data = d.join("data");
    let sock = d.join("run/mysqld.sock");
    fs::create_dir_all(d.join("run"))?;
    let fresh = !data.join("mysql").exists();
    if fresh {
        fs::create_dir_all(&data)?;
        chown_mysql(&d)?;
        let log = d.join("install.log");
        let out = File::create(&log)?;
        let status = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", data.display()))
            .arg("--auth-root-authentication-method=socket")
            .arg("--skip-test-db")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("cannot run mariadb-install-db")?;
        if !status.success() {
            bail!(
                "mariadb-install-db failed ({status}); see {}",
                log.display()
            );
        }
        progress.step("mariadb: datadir initialised");
    }
    chown_mysql(&d)?;

    let error_log = error_log(lab);
    // Every tunnelled connection arrives from one address (the bastion's), and readiness
    // probes connect and close without a handshake; a high max_connect_errors keeps
    // MariaDB's host cache from blocking that address. --skip-name-resolve avoids
    // reverse-DNS lookups of it.
    let mut child = exec::spawn_logged(
        ns_command(&lab.ns_priv, "/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--pid-file={}", pid_file(lab).display()))
            .arg(format!("--bind-address={}", lab.mariadb_ip))
            .arg(format!("--port={}", lab.mariadb_port))
            .arg("--skip-name-resolve")
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--max-connect-errors=1000000")
            .arg(format!("--log-error={}", error_log.display())),
        &d.join("mariadbd.out"),
    )?;
    let addr = SocketAddr::from((lab.mariadb_ip, lab.mariadb_port));
    netns::wait_tcp(&lab.ns_priv, addr, Duration::from_mins(1), || {
        match child.try_wait() {
            Ok(Some(status)) => Some(format!("mariadbd exited ({status})")),
            _ => None,
        }
    })
    .map_err(|e| anyhow!("mariadbd did not come up: {e}; see {}", error_log.display()))?;

    if fresh {
        let sql = format!(
            "CREATE DATABASE IF NOT EXISTS {db};\n\
             CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{password}';\n\
             GRANT ALL ON {db}.* TO '{user}'@'%';\n\
             CREATE TABLE IF NOT EXISTS {db}.whoami (name VARCHAR(64));\n\
             INSERT INTO {db}.whoami VALUES ('{MARIADB_MARKER}');\n",
            db = lab.db_name,
            user = lab.db_user,
            password = lab.db_password,
        );
        // The Unix socket is a file, so it is reachable from the root namespace.
        exec::run_with_input(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg("-S")
                .arg(&sock)
                .arg("-uroot"),
            sql.as_bytes(),
        )
        .context("cannot bootstrap the MariaDB user and database")?;
        progress.step("mariadb: user, database and marker table created");
    }
    Ok(())
}

fn chown_mysql(path: &std::path::Path) -> Result<()> {
    exec::run(Command::new("chown").args(["-R", "mysql:mysql"]).arg(path))?;
    Ok(())
}

/// The running mariadbd, as a stop target for [`process::stop`].
pub(super) fn stop_target(lab: &Lab) -> Option<(u32, Signal, String)> {
    process::live_pid(&pid_file(lab)).map(|pid| (pid, Signal::SIGTERM, "mariadbd".to_owned()))
}

impl Lab {
    /// Stops MariaDB (TERM, then KILL after 10 s). Its data is kept.
    pub fn stop_mariadb(&self) -> Result<()> {
        let progress = Progress::new(&self.config.prefix, "stop-mariadb");
        process::stop(
            &stop_target(self).into_iter().collect::<Vec<_>>(),
            &progress,
        );
        Ok(())
    }

    /// Starts MariaDB again (no-op if it runs).
    pub fn start_mariadb(&self) -> Result<()> {
        up(self, &Progress::new(&self.config.prefix, "start-mariadb"))
    }
}
