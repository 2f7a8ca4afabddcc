//! smux v1: many TCP connections over one port-forwarding session.
//!
//! Session Manager's port forwarding multiplexes connections with xtaci/smux protocol v1
//! (`shared/protocols/ssm.md` §5) over the session's byte stream. A frame is an 8-byte header,
//! `ver(1)=1, cmd(1), len(u16 LE), sid(u32 LE)`, then `len` bytes; the commands are SYN (open
//! a stream), FIN (close it), PSH (data) and NOP. The client opens streams 3, 5, 7, … and
//! frames carry at most 32 KiB.
//!
//! This is our own small client rather than aws-ssm-bridge's `SmuxSession`, which is bound to
//! one `Session`: it would die when the data channel is resumed. [`Mux`] runs on a
//! [`Transport`] (the resumable [`super::channel::DataChannel`]), so a resume is invisible here.
//!
//! Rules, from the agent's side of the protocol:
//!
//! - **No half-close.** The agent closes a whole stream on the first EOF in either direction,
//!   so a local `shutdown` sends FIN and ends the stream both ways, as the plugin does
//!   (protocols that half-close and then wait for an answer do not work over SSM).
//! - **A failed dial** on the agent's side is a data-channel Flag `ConnectToPortError` (not
//!   per stream) followed by a FIN: the next stream to be FINed without having received any
//!   data fails with an error naming the target, rather than ending cleanly.
//! - **Back-pressure, never loss.** Each stream buffers at most [`STREAM_QUEUE`] chunks; when
//!   its local client does not read, the demultiplexer waits (holding up the session, as smux
//!   v1 does), and after `stall` the one stuck stream is reset with an error so the others go
//!   on. A stream that ends because the session ended reads an error, never a clean EOF.
//! - **No keepalive.** With our client version the agent turns smux keepalives off; NOPs are
//!   accepted and ignored.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::channel::{FLAG_CONNECT_TO_PORT_ERROR, FLAG_TERMINATE_SESSION, Inbound};
use crate::error::{Error, Result};

/// The smux protocol version Session Manager speaks.
pub const VERSION: u8 = 1;
/// Header bytes per frame.
pub const HEADER: usize = 8;
/// Largest frame payload (smux's MaxFrameSize).
pub const MAX_FRAME: usize = 32 * 1024;
/// Chunks buffered per stream before the demultiplexer waits for its reader.
pub const STREAM_QUEUE: usize = 64;
/// Encoded frames queued for the session's writer.
const WRITE_QUEUE: usize = 256;
/// The writer sends at most this much per data-channel call (several frames coalesced).
const BATCH: usize = 256 * 1024;

/// A frame's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Open a stream.
    Syn = 0,
    /// Close a stream.
    Fin = 1,
    /// Data.
    Psh = 2,
    /// Keepalive.
    Nop = 3,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub cmd: Cmd,
    /// The stream id.
    pub sid: u32,
    /// The payload (PSH only).
    pub data: Bytes,
}

/// Encodes one frame; `data` must fit in a u16 length.
pub fn encode(cmd: Cmd, sid: u32, data: &[u8]) -> Bytes {
    let len = u16::try_from(data.len()).expect("an smux frame holds at most 65535 bytes");
    let mut b = BytesMut::with_capacity(HEADER + data.len());
    b.put_u8(VERSION);
    b.put_u8(cmd as u8);
    b.put_u16_le(len);
    b.put_u32_le(sid);
    b.put_slice(data);
    b.freeze()
}

/// Reassembles frames from a byte stream cut anywhere.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame; `Err` when the stream is not smux v1 (it cannot be
    /// resynchronised).
    pub fn next_frame(&mut self) -> std::result::Result<Option<Frame>, String> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let ver = self.buf[0];
        if ver != VERSION {
            return Err(format!("smux version {ver}, expected {VERSION}"));
        }
        let cmd = match self.buf[1] {
            0 => Cmd::Syn,
            1 => Cmd::Fin,
            2 => Cmd::Psh,
            3 => Cmd::Nop,
            other => return Err(format!("unknown smux command {other}")),
        };
        let len = usize::from(u16::from_le_bytes([self.buf[2], self.buf[3]]));
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let sid = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
        self.buf.advance(HEADER);
        let data = self.buf.split_to(len).freeze();
        Ok(Some(Frame { cmd, sid, data }))
    }
}

