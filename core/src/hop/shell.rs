//! `hop.shell()`: hand the terminal to a remote login shell.
//!
//! Requests a pty with the local `TERM` and window size, puts the local terminal in raw mode
//! (so Ctrl-C, Ctrl-D and arrow keys go to the remote side), follows window resizes (SIGWINCH),
//! and returns the remote exit status when the shell ends. The terminal is restored on every
//! path, including errors.
//!
//! Keyboard input is read from a separate non-blocking `/dev/tty` handle rather than stdin, so
//! that no reader is left behind on stdin to steal the REPL's next keystroke after the shell ends.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use nix::sys::termios::{self, SetArg, Termios};
use russh::ChannelMsg;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ssh::SshHop;
use crate::error::{Error, Result};

/// Restores the terminal mode it saved, when dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    pub(crate) fn enable() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSADRAIN, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The local window size, or 80x24.
pub(crate) fn window_size() -> (u32, u32) {
    terminal_size::terminal_size().map_or((80, 24), |(w, h)| (u32::from(w.0), u32::from(h.0)))
}

/// Keyboard input: a non-blocking `/dev/tty` when stdin is a terminal, stdin otherwise.
pub(crate) enum Input {
    Tty(AsyncFd<std::fs::File>),
    Pipe(tokio::io::Stdin),
    Closed,
}

impl Input {
    pub(crate) fn open() -> Input {
        if std::io::stdin().is_terminal() {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open("/dev/tty")
            {
                // `AsyncFd::new` is deprecated in favour of the `unsafe fn register`, whose
                // condition is that the fd outlives the registration. The AsyncFd owns the
                // File here, which guarantees exactly that, and this crate forbids unsafe.
                #[allow(deprecated)]
                if let Ok(fd) = AsyncFd::new(f) {
                    return Input::Tty(fd);
                }
            }
        }
        Input::Pipe(tokio::io::stdin())
    }

    /// Reads some bytes; 0 means end of input.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::Tty(fd) => loop {
                let mut guard = fd.readable().await?;
                match guard.try_io(|inner| std::io::Read::read(&mut inner.get_ref(), buf)) {
                    Ok(r) => return r,
                    Err(_would_block) => {}
                }
            },
            Input::Pipe(s) => s.read(buf).await,
            Input::Closed => std::future::pending().await,
        }
    }
}

/// Runs an interactive login shell on `hop`; returns its exit status.
pub async fn interactive(hop: &SshHop) -> Result<i64> {
    let label = hop.describe();
    let ssh_err = |e| Error::Ssh {
        host: label.clone(),
        source: e,
    };
    let ch = hop.open_session_channel().await?;
    let (cols, rows) = window_size();
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into());
    ch.request_pty(true, &term, cols, rows, 0, 0, &[])
        .await
        .map_err(ssh_err)?;
    ch.request_shell(true).await.map_err(ssh_err)?;
    let (mut rx, tx) = ch.split();

    let _raw = RawMode::enable();
    let mut input = Input::open();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| Error::io("watching window size", e))?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 8192];
    let mut status = -1i64;

    loop {
        tokio::select! {
            msg = rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    let _ = stdout.write_all(&data).await;
                    let _ = stdout.flush().await;
                }
                Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let _ = stderr.write_all(&data).await;
                    let _ = stderr.flush().await;
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = i64::from(exit_status),
                Some(ChannelMsg::ExitSignal { .. }) => status = 128 + 9,
                Some(ChannelMsg::Eof | ChannelMsg::Close) | None => {
                    if matches!(msg, Some(ChannelMsg::Eof)) { continue; }
                    break;
                }
                Some(_) => {}
            },
            n = input.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = tx.eof().await;
                    input = Input::Closed;
                }
                Ok(n) => {
                    if tx.data(&buf[..n]).await.is_err() { break; }
                }
            },
            _ = winch.recv() => {
                let (c, r) = window_size();
                let _ = tx.window_change(c, r, 0, 0).await;
            }
        }
    }
    Ok(status)
}
