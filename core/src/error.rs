//! The library's error type.
//!
//! Every variant says what failed, why, and (where there is one) what to try. The Rhai boundary
//! renders it with `{:#}`-style chains into the script's error, which adds file:line:col, so
//! messages here never repeat a position. Secrets (key material, passphrases, tokens) never
//! appear in any variant.

use std::io;
use std::path::PathBuf;

use crate::known_hosts::{ChangedKey, KnownHostsError};
use crate::ssh_config::SshConfigError;

/// What went wrong, for every fallible operation of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A destination, an option or another argument is malformed.
    #[error("{0}")]
    Invalid(String),

    /// `~/.ssh/config` could not be read or parsed.
    #[error(transparent)]
    SshConfig(#[from] SshConfigError),

    /// A known_hosts file could not be read or written.
    #[error(transparent)]
    KnownHosts(#[from] KnownHostsError),

    /// The local port of a forward is taken.
    #[error(
        "cannot listen on {addr}: {source}; another program (or another forward) holds that port: \
         pick another port, or 0 to let aws-hop choose a free one"
    )]
    Bind { addr: String, source: io::Error },

    /// A TCP connection (to a bastion, or a direct target) failed.
    #[error("cannot connect to {what}: {source}{hint}", hint = connect_hint(source))]
    Connect { what: String, source: io::Error },

    /// Something took longer than its timeout.
    #[error("{what} timed out after {secs} s{hint}", hint = if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    Timeout {
        what: String,
        secs: f64,
        hint: String,
    },

    /// The server's host key is not in known_hosts, and the policy says no.
    #[error(
        "host key for {host} is not known ({algorithm} {fingerprint}), refusing to connect; \
         check the fingerprint with the host's owner, then connect once with \
         `known_hosts: \"accept-new\"` in the options (it records the key in {record_in}), \
         or add it yourself with `ssh-keyscan -p {port} {name} >> {record_in}`"
    )]
    HostKeyUnknown {
        host: String,
        name: String,
        port: u16,
        algorithm: String,
        fingerprint: String,
        record_in: String,
    },

    /// The server's host key differs from the recorded one: always refused.
    #[error("{0}")]
    HostKeyChanged(Box<ChangedKey>),

    /// The server presented a key that known_hosts marks `@revoked`.
    #[error(
        "host key for {host} is REVOKED ({fingerprint}, marked @revoked at {file}:{line}), refusing to connect"
    )]
    HostKeyRevoked {
        host: String,
        fingerprint: String,
        file: PathBuf,
        line: usize,
    },

    /// The user declined an unknown host key at the REPL prompt.
    #[error("host key for {host} ({fingerprint}) was not accepted, not connecting")]
    HostKeyDeclined { host: String, fingerprint: String },

    /// No offered credential was accepted.
    #[error(
        "permission denied for {user}@{host}: the server accepted none of {tried}; check the user name \
         (ec2-user, ubuntu, admin ... depend on the AMI), and that the public key is in that user's \
         ~/.ssh/authorized_keys, or give the right one with `key: \"~/.ssh/name.pem\"`"
    )]
    AuthFailed {
        user: String,
        host: String,
        tried: String,
    },

    /// A private key file could not be used.
    #[error("cannot use key {path}: {reason}")]
    Key { path: PathBuf, reason: String },

    /// The SSH protocol itself failed (handshake, disconnect ...).
    #[error("ssh to {host}: {source}")]
    Ssh {
        host: String,
        #[source]
        source: russh::Error,
    },

    /// The far side refused to open a channel to the target (a refused forward).
    #[error("{hop} could not open a connection to {target}: {reason}")]
    ChannelRefused {
        hop: String,
        target: String,
        reason: String,
    },

    /// The SSH connection of a hop is gone.
    #[error("{what}: connection closed{why}", why = if why.is_empty() { String::new() } else { format!(" ({why})") })]
    Closed { what: String, why: String },

    /// An EC2 Instance Connect Endpoint answered the tunnel request with an HTTP status
    /// instead of switching to a WebSocket.
    #[error(
        "the EICE endpoint {host} refused to open the tunnel: HTTP {status}{request}{shown}{hint}",
        request = request_id.as_deref().map(|r| format!(" (request id {r})")).unwrap_or_default(),
        shown = if body.is_empty() { String::new() } else { format!(": {body}") },
        hint = eice_refused_hint(*status)
    )]
    EiceRefused {
        host: String,
        status: u16,
        /// The `x-amzn-RequestId` header, for AWS support.
        request_id: Option<String>,
        /// The start of the answer's body (the service's JSON error), at most 300 bytes.
        body: String,
    },

    /// An EC2 Instance Connect Endpoint could not be reached, or TLS or the WebSocket
    /// handshake with it failed.
    #[error("cannot open an EICE tunnel through {host}: {reason}; {hint}")]
    EiceConnect {
        host: String,
        reason: String,
        hint: String,
    },

    /// An AWS lookup or API call failed (configuration, credentials, an API error, an
    /// instance or endpoint that is not there or not usable).
    #[error("{what}: {reason}{hint}", hint = if hint.is_empty() { String::new() } else { format!("; {hint}") })]
    Aws {
        what: String,
        reason: String,
        hint: String,
    },

    /// The SSM agent of an instance cannot take sessions: it is not registered with Systems
    /// Manager, or is registered but not connected (`ConnectionLost`, `Inactive`).
    #[error("the SSM agent on {instance} is {status}: {reason}; {hint}")]
    SsmAgent {
        instance: String,
        status: String,
        reason: String,
        hint: String,
    },

    /// Session Manager refused something or failed: StartSession denied by IAM, a target that
    /// is not connected, an unknown document, a data channel that cannot be opened.
    #[error("{what}: {reason}; {hint}")]
    Ssm {
        what: String,
        reason: String,
        hint: String,
    },

    /// An SSM session ended, while in use or before it was ready: `channel_closed` from the
    /// service (idle timeout, maximum duration, terminated elsewhere, the remote end finished),
    /// or a lost data channel that could not be resumed. `why` is the service's own text
    /// (its `Output`) when it gave one.
    #[error(
        "{what} ended{why}{hint}",
        why = if why.is_empty() { String::new() } else { format!(": {why}") },
        hint = if hint.is_empty() { String::new() } else { format!("; {hint}") }
    )]
    SsmEnded {
        what: String,
        why: String,
        hint: String,
    },

    /// The account's Session Manager preferences require KMS encryption of session data,
    /// which aws-hop does not implement yet.
    #[error(
        "{what}: the Session Manager preferences of this account require KMS encryption of \
         session data (KMS key {key}), and aws-hop does not do KMS-encrypted sessions yet; the \
         preference is \"Enable KMS encryption\" (`kmsKeyId` in the SSM-SessionManagerRunShell \
         document); port forwarding and SSH over SSM are never KMS-encrypted, so use \
         ssm(\"{target}\").ssh(\"ec2-user\").shell() instead, or the AWS CLI's \
         session-manager-plugin for this shell"
    )]
    SsmKmsRequired {
        what: String,
        key: String,
        target: String,
    },

    /// The SSM gateway closed the data channel at once: it did not accept the session token.
    #[error(
        "the SSM gateway {host} refused the data channel of session {session_id} (WebSocket \
         close {code}{reason}): it did not accept the session token; the token is valid only \
         briefly after StartSession/ResumeSession: check this machine's clock and try again, \
         and check that no proxy rewrites the first WebSocket message",
        reason = if reason.is_empty() { String::new() } else { format!(" \"{reason}\"") }
    )]
    SsmChannelRefused {
        host: String,
        session_id: String,
        code: u16,
        reason: String,
    },

    /// The user pressed Ctrl-C.
    #[error("interrupted (Ctrl-C)")]
    Interrupted,

    /// Any other I/O failure, with what was being done.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// The fix to suggest for a failed TCP connect, by the kind of failure.
fn connect_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            "; nothing listens on that port: is the service (sshd) running, and is it the right port?"
        }
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            "; no route to that address: it may be private (reach it through a bastion with `via`), \
             or a VPN is down"
        }
        io::ErrorKind::TimedOut => {
            "; no answer: a security group or firewall may drop the traffic, or the host is down"
        }
        _ => "",
    }
}

/// The fix to suggest when an EICE endpoint refuses a tunnel, by HTTP status.
fn eice_refused_hint(status: u16) -> &'static str {
    match status {
        400 => {
            "; check the endpoint id, that the private IP is in the endpoint's VPC, and the port \
             (22 or 3389)"
        }
        401 | 403 => {
            "; check this machine's clock (a presigned URL is valid 60 s), and that your \
             credentials may call ec2-instance-connect:OpenTunnel on this endpoint (a policy \
             condition on maxTunnelDuration needs a matching max duration)"
        }
        404 => "; check the endpoint's DNS name (DescribeInstanceConnectEndpoints gives it)",
        429 => {
            "; too many requests or open tunnels for this endpoint: close some, or wait a \
             moment and try again"
        }
        500..=599 => "; the service failed: wait a moment and try again",
        _ => "",
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
