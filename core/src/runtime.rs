//! The one tokio runtime, and cancellation.
//!
//! Rhai runs on the calling (REPL or `run`) thread, never inside a tokio task. Native bindings
//! that do I/O call [`Runtime::block_on`], which drives the future on the shared multi-thread
//! runtime and races it against the current [`CancellationToken`], so Ctrl-C interrupts any
//! wait. Long-lived work (forwards, SSH sessions) is spawned on the runtime and owned by handles.
//!
//! Ctrl-C handling: [`Runtime::new`] registers for SIGINT before it returns, so the handler is
//! in place before the line editor saves (and later restores) the signal's disposition; a task
//! then listens. Each press cancels the *current* token and sets the interrupt flag that the
//! Rhai engine polls in `on_progress`. The REPL calls [`Runtime::reset_interrupt`] before each
//! line, so a Ctrl-C ends only the line that was running; forwards opened earlier keep running.
//!
//! SIGHUP and SIGTERM end the program cleanly instead of killing it: OpenSSH sends SIGHUP to
//! its ProxyCommand when ssh exits, and `kill` sends SIGTERM to a script holding forwards.
//! Either one interrupts like Ctrl-C, for good ([`Runtime::reset_interrupt`] no longer
//! clears it), and cancels [`Runtime::terminated`]; the front then closes forwards and hops
//! as it does at a normal exit (SSM sessions are terminated, WebSockets closed with 1000). If
//! the main thread does not finish within [`TERMINATE_GRACE`] (the REPL blocked reading a
//! line), the hook set with [`Runtime::on_terminate`] runs and the process exits.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The shared runtime plus the current cancellation state.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    /// Owned here; dropped (and all tasks with it) when the last clone goes.
    rt: tokio::runtime::Runtime,
    /// Cancelled by Ctrl-C; replaced by `reset_interrupt`. Waits clone it under the lock and
    /// then wait on the clone, so the lock is never held across an await.
    cancel: Mutex<CancellationToken>,
    /// Set by Ctrl-C, read by the Rhai engine's `on_progress` to stop running scripts.
    interrupted: AtomicBool,
    /// Cancelled once by SIGHUP or SIGTERM; never reset.
    terminate: CancellationToken,
    /// The clean-up to run when the main thread does not end in time after SIGHUP/SIGTERM.
    on_terminate: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

/// How long the main thread has to close everything itself after SIGHUP or SIGTERM.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

