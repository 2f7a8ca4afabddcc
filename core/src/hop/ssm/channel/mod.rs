//! One SSM session's data channel: a reliable, ordered, resumable message stream.
//!
//! [`DataChannel::open`] calls `StartSession`, dials the `StreamUrl` (TLS, SigV4-signed
//! upgrade, the token in the first text frame) and hands back the channel and a receiver of
//! [`Inbound`] events: the agent's output, in order, exactly once. [`DataChannel::send`]
//! sends bytes as `input_stream_data` messages of at most `chunk_size` bytes
//! (`shared/protocols/ssm.md` §2–§4).
//!
//! # Reliability
//!
//! - **Outgoing.** Every message is numbered and kept until the agent acknowledges it. At
//!   most `window` messages are unacknowledged: a sender waits for acknowledgements beyond
//!   that (back-pressure, never loss). The oldest unacknowledged message is resent after the
//!   retransmission timeout (Jacobson/Karels, 200 ms–1 s, Karn's rule), and a message older
//!   than one the agent already acknowledged is resent at once (the agent acknowledges
//!   out-of-order messages it buffers, so such a hole is a lost message).
//! - **Incoming.** Messages are delivered in sequence order; later ones are held (and
//!   acknowledged, up to [`ACK_AHEAD`] of them: beyond that the agent's window is what stops
//!   it, since it resends a lost message only after its timeout); duplicates are
//!   acknowledged again. The next message in order is acknowledged only
//!   once the consumer has room for it: a slow consumer leaves it unacknowledged and the agent
//!   resends it later, which is the protocol's own flow control (the agent does the same).
//!   Nothing is dropped once acknowledged.
//! - **Resume.** When the WebSocket ends without `channel_closed` (a read error, a close
//!   frame such as MGS's hourly `1000 Bye`, no traffic for 90 s), the channel calls
//!   `ResumeSession`, dials the new stream URL with the new token, and carries on with the
//!   same sequence numbers: every unacknowledged message is resent at once, in order. Senders
//!   and the consumer only see a pause. An empty token (the session timed out), an API
//!   refusal, or six failed attempts end the channel instead.
//!
//! # How a channel ends
//!
//! [`End`]: `channel_closed` from the service (with its `Output` text: idle timeout,
//! maximum duration, terminated elsewhere, or the remote side finished), [`DataChannel::
//! terminate`] (which also calls `TerminateSession`), a token the gateway refuses (close
//! 1003), Session Manager preferences that require KMS, or a lost channel that could not be
//! resumed. The receiver then yields `None`, and [`DataChannel::end_error`] says why.
//!
//! # Files
//!
//! - this file: [`DataChannel`] (open, send, terminate, how it ended) and the supervisor that
//!   runs connections until the channel ends;
//! - `dial`: the stream URL check, the SigV4-signed upgrade, the token frame;
//! - `connection`: one WebSocket: reading, in-order delivery, acknowledgements, ticks;
//! - `outgoing`: unacknowledged messages and the retransmission timer;
//! - `handshake`: the agent's HandshakeRequest and our response;
//! - `resume`: ResumeSession after a lost WebSocket.
//!
//! # Tasks
//!
//! One supervisor task per channel owns the reading side and the incoming state across
//! connections; one writer task per connection owns the WebSocket sink, fed by a bounded
//! queue. Senders hold [`Shared::send_lock`] for a whole [`DataChannel::send`] so that the
//! chunks of one call are consecutive (smux frames must not interleave).