/// What a [`Mux`] runs on: an ordered, lossless byte stream with an end.
pub trait Transport: Send + Sync + 'static {
    /// Sends bytes, in order (whole calls are never interleaved).
    fn send<'a>(&'a self, data: &'a [u8]) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;
    /// True once the stream has ended.
    fn is_closed(&self) -> bool;
    /// Why it ended, as an error for the streams that were using it.
    fn end_error(&self) -> Error;
    /// Ends it (TerminateSession for an SSM session).
    fn terminate(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl Transport for super::channel::DataChannel {
    fn send<'a>(&'a self, data: &'a [u8]) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(super::channel::DataChannel::send(self, data))
    }
    fn is_closed(&self) -> bool {
        super::channel::DataChannel::is_closed(self)
    }
    fn end_error(&self) -> Error {
        super::channel::DataChannel::end_error(self)
    }
    fn terminate(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(super::channel::DataChannel::terminate(self))
    }
}

/// How a stream ended, seen by its reader.
#[derive(Debug, Clone)]
enum StreamEnd {
    /// The agent's FIN: a clean end of stream.
    Fin,
    /// Reset: the message says why.
    Error(String),
}

/// The demultiplexer's handle on a stream.
struct Entry {
    tx: mpsc::Sender<Bytes>,
    end: Arc<OnceLock<StreamEnd>>,
    got_data: bool,
}

/// One smux session over a [`Transport`].
pub struct Mux {
    inner: Arc<Inner>,
}

struct Inner {
    /// `web-1 (i-…) → db.internal:5432`, for messages.
    label: String,
    transport: Arc<dyn Transport>,
    /// Open streams by id. Locked briefly, never across an await.
    streams: Mutex<HashMap<u32, Entry>>,
    /// The last stream id used (client ids are odd: 3, 5, 7, …).
    last_id: AtomicU32,
    /// Encoded frames to the writer task, which owns the receiver. Streams hold clones.
    frames: mpsc::Sender<Bytes>,
    /// Set when no new stream can open (why).
    dead: OnceLock<String>,
    /// ConnectToPortError flags not yet matched to a stream.
    connect_errors: AtomicU32,
    /// Largest PSH payload written.
    frame_max: usize,
    /// How long the demultiplexer waits for a stream's reader before resetting it.
    stall: Duration,
}

impl Mux {
    /// Starts the session's writer and demultiplexer. `events` is the transport's inbound
    /// side; `frame_max` caps each PSH frame (≤ 32 KiB).
    pub fn new(
        label: String,
        transport: Arc<dyn Transport>,
        events: mpsc::Receiver<Inbound>,
        frame_max: usize,
        stall: Duration,
    ) -> Mux {
        let (frames, frames_rx) = mpsc::channel(WRITE_QUEUE);
        let inner = Arc::new(Inner {
            label,
            transport: transport.clone(),
            streams: Mutex::new(HashMap::new()),
            last_id: AtomicU32::new(1),
            frames,
            dead: OnceLock::new(),
            connect_errors: AtomicU32::new(0),
            frame_max: frame_max.clamp(1, MAX_FRAME),
            stall,
        });
        tokio::spawn(write_loop(Arc::downgrade(&inner), transport, frames_rx));
        tokio::spawn(demux(Arc::downgrade(&inner), events));
        Mux { inner }
    }

    /// True while new streams can open.
    pub fn is_alive(&self) -> bool {
        self.inner.dead.get().is_none() && !self.inner.transport.is_closed()
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.inner.streams.lock().expect("streams lock").len()
    }

