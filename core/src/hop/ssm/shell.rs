//! `ssm(x).shell()`: an interactive Session Manager shell (`Standard_Stream`).
//!
//! The session uses the default document (`SSM-SessionManagerRunShell`), which has no
//! handshake. The local terminal goes to raw mode (so Ctrl-C is the byte 0x03 for the remote
//! side, as are Ctrl-D, Ctrl-Z and arrow keys), the terminal size is sent first and again on
//! every resize (SIGWINCH), keystrokes are sent as they come (at most 1024 bytes per message,
//! as the plugin does), and output goes straight to the terminal. The shell ends when Session
//! Manager sends `channel_closed`; its `Output` text, if any, is printed after the terminal
//! is restored.
//!
//! The exit status: Session Manager's interactive shell does not carry one. The agent sends
//! an `ExitCode` message (payload type 12) only for `NonInteractiveCommands` sessions; for a
//! `Standard_Stream` shell it just closes the channel. So this returns that code when one
//! came, and -1 ("not reported", as `exec()` says when a server sends none) otherwise; a
//! script that needs the status logs in over SSM instead: `ssm(x).ssh(user).shell()`.
//!
//! An account whose Session Manager preferences require KMS encryption makes the agent ask
//! for it in a handshake: that is [`crate::Error::SsmKmsRequired`], with the workaround.

use tokio::io::AsyncWriteExt;

use super::SsmHop;
use super::channel::{End, Inbound};
use crate::error::{Error, Result};
use crate::hop::shell::{Input, RawMode, window_size};

/// The status returned when Session Manager reported none.
pub const NOT_REPORTED: i64 = -1;

/// Runs an interactive shell on `hop`'s instance; returns its exit code, or -1 when Session
/// Manager reported none (an interactive shell never does; see the module docs).
pub async fn interactive(hop: &SsmHop) -> Result<i64> {
    let (channel, mut rx) = hop.open_shell_channel().await?;
    let (cols, rows) = window_size();
    channel.send_size(cols, rows).await?;

    let raw = RawMode::enable();
    let mut input = Input::open();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        .map_err(|e| Error::io("watching window size", e))?;
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut buf = vec![0u8; 1024];
    let mut status = NOT_REPORTED;
    let mut failure: Option<Error> = None;

    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Inbound::Output(b)) => {
                    let _ = stdout.write_all(&b).await;
                    let _ = stdout.flush().await;
                }
                Some(Inbound::Stderr(b)) => {
                    let _ = stderr.write_all(&b).await;
                    let _ = stderr.flush().await;
                }
                Some(Inbound::ExitCode(c)) => status = i64::from(c),
                Some(Inbound::Flag(_)) => {}
                None => break,
            },
            n = input.read(&mut buf) => match n {
                Ok(0) | Err(_) => input = Input::Closed,
                Ok(n) => {
                    if let Err(e) = channel.send(&buf[..n]).await {
                        failure = Some(e);
                        break;
                    }
                }
            },
            _ = winch.recv() => {
                let (c, r) = window_size();
                let _ = channel.send_size(c, r).await;
            }
        }
    }
    drop(raw);
    if let Some(End::Closed(output)) = channel.end() {
        if !output.is_empty() {
            let _ = stderr.write_all(format!("\n{output}\n").as_bytes()).await;
        }
        return Ok(status);
    }
    let e = failure.unwrap_or_else(|| channel.end_error());
    channel.terminate().await;
    Err(e)
}
