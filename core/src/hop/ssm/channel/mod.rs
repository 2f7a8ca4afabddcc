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
//! # Tasks
//!
//! One supervisor task per channel owns the reading side and the incoming state across
//! connections; one writer task per connection owns the WebSocket sink, fed by a bounded
//! queue. Senders hold [`Shared::send_lock`] for a whole [`DataChannel::send`] so that the
//! chunks of one call are consecutive (smux frames must not interleave).

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

use super::session::{Document, SsmApi, Started};
use crate::aws::instances::InstanceInfo;
use crate::error::{Error, Result};

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
    api: SsmApi,
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
        api: &SsmApi,
        instance: &InstanceInfo,
        document: &Document,
        reason: Option<&str>,
        cfg: ChannelConfig,
    ) -> Result<(DataChannel, mpsc::Receiver<Inbound>)> {
        let started = api.start(instance, document, reason).await?;
        let label = format!(
            "SSM session {} ({}) on {}",
            started.session_id,
            document.shown(),
            instance.label()
        );
        tracing::debug!("{label}: started");
        let ws = match dial(api, &started, &label).await {
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
                if self.out.lock().expect("out lock").q.len() < self.cfg.window.max(1) {
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

// ---------------------------------------------------------------------------------------------
// Outgoing messages and the retransmission timer
// ---------------------------------------------------------------------------------------------

struct Pending {
    seq: i64,
    wire: Bytes,
    last_sent: Instant,
    attempts: u32,
}

/// Sent, unacknowledged messages and the RTT estimate (RFC 6298 with the plugin's bounds).
struct Outgoing {
    q: VecDeque<Pending>,
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
    /// The highest sequence number acknowledged so far.
    max_acked: i64,
}

impl Outgoing {
    fn new() -> Outgoing {
        Outgoing {
            q: VecDeque::new(),
            srtt: Duration::from_millis(100),
            rttvar: Duration::ZERO,
            rto: MIN_RTO,
            max_acked: -1,
        }
    }

    fn push(&mut self, seq: i64, wire: Bytes, now: Instant) {
        self.q.push_back(Pending {
            seq,
            wire,
            last_sent: now,
            attempts: 1,
        });
    }

    /// Retires `seq`; true if it was pending.
    fn ack(&mut self, seq: i64, now: Instant) -> bool {
        self.max_acked = self.max_acked.max(seq);
        // Acknowledgements come mostly in order: look from the front.
        let Some(i) = self.q.iter().position(|p| p.seq == seq) else {
            return false;
        };
        let p = self.q.remove(i).expect("position is in range");
        if p.attempts == 1 {
            // Karn: only first transmissions give RTT samples.
            let sample = now.saturating_duration_since(p.last_sent);
            let diff = self.srtt.abs_diff(sample);
            self.rttvar = self.rttvar * 3 / 4 + diff / 4;
            self.srtt = self.srtt * 7 / 8 + sample / 8;
            self.rto = (self.srtt + (self.rttvar * 4).max(Duration::from_millis(10)))
                .clamp(MIN_RTO, MAX_RTO);
        }
        true
    }

    /// What to resend now: the head once its timeout passed, and any message below the
    /// highest acknowledged one that was sent more than one smoothed RTT ago (a hole).
    /// `Err(seq)` when a message used up its attempts.
    fn due(&mut self, now: Instant) -> std::result::Result<Vec<Bytes>, i64> {
        let mut out = Vec::new();
        let rto = self.rto;
        let hole_age = (self.srtt * 2).max(Duration::from_millis(20));
        let max_acked = self.max_acked;
        for (i, p) in self.q.iter_mut().enumerate() {
            let age = now.saturating_duration_since(p.last_sent);
            let head_due = i == 0 && age > rto;
            let hole = p.seq < max_acked && age > hole_age;
            if !(head_due || hole) {
                if p.seq >= max_acked {
                    break;
                }
                continue;
            }
            if p.attempts >= MAX_ATTEMPTS {
                return Err(p.seq);
            }
            p.attempts += 1;
            p.last_sent = now;
            out.push(p.wire.clone());
            if out.len() >= 64 {
                break;
            }
        }
        Ok(out)
    }

    /// Every unacknowledged message, to resend on a resumed connection.
    fn all(&mut self, now: Instant) -> Vec<Bytes> {
        self.q
            .iter_mut()
            .map(|p| {
                p.last_sent = now;
                p.attempts = p.attempts.saturating_add(1);
                p.wire.clone()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Incoming messages
// ---------------------------------------------------------------------------------------------

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

/// ResumeSession with retries, then a new WebSocket.
async fn resume(shared: &Shared, why: &str) -> std::result::Result<Ws, End> {
    let mut delay = RESUME_DELAY;
    let mut last = why.to_string();
    for _ in 0..RESUME_ATTEMPTS {
        tokio::select! {
            () = shared.stop.cancelled() => return Err(End::Terminated),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(3));
        match shared.api.resume(&shared.session_id).await {
            Ok(Some(started)) => match dial(&shared.api, &started, &shared.label).await {
                Ok(ws) => return Ok(ws),
                Err(e) if e.refused.is_some() => {
                    let (code, reason) = e.refused.unwrap_or_default();
                    return Err(End::Refused { code, reason });
                }
                Err(e) => last = e.error.to_string(),
            },
            Ok(None) => {
                return Err(End::Lost(
                    "ResumeSession gave no token: the session timed out (its idle timeout or \
                     maximum duration passed)"
                        .into(),
                ));
            }
            Err(e) if e.retry => last = e.error.to_string(),
            Err(e) => return Err(End::Lost(e.error.to_string())),
        }
    }
    Err(End::Lost(format!(
        "{RESUME_ATTEMPTS} ResumeSession attempts failed; last: {last}"
    )))
}

/// Reads one connection until it ends, delivering, acknowledging and retransmitting.
async fn connection(shared: &Arc<Shared>, ws: Ws, rx: &mut Incoming) -> Outcome {
    let (mut sink, mut source) = ws.split();
    let (wtx, mut wrx) = mpsc::channel::<Message>(WRITER_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = wrx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            // What is already queued (a burst of acknowledgements, the chunks of one send)
            // goes out with it: one flush, one TLS write, instead of one per message.
            while let Ok(m) = wrx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // The unacknowledged backlog first (the agent keeps counting across a resume), then new
    // messages. A sender may slip one in between; the agent reorders, so that is harmless.
    *shared.writer.lock().expect("writer lock") = Some(wtx.clone());
    let backlog = shared.out.lock().expect("out lock").all(Instant::now());
    for wire in backlog {
        if wtx.send(Message::Binary(wire)).await.is_err() {
            break;
        }
    }

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_inbound = Instant::now();
    let outcome = loop {
        let deliverable = rx.held.contains_key(&rx.expected);
        // A clone: a permit borrows its sender, and `rx` is needed mutably beside it.
        let inbox = rx.inbox.clone();
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break Outcome::Final(End::Terminated),
            frame = source.next() => {
                last_inbound = Instant::now();
                let step = match frame {
                    Some(Ok(Message::Binary(data))) => on_binary(shared, rx, &wtx, data),
                    Some(Ok(Message::Text(text))) => on_text(shared, text.as_str()),
                    Some(Ok(Message::Close(frame))) => Some(on_close(frame)),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(Outcome::Lost(format!("WebSocket read failed: {e}"))),
                    None => Some(Outcome::Lost("the WebSocket ended without a close frame".into())),
                };
                if let Some(o) = step {
                    break o;
                }
                if let Some(o) = drain(shared, rx, &wtx) {
                    break o;
                }
            }
            permit = inbox.reserve(), if deliverable => {
                let Some(o) = deliver_one(shared, rx, &wtx, permit.ok()) else {
                    if let Some(o) = drain(shared, rx, &wtx) {
                        break o;
                    }
                    continue;
                };
                break o;
            }
            _ = tick.tick() => {
                let due = shared.out.lock().expect("out lock").due(Instant::now());
                match due {
                    Ok(wires) => for w in wires {
                        let _ = wtx.try_send(Message::Binary(w));
                    },
                    Err(seq) => break Outcome::Final(End::Lost(format!(
                        "the agent never acknowledged message {seq} after {MAX_ATTEMPTS} resends"
                    ))),
                }
                if last_inbound.elapsed() > DEAD_AFTER {
                    break Outcome::Lost(format!(
                        "nothing received for {} s", DEAD_AFTER.as_secs()
                    ));
                }
            }
            _ = ping.tick() => {
                let _ = wtx.try_send(Message::Ping(Bytes::from_static(b"keepalive")));
            }
        }
    };
    {
        let mut w = shared.writer.lock().expect("writer lock");
        if w.as_ref().is_some_and(|c| c.same_channel(&wtx)) {
            *w = None;
        }
    }
    drop(wtx);
    if matches!(outcome, Outcome::Lost(_)) {
        writer.abort();
    } else {
        // Let the writer send what is queued (a last acknowledgement) and a close frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }
    outcome
}

/// A binary frame: an acknowledgement, stream data, or a service message.
fn on_binary(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    wtx: &mpsc::Sender<Message>,
    data: Bytes,
) -> Option<Outcome> {
    let msg = match ClientMessage::deserialize(data) {
        Ok(m) => m,
        Err(e) => {
            // Not acknowledged: if it was stream data, the agent sends it again.
            tracing::debug!("{}: skipping a message: {e}", shared.label);
            return None;
        }
    };
    match msg.message_type {
        MessageType::Acknowledge => {
            if let Ok(a) = parse_ack(&msg) {
                let acked = shared
                    .out
                    .lock()
                    .expect("out lock")
                    .ack(a.sequence_number, Instant::now());
                if acked {
                    shared.acked.notify_waiters();
                }
            }
            None
        }
        MessageType::OutputStreamData => {
            let seq = msg.sequence_number;
            tracing::trace!(
                "{}: output {seq} ({} bytes, type {:?}), expecting {}, {} held",
                shared.label,
                msg.payload.len(),
                msg.payload_type,
                rx.expected,
                rx.held.len()
            );
            if seq < rx.expected {
                // A duplicate of a delivered message: our acknowledgement was lost.
                send_ack(wtx, &msg, true);
                return None;
            }
            if let Some((_, acked)) = rx.held.get(&seq) {
                if *acked {
                    send_ack(wtx, &msg, seq == rx.expected);
                }
                return None;
            }
            let ahead = seq > rx.expected;
            // The expected message always gets in: it is what lets the held ones out.
            if ahead
                && (rx.held.len() >= MAX_HELD || rx.held_bytes + msg.payload.len() > MAX_HELD_BYTES)
            {
                // No room: unacknowledged, so the agent resends it later.
                return None;
            }
            let ack_now = ahead && rx.held.len() < ACK_AHEAD;
            if ack_now {
                send_ack(wtx, &msg, false);
            }
            rx.held_bytes += msg.payload.len();
            rx.held.insert(seq, (msg, ack_now));
            None
        }
        MessageType::ChannelClosed => {
            Some(Outcome::Final(End::Closed(closed_output(&msg.payload))))
        }
        MessageType::StartPublication => {
            shared.gate.send_modify(|g| g.1 = false);
            None
        }
        MessageType::PausePublication => {
            shared.gate.send_modify(|g| g.1 = true);
            None
        }
        MessageType::InputStreamData => None,
    }
}

/// A text frame: MGS may send the service messages as text.
fn on_text(shared: &Shared, text: &str) -> Option<Outcome> {
    match text.trim() {
        "channel_closed" => Some(Outcome::Final(End::Closed(String::new()))),
        "start_publication" => {
            shared.gate.send_modify(|g| g.1 = false);
            None
        }
        "pause_publication" => {
            shared.gate.send_modify(|g| g.1 = true);
            None
        }
        other => {
            tracing::debug!(
                "{}: ignoring a text frame ({} bytes)",
                shared.label,
                other.len()
            );
            None
        }
    }
}

/// A close frame: 1003 (and 1008) mean the token was refused; anything else is a lost
/// connection to resume (MGS closes with 1000 "Bye" about hourly).
fn on_close(frame: Option<tungstenite::protocol::CloseFrame>) -> Outcome {
    let (code, reason) = frame.map_or((1005, String::new()), |f| {
        (u16::from(f.code), f.reason.as_str().to_string())
    });
    if matches!(code, 1003 | 1008) {
        Outcome::Final(End::Refused { code, reason })
    } else {
        Outcome::Lost(format!(
            "the gateway closed the WebSocket ({code} {reason})"
        ))
    }
}

/// Delivers what is in order, as far as the consumer has room.
fn drain(shared: &Arc<Shared>, rx: &mut Incoming, wtx: &mpsc::Sender<Message>) -> Option<Outcome> {
    let inbox = rx.inbox.clone();
    while rx.held.contains_key(&rx.expected) {
        let permit = match inbox.try_reserve() {
            Ok(p) => Some(p),
            Err(mpsc::error::TrySendError::Full(())) => {
                // Handshake messages need no room; data waits (unacknowledged).
                let next = &rx.held[&rx.expected].0;
                if needs_room(next.payload_type) {
                    return None;
                }
                None
            }
            // Nobody reads any more: acknowledge and discard.
            Err(mpsc::error::TrySendError::Closed(())) => None,
        };
        if let Some(o) = deliver_one(shared, rx, wtx, permit) {
            return Some(o);
        }
    }
    None
}

fn needs_room(t: PayloadType) -> bool {
    matches!(
        t,
        PayloadType::Output
            | PayloadType::StdErr
            | PayloadType::Error
            | PayloadType::Flag
            | PayloadType::ExitCode
            | PayloadType::Undefined
    )
}

/// Delivers the message at `expected` (which must be held): acknowledges it and hands it to
/// the consumer through `permit` (`None`: consumer gone, or a handshake message).
fn deliver_one(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    wtx: &mpsc::Sender<Message>,
    permit: Option<mpsc::Permit<'_, Inbound>>,
) -> Option<Outcome> {
    let (msg, acked) = rx.held.remove(&rx.expected)?;
    rx.held_bytes = rx.held_bytes.saturating_sub(msg.payload.len());
    rx.expected += 1;
    if !acked {
        send_ack(wtx, &msg, true);
    }
    let event = match msg.payload_type {
        PayloadType::Output | PayloadType::Undefined => {
            if !shared.cfg.gated {
                shared.gate.send_modify(|g| g.0 = true);
            }
            (!msg.payload.is_empty()).then(|| Inbound::Output(msg.payload.clone()))
        }
        PayloadType::StdErr | PayloadType::Error => Some(Inbound::Stderr(msg.payload.clone())),
        PayloadType::Flag => msg
            .payload
            .get(..4)
            .map(|b| Inbound::Flag(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        PayloadType::ExitCode => {
            let text = String::from_utf8_lossy(&msg.payload);
            let digits: String = text
                .trim()
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().ok().map(Inbound::ExitCode)
        }
        PayloadType::HandshakeRequest => return on_handshake_request(shared, rx, &msg.payload),
        PayloadType::HandshakeComplete => {
            if let Ok(c) = serde_json::from_slice::<HandshakeComplete>(&msg.payload)
                && let Err(e) = rx.handshake.on_complete(c)
            {
                tracing::debug!("{}: {e}", shared.label);
            }
            tracing::debug!("{}: handshake complete", shared.label);
            shared.gate.send_modify(|g| g.0 = true);
            None
        }
        _ => None,
    };
    if let (Some(event), Some(permit)) = (event, permit) {
        permit.send(event);
    }
    None
}

/// The agent's HandshakeRequest: answer it (from a task: the reader must not wait for the
/// send lock). A request for KMS encryption ends the channel: aws-hop does not do it.
fn on_handshake_request(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    payload: &[u8],
) -> Option<Outcome> {
    let request: HandshakeRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return Some(Outcome::Final(End::Failed(format!(
                "the agent's HandshakeRequest is malformed: {e}"
            ))));
        }
    };
    let kms_key = request
        .requested_client_actions
        .iter()
        .find(|a| a.action_type == ActionType::KmsEncryption)
        .map(|a| {
            a.action_parameters
                .get("KMSKeyId")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_string()
        });
    let _ = shared.agent_version.set(request.agent_version.clone());
    // `on_request` is async only for KMS, which is answered here without it.
    let mut response = match futures_util::FutureExt::now_or_never(rx.handshake.on_request(request))
    {
        Some(Ok(Some(r))) => r,
        Some(Ok(None)) => return None,
        Some(Err(e)) => return Some(Outcome::Final(End::Failed(e.to_string()))),
        None => return Some(Outcome::Final(End::Failed("handshake stalled".into()))),
    };
    for a in &mut response.processed_client_actions {
        if a.action_type == ActionType::KmsEncryption {
            a.action_status = ActionStatus::Unsupported;
            a.error = Some("aws-hop does not do KMS-encrypted sessions yet".into());
        }
    }
    if kms_key.is_some() {
        response.errors = vec!["aws-hop does not do KMS-encrypted sessions yet".into()];
    }
    let body = match serde_json::to_vec(&response) {
        Ok(b) => Bytes::from(b),
        Err(e) => return Some(Outcome::Final(End::Failed(e.to_string()))),
    };
    let s = shared.clone();
    tokio::spawn(async move {
        let mut seq = s.send_lock.lock().await;
        let _ = s
            .push(&mut seq, PayloadType::HandshakeResponse, body, false)
            .await;
    });
    kms_key.map(|key| Outcome::Final(End::KmsRequired(key)))
}

fn send_ack(wtx: &mpsc::Sender<Message>, msg: &ClientMessage, sequential: bool) {
    if let Ok(ack) = build_ack(msg, sequential) {
        // Full queue: the agent resends, and the duplicate is acknowledged then.
        let _ = wtx.try_send(Message::Binary(ack.serialize()));
    }
}

/// The `Output` of a `channel_closed` payload (JSON), or the payload as text.
fn closed_output(payload: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v
            .get("Output")
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .to_string(),
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    };
    let text = text.trim();
    text.chars().take(500).collect()
}

// ---------------------------------------------------------------------------------------------
// Dialing
// ---------------------------------------------------------------------------------------------

/// A failed dial: the error, and the close code if the gateway refused the token.
struct DialError {
    error: Error,
    refused: Option<(u16, String)>,
}

impl From<Error> for DialError {
    fn from(error: Error) -> Self {
        DialError {
            error,
            refused: None,
        }
    }
}

/// True for the stream URLs of Session Manager: `wss://` to an `ssmmessages` host of AWS
/// (regional, FIPS, VPC endpoint; the rule of aws-ssm-bridge's `EndpointPolicy::AwsOnly`),
/// so a tampered answer cannot send the token elsewhere.
fn allowed_stream_host(url: &tungstenite::http::Uri) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    let in_aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    let is_ssm = host
        .split('.')
        .any(|l| l == "ssmmessages" || l.starts_with("ssmmessages-"));
    url.scheme_str() == Some("wss") && in_aws && is_ssm
}

/// Dials the stream URL (SigV4-signed upgrade, as plugin 1.2.764.0 does) and sends the
/// `OpenDataChannelInput` with the token.
async fn dial(api: &SsmApi, started: &Started, label: &str) -> std::result::Result<Ws, DialError> {
    crate::aws::ws_stream::install_crypto_provider();
    let mut request = started
        .stream_url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Ssm {
            what: format!("{label}: cannot open the data channel"),
            reason: format!("the stream URL is malformed: {e}"),
            hint: "this is unexpected from Session Manager: check any AWS_ENDPOINT_URL setting"
                .into(),
        })?;
    let uri = request.uri().clone();
    if !allowed_stream_host(&uri) {
        return Err(Error::Ssm {
            what: format!("{label}: refusing to open the data channel"),
            reason: format!(
                "the stream URL points to {}, which is not a Session Manager (ssmmessages) \
                 endpoint of AWS",
                uri.host().unwrap_or("no host")
            ),
            hint: "check AWS_ENDPOINT_URL_SSM and any proxy between this machine and AWS".into(),
        }
        .into());
    }
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.as_str().to_string());
    let credentials = api.config().credentials().await?;
    sign_upgrade(&mut request, &authority, &api.config().region, credentials)?;
    request.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("aws-hop/", env!("CARGO_PKG_VERSION"))),
    );
    let connect_err = |reason: String, hint: &str| Error::Ssm {
        what: format!("{label}: cannot open the data channel to {host}"),
        reason,
        hint: hint.to_string(),
    };
    let handshake =
        async {
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| {
            connect_err(
                format!("TCP connect to port {port} failed: {e}"),
                "check that this machine reaches ssmmessages.<region>.amazonaws.com on TCP 443 \
                 (a firewall or a proxy may be in the way)",
            )
        })?;
            let _ = tcp.set_nodelay(true);
            let tls = crate::aws::ws_stream::tls_config(&host)?;
            let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
                request,
                tcp,
                None,
                Some(Connector::Rustls(tls)),
            )
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(r) => connect_err(
                    format!("the gateway answered HTTP {}", r.status().as_u16()),
                    "check this machine's clock, and that IAM allows ssmmessages:OpenDataChannel \
                 for these credentials",
                ),
                other => connect_err(
                    other.to_string(),
                    "check the trust store (SSL_CERT_FILE) and any proxy",
                ),
            })?;
            Ok::<_, Error>(ws)
        };
    let mut ws = tokio::time::timeout(DIAL_TIMEOUT, Box::pin(handshake))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{label}: opening the data channel to {host}"),
            secs: DIAL_TIMEOUT.as_secs_f64(),
            hint: "check that this machine reaches it on TCP 443".into(),
        })??;
    let open = serde_json::json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "TokenValue": started.token,
        "ClientId": uuid::Uuid::new_v4().to_string(),
        "ClientVersion": CLIENT_VERSION,
    })
    .to_string();
    ws.send(Message::Text(open.into())).await.map_err(|e| {
        connect_err(
            format!("sending the first frame failed: {e}"),
            "try again; check the network",
        )
    })?;
    Ok(ws)
}