    /// Opens a stream (SYN); the agent dials the target when it sees it.
    pub async fn open(&self) -> Result<MuxStream> {
        let inner = &self.inner;
        if let Some(why) = inner.dead.get() {
            return Err(Error::SsmEnded {
                what: format!("the SSM session to {}", inner.label),
                why: why.clone(),
                hint: String::new(),
            });
        }
        if inner.transport.is_closed() {
            return Err(inner.transport.end_error());
        }
        let sid = inner.last_id.fetch_add(2, Ordering::Relaxed) + 2;
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let end = Arc::new(OnceLock::new());
        inner.streams.lock().expect("streams lock").insert(
            sid,
            Entry {
                tx,
                end: end.clone(),
                got_data: false,
            },
        );
        if inner.frames.send(encode(Cmd::Syn, sid, &[])).await.is_err() {
            inner.streams.lock().expect("streams lock").remove(&sid);
            return Err(inner.transport.end_error());
        }
        Ok(MuxStream {
            sid,
            inner: inner.clone(),
            rx,
            end,
            pending: Bytes::new(),
            tx: PollSender::new(inner.frames.clone()),
            fin_sent: false,
        })
    }

    /// Fails every stream with `why` and ends the transport.
    pub async fn close(&self, why: &str) {
        self.inner.fail_all(why);
        self.inner.transport.terminate().await;
    }
}

impl Inner {
    /// No new streams; every open stream reads `why` as an error.
    fn fail_all(&self, why: &str) {
        let _ = self.dead.set(why.to_string());
        let streams: Vec<Entry> = self
            .streams
            .lock()
            .expect("streams lock")
            .drain()
            .map(|(_, e)| e)
            .collect();
        for e in streams {
            let _ = e.end.set(StreamEnd::Error(why.to_string()));
        }
    }

    /// Ends one stream with an error (and tells the agent with a FIN).
    fn reset(&self, sid: u32, why: String) {
        if let Some(e) = self.streams.lock().expect("streams lock").remove(&sid) {
            let _ = e.end.set(StreamEnd::Error(why));
        }
        self.send_fin(sid);
    }

    fn send_fin(&self, sid: u32) {
        let fin = encode(Cmd::Fin, sid, &[]);
        if let Err(mpsc::error::TrySendError::Full(fin)) = self.frames.try_send(fin) {
            let frames = self.frames.clone();
            tokio::spawn(async move {
                let _ = frames.send(fin).await;
            });
        }
    }

    async fn on_frame(&self, f: Frame) {
        match f.cmd {
            Cmd::Psh => {
                let tx = {
                    let mut streams = self.streams.lock().expect("streams lock");
                    let Some(e) = streams.get_mut(&f.sid) else {
                        return; // closed here already: the agent will see our FIN
                    };
                    e.got_data = true;
                    e.tx.clone()
                };
                if f.data.is_empty() {
                    return;
                }
                if let Err(mpsc::error::SendTimeoutError::Timeout(_)) =
                    tx.send_timeout(f.data, self.stall).await
                {
                    self.reset(
                        f.sid,
                        format!(
                            "the local client stopped reading for {} s; the connection was \
                             reset so the other connections of the SSM session to {} can go on",
                            self.stall.as_secs(),
                            self.label
                        ),
                    );
                }
            }
            Cmd::Fin => {
                let Some(e) = self.streams.lock().expect("streams lock").remove(&f.sid) else {
                    return;
                };
                let refused = !e.got_data
                    && self
                        .connect_errors
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                let end = if refused {
                    StreamEnd::Error(format!(
                        "the SSM agent could not connect to {}: the target is down, its port \
                         is closed, a security group drops the traffic, or its name does not \
                         resolve from the instance",
                        self.label
                    ))
                } else {
                    StreamEnd::Fin
                };
                let _ = e.end.set(end);
            }
            Cmd::Syn => {
                // The agent never opens streams to us: refuse.
                self.send_fin(f.sid);
            }
            Cmd::Nop => {}
        }
    }
}

