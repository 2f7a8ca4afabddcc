//! The SSM Session Manager hop: the transport of `ssm("web-1")`.
//!
//! No `session-manager-plugin` binary is needed: aws-hop speaks the Session Manager data
//! channel itself (`shared/protocols/ssm.md`).
//!
//! # Layout
//!
//! - [`SsmHop`] (this file) opens streams. The AWS layer (`aws::ssm::connect`) resolves the
//!   instance or managed node, checks its agent (`DescribeInstanceInformation`: `Online`, else
//!   an error that says what to fix) and builds the hop with a [`SessionApi`] bound to it. [`SsmHop::open`]`(host, port)` goes through **one
//!   port-forwarding session per (host, port)**, shared by every connection with smux and
//!   started on first use (again if it has ended): `AWS-StartPortForwardingSession` when the
//!   host is the instance itself (its id, Name tag, private IP, or `localhost`), else
//!   `AWS-StartPortForwardingSessionToRemoteHost` with `host`. [`SsmHop::close`] terminates
//!   every session the hop started.
//! - [`api`]: what the transport asks of the Session Manager API ([`SessionApi`]: start,
//!   resume, terminate, sign), implemented by `aws::ssm`.
//! - [`channel`]: the data channel: dialing, acknowledgements and retransmission, in-order
//!   delivery with flow control, the handshake, and resuming a lost WebSocket.
//! - [`smux`]: smux v1 streams over a channel (port forwarding).
//! - [`basic`]: one unframed connection per session (`AWS-StartSSHSession`, for `.ssh()`).
//! - [`shell`]: `.shell()`, an interactive `Standard_Stream` session.
//!
//! # What comes from aws-ssm-bridge, and what does not
//!
//! The wire codec (`ClientMessage`: the 120-byte header, swapped UUID halves, SHA-256
//! digest), the acknowledgement messages and the handshake types and state machine come from
//! the crate `aws-ssm-bridge` 0.6.0, which was checked against a live agent. Its `Session`,
//! `ReconnectingSession` and `SmuxSession` are not used, because against the protocol they
//! fail where aws-hop must not:
//!
//! 1. A WebSocket close frame is taken for the agent ending the session, so MGS's hourly
//!    `1000 Bye` (ssm.md §7) ends the session instead of resuming it.
//! 2. On a resume, data that `send()` had accepted but not yet numbered is dropped with the
//!    old session's queue: a forward would lose bytes mid-stream.
//! 3. Flags (ConnectToPortError) and Error payloads are not surfaced, so a refused dial
//!    looks like a connection that ended cleanly.
//! 4. Output goes to subscribers that are evicted when they fall behind: no back-pressure.
//! 5. `SmuxSession` is bound to one `Session`, which a resume replaces.
//!
//! So [`channel`] is our own, on the crate's codec, and [`smux`] runs on it, which makes a
//! resume invisible to the connections.
//!
//! # Pacing
//!
//! Outgoing data is cut into messages of `chunk_size` bytes (default [`DEFAULT_CHUNK_SIZE`],
//! 8 KiB) with at most `window` unacknowledged (default [`DEFAULT_WINDOW`]). The plugin sends
//! 1 KiB per message and sleeps 1 ms after each, which caps it below 1 MB/s; every message
//! costs a 120-byte header and an acknowledgement. 8 KiB is the smallest of the sizes
//! aws-ssm-bridge found a live agent (3.3.3572) to accept beyond 1 KiB (8 and 32 KiB): an
//! eighth of the messages and acknowledgements, well inside what was seen to work. Raise it
//! to 32768 for bulk uploads; set 1024 to behave exactly as the plugin. The window (512
//! messages, 4 MiB at 8 KiB) bounds what is in flight and what a resume resends; the agent
//! buffers up to 100 000 messages, so it is never the limit.

pub mod api;
pub mod basic;
pub mod channel;
pub mod shell;
pub mod smux;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use self::api::{Document, SessionApi};
use self::channel::{ChannelConfig, DataChannel, Inbound};
use self::smux::Mux;
use super::Stream;
use super::tunnel::{Instance, KeyPush};
use crate::error::{Error, Result};