mod connection;
mod dial;
mod handshake;
mod outgoing;
mod resume;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_ssm_bridge::ack::{build_ack, parse_ack};
use aws_ssm_bridge::binary_protocol::{ClientMessage, MessageType, PayloadType};
use aws_ssm_bridge::handshake::{
    ActionStatus, ActionType, HandshakeComplete, HandshakeHandler, HandshakeRequest,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use self::connection::connection;
use self::dial::dial;
use self::outgoing::Outgoing;
use self::resume::resume;
use super::api::{Document, SessionApi, Started};
use crate::error::{Error, Result};
use crate::hop::tunnel::Instance;

/// The plugin version we announce (`ClientVersion`). It decides the agent's behaviour: at or
/// above 1.1.70 the agent multiplexes port forwarding with smux, above 1.2.331.0 it turns smux
/// keepalives off (ssm.md §5). aws-ssm-bridge's value, checked against a live agent.
pub const CLIENT_VERSION: &str = aws_ssm_bridge::handshake::CLIENT_PROTOCOL_VERSION;

/// Retransmission check interval (the plugin's `ResendSleepInterval`).
const TICK: Duration = Duration::from_millis(100);
/// Bounds of the retransmission timeout.
const MIN_RTO: Duration = Duration::from_millis(200);
const MAX_RTO: Duration = Duration::from_secs(1);
/// Resends of one message before the channel is given up (the plugin's 3000, ~5 min).
const MAX_ATTEMPTS: u32 = 3000;
/// Out-of-order incoming messages held, and their bytes.
const MAX_HELD: usize = 100_000;
const MAX_HELD_BYTES: usize = 64 << 20;
/// Out-of-order messages are acknowledged while fewer than this many are held; later ones
/// are held unacknowledged (and acknowledged when delivered), so the agent's own window
/// stops it from running far ahead of a lost message it resends only after its timeout.
const ACK_AHEAD: usize = 2_000;
/// In-order messages waiting for the consumer.
const INBOX: usize = 1024;
/// Frames queued for one connection's writer.
const WRITER_QUEUE: usize = 4096;
/// A WebSocket ping this often; no frame at all for [`DEAD_AFTER`] means the connection is
/// dead (and is resumed).
const PING_EVERY: Duration = Duration::from_secs(30);
const DEAD_AFTER: Duration = Duration::from_secs(90);
/// ResumeSession attempts, and the first delay between them (doubling).
const RESUME_ATTEMPTS: u32 = 6;
const RESUME_DELAY: Duration = Duration::from_millis(150);
/// DNS + TCP + TLS + upgrade.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);

/// How a channel sends.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Largest payload of one `input_stream_data` message.
    pub chunk_size: usize,
    /// Most messages sent and not yet acknowledged.
    pub window: usize,
    /// Wait for the agent's handshake before sending data (port and command documents); a
    /// shell (`Standard_Stream`) has no handshake.
    pub gated: bool,
}

/// What the agent sent, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Output (PayloadType 1): the remote bytes.
    Output(Bytes),
    /// StdErr (11) or Error (2) text.
    Stderr(Bytes),
    /// A Flag (10): 1 DisconnectToPort, 2 TerminateSession, 3 ConnectToPortError.
    Flag(u32),
    /// ExitCode (12).
    ExitCode(i32),
}

/// Flag values (ssm.md §2).
pub const FLAG_TERMINATE_SESSION: u32 = 2;
/// The agent could not connect to the destination port.
pub const FLAG_CONNECT_TO_PORT_ERROR: u32 = 3;

/// Why a channel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `channel_closed` from the service, with its `Output` text (may be empty).
    Closed(String),
    /// Ended here: [`DataChannel::terminate`], or every handle dropped.
    Terminated,
    /// The account requires KMS encryption of session data (the key id).
    KmsRequired(String),
    /// The gateway closed the data channel at once: the token was refused.
    Refused { code: u16, reason: String },
    /// The WebSocket was lost and the session could not be resumed (why).
    Lost(String),
    /// The agent broke the protocol or the handshake failed (what).
    Failed(String),
}

/// State shared by the handles, the supervisor and the writer.
struct Shared {
    /// `SSM session s-… (AWS-StartPortForwardingSession) on web-1 (i-…)`, for messages.
    label: String,
    target: String,
    session_id: String,
    api: Arc<dyn SessionApi>,
    cfg: ChannelConfig,
    /// The next outgoing sequence number. Held for a whole [`DataChannel::send`] (so the
    /// chunks of one call are consecutive) and for each control message.
    send_lock: tokio::sync::Mutex<i64>,
    /// Sent and not yet acknowledged, oldest first. Locked briefly, never across an await.
    out: Mutex<Outgoing>,
    /// Woken (notify_waiters) by every acknowledgement and when the channel ends.
    acked: Notify,
    /// The current connection's writer queue; `None` while (re)connecting. Replaced by the
    /// supervisor; senders clone it.
    writer: Mutex<Option<mpsc::Sender<Message>>>,
    /// (handshake done, publication paused): data goes out when `(true, false)`.
    gate: watch::Sender<(bool, bool)>,
    /// Set once, when the channel ends; `ended` is cancelled right after.
    end: OnceLock<End>,
    ended: CancellationToken,
    /// Cancelled to stop the channel ([`DataChannel::terminate`], drop).
    stop: CancellationToken,
    /// TerminateSession was called (once is enough).
    terminated: AtomicBool,
    /// Successful ResumeSession reconnections.
    resumes: AtomicU32,
    /// From the handshake.
    agent_version: OnceLock<String>,
}

/// One SSM session's data channel. Dropping the last handle stops it (without
/// TerminateSession; call [`DataChannel::terminate`] for that).
pub struct DataChannel {
    shared: Arc<Shared>,
}

