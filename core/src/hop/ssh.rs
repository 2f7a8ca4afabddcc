//! An SSH session as a hop: `bastion("user@host")` and `hop.ssh("user@host")`.
//!
//! [`SshHop`] owns the recipe to dial ([`SshOptions`]) and the live session. Each stream it
//! opens is a `direct-tcpip` channel on that one session, so many connections share one
//! handshake, and target names resolve on the far side, as with `ssh -L`.
//!
//! Re-dial: when the session is lost (bastion rebooted, network blip), the handler reports it
//! once, and the next [`SshHop::open`] dials again. Forwards using the hop keep their local port
//! throughout.
//!
//! Throughput choices (measured in shared/notes/russh-throughput.md): AES-GCM first (1.4x over
//! chacha20 here), TCP_NODELAY on the socket, 2 MiB window (larger hurt on this path), and, after
//! auth, one `exec "true"` in the background so that OpenSSH's sshd switches its own socket to
//! TCP_NODELAY (sshd only does that for sessions; without it a MySQL greeting waits ~40 ms for a
//! delayed ACK, and downloads are ~1.5x slower). Opt out with `bastion_nodelay: false`.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::{Algorithm, HashAlg};
use russh::{ChannelOpenFailure, Preferred, cipher};
use tokio::sync::Mutex as AsyncMutex;

use super::host_key::{Client, HostKeyCheck};
use super::{Hop, Stream, direct, exec};
use crate::error::{Error, Result};
use crate::keys;

/// Work to do before every dial of a session, such as pushing an ephemeral key with EC2
/// Instance Connect (a pushed key lives 60 s, so each re-dial pushes it again). An error
/// aborts the dial with that error.
pub type BeforeDial =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<()>> + Send>> + Send + Sync>;

/// Everything needed to (re-)dial one SSH server.
#[derive(Clone)]
pub struct SshOptions {
    /// Login user.
    pub user: String,
    /// Address to dial (HostName after ~/.ssh/config).
    pub host: String,
    /// Port to dial.
    pub port: u16,
    /// Keys held in memory (ephemeral keys, never written to disk), offered before any other.
    pub memory_keys: Vec<Arc<russh::keys::PrivateKey>>,
    /// Run before each dial (see [`BeforeDial`]).
    pub before_dial: Option<BeforeDial>,
    /// Key files to offer, in order.
    pub key_files: Vec<PathBuf>,
    /// True when the user named keys explicitly: offer only those (and the agent only if
    /// `agent` was asked for).
    pub identities_only: bool,
    /// Offer ssh-agent identities.
    pub agent: bool,
    /// Host-key verification.
    pub host_key: HostKeyCheck,
    /// The hop the TCP-level stream goes through (`None`: direct).
    pub via: Option<Hop>,
    /// Limit for connect + handshake + auth.
    pub timeout: Duration,
    /// Ask the server to enable TCP_NODELAY on its side (see the module docs).
    pub server_nodelay: bool,
}

/// The live part of a hop: one authenticated session.
struct Session {
    handle: Handle<Client>,
    /// Shared with the handler: set before a deliberate close.
    closing: Arc<AtomicBool>,
}

/// An SSH server used as a hop.
pub struct SshHop {
    opts: SshOptions,
    /// The current session; `None` before the first dial or after `close`. Locked only while
    /// checking or dialing, never while streams run.
    session: AsyncMutex<Option<Arc<Session>>>,
    /// Set by [`SshHop::close`]: no re-dial after that.
    closed: AtomicBool,
}

impl SshHop {
    /// Dials now (so a bad host or key shows at once) and returns the hop.
    pub async fn connect(opts: SshOptions) -> Result<Arc<SshHop>> {
        let hop = Arc::new(SshHop {
            opts,
            session: AsyncMutex::new(None),
            closed: AtomicBool::new(false),
        });
        hop.session().await?;
        Ok(hop)
    }

    /// `ssh user@host:port`, plus ` via ...` for a chain.
    pub fn describe(&self) -> String {
        let o = &self.opts;
        let mut s = format!("ssh {}@{}:{}", o.user, o.host, o.port);
        if let Some(via) = &o.via {
            s.push_str(" via ");
            s.push_str(&via.describe());
        }
        s
    }

    /// `user@host:port`, for messages.
    fn label(&self) -> String {
        format!("{}@{}:{}", self.opts.user, self.opts.host, self.opts.port)
    }