/// Default bytes per outgoing message (see "Pacing" above).
pub const DEFAULT_CHUNK_SIZE: usize = 8 * 1024;
/// Accepted `chunk_size` values.
pub const CHUNK_SIZES: std::ops::RangeInclusive<usize> = 256..=65_536;
/// Default most unacknowledged messages.
pub const DEFAULT_WINDOW: usize = 512;
/// Accepted `window` values.
pub const WINDOWS: std::ops::RangeInclusive<usize> = 1..=10_000;
/// Default limit for a session to become ready (StartSession, WebSocket, handshake).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a forwarded connection's local client may stop reading before it is reset.
const STALL: Duration = Duration::from_secs(30);
/// Agents up to this version do not multiplex port forwarding (ssm.md §5).
const LAST_BASIC_AGENT: [u32; 4] = [3, 0, 196, 0];

/// The port-forwarding documents.
pub const DOC_LOCAL: &str = "AWS-StartPortForwardingSession";
/// Forwarding to another host, resolved and dialed by the agent.
pub const DOC_REMOTE: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// SSH over one basic-mode session.
pub const DOC_SSH: &str = "AWS-StartSSHSession";

/// Options of `ssm()` beyond the AWS profile and region.
#[derive(Debug, Clone)]
pub struct SsmOptions {
    /// A port-forwarding document to use instead of the two AWS ones (same parameters).
    pub document: Option<String>,
    /// Recorded with every session (CloudTrail), 1-256 characters.
    pub reason: Option<String>,
    /// Bytes per outgoing message.
    pub chunk_size: usize,
    /// Most unacknowledged outgoing messages.
    pub window: usize,
    /// Limit for a session to become ready.
    pub timeout: Duration,
}

