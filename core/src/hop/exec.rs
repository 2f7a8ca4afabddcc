//! `hop.exec(cmd)`: run a command on an SSH hop and collect its output.

use russh::ChannelMsg;
use russh::client::Handle;

use super::host_key::Client;
use crate::error::{Error, Result};

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
}

/// Runs `cmd` in a new session channel and waits for it to finish.
pub(crate) async fn run(handle: &Handle<Client>, label: &str, cmd: &str) -> Result<ExecOutput> {
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
            ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
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