    /// The live session, dialing if there is none or it was lost.
    async fn session(&self) -> Result<Arc<Session>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: self.describe(),
                why: "the hop was closed with close()".into(),
            });
        }
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && !s.handle.is_closed()
        {
            return Ok(s.clone());
        }
        let timeout = self.opts.timeout;
        let session = tokio::time::timeout(timeout, self.dial())
            .await
            .map_err(|_| Error::Timeout {
                what: format!("ssh to {}", self.label()),
                secs: timeout.as_secs_f64(),
                hint: "raise `timeout` in the options if the server is slow".into(),
            })??;
        let session = Arc::new(session);
        *slot = Some(session.clone());
        if self.opts.server_nodelay {
            // In the background: it costs a round trip that the caller need not wait for.
            let s = session.clone();
            tokio::spawn(async move { s.request_server_nodelay().await });
        }
        Ok(session)
    }

    /// Connects, verifies the host key and authenticates.
    async fn dial(&self) -> Result<Session> {
        let o = &self.opts;
        let label = self.label();
        tracing::debug!("dialing {}", self.describe());
        if let Some(prepare) = &o.before_dial {
            prepare().await?;
        }
        let stream: Stream = match &o.via {
            // Boxed: a hop dialing through a hop is a recursive future.
            Some(via) => Box::pin(via.open(&o.host, o.port, None)).await?,
            None => Box::new(direct::connect_tcp(&o.host, o.port, o.timeout).await?),
        };
        let refusal = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let established = Arc::new(AtomicBool::new(false));
        let handler = Client {
            check: o.host_key.clone(),
            refusal: refusal.clone(),
            closing: closing.clone(),
            established: established.clone(),
            label: format!("ssh {label}"),
        };
        let recorded = o
            .host_key
            .known_hosts
            .recorded_algorithms(&o.host_key.name, o.host_key.port)
            .unwrap_or_default();
        let mut handle =
            match client::connect_stream(client_config(&recorded), stream, handler).await {
                Ok(h) => h,
                Err(e) => {
                    if let Some(why) = refusal.lock().expect("refusal lock").take() {
                        return Err(why);
                    }
                    return Err(handshake_error(&label, e));
                }
            };
        self.authenticate(&mut handle).await?;
        established.store(true, Ordering::SeqCst);
        tracing::debug!("ssh {label}: authenticated");
        Ok(Session { handle, closing })
    }

    /// Offers keys in OpenSSH's order: named files, then the agent, then `~/.ssh/id_*`.
    async fn authenticate(&self, handle: &mut Handle<Client>) -> Result<()> {
        let o = &self.opts;
        let mut tried: Vec<String> = Vec::new();
        let mut agent_for_encrypted = false;

        for key in &o.memory_keys {
            let label = format!("ephemeral key ({})", keys::fingerprint(key));
            if self.offer(handle, label, key.clone(), &mut tried).await? {
                return Ok(());
            }
        }

        for path in &o.key_files {
            let key = match load_key(path).await {
                Ok(k) => k,
                // Passphrase-protected: the agent (which holds it after `ssh-add`) signs instead.
                Err(e) if keys::is_encrypted(&e) && agent_available() => {
                    tracing::debug!("{e}; trying the agent");
                    agent_for_encrypted = true;
                    continue;
                }
                // A key the user named must work; one from ~/.ssh/config is skipped like OpenSSH.
                Err(e) if o.identities_only => return Err(e),
                Err(e) => {
                    tracing::debug!("skipping identity: {e}");
                    continue;
                }
            };
            if self.offer_key(handle, path, key, &mut tried).await? {
                return Ok(());
            }
        }

        if (o.agent || agent_for_encrypted)
            && agent_available()
            && self.try_agent(handle, &mut tried).await?
        {
            return Ok(());
        }

        if !o.identities_only {
            for path in keys::default_identity_files(&keys::home_dir()) {
                if o.key_files.contains(&path) {
                    continue;
                }
                let Ok(key) = load_key(&path).await else {
                    continue;
                };
                if self.offer_key(handle, &path, key, &mut tried).await? {
                    return Ok(());
                }
            }
        }

        Err(Error::AuthFailed {
            user: o.user.clone(),
            host: format!("{}:{}", o.host, o.port),
            tried: if tried.is_empty() {
                "any key, because there was none to offer: no `key` option, ssh-agent has none \
                 (or SSH_AUTH_SOCK is unset), and ~/.ssh has no id_ed25519, id_ecdsa or id_rsa"
                    .into()
            } else {
                tried.join(", ")
            },
        })
    }

    /// Offers one key file's key; true if the server accepted it.
    async fn offer_key(
        &self,
        handle: &mut Handle<Client>,
        path: &std::path::Path,
        key: Arc<russh::keys::PrivateKey>,
        tried: &mut Vec<String>,
    ) -> Result<bool> {
        let label = format!("key {} ({})", path.display(), keys::fingerprint(&key));
        self.offer(handle, label, key, tried).await
    }

    /// Offers one private key, recorded in `tried` as `label`; true if accepted.
    async fn offer(
        &self,
        handle: &mut Handle<Client>,
        label: String,
        key: Arc<russh::keys::PrivateKey>,
        tried: &mut Vec<String>,
    ) -> Result<bool> {
        let ssh_err = |e| Error::Ssh {
            host: self.label(),
            source: e,
        };
        tried.push(label);
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(ssh_err)?
            .flatten();
        let res = handle
            .authenticate_publickey(&self.opts.user, PrivateKeyWithHashAlg::new(key, hash))
            .await
            .map_err(ssh_err)?;
        Ok(res.success())
    }

    /// Offers every agent identity; true once one is accepted.
    async fn try_agent(
        &self,
        handle: &mut Handle<Client>,
        tried: &mut Vec<String>,
    ) -> Result<bool> {
        let mut agent = match AgentClient::connect_env().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("ssh-agent unavailable: {e}");
                return Ok(false);
            }
        };
        let identities = agent.request_identities().await.unwrap_or_default();
        for id in identities {
            let AgentIdentity::PublicKey { key, comment } = id else {
                continue;
            };
            tried.push(format!(
                "agent key {} ({comment})",
                key.fingerprint(russh::keys::ssh_key::HashAlg::Sha256)
            ));
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            match handle
                .authenticate_publickey_with(&self.opts.user, key, hash, &mut agent)
                .await
            {
                Ok(r) if r.success() => return Ok(true),
                Ok(_) => {}
                Err(e) => tracing::debug!("agent signing failed: {e}"),
            }
        }
        Ok(false)
    }

    /// Opens a stream to `host:port` as seen from this server.
    pub async fn open(&self, host: &str, port: u16, origin: Option<SocketAddr>) -> Result<Stream> {
        let (oip, oport) = origin.map_or_else(
            || ("127.0.0.1".to_string(), 0),
            |a| (a.ip().to_string(), u32::from(a.port())),
        );
        // One retry: the session may have died between the liveness check and the open.
        for attempt in 0..2 {
            let session = self.session().await?;
            match session
                .handle
                .channel_open_direct_tcpip(host, u32::from(port), oip.clone(), oport)
                .await
            {
                Ok(ch) => return Ok(Box::new(super::channel::ChannelIo::new(ch))),
                Err(russh::Error::ChannelOpenFailure(f)) => {
                    return Err(Error::ChannelRefused {
                        hop: self.describe(),
                        target: format!("{host}:{port}"),
                        reason: refusal_reason(&f),
                    });
                }
                Err(e) if attempt == 0 && session.handle.is_closed() => {
                    tracing::debug!("session lost while opening a channel ({e}); re-dialing");
                }
                Err(e) => {
                    return Err(Error::Ssh {
                        host: self.label(),
                        source: e,
                    });
                }
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Runs `cmd` on this server, collecting at most `limit` bytes of stdout and of stderr.
    pub async fn exec(&self, cmd: &str, limit: usize) -> Result<exec::ExecOutput> {
        let session = self.session().await?;
        exec::run(&session.handle, &self.label(), cmd, limit).await
    }

    /// Opens a session channel (for `shell()`).
    pub async fn open_session_channel(&self) -> Result<russh::Channel<client::Msg>> {
        let session = self.session().await?;
        session
            .handle
            .channel_open_session()
            .await
            .map_err(|e| Error::Ssh {
                host: self.label(),
                source: e,
            })
    }

    /// Closes the session; no re-dial afterwards.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(s) = self.session.lock().await.take() {
            s.closing.store(true, Ordering::SeqCst);
            let _ = s
                .handle
                .disconnect(russh::Disconnect::ByApplication, "closed by aws-hop", "en")
                .await;
        }
    }
}

