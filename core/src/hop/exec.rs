//! `hop.exec(cmd)`: run a command on an SSH hop and collect its output.
//!
//! Output is held in memory, so it is capped: at most `limit` bytes of stdout and of stderr
//! each ([`DEFAULT_LIMIT`], 16 MiB, unless the caller raises it). Past the cap the rest is
//! read and dropped, so the command still runs to its end and its exit status arrives, and
//! [`ExecOutput::truncated`] says so.

use russh::ChannelMsg;
use russh::client::Handle;

use super::host_key::Client;
use crate::error::{Error, Result};

/// Default cap on each of stdout and stderr.
pub const DEFAULT_LIMIT: usize = 16 << 20;

/// The result of a remote command.
#[derive(Clone, Debug, Default)]
pub struct ExecOutput {
    /// Exit status; 128 + signal number when killed by a signal (as shells report it), -1 when
    /// the server sent neither.
    pub status: i64,
    /// Everything the command wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote to stderr.
    pub stderr: Vec<u8>,
    /// True when stdout or stderr went past the cap and the rest was dropped.
    pub truncated: bool,
}

/// Appends what fits under `limit`; true when something did not fit.
fn append_capped(buf: &mut Vec<u8>, data: &[u8], limit: usize) -> bool {
    let room = limit.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
    data.len() > room
}

/// Runs `cmd` in a new session channel and waits for it to finish, keeping at most `limit`
/// bytes of each output stream.
pub(crate) async fn run(
    handle: &Handle<Client>,
    label: &str,
    cmd: &str,
    limit: usize,
) -> Result<ExecOutput> {
    let ssh_err = |e| Error::Ssh {
        host: label.to_string(),
        source: e,
    };
    let mut ch = handle.channel_open_session().await.map_err(ssh_err)?;
    ch.exec(true, cmd).await.map_err(ssh_err)?;
    let mut out = ExecOutput {
        status: -1,
        ..ExecOutput::default()
    };
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                out.truncated |= append_capped(&mut out.stdout, &data, limit);
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                out.truncated |= append_capped(&mut out.stderr, &data, limit);
            }
            ChannelMsg::ExitStatus { exit_status } => out.status = i64::from(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                out.status = 128 + signal_number(&signal_name);
            }
            ChannelMsg::Failure => {
                return Err(Error::Closed {
                    what: format!("exec on {label}"),
                    why: "the server refused to run the command (ForceCommand? MaxSessions?)"
                        .into(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The conventional number of a signal name (for the 128 + n status).
fn signal_number(sig: &russh::Sig) -> i64 {
    use russh::Sig;
    match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::append_capped;

    #[test]
    fn output_past_the_cap_is_dropped_and_flagged() {
        let mut buf = Vec::new();
        assert!(!append_capped(&mut buf, b"abc", 5));
        assert!(append_capped(&mut buf, b"defg", 5));
        assert_eq!(buf, b"abcde");
        assert!(append_capped(&mut buf, b"h", 5));
        assert_eq!(buf, b"abcde");
    }
}