impl Drop for DataChannel {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl DataChannel {
    /// Starts a session on `instance` with `document` and opens its data channel.
    pub async fn open(
        api: &Arc<dyn SessionApi>,
        instance: &Instance,
        document: &Document,
        reason: Option<&str>,
        cfg: ChannelConfig,
    ) -> Result<(DataChannel, mpsc::Receiver<Inbound>)> {
        let started = api.start(document, reason).await?;
        let label = format!(
            "SSM session {} ({}) on {}",
            started.session_id,
            document.shown(),
            instance.label()
        );
        tracing::debug!("{label}: started");
        let ws = match dial(api.as_ref(), &started, &label).await {
            Ok(ws) => ws,
            Err(e) => {
                api.terminate(&started.session_id).await;
                return Err(e.error);
            }
        };
        let (gate, _) = watch::channel((!cfg.gated, false));
        let shared = Arc::new(Shared {
            label,
            target: instance.id.clone(),
            session_id: started.session_id.clone(),
            api: api.clone(),
            cfg,
            send_lock: tokio::sync::Mutex::new(0),
            out: Mutex::new(Outgoing::new()),
            acked: Notify::new(),
            writer: Mutex::new(None),
            gate,
            end: OnceLock::new(),
            ended: CancellationToken::new(),
            stop: CancellationToken::new(),
            terminated: AtomicBool::new(false),
            resumes: AtomicU32::new(0),
            agent_version: OnceLock::new(),
        });
        let (inbox, rx) = mpsc::channel(INBOX);
        let incoming = Incoming {
            expected: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            handshake: HandshakeHandler::new(),
            inbox,
        };
        tokio::spawn(supervise(shared.clone(), ws, incoming));
        Ok((DataChannel { shared }, rx))
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.shared.session_id
    }

    /// `SSM session s-… (document) on web-1 (i-…)`.
    pub fn label(&self) -> &str {
        &self.shared.label
    }

    /// How many times the channel was resumed after losing its WebSocket.
    pub fn resumes(&self) -> u32 {
        self.shared.resumes.load(Ordering::Relaxed)
    }

    /// The agent's version, once its handshake arrived.
    pub fn agent_version(&self) -> Option<&str> {
        self.shared.agent_version.get().map(String::as_str)
    }

    /// Why the channel ended, once it has.
    pub fn end(&self) -> Option<&End> {
        self.shared.end.get()
    }

    /// True once the channel has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.end.get().is_some()
    }

    /// The error that the channel's end means for a user of it.
    pub fn end_error(&self) -> Error {
        self.shared.end_error()
    }

    /// Waits until data may be sent (the handshake completed), for at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        match tokio::time::timeout(timeout, self.shared.wait_open()).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                what: format!("{}: waiting for the agent's handshake", self.shared.label),
                secs: timeout.as_secs_f64(),
                hint: "the SSM agent did not answer: check that it is running and up to date \
                       (`sudo systemctl status amazon-ssm-agent`), or raise `timeout`"
                    .into(),
            }),
        }
    }

    /// Sends `data` as Output messages, in order, waiting while the window is full.
    pub async fn send(&self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.shared.wait_open().await?;
        let mut seq = self.shared.send_lock.lock().await;
        for chunk in data.chunks(self.shared.cfg.chunk_size.max(1)) {
            self.shared
                .push(
                    &mut seq,
                    PayloadType::Output,
                    Bytes::copy_from_slice(chunk),
                    true,
                )
                .await?;
        }
        Ok(())
    }

    /// Sends the terminal size (PayloadType 3, `{"cols":N,"rows":M}`).
    pub async fn send_size(&self, cols: u32, rows: u32) -> Result<()> {
        let payload = serde_json::json!({ "cols": cols, "rows": rows }).to_string();
        self.shared.wait_open().await?;
        let mut seq = self.shared.send_lock.lock().await;
        self.shared
            .push(&mut seq, PayloadType::Size, Bytes::from(payload), true)
            .await
    }

    /// Ends the session: stops the channel and calls TerminateSession (once).
    pub async fn terminate(&self) {
        self.shared.terminate().await;
    }
}

impl Shared {
    /// Waits for the gate to open; an error once the channel has ended.
    async fn wait_open(&self) -> Result<()> {
        let mut gate = self.gate.subscribe();
        loop {
            if self.end.get().is_some() {
                return Err(self.end_error());
            }
            if *gate.borrow_and_update() == (true, false) {
                return Ok(());
            }
            tokio::select! {
                changed = gate.changed() => if changed.is_err() { return Err(self.end_error()) },
                () = self.ended.cancelled() => {}
            }
        }
    }