/// Sends queued frames through the transport, coalescing what is queued.
async fn write_loop(
    inner: Weak<Inner>,
    transport: Arc<dyn Transport>,
    mut frames: mpsc::Receiver<Bytes>,
) {
    let mut batch = BytesMut::new();
    while let Some(f) = frames.recv().await {
        batch.extend_from_slice(&f);
        while batch.len() < BATCH {
            match frames.try_recv() {
                Ok(f) => batch.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if let Err(e) = transport.send(&batch).await {
            if let Some(inner) = inner.upgrade() {
                inner.fail_all(&e.to_string());
            }
            return;
        }
        batch.clear();
    }
}

/// Reads the transport's events: frames to the streams, flags, the end.
async fn demux(inner: Weak<Inner>, mut events: mpsc::Receiver<Inbound>) {
    let mut decoder = Decoder::default();
    while let Some(ev) = events.recv().await {
        let Some(mux) = inner.upgrade() else {
            return;
        };
        match ev {
            Inbound::Output(bytes) => {
                decoder.push(&bytes);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(f)) => mux.on_frame(f).await,
                        Ok(None) => break,
                        Err(e) => {
                            let why = format!(
                                "the agent's multiplexed stream is corrupt ({e}); the session was \
                                 ended (is the agent older than 3.0.196.0? update it)"
                            );
                            mux.fail_all(&why);
                            mux.transport.terminate().await;
                            return;
                        }
                    }
                }
            }
            Inbound::Flag(FLAG_CONNECT_TO_PORT_ERROR) => {
                mux.connect_errors.fetch_add(1, Ordering::SeqCst);
            }
            Inbound::Flag(FLAG_TERMINATE_SESSION) => {
                tracing::debug!("{}: the agent is ending the session", mux.label);
            }
            Inbound::Flag(_) | Inbound::ExitCode(_) => {}
            Inbound::Stderr(text) => {
                tracing::warn!(
                    "SSM agent ({}): {}",
                    mux.label,
                    String::from_utf8_lossy(&text).trim()
                );
            }
        }
    }
    if let Some(mux) = inner.upgrade() {
        let why = mux.transport.end_error().to_string();
        if mux.dead.get().is_none() {
            // Not closed here: the service ended it (idle timeout, maximum duration, ...).
            // Say so; the next connection starts a new session.
            crate::events::emit(why.clone());
        }
        mux.fail_all(&why);
    }
}

/// One connection through a [`Mux`]: `AsyncRead + AsyncWrite`.
pub struct MuxStream {
    sid: u32,
    inner: Arc<Inner>,
    rx: mpsc::Receiver<Bytes>,
    end: Arc<OnceLock<StreamEnd>>,
    /// Received, not yet read out.
    pending: Bytes,
    tx: PollSender<Bytes>,
    fin_sent: bool,
}

