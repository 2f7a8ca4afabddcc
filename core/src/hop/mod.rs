//! Transports. A [`Hop`] opens byte streams to `host:port` *through itself*.
//!
//! - [`direct`]: plain TCP from this machine (the hop of a bastion reached over the internet).
//! - [`ssh`]: an SSH session ([`ssh::SshHop`]); each stream is a `direct-tcpip` channel, the
//!   name is resolved on the far side (like `ssh -L`). The session itself runs over a stream of
//!   another hop (`via`), which is how multi-hop chains of any depth work.
//! - [`eice`] ([`eice::EiceHop`]): a presigned WebSocket tunnel through an EC2 Instance
//!   Connect Endpoint, to one instance's port 22 or 3389; SSH runs over it. [`eice::url`]
//!   presigns the `OpenTunnel` URL (SigV4 query authentication).
//! - [`ssm`] ([`ssm::SsmHop`]): SSM Session Manager's data channel; streams are smux streams
//!   of one port-forwarding session per target (or, under `.ssh()`, one
//!   `AWS-StartSSHSession` per connection); interactive shells.
//! - [`ws`]: a WebSocket as a byte stream (the EICE framing, close and half-close rules).
//! - [`tunnel`]: what a tunnel hop is given by the layer that builds it: the [`tunnel::Instance`]
//!   it reaches, a [`tunnel::Signer`] (credentials, region) and a [`tunnel::KeyPush`].
//! - [`host_key`]: the russh handler that verifies host keys against known_hosts.
//! - [`exec`], [`shell`]: commands and interactive terminals on an SSH hop.
//! - [`channel`]: an SSH channel as a [`Stream`].
//!
//! Every stream is a [`Stream`]: `AsyncRead + AsyncWrite`, half-close carried by `shutdown`.
//!
//! Transports import only `error`, `events`, `keys`, `known_hosts` and `tls`: never `aws`,
//! `login`, `script`, `strategy` or `cli`. What they need from AWS comes in through
//! [`tunnel`]'s traits, and what the user should see goes out through [`crate::events`].

pub mod channel;
pub mod direct;
pub mod eice;
pub mod exec;
pub mod host_key;
pub mod shell;
pub mod ssh;
pub mod ssm;
pub mod tunnel;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::Result;

/// Any bidirectional byte stream a hop can give.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncStream for T {}

/// A boxed stream, as hops return them.
pub type Stream = Box<dyn AsyncStream>;

/// A way to reach hosts: directly, through an SSH session, or through an EC2 Instance
/// Connect Endpoint tunnel.
///
/// Cheap to clone (an `Arc` inside); clones share the session.
#[derive(Clone)]
pub enum Hop {
    /// TCP straight from this machine.
    Direct,
    /// Through an SSH session (bastion, or a host reached over another hop).
    Ssh(Arc<ssh::SshHop>),
    /// Through an EC2 Instance Connect Endpoint, to one instance's port 22 or 3389.
    Eice(Arc<eice::EiceHop>),
    /// Through SSM Session Manager, to the instance or a host it reaches.
    Ssm(Arc<ssm::SsmHop>),
}

impl Hop {
    /// Opens a stream to `host:port` through this hop. `origin` is the local client whose
    /// connection this stream carries (reported to the SSH server, as `ssh -L` does).
    pub async fn open(&self, host: &str, port: u16, origin: Option<SocketAddr>) -> Result<Stream> {
        match self {
            Hop::Direct => direct::connect(host, port).await,
            Hop::Ssh(s) => s.open(host, port, origin).await,
            Hop::Eice(e) => e.open(host, port).await,
            Hop::Ssm(s) => s.open(host, port).await,
        }
    }

    /// A short readable name: `direct`, `ssh ec2-user@bastion:22`, `ssh a@b via ssh c@d`.
    pub fn describe(&self) -> String {
        match self {
            Hop::Direct => "direct".into(),
            Hop::Ssh(s) => s.describe(),
            Hop::Eice(e) => e.describe(),
            Hop::Ssm(s) => s.describe(),
        }
    }

    /// Closes the hop's session (if any). Streams already open end with it.
    pub async fn close(&self) {
        match self {
            Hop::Ssh(s) => s.close().await,
            Hop::Eice(e) => e.close(),
            Hop::Ssm(s) => s.close().await,
            Hop::Direct => {}
        }
    }
}

impl std::fmt::Display for Hop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Moves what fits of `pending` into `buf`; false when nothing was pending. The first step of
/// every `poll_read` that receives in chunks (SSH channels, smux streams, SSM basic streams).
pub(crate) fn fill_from(pending: &mut bytes::Bytes, buf: &mut tokio::io::ReadBuf<'_>) -> bool {
    if pending.is_empty() {
        return false;
    }
    let n = buf.remaining().min(pending.len());
    buf.put_slice(&pending.split_to(n));
    true
}

/// Splits `"host:port"` (or `"[v6]:port"`); the port is required.
pub fn split_host_port(s: &str) -> Result<(String, u16)> {
    let bad = || {
        crate::Error::invalid(format!(
            "'{s}' is not host:port (for example \"db.internal:5432\" or \"[fd00::1]:22\")"
        ))
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::split_host_port;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("db:5432").unwrap(), ("db".into(), 5432));
        assert_eq!(
            split_host_port("[fd00::1]:22").unwrap(),
            ("fd00::1".into(), 22)
        );
        assert!(split_host_port("db").is_err());
        assert!(split_host_port("db:0").is_err());
        assert!(split_host_port(":22").is_err());
        assert!(split_host_port("db:http").is_err());
    }
}