impl Session {
    /// Runs `true` in a session channel so sshd sets TCP_NODELAY on its socket. Failures
    /// (ForceCommand, MaxSessions 0 ...) are ignored: the tunnel works anyway.
    async fn request_server_nodelay(&self) {
        let run = async {
            let mut ch = self.handle.channel_open_session().await.ok()?;
            ch.exec(true, "true").await.ok()?;
            while ch.wait().await.is_some() {}
            Some(())
        };
        if tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .is_err()
        {
            tracing::debug!("server nodelay request timed out");
        }
    }
}

/// True when an ssh-agent socket is configured.
fn agent_available() -> bool {
    std::env::var_os("SSH_AUTH_SOCK").is_some_and(|s| !s.is_empty())
}

/// russh client settings for tunnels (see the module docs for the measurements).
///
/// Host-key algorithms already recorded in known_hosts for this host go first, as OpenSSH
/// orders them: otherwise a server with both an ECDSA key (recorded) and an ed25519 key
/// would present ed25519, and the check would see a changed key.
fn client_config(recorded: &[Algorithm]) -> Arc<client::Config> {
    let mut keys: Vec<Algorithm> = Vec::new();
    for alg in recorded {
        let wanted: Vec<Algorithm> = match alg {
            Algorithm::Rsa { .. } => vec![
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512),
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256),
                },
                Algorithm::Rsa { hash: None },
            ],
            other => vec![other.clone()],
        };
        for a in wanted {
            if !keys.contains(&a) {
                keys.push(a);
            }
        }
    }
    for a in Preferred::DEFAULT.key.iter() {
        if !keys.contains(a) {
            keys.push(a.clone());
        }
    }
    Arc::new(client::Config {
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        preferred: Preferred {
            cipher: Cow::Borrowed(&[
                cipher::AES_256_GCM,
                cipher::AES_128_GCM,
                cipher::CHACHA20_POLY1305,
                cipher::AES_256_CTR,
            ]),
            key: Cow::Owned(keys),
            ..Preferred::default()
        },
        ..Default::default()
    })
}