impl MuxStream {
    /// The smux stream id (3, 5, 7, …).
    pub fn id(&self) -> u32 {
        self.sid
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if crate::hop::fill_from(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(b) => self.pending = b,
                None => {
                    return Poll::Ready(match self.end.get() {
                        Some(StreamEnd::Fin) => Ok(()),
                        Some(StreamEnd::Error(why)) => {
                            Err(io::Error::new(io::ErrorKind::ConnectionReset, why.clone()))
                        }
                        None => Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "the SSM session ended mid-stream",
                        )),
                    });
                }
            }
        }
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        match self.end.get() {
            Some(StreamEnd::Error(why)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    why.clone(),
                )));
            }
            Some(StreamEnd::Fin) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the remote side closed the connection (SSM port forwarding does not carry \
                     half-closed connections)",
                )));
            }
            None => {}
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the SSM session has ended");
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        let n = buf.len().min(self.inner.frame_max);
        let frame = encode(Cmd::Psh, self.sid, &buf[..n]);
        self.tx.send_item(frame).map_err(|_| gone())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Sends FIN, which closes the whole stream: the agent closes its connection to the
    /// destination on it (smux carries no half-close). Reading then yields what had already
    /// arrived, then end of stream.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fin_sent || self.end.get().is_some() {
            return Poll::Ready(Ok(()));
        }
        if ready!(self.tx.poll_reserve(cx)).is_ok() {
            let sid = self.sid;
            let _ = self.tx.send_item(encode(Cmd::Fin, sid, &[]));
        }
        self.fin_sent = true;
        let entry = self
            .inner
            .streams
            .lock()
            .expect("streams lock")
            .remove(&self.sid);
        if let Some(e) = entry {
            let _ = e.end.set(StreamEnd::Fin);
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        let open = self
            .inner
            .streams
            .lock()
            .expect("streams lock")
            .remove(&self.sid)
            .is_some();
        if open && !self.fin_sent {
            self.inner.send_fin(self.sid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn frames_round_trip_through_a_stream_cut_anywhere() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(Cmd::Syn, 3, &[]));
        wire.extend_from_slice(&encode(Cmd::Psh, 3, b"hello"));
        wire.extend_from_slice(&encode(Cmd::Psh, 5, &vec![7u8; MAX_FRAME]));
        wire.extend_from_slice(&encode(Cmd::Fin, 3, &[]));
        assert_eq!(&wire[..8], &[1, 0, 0, 0, 3, 0, 0, 0], "header layout");
        assert_eq!(
            &wire[8..16],
            &[1, 2, 5, 0, 3, 0, 0, 0],
            "PSH, len 5 LE, sid 3 LE"
        );
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for piece in wire.chunks(7) {
            d.push(piece);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[1].data, Bytes::from_static(b"hello"));
        assert_eq!(frames[2].sid, 5);
        assert_eq!(frames[2].data.len(), MAX_FRAME);
        assert_eq!(frames[3].cmd, Cmd::Fin);
    }

    #[test]
    fn a_foreign_stream_is_an_error_not_garbage() {
        let mut d = Decoder::default();
        d.push(&[2, 0, 0, 0, 1, 0, 0, 0]);
        assert!(d.next_frame().unwrap_err().contains("version 2"));
        let mut d = Decoder::default();
        d.push(&[1, 4, 0, 0, 1, 0, 0, 0]);
        assert!(d.next_frame().unwrap_err().contains("command 4"));
    }

    /// An in-memory agent: an smux server that echoes each stream's bytes, FINs when the
    /// client FINs, and refuses a stream whose data is `!` the way the agent refuses
    /// a dial (a ConnectToPortError flag, then FIN).
    struct Loopback {
        events: mpsc::Sender<Inbound>,
        decoder: Mutex<Decoder>,
        closed: std::sync::atomic::AtomicBool,
        sent: Mutex<Vec<Frame>>,
    }

    impl Transport for Loopback {
        fn send<'a>(
            &'a self,
            data: &'a [u8],
        ) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
            Box::pin(async move {
                let mut replies: Vec<Inbound> = Vec::new();
                {
                    let mut d = self.decoder.lock().unwrap();
                    d.push(data);
                    while let Some(f) = d.next_frame().unwrap() {
                        self.sent.lock().unwrap().push(f.clone());
                        match f.cmd {
                            Cmd::Psh if &f.data[..] == b"!" => {
                                replies.push(Inbound::Flag(FLAG_CONNECT_TO_PORT_ERROR));
                                replies.push(Inbound::Output(encode(Cmd::Fin, f.sid, &[])));
                            }
                            Cmd::Psh => {
                                // Cut the echo in odd places to exercise the decoder.
                                let echo = encode(Cmd::Psh, f.sid, &f.data);
                                let (a, b) = echo.split_at(echo.len() / 3);
                                replies.push(Inbound::Output(Bytes::copy_from_slice(a)));
                                replies.push(Inbound::Output(Bytes::copy_from_slice(b)));
                            }
                            Cmd::Fin => {
                                replies.push(Inbound::Output(encode(Cmd::Fin, f.sid, &[])));
                            }
                            Cmd::Syn | Cmd::Nop => {}
                        }
                    }
                }
                for r in replies {
                    let _ = self.events.send(r).await;
                }
                Ok(())
            })
        }
        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
        fn end_error(&self) -> Error {
            Error::SsmEnded {
                what: "the test session".into(),
                why: "the loopback ended".into(),
                hint: String::new(),
            }
        }
        fn terminate(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.closed.store(true, Ordering::SeqCst);
            Box::pin(async {})
        }
    }

    fn loopback() -> (Mux, Arc<Loopback>, mpsc::Sender<Inbound>) {
        let (tx, rx) = mpsc::channel(1024);
        let lb = Arc::new(Loopback {
            events: tx.clone(),
            decoder: Mutex::new(Decoder::default()),
            closed: std::sync::atomic::AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
        });
        let mux = Mux::new(
            "test → db:5432".into(),
            lb.clone(),
            rx,
            1000,
            Duration::from_secs(2),
        );
        (mux, lb, tx)
    }

    #[tokio::test]
    async fn ten_streams_share_a_session_each_with_its_own_bytes() {
        let (mux, lb, _tx) = loopback();
        let mut tasks = Vec::new();
        for i in 0..10u8 {
            let mut s = mux.open().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let data: Vec<u8> = (0..50_000u32).map(|j| (j as u8) ^ i).collect();
                let (mut r, mut w) = tokio::io::split(&mut s);
                let expect = data.clone();
                let writer = async move {
                    w.write_all(&data).await.unwrap();
                };
                let reader = async move {
                    let mut got = vec![0u8; expect.len()];
                    r.read_exact(&mut got).await.unwrap();
                    assert!(got == expect, "stream {i} got someone else's bytes");
                };
                tokio::join!(writer, reader);
                s.id()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..10).map(|i| 3 + 2 * i).collect::<Vec<u32>>());
        // Frames of at most `frame_max` bytes.
        assert!(lb.sent.lock().unwrap().iter().all(|f| f.data.len() <= 1000));
    }

    #[tokio::test]
    async fn shutdown_sends_fin_and_ends_the_stream_cleanly() {
        let (mux, lb, _tx) = loopback();
        let mut s = mux.open().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // The agent's FIN in answer changes nothing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cmds: Vec<Cmd> = lb.sent.lock().unwrap().iter().map(|f| f.cmd).collect();
        assert_eq!(cmds, [Cmd::Syn, Cmd::Psh, Cmd::Fin]);
        assert_eq!(mux.open_streams(), 0);
    }

    #[tokio::test]
    async fn a_refused_dial_is_an_error_naming_the_target() {
        let (mux, _lb, _tx) = loopback();
        let mut s = mux.open().await.unwrap();
        s.write_all(b"!").await.unwrap();
        let mut got = Vec::new();
        let err = s.read_to_end(&mut got).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("could not connect to test → db:5432"),
            "{err}"
        );
        // The next stream is not affected.
        let mut ok = mux.open().await.unwrap();
        ok.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        ok.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"x");
    }

    #[tokio::test]
    async fn the_end_of_the_session_is_an_error_for_open_streams_never_eof() {
        let (mux, _lb, tx) = loopback();
        let mut s = mux.open().await.unwrap();
        drop(tx);
        // The loopback still holds a sender; end the session the way the channel does.
        mux.close("the SSM session ended: idle timeout").await;
        let mut got = Vec::new();
        let err = s.read_to_end(&mut got).await.unwrap_err();
        assert!(err.to_string().contains("idle timeout"), "{err}");
        assert!(!mux.is_alive());
        assert!(mux.open().await.is_err());
    }

    #[tokio::test]
    async fn a_reader_that_stops_is_reset_and_the_others_go_on() {
        let (mux, _lb, _tx) = loopback();
        let mut stuck = mux.open().await.unwrap();
        // Fill the stuck stream's queue and more: nobody reads it.
        let big = vec![1u8; 1000];
        for _ in 0..(STREAM_QUEUE + 8) {
            stuck.write_all(&big).await.unwrap();
        }
        let mut other = mux.open().await.unwrap();
        other.write_all(b"still here").await.unwrap();
        let mut got = [0u8; 10];
        tokio::time::timeout(Duration::from_secs(10), other.read_exact(&mut got))
            .await
            .expect("the other stream must go on after the stall timeout")
            .unwrap();
        assert_eq!(&got, b"still here");
        // The stuck one reads what was queued, then the reset, not a clean end.
        let mut all = Vec::new();
        let err = stuck.read_to_end(&mut all).await.unwrap_err();
        assert!(err.to_string().contains("stopped reading"), "{err}");
    }
}
