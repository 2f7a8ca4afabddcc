//! PostgreSQL in the private namespace, at `POSTGRES_IP:5432`.
//!
//! PostgreSQL refuses to run as root, so `initdb`, `pg_ctl` and the bootstrap `psql` run
//! as the `postgres` user through `setpriv` (gotcha 8). `pg_hba.conf` gets a
//! `host all all N.0.0/16 scram-sha-256` line: tunnelled connections arrive from the
//! bastion's private address. `pg_ctl -w` starts the postmaster detached (in its own
//! session) and waits until it accepts connections. The first start creates the role
//! `hop`, the database `hopdb` owned by it, and a marker table `whoami`.
//!
//! The lab is throw-away, so durability is off (`initdb --no-sync`, `fsync=off`).
//! Files: `<dir>/postgres/{data,run,postgres.log,initdb.log}`.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use super::exec::{self, ns_command};
use super::progress::Progress;
use super::{Lab, process};

/// What `SELECT name FROM whoami` answers in the lab's PostgreSQL database `hopdb`.
pub const POSTGRES_MARKER: &str = "vpc-lab private postgres";

fn dir(lab: &Lab) -> PathBuf {
    lab.config.dir.join("postgres")
}

/// The postmaster's pid file (its first line is the PID).
pub(super) fn pid_file(lab: &Lab) -> PathBuf {
    dir(lab).join("data/postmaster.pid")
}

/// The server log: the file to read when PostgreSQL does not start.
pub(super) fn log_file(lab: &Lab) -> PathBuf {
    dir(lab).join("postgres.log")
}

/// The newest `/usr/lib/postgresql/<version>/bin` directory.
pub(super) fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `setpriv` prefix that runs a program as the postgres user.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(program)
        // The postgres user may not be able to enter the caller's working directory.
        .current_dir("/");
    cmd
}

/// Initialises (first time) and starts PostgreSQL unless it is running.
pub(super) fn up(lab: &Lab, progress: &Progress) -> Result<()> {
    if process::live_pid(&pid_file(lab)).is_some() {
        return Ok(());
    }
    progress.step(&format!(
        "postgres on {}:{}",
        lab.postgres_ip, lab.postgres_port
    ));
    let bin = bin_dir().context("PostgreSQL server not installed (run tests/setup.sh)")?;
    let d = dir(lab);
    let data = d.join("data");
    let run_dir = d.join("run");
    fs::create_dir_all(&run_dir)?;
    let fresh = !data.join("PG_VERSION").exists();
    if fresh {
        fs::create_dir_all(&data)?;
        chown_postgres(&d)?;
        let log = d.join("initdb.log");
        let out = File::create(&log)?;
        let status = as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .context("cannot run initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}); see {}", log.display());
        }
        let hba = data.join("pg_hba.conf");
        let mut text = fs::read_to_string(&hba)?;
        let _ = writeln!(text, "host all all {}.0.0/16 scram-sha-256", lab.config.net);
        fs::write(&hba, text)?;
        progress.step("postgres: cluster initialised");
    }
    chown_postgres(&d)?;
    // A postmaster killed hard leaves its pid file, and if init has not reaped it yet it
    // is a zombie, which PostgreSQL's own check (kill -0) takes for a live postmaster:
    // "lock file postmaster.pid already exists" (gotcha 10). It is dead (we checked
    // above): remove its lock files, the socket's too.
    if process::read_pid_file(&pid_file(lab)).is_some() {
        let socket = format!(".s.PGSQL.{}", lab.postgres_port);
        let socket_lock = format!("{socket}.lock");
        for file in [
            pid_file(lab),
            run_dir.join(socket),
            run_dir.join(socket_lock),
        ] {
            let _ = fs::remove_file(file);
        }
    }

    let log = log_file(lab);
    let options = format!(
        "-c listen_addresses={} -c port={} -c unix_socket_directories={} \
         -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        lab.postgres_ip,
        lab.postgres_port,
        run_dir.display()
    );
    let mut start = ns_command(&lab.ns_priv, "setpriv");
    start
        .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
        .arg(bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .current_dir("/")
        // pg_ctl leaves the postmaster holding its stdio: never give it our pipes.
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = start
        .stdin(Stdio::null())
        .status()
        .context("cannot run pg_ctl")?;
    if !status.success() {
        bail!("postgres did not start ({status}); see {}", log.display());
    }

    if fresh {
        let sql = format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}';\n\
             CREATE DATABASE {db} OWNER {user};\n\
             \\connect {db}\n\
             SET ROLE {user};\n\
             CREATE TABLE whoami (name text);\n\
             INSERT INTO whoami VALUES ('{POSTGRES_MARKER}');\n",
            user = lab.db_user,
            password = lab.db_password,
            db = lab.db_name,
        );
        exec::run_with_input(
            as_postgres("psql")
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&run_dir)
                .args([
                    "-p",
                    &lab.postgres_port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ]),
            sql.as_bytes(),
        )
        .context("cannot bootstrap the PostgreSQL role and database")?;
        progress.step("postgres: role, database and marker table created");
    }
    Ok(())
}

fn chown_postgres(path: &Path) -> Result<()> {
    exec::run(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path),
    )?;
    Ok(())
}

/// The running postmaster, as a stop target: INT is PostgreSQL's "fast" shutdown (TERM
/// is "smart" and waits for every client to leave).
pub(super) fn stop_target(lab: &Lab) -> Option<(u32, Signal, String)> {
    process::live_pid(&pid_file(lab)).map(|pid| (pid, Signal::SIGINT, "postgres".to_owned()))
}

impl Lab {
    /// Stops PostgreSQL (fast shutdown, then KILL after 10 s). Its data is kept.
    pub fn stop_postgres(&self) -> Result<()> {
        let progress = Progress::new(&self.config.prefix, "stop-postgres");
        process::stop(
            &stop_target(self).into_iter().collect::<Vec<_>>(),
            &progress,
        );
        Ok(())
    }

    /// Starts PostgreSQL again (no-op if it runs).
    pub fn start_postgres(&self) -> Result<()> {
        up(self, &Progress::new(&self.config.prefix, "start-postgres"))
    }
}
