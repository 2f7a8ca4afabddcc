//! Logging in: from what a user asked for (a destination and SSH options) to an open SSH hop.
//!
//! These are the library functions behind `bastion()`, `hop.ssh()`, the strategy plugins and
//! (through them) `aws-hop proxy`; a one-shot subcommand calls them the same way. Nothing here
//! knows Rhai: the bindings convert a script's options map into an [`SshRequest`] and call in.
//!
//! - [`options`]: merges an [`SshRequest`] over `~/.ssh/config` over defaults into the
//!   transport's [`SshOptions`](crate::hop::ssh::SshOptions) (keys, user, port, host-key policy
//!   and files, timeout).
//! - [`chain`]: [`chain::ssh`], SSH to a destination: its `ProxyJump` hops first (unless a
//!   `via` hop is given), then the host itself; over a tunnel hop it hands on to [`instance`].
//! - [`instance`]: SSH to the instance of a tunnel hop (EICE, SSM): the host key is recorded
//!   under the instance id, and without a key an ephemeral ed25519 key is made in memory and
//!   pushed before each dial.
//!
//! Config files are read on a blocking thread ([`blocking`]), never on the runtime's workers,
//! so the re-dials of running forwards are not held up by a slow home directory.

pub mod chain;
pub mod instance;
pub mod options;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::hop::host_key::HostKeyPolicy;

/// The SSH options a user can give (`bastion(dest, #{ ... })`), before `~/.ssh/config` and
/// defaults fill in the rest.
#[derive(Debug, Clone, Default)]
pub struct SshRequest {
    /// `key`: a private key file; only it is offered (like `IdentitiesOnly`).
    pub key: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// `known_hosts`: `strict`, `accept-new`, `ask` or a file.
    pub known_hosts: Option<String>,
    /// `agent`: use ssh-agent.
    pub agent: Option<bool>,
    /// `timeout`: connect + handshake + auth.
    pub timeout: Option<Duration>,
    /// `server_nodelay`: ask the server to turn Nagle off on its side.
    pub server_nodelay: Option<bool>,
}

/// What a login needs from the front that asks for it.
pub struct Env<'a> {
    /// The user's home (`~`, ~/.ssh).
    pub home: &'a Path,
    /// What to do with an unknown host key when neither the options nor ~/.ssh/config say:
    /// ask in the REPL, refuse in scripts.
    pub default_policy: HostKeyPolicy,
    /// Called with every hop opened (the ProxyJump hops too), so the front can close them
    /// cleanly at exit.
    pub track: &'a (dyn Fn(&Hop) + Send + Sync),
}

/// Runs `f` (file reads: ssh config, known_hosts, keys) on a blocking thread.
pub async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::invalid(format!("a file read failed to run: {e}")))?
}

/// A path option with `~` expanded as ~/.ssh/config paths are.
pub fn expand_option_path(option: &str, path: &str, home: &Path) -> Result<PathBuf> {
    crate::ssh_config::tilde_expand(path, home)
        .map_err(|why| Error::invalid(format!("option `{option}` (\"{path}\"): {why}")))
}
