//! Ctrl-C (and SIGTERM, SIGHUP) for the long subcommands, `demo` and `bench`.
//!
//! The lab itself is safe without this: the `hop-lab watch` guard that
//! [`OwnedLab`](aws_hop_lab::OwnedLab) starts tears it down once this process is gone.
//! What the guard cannot reach are the processes started in the root namespace (aws-hop,
//! ssh): an orphaned `aws-hop` would hold its forwards until someone kills it. So
//! [`install`] blocks the three signals and leaves them to one waiter thread
//! (`sigwait`: no handler, so no `unsafe`), which stops the children started through
//! [`spawn`] and exits with 130.
//!
//! A child inherits the signal mask of the thread that starts it, and the standard
//! library does not reset it: an aws-hop started with SIGINT blocked never sees Ctrl-C.
//! So [`spawn`] unblocks the signals in the calling thread for the moment of the spawn
//! (a signal in that window ends hop-lab the default way, and the guard still cleans up
//! the lab). For the same reason, call [`install`] only once the lab is up: the lab's
//! daemons must be started with a clean mask (`down` stops them with SIGTERM and SIGINT).

use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::thread;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

/// The blocked signals, once [`install`] ran.
static BLOCKED: OnceLock<SigSet> = OnceLock::new();

/// PIDs of the live children to stop on a signal. Written by [`spawn`] and
/// [`unregister`]; read once, by the waiter thread, just before it exits.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread it starts
/// later) and starts the thread that waits for them. Call it from the main thread while
/// no other thread runs.
pub(crate) fn install() -> Result<()> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block()
        .context("cannot block SIGINT, SIGTERM and SIGHUP")?;
    let _ = BLOCKED.set(set);
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(signal) = set.wait() else { return };
            let children = std::mem::take(&mut *lock());
            eprintln!(
                "\nhop-lab: {signal}: stopping the {} process(es) it started; \
                 the lab guard tears down a lab this run brought up",
                children.len()
            );
            for pid in children {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                }
            }
            std::process::exit(130);
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Starts `cmd` with the signals unblocked (see the module docs) and remembers the child
/// as one to stop on a signal.
pub(crate) fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let blocked = BLOCKED.get();
    if let Some(set) = blocked {
        set.thread_unblock().map_err(io::Error::from)?;
    }
    let child = cmd.spawn();
    if let Some(set) = blocked {
        set.thread_block().map_err(io::Error::from)?;
    }
    let child = child?;
    lock().push(child.id());
    Ok(child)
}

/// Forgets `pid` (it has exited, or was stopped).
pub(crate) fn unregister(pid: u32) {
    lock().retain(|&p| p != pid);
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