impl Runtime {
    /// Builds the multi-thread runtime and installs the Ctrl-C listener. Also raises the
    /// open-files limit (see [`raise_open_files_limit`]).
    pub fn new() -> Result<Self> {
        raise_open_files_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("aws-hop-io")
            .build()
            .map_err(|e| Error::io("cannot start the I/O runtime", e))?;
        let this = Runtime {
            inner: Arc::new(Inner {
                rt,
                cancel: Mutex::new(CancellationToken::new()),
                interrupted: AtomicBool::new(false),
                terminate: CancellationToken::new(),
                on_terminate: Mutex::new(None),
            }),
        };
        // Registered here, on this thread, before anything else can touch SIGINT. rustyline
        // saves the SIGINT disposition when it starts reading a line and restores it after;
        // had it saved the default before our handler went in, the restore would remove ours
        // and the next Ctrl-C would kill the process instead of interrupting the line.
        let mut sigint = {
            let _guard = this.inner.rt.enter();
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| Error::io("cannot listen for Ctrl-C", e))?
        };
        let weak = Arc::downgrade(&this.inner);
        this.inner.rt.spawn(async move {
            while sigint.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { break };
                inner.interrupted.store(true, Ordering::SeqCst);
                inner.cancel.lock().expect("cancel lock").cancel();
            }
        });
        let (mut sighup, mut sigterm) = {
            let _guard = this.inner.rt.enter();
            let listen = |kind| {
                tokio::signal::unix::signal(kind)
                    .map_err(|e| Error::io("cannot listen for SIGHUP/SIGTERM", e))
            };
            (
                listen(tokio::signal::unix::SignalKind::hangup())?,
                listen(tokio::signal::unix::SignalKind::terminate())?,
            )
        };
        let weak = Arc::downgrade(&this.inner);
        this.inner.rt.spawn(async move {
            let name = tokio::select! {
                _ = sighup.recv() => "SIGHUP",
                _ = sigterm.recv() => "SIGTERM",
            };
            let Some(inner) = weak.upgrade() else { return };
            tracing::info!("{name}: closing forwards and sessions, then exiting");
            inner.interrupted.store(true, Ordering::SeqCst);
            inner.terminate.cancel();
            inner.cancel.lock().expect("cancel lock").cancel();
            let weak = Arc::downgrade(&inner);
            drop(inner);
            // A plain thread: the hook blocks on the runtime, which a task must not do.
            std::thread::spawn(move || {
                std::thread::sleep(TERMINATE_GRACE);
                if let Some(inner) = weak.upgrade() {
                    if let Some(hook) = inner.on_terminate.lock().expect("hook lock").as_ref() {
                        hook();
                    }
                    std::process::exit(if name == "SIGHUP" { 129 } else { 143 });
                }
            });
        });
        Ok(this)
    }

    /// Sets the clean-up that runs when SIGHUP or SIGTERM came and the main thread has not
    /// ended [`TERMINATE_GRACE`] later (closing forwards and hops).
    pub fn on_terminate(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self.inner.on_terminate.lock().expect("hook lock") = Some(Box::new(hook));
    }

    /// Cancelled when SIGHUP or SIGTERM arrives; never reset.
    pub fn terminated(&self) -> CancellationToken {
        self.inner.terminate.clone()
    }

    /// True once SIGHUP or SIGTERM arrived.
    pub fn terminating(&self) -> bool {
        self.inner.terminate.is_cancelled()
    }

    /// A handle for spawning tasks.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.inner.rt.handle()
    }

    /// Spawns a task on the runtime.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.rt.spawn(fut)
    }

    /// The token that the current wait must honour.
    pub fn cancel_token(&self) -> CancellationToken {
        self.inner.cancel.lock().expect("cancel lock").clone()
    }

    /// True once Ctrl-C was pressed since the last [`Runtime::reset_interrupt`].
    pub fn interrupted(&self) -> bool {
        self.inner.interrupted.load(Ordering::SeqCst)
    }

    /// Starts a fresh cancellation scope (the REPL calls this before each line). After SIGHUP
    /// or SIGTERM it does nothing: the program is ending.
    pub fn reset_interrupt(&self) {
        if self.terminating() {
            return;
        }
        self.inner.interrupted.store(false, Ordering::SeqCst);
        *self.inner.cancel.lock().expect("cancel lock") = CancellationToken::new();
    }

    /// Runs `fut` to completion on the runtime from a non-runtime thread, or returns
    /// [`Error::Interrupted`] as soon as Ctrl-C is pressed.
    pub fn block_on<T>(&self, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let token = self.cancel_token();
        self.inner.rt.block_on(async move {
            tokio::select! {
                r = fut => r,
                () = token.cancelled() => Err(Error::Interrupted),
            }
        })
    }

    /// Waits until Ctrl-C (used by `wait()` and `aws-hop run` holding forwards open).
    pub fn wait_for_interrupt(&self) {
        let token = self.cancel_token();
        self.inner.rt.block_on(token.cancelled());
    }

    /// Sleeps for `d`, or less if interrupted.
    pub fn sleep(&self, d: Duration) -> Result<()> {
        self.block_on(async move {
            tokio::time::sleep(d).await;
            Ok(())
        })
    }
}

/// Raises the soft limit on open files to the hard limit, as servers do.
///
/// Every forwarded connection holds two descriptors (the client socket, and the stream to the
/// hop); a forward serving a connection pool or a load test passes the common soft limit of
/// 1024 long before the hard limit. Failure is harmless: the soft limit simply stays.
pub fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::debug!("could not raise the open-files limit from {soft} to {hard}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when this process catches SIGINT (bit 1 of `SigCgt` in /proc/self/status).
    fn catches_sigint() -> bool {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .expect("SigCgt line");
        u64::from_str_radix(mask.trim(), 16).unwrap() & (1 << (libc::SIGINT - 1)) != 0
    }

    /// rustyline saves the SIGINT disposition as soon as the REPL reads its first line and
    /// restores it after; a handler installed later (by a task that had not run yet) is undone
    /// by that restore, and the next Ctrl-C kills the process. So the handler must be in place
    /// when `new` returns. Checked in a fresh process: in this one, other tests may already
    /// have installed it.
    #[test]
    fn the_ctrl_c_handler_is_in_place_when_new_returns() {
        if std::env::var_os("AWS_HOP_SIGINT_CHILD").is_some() {
            assert!(
                !catches_sigint(),
                "the child starts with the default action"
            );
            let _rt = Runtime::new().unwrap();
            assert!(
                catches_sigint(),
                "no SIGINT handler when Runtime::new returned"
            );
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "runtime::tests::the_ctrl_c_handler_is_in_place_when_new_returns",
                "--test-threads=1",
            ])
            .env("AWS_HOP_SIGINT_CHILD", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
