//! [`Spawned`]: a child process of `demo` or `bench` (aws-hop, ssh, a test server) with
//! its output captured line by line, started through `interrupt::spawn` (so Ctrl-C
//! stops it, and it sees Ctrl-C itself), and killed on drop.
//!
//! Unlike the fixture's `HopProcess`, nothing here panics: every wait has a time limit
//! and returns an error that carries the command line and everything the child printed.
//! The child stays in hop-lab's process group, so Ctrl-C in a terminal reaches it too.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_hop_lab::lab::describe;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::interrupt;

/// Lines of both streams in arrival order (`true` = stderr), and how many streams are
/// still open. Written by the two reader threads; read by the owner.
#[derive(Debug, Default)]
struct Lines {
    lines: Vec<(bool, String)>,
    open: usize,
}

/// The captured lines plus a condition variable signalled on every new line and at EOF.
type Shared = Arc<(Mutex<Lines>, Condvar)>;

/// A running child; see the module docs.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: Child,
    command: String,
    output: Shared,
    status: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `cmd` with stdin from /dev/null and stdout and stderr captured.
    pub(crate) fn start(mut cmd: Command) -> Result<Spawned> {
        let command = describe(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            interrupt::spawn(&mut cmd).with_context(|| format!("cannot start `{command}`"))?;
        let output: Shared = Arc::default();
        if let Some(out) = child.stdout.take() {
            read_lines(out, false, &output);
        }
        if let Some(err) = child.stderr.take() {
            read_lines(err, true, &output);
        }
        Ok(Spawned {
            child,
            command,
            output,
            status: None,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for a line (stdout or stderr) for which `wanted` is true,
    /// and returns the first such line. An error, with all output so far, if the time
    /// runs out or the output ends first.
    pub(crate) fn wait_line(
        &self,
        what: &str,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.output;
        let mut state = lock_lines(lock);
        loop {
            if let Some((_, line)) = state.lines.iter().find(|(_, line)| wanted(line)) {
                return Ok(line.clone());
            }
            let now = Instant::now();
            if state.open == 0 || now >= deadline {
                let why = if state.open == 0 {
                    "its output ended (it exited?)"
                } else {
                    "timed out"
                };
                drop(state);
                bail!("waiting {timeout:?} for {what}: {why}\n{}", self.report());
            }
            state = changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Does any line so far contain `needle`?
    pub(crate) fn output_contains(&self, needle: &str) -> bool {
        lock_lines(&self.output.0)
            .lines
            .iter()
            .any(|(_, line)| line.contains(needle))
    }

    /// The lines so far that contain `needle`.
    pub(crate) fn lines_containing(&self, needle: &str) -> Vec<String> {
        lock_lines(&self.output.0)
            .lines
            .iter()
            .filter(|(_, line)| line.contains(needle))
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// All lines so far, stdout and stderr, in arrival order.
    pub(crate) fn lines(&self) -> Vec<String> {
        lock_lines(&self.output.0)
            .lines
            .iter()
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// All lines so far, in arrival order, each prefixed with `out| ` or `err| `.
    pub(crate) fn merged_output(&self) -> String {
        lock_lines(&self.output.0)
            .lines
            .iter()
            .fold(String::new(), |mut text, (stderr, line)| {
                let stream = if *stderr { "err" } else { "out" };
                let _ = writeln!(text, "{stream}| {line}");
                text
            })
    }

    /// The command line and all output so far, for an error message.
    pub(crate) fn report(&self) -> String {
        format!(
            "command: {}\n--- output ---\n{}--------------",
            self.command,
            self.merged_output()
        )
    }

    /// Sends `signal` to the process (not its group).
    pub(crate) fn signal(&self, signal: Signal) {
        if self.status.is_none()
            && let Ok(pid) = i32::try_from(self.child.id())
        {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// The exit status if the process has exited.
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exited(status);
        }
        self.status
    }

    /// Waits up to `timeout` for the process to exit, then up to 2 s more for its output
    /// to end. On timeout it is killed and the result is an error.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("did not exit within {timeout:?}, killed\n{}", self.report());
            }
            thread::sleep(Duration::from_millis(5));
        };
        let (lock, changed) = &*self.output;
        let end = Instant::now() + Duration::from_secs(2);
        let mut state = lock_lines(lock);
        while state.open > 0 && Instant::now() < end {
            state = changed
                .wait_timeout(state, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(status)
    }

    /// Sends `signal`, then waits up to `timeout` as [`Spawned::wait_exit`] does.
    pub(crate) fn stop(&mut self, signal: Signal, timeout: Duration) -> Result<ExitStatus> {
        self.signal(signal);
        self.wait_exit(timeout)
    }

    /// SIGKILL and reap (no-op once it has exited).
    pub(crate) fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exited(status);
            }
        }
    }

    fn exited(&mut self, status: ExitStatus) {
        self.status = Some(status);
        interrupt::unregister(self.child.id());
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
        interrupt::unregister(self.child.id());
    }
}

fn lock_lines(lock: &Mutex<Lines>) -> MutexGuard<'_, Lines> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `pipe` line by line into `output` on a thread, until EOF.
fn read_lines(pipe: impl Read + Send + 'static, stderr: bool, output: &Shared) {
    lock_lines(&output.0).open += 1;
    let output = Arc::clone(output);
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).unwrap_or(0);
            let (lock, changed) = &*output;
            let mut state = lock_lines(lock);
            if n == 0 {
                state.open -= 1;
                changed.notify_all();
                return;
            }
            let text = String::from_utf8_lossy(&line);
            state
                .lines
                .push((stderr, text.trim_end_matches(['\n', '\r']).to_owned()));
            changed.notify_all();
        }
    });
}