    /// Numbers one message, keeps it for retransmission and writes it. `wait_room`: wait
    /// while `window` messages are unacknowledged (not for handshake answers, which the
    /// reader itself must be free to send).
    async fn push(
        &self,
        seq: &mut i64,
        payload_type: PayloadType,
        payload: Bytes,
        wait_room: bool,
    ) -> Result<()> {
        if wait_room {
            loop {
                let acked = self.acked.notified();
                tokio::pin!(acked);
                acked.as_mut().enable();
                if self.end.get().is_some() {
                    return Err(self.end_error());
                }
                if self.out.lock().expect("out lock").len() < self.cfg.window.max(1) {
                    break;
                }
                acked.await;
            }
        }
        let wire = ClientMessage::new(MessageType::InputStreamData, *seq, payload_type, payload)
            .serialize();
        self.out
            .lock()
            .expect("out lock")
            .push(*seq, wire.clone(), Instant::now());
        *seq += 1;
        let writer = self.writer.lock().expect("writer lock").clone();
        if let Some(w) = writer {
            // An error means the connection is going away: the message stays in `out` and is
            // resent on the resumed connection.
            let _ = w.send(Message::Binary(wire)).await;
        }
        Ok(())
    }

    /// Records the end (first one wins) and wakes every waiter.
    fn finish(&self, end: End) {
        if self.end.set(end).is_ok() {
            tracing::debug!("{}: ended: {:?}", self.label, self.end.get());
        }
        *self.writer.lock().expect("writer lock") = None;
        self.ended.cancel();
        self.acked.notify_waiters();
    }

    async fn terminate(&self) {
        self.stop.cancel();
        if matches!(self.end.get(), Some(End::Closed(_))) {
            return;
        }
        if !self.terminated.swap(true, Ordering::SeqCst) {
            self.api.terminate(&self.session_id).await;
        }
    }

    fn end_error(&self) -> Error {
        let what = self.label.clone();
        match self.end.get() {
            None => Error::SsmEnded {
                what,
                why: "it is closing".into(),
                hint: String::new(),
            },
            Some(End::Closed(output)) => Error::SsmEnded {
                what,
                why: if output.is_empty() {
                    "Session Manager closed the channel".into()
                } else {
                    format!("Session Manager closed the channel: {output}")
                },
                hint: "sessions end after the idle timeout (20 min unless the Session Manager \
                       preferences say otherwise) or the maximum session duration, or when \
                       someone terminates them; a new connection starts a new session"
                    .into(),
            },
            Some(End::Terminated) => Error::SsmEnded {
                what,
                why: "it was terminated by aws-hop (the hop was closed)".into(),
                hint: String::new(),
            },
            Some(End::KmsRequired(key)) => Error::SsmKmsRequired {
                what,
                key: key.clone(),
                target: self.target.clone(),
            },
            Some(End::Refused { code, reason }) => Error::SsmChannelRefused {
                host: "ssmmessages".into(),
                session_id: self.session_id.clone(),
                code: *code,
                reason: reason.clone(),
            },
            Some(End::Lost(why)) => Error::SsmEnded {
                what,
                why: format!("its data channel was lost and could not be resumed ({why})"),
                hint: "check the network to ssmmessages.<region>.amazonaws.com; a new \
                       connection starts a new session"
                    .into(),
            },
            Some(End::Failed(why)) => Error::SsmEnded {
                what,
                why: why.clone(),
                hint: "this is a protocol failure between aws-hop and the SSM agent: update \
                       the agent, and report it if it persists"
                    .into(),
            },
        }
    }
}

/// The receiving state; owned by the supervisor, kept across resumed connections.
struct Incoming {
    /// The next sequence number to deliver.
    expected: i64,
    /// Messages at or after `expected`, with whether they were acknowledged.
    held: BTreeMap<i64, (ClientMessage, bool)>,
    held_bytes: usize,
    handshake: HandshakeHandler,
    /// To the consumer. A full inbox leaves the next message unacknowledged.
    inbox: mpsc::Sender<Inbound>,
}

/// What ended one connection.
enum Outcome {
    /// The channel is over.
    Final(End),
    /// The WebSocket is gone; resume.
    Lost(String),
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Runs connections until the channel ends, resuming lost ones.
async fn supervise(shared: Arc<Shared>, first: Ws, mut rx: Incoming) {
    let mut ws = first;
    let end = loop {
        match connection(&shared, ws, &mut rx).await {
            Outcome::Final(end) => break end,
            Outcome::Lost(why) => {
                if shared.stop.is_cancelled() {
                    break End::Terminated;
                }
                tracing::info!("{}: data channel lost ({why}); resuming", shared.label);
                match resume(&shared, &why).await {
                    Ok(next) => {
                        shared.resumes.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("{}: resumed", shared.label);
                        ws = next;
                    }
                    Err(end) => break end,
                }
            }
        }
    };
    shared.finish(end);
}
