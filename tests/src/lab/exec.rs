//! Running external programs: in the root namespace or, through `ip netns exec`, inside
//! one of the lab's namespaces.
//!
//! Every helper gives the child a null stdin and turns a failure into an error that names
//! the command line, its exit status and its stderr, so a failed `up` says what broke.
//! Long-lived processes are started by [`spawn_logged`]: stdio goes to a log file, never
//! to the caller's pipes (a daemon holding an inherited pipe would make a caller that
//! captures output, such as `Command::output()`, wait forever), and the process gets its
//! own process group so that Ctrl-C on a test run does not hit it (teardown handles it).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A command that runs `program` inside network namespace `ns` (`ip netns exec NS
/// PROGRAM`). `ip` execs the program, so the child's PID is the program's PID, and the
/// namespace's `/etc/netns/NS/hosts` is mounted over `/etc/hosts` for it.
pub fn ns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// The command line, for error messages: `ip netns exec hl207-pub /usr/sbin/sshd -f ...`.
pub fn describe(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `cmd` to completion with a null stdin; its stdout on success, otherwise an error
/// with the command line, the exit status and stderr.
pub(super) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    check(cmd, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on its stdin; like [`run`] otherwise.
pub(super) fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .with_context(|| format!("cannot write the input of `{}`", describe(cmd)))?;
    }
    let out = child.wait_with_output()?;
    check(cmd, &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Does `cmd` exit with status 0? Output is discarded.
pub(super) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd`, killing it if it runs longer than `timeout`. Returns the full output
/// whatever the exit status; a timeout is an error that includes what it printed so far.
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))?;
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "`{}` did not finish within {timeout:?}; stdout: {:?}; stderr: {:?}",
            describe(cmd),
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// Starts a long-lived `cmd` with stdin from /dev/null and stdout and stderr appended to
/// `log`, in a new process group. The caller owns the returned [`Child`].
pub(super) fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child> {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let file2 = file.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start `{}` (log: {})", describe(cmd), log.display()))
}

fn check(cmd: &Command, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    bail!("`{}` failed ({}): {said}", describe(cmd), out.status)
}

/// Reads a pipe to EOF on a thread, so a chatty child never blocks on a full pipe.
fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}