impl Default for SsmOptions {
    fn default() -> Self {
        SsmOptions {
            document: None,
            reason: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            window: DEFAULT_WINDOW,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl SsmOptions {
    /// Checks the values (the bindings check the option names and types).
    pub fn check(&self) -> Result<()> {
        if !CHUNK_SIZES.contains(&self.chunk_size) {
            return Err(Error::invalid(format!(
                "option `chunk_size` is {}: use {} to {} bytes (8192 by default; the plugin \
                 sends 1024)",
                self.chunk_size,
                CHUNK_SIZES.start(),
                CHUNK_SIZES.end()
            )));
        }
        if !WINDOWS.contains(&self.window) {
            return Err(Error::invalid(format!(
                "option `window` is {}: use {} to {} messages",
                self.window,
                WINDOWS.start(),
                WINDOWS.end()
            )));
        }
        if let Some(r) = &self.reason {
            let n = r.chars().count();
            if n == 0 || n > 256 {
                return Err(Error::invalid(format!(
                    "option `reason` has {n} characters: Session Manager takes 1 to 256"
                )));
            }
        }
        if let Some(d) = &self.document
            && (d.is_empty() || d.contains(char::is_whitespace))
        {
            return Err(Error::invalid(format!(
                "option `document` (\"{d}\") is not a document name"
            )));
        }
        Ok(())
    }
}

/// One port-forwarding session's slot: locked while the session starts, so concurrent
/// connections to the same (host, port) share the one started, and nothing else waits.
type MuxSlot = Arc<tokio::sync::Mutex<Option<Arc<Mux>>>>;

/// What every handle of one `ssm()` hop shares.
struct Shared {
    api: Arc<dyn SessionApi>,
    keys: Arc<dyn KeyPush>,
    instance: Instance,
    agent_version: Option<String>,
    opts: SsmOptions,
    /// One smux session per (host, port); `host` is `localhost` for the instance itself.
    /// This lock is held only to find a slot, never across an await.
    muxes: Mutex<HashMap<(String, u16), MuxSlot>>,
    /// Every session started (forwards, SSH, shells), to terminate them on close.
    channels: Mutex<Vec<Weak<DataChannel>>>,
    /// Set by [`SsmHop::close`]: no new sessions.
    closed: AtomicBool,
}

/// An instance reached through Session Manager.
#[derive(Clone)]
pub struct SsmHop {
    shared: Arc<Shared>,
    /// Streams are SSH sessions (`AWS-StartSSHSession`, one per stream) rather than smux
    /// port forwarding: the hop `.ssh()` dials through.
    ssh_transport: bool,
}

impl SsmHop {
    /// A hop to `instance` whose sessions `api` starts; `keys` pushes login keys for `.ssh()`.
    /// No session starts until a stream is opened.
    pub fn new(
        api: Arc<dyn SessionApi>,
        keys: Arc<dyn KeyPush>,
        instance: Instance,
        agent_version: Option<String>,
        opts: SsmOptions,
    ) -> Result<SsmHop> {
        opts.check()?;
        Ok(SsmHop {
            shared: Arc::new(Shared {
                api,
                keys,
                instance,
                agent_version,
                opts,
                muxes: Mutex::new(HashMap::new()),
                channels: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
            }),
            ssh_transport: false,
        })
    }

    /// The same hop, whose streams are SSH sessions (`AWS-StartSSHSession`): what
    /// `ssm(x).ssh(user)` dials through.
    #[must_use]
    pub fn ssh_transport(&self) -> SsmHop {
        SsmHop {
            shared: self.shared.clone(),
            ssh_transport: true,
        }
    }

    /// The instance.
    pub fn instance(&self) -> &Instance {
        &self.shared.instance
    }

    /// What pushes a login key to the instance (SendSSHPublicKey).
    pub fn key_push(&self) -> Arc<dyn KeyPush> {
        self.shared.keys.clone()
    }

    /// The agent's version when the hop was made (`None`: not known).
    pub fn agent_version(&self) -> Option<&str> {
        self.shared.agent_version.as_deref()
    }

    /// `ssm i-0abc (web-1)`.
    pub fn describe(&self) -> String {
        let i = &self.shared.instance;
        let mut s = match &i.name {
            Some(n) if !n.is_empty() => format!("ssm {} ({n})", i.id),
            _ => format!("ssm {}", i.id),
        };
        if self.ssh_transport {
            s.push(' ');
            s.push_str(DOC_SSH);
        }
        s
    }

    /// True when `host` is the instance: its id, Name tag, private IP, or `localhost`.
    pub fn is_instance(&self, host: &str) -> bool {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare == "localhost"
            || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self.shared.instance.is_named_by(host)
    }

    /// Opens a stream to `host:port` as seen from the instance.
    pub async fn open(&self, host: &str, port: u16) -> Result<Stream> {
        self.check_open()?;
        if self.ssh_transport {
            return self.open_ssh(host, port).await;
        }
        let key = if self.is_instance(host) {
            ("localhost".to_string(), port)
        } else {
            (host.to_string(), port)
        };
        // One retry: the session may end between the liveness check and the open.
        for attempt in 0..2 {
            let mux = self.mux(&key).await?;
            match mux.open().await {
                Ok(s) => return Ok(Box::new(s)),
                Err(e) if attempt == 0 && !mux.is_alive() => {
                    tracing::debug!(
                        "ssm: session to {}:{} ended ({e}); restarting",
                        key.0,
                        key.1
                    );
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Terminates every session this hop started; no new ones start.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let slots: Vec<MuxSlot> = self
            .shared
            .muxes
            .lock()
            .expect("muxes lock")
            .drain()
            .map(|(_, m)| m)
            .collect();
        for slot in slots {
            // A slot that is locked is starting a session: its starter sees `closed` when the
            // start returns and terminates that session itself, so closing never waits for it.
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            if let Some(m) = slot.take() {
                m.close("the SSM hop was closed with close()").await;
            }
        }
        let channels: Vec<Arc<DataChannel>> = self
            .shared
            .channels
            .lock()
            .expect("channels lock")
            .drain(..)
            .filter_map(|w| w.upgrade())
            .collect();
        for c in channels {
            c.terminate().await;
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: self.describe(),
                why: "the hop was closed with close()".into(),
            });
        }
        Ok(())
    }

    /// The live smux session for `key`, started if there is none.
    ///
    /// Only connections to the same (host, port) wait while its session starts (up to the
    /// `timeout` option); other targets on this hop go ahead.
    async fn mux(&self, key: &(String, u16)) -> Result<Arc<Mux>> {
        let slot = self
            .shared
            .muxes
            .lock()
            .expect("muxes lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(m) = slot.as_ref()
            && m.is_alive()
        {
            return Ok(m.clone());
        }
        let (host, port) = key;
        let local = host == "localhost";
        let mut parameters = vec![
            ("portNumber".to_string(), port.to_string()),
            ("localPortNumber".to_string(), "0".to_string()),
        ];
        if !local {
            parameters.push(("host".to_string(), host.clone()));
        }
        let name = self
            .shared
            .opts
            .document
            .clone()
            .unwrap_or_else(|| if local { DOC_LOCAL } else { DOC_REMOTE }.to_string());
        let doc = Document {
            name: Some(name),
            parameters,
        };
        let (channel, rx) = self.start(&doc, true).await?;
        if let Some(v) = channel.agent_version()
            && version_at_most(v, LAST_BASIC_AGENT)
        {
            channel.terminate().await;
            return Err(Error::SsmAgent {
                instance: self.shared.instance.label(),
                status: format!("version {v}"),
                reason: "agents up to 3.0.196.0 do not multiplex port forwarding".into(),
                hint: "update the agent (`AWS-UpdateSSMAgent`, or the package manager)".into(),
            });
        }
        let target = if local {
            format!("{} port {port}", self.shared.instance.label())
        } else {
            format!("{host}:{port} (via {})", self.shared.instance.label())
        };
        let mux = Arc::new(Mux::new(target, channel, rx, smux::MAX_FRAME, STALL));
        *slot = Some(mux.clone());
        Ok(mux)
    }

    /// One `AWS-StartSSHSession` session, as a stream.
    async fn open_ssh(&self, host: &str, port: u16) -> Result<Stream> {
        if !self.is_instance(host) {
            return Err(Error::invalid(format!(
                "{} carries SSH to its own instance only, not to {host}",
                self.describe()
            )));
        }
        let doc = Document {
            name: Some(DOC_SSH.into()),
            parameters: vec![("portNumber".into(), port.to_string())],
        };
        let (channel, rx) = self.start(&doc, true).await?;
        Ok(Box::new(basic::BasicStream::new(channel, rx)))
    }

    /// A `Standard_Stream` session (the default shell document), for `.shell()`.
    pub async fn open_shell_channel(&self) -> Result<(Arc<DataChannel>, mpsc::Receiver<Inbound>)> {
        self.check_open()?;
        let doc = Document {
            name: None,
            parameters: Vec::new(),
        };
        self.start(&doc, false).await
    }

    /// Starts a session, waits until it is ready (gated documents: the handshake), and
    /// records it for [`SsmHop::close`].
    async fn start(
        &self,
        doc: &Document,
        gated: bool,
    ) -> Result<(Arc<DataChannel>, mpsc::Receiver<Inbound>)> {
        let s = &self.shared;
        self.check_open()?;
        let cfg = ChannelConfig {
            chunk_size: s.opts.chunk_size,
            window: s.opts.window,
            gated,
        };
        let (channel, rx) =
            DataChannel::open(&s.api, &s.instance, doc, s.opts.reason.as_deref(), cfg).await?;
        let channel = Arc::new(channel);
        {
            let mut all = s.channels.lock().expect("channels lock");
            all.retain(|w| w.upgrade().is_some_and(|c| !c.is_closed()));
            all.push(Arc::downgrade(&channel));
        }
        // Closed while this session was starting (close() sets the flag before it collects
        // the sessions, and this one was recorded first): end it rather than hand it out.
        if let Err(e) = self.check_open() {
            channel.terminate().await;
            return Err(e);
        }
        if gated && let Err(e) = channel.wait_ready(s.opts.timeout).await {
            channel.terminate().await;
            return Err(e);
        }
        Ok((channel, rx))
    }
}

/// True when dotted version `v` is at most `max` (missing parts count as 0; unparseable:
/// false, so an odd version string never blocks).
fn version_at_most(v: &str, max: [u32; 4]) -> bool {
    let mut parts = [0u32; 4];
    for (i, p) in v.split('.').take(4).enumerate() {
        match p.trim().parse() {
            Ok(n) => parts[i] = n,
            Err(_) => return false,
        }
    }
    parts <= max
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hop::ssm::api::{ResumeError, Started};
    use crate::hop::tunnel::{BoxFuture, Signer};

    /// A Session Manager whose StartSession for host `slow` never answers, and refuses
    /// every other at once.
    struct StuckApi;

    impl Signer for StuckApi {
        fn region(&self) -> &'static str {
            "us-east-1"
        }
        fn credentials(&self) -> BoxFuture<'_, Result<aws_credential_types::Credentials>> {
            Box::pin(async { Err(Error::invalid("no credentials in this test")) })
        }
    }

    impl SessionApi for StuckApi {
        fn start<'a>(
            &'a self,
            document: &'a Document,
            _reason: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Started>> {
            let slow = document
                .parameters
                .iter()
                .any(|(k, v)| k == "host" && v == "slow");
            Box::pin(async move {
                if slow {
                    std::future::pending::<()>().await;
                }
                Err(Error::invalid("refused by the test"))
            })
        }
        fn resume<'a>(
            &'a self,
            _session_id: &'a str,
        ) -> BoxFuture<'a, std::result::Result<Option<Started>, ResumeError>> {
            Box::pin(async { Ok(None) })
        }
        fn terminate<'a>(&'a self, _session_id: &'a str) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
    }

    struct NoKeys;

    impl KeyPush for NoKeys {
        fn push<'a>(&'a self, _user: &'a str, _key: &'a str) -> BoxFuture<'a, Result<()>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A session that takes long to start holds up only connections to its own target.
    #[tokio::test]
    async fn a_slow_session_start_does_not_hold_up_other_targets() {
        let hop = SsmHop::new(
            Arc::new(StuckApi),
            Arc::new(NoKeys),
            Instance {
                id: "i-0abc".into(),
                name: Some("web-1".into()),
                private_ip: None,
                ipv6: None,
            },
            None,
            SsmOptions::default(),
        )
        .unwrap();
        let slow = {
            let hop = hop.clone();
            tokio::spawn(async move { hop.open("slow", 5432).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = tokio::time::timeout(Duration::from_secs(2), hop.open("fast", 5432))
            .await
            .expect("a connection to another target waited for the slow session");
        let Err(err) = other else {
            panic!("the test API starts no session");
        };
        let err = err.to_string();
        assert!(err.contains("refused by the test"), "{err}");
        assert!(
            !slow.is_finished(),
            "the slow start should still be pending"
        );
        slow.abort();
    }

    #[test]
    fn old_agents_are_recognised() {
        assert!(version_at_most("3.0.196.0", LAST_BASIC_AGENT));
        assert!(version_at_most("2.3.1", LAST_BASIC_AGENT));
        assert!(!version_at_most("3.0.222.0", LAST_BASIC_AGENT));
        assert!(!version_at_most("3.3.3572.0", LAST_BASIC_AGENT));
        assert!(!version_at_most("weird", LAST_BASIC_AGENT));
    }

    #[test]
    fn options_are_checked() {
        assert!(SsmOptions::default().check().is_ok());
        let bad = SsmOptions {
            chunk_size: 100,
            ..SsmOptions::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("chunk_size"));
        let bad = SsmOptions {
            reason: Some(String::new()),
            ..SsmOptions::default()
        };
        assert!(bad.check().unwrap_err().to_string().contains("1 to 256"));
        let bad = SsmOptions {
            window: 0,
            ..SsmOptions::default()
        };
        assert!(bad.check().is_err());
    }
}