/// Turns a handshake failure into a message that says what to check.
fn handshake_error(label: &str, e: russh::Error) -> Error {
    let hung_up = || Error::Closed {
        what: format!("ssh to {label}"),
        why: "the server hung up during the handshake: is it an SSH server on that port, and \
              does it accept this client (MaxStartups, AllowUsers, fail2ban)?"
            .into(),
    };
    match e {
        russh::Error::IO(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            hung_up()
        }
        russh::Error::Disconnect | russh::Error::HUP => hung_up(),
        russh::Error::Version => Error::Closed {
            what: format!("ssh to {label}"),
            why: "the server did not speak SSH (wrong port?)".into(),
        },
        other => Error::Ssh {
            host: label.to_string(),
            source: other,
        },
    }
}

/// Why the server refused a direct-tcpip channel, with what to do.
fn refusal_reason(f: &ChannelOpenFailure) -> String {
    match f {
        ChannelOpenFailure::AdministrativelyProhibited => {
            "administratively prohibited: that SSH server does not allow TCP forwarding \
             (AllowTcpForwarding or PermitOpen in its sshd_config)"
                .into()
        }
        ChannelOpenFailure::ConnectFailed => {
            "connect failed: the target is down, its port is closed, or its name does not \
             resolve from there (check the host, port and security groups)"
                .into()
        }
        ChannelOpenFailure::ResourceShortage => {
            "resource shortage on the server (too many channels? MaxSessions)".into()
        }
        ChannelOpenFailure::UnknownChannelType => {
            "the server does not support TCP forwarding channels".into()
        }
        ChannelOpenFailure::Other { code, reason } => format!("refused (code {code}: {reason})"),
    }
}

/// Reads and decodes a key file on a blocking thread: a dial (or a forward's re-dial) must
/// not hold a runtime worker on file I/O or a key's KDF.
async fn load_key(path: &std::path::Path) -> Result<Arc<russh::keys::PrivateKey>> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || keys::load_key_file(&path))
        .await
        .map_err(|e| Error::invalid(format!("reading a key file failed to run: {e}")))?
}