/// SigV4 headers for the upgrade: `GET <url>`, only `host` signed, empty body, service
/// `ssmmessages` (what the plugin signs since 1.2.764.0).
fn sign_upgrade(
    request: &mut tungstenite::handshake::client::Request,
    host: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("cannot sign the SSM data channel request: {e}"))
    };
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ssmmessages")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let url = request.uri().to_string();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    for h in headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|e| failed(&e))?;
        let value = HeaderValue::from_str(h.value()).map_err(|e| failed(&e))?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_manager_hosts_get_the_token() {
        let ok = |u: &str| allowed_stream_host(&u.parse().unwrap());
        assert!(ok(
            "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe"
        ));
        assert!(ok(
            "wss://vpce-0a-1b.ssmmessages.eu-west-1.vpce.amazonaws.com/v1/x"
        ));
        assert!(ok(
            "wss://ssmmessages-fips.us-gov-west-1.amazonaws.com/v1/x"
        ));
        assert!(!ok("ws://ssmmessages.us-east-1.amazonaws.com/v1/x"));
        assert!(!ok("wss://ssmmessages.evil.com/v1/x"));
        assert!(!ok("wss://evil-ssmmessages.us-east-1.amazonaws.com/v1/x"));
    }

    #[test]
    fn retransmission_resends_the_head_after_the_timeout_and_holes_at_once() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        for seq in 0..4 {
            o.push(seq, Bytes::from(vec![u8::try_from(seq).unwrap()]), t0);
        }
        // Nothing is due before the timeout.
        assert!(o.due(t0 + Duration::from_millis(50)).unwrap().is_empty());
        // The agent acknowledges 2 and 3 (it buffered them): 0 and 1 are holes.
        assert!(o.ack(2, t0 + Duration::from_millis(30)));
        assert!(o.ack(3, t0 + Duration::from_millis(30)));
        assert!(!o.ack(3, t0 + Duration::from_millis(31)), "a duplicate ack");
        assert!(o.due(t0 + Duration::from_millis(100)).unwrap().is_empty());
        let due = o.due(t0 + Duration::from_millis(180)).unwrap();
        assert_eq!(due, vec![Bytes::from(vec![0u8]), Bytes::from(vec![1u8])]);
        // Just resent: not again at once.
        assert!(o.due(t0 + Duration::from_millis(190)).unwrap().is_empty());
        assert!(o.ack(0, t0 + Duration::from_millis(200)));
        assert!(o.ack(1, t0 + Duration::from_millis(200)));
        assert!(o.q.is_empty());
    }

    #[test]
    fn a_resume_resends_the_whole_backlog_in_order() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        for seq in 0..3 {
            o.push(seq, Bytes::from(vec![u8::try_from(seq).unwrap()]), t0);
        }
        o.ack(1, t0);
        assert_eq!(
            o.all(t0),
            vec![Bytes::from(vec![0u8]), Bytes::from(vec![2u8])]
        );
    }

    #[test]
    fn the_rto_stays_within_its_bounds() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        o.push(0, Bytes::new(), t0);
        o.ack(0, t0 + Duration::from_millis(1));
        assert_eq!(o.rto, MIN_RTO);
        o.push(1, Bytes::new(), t0);
        o.ack(1, t0 + Duration::from_secs(30));
        assert_eq!(o.rto, MAX_RTO);
    }

    #[test]
    fn channel_closed_output_is_read_from_its_json() {
        let p = br#"{"MessageId":"x","MessageType":"channel_closed","Output":"Session idle timeout","SessionId":"s"}"#;
        assert_eq!(closed_output(p), "Session idle timeout");
        assert_eq!(closed_output(b"plain text"), "plain text");
    }
}
