//! The basic-mode byte stream: one SSM session carrying one TCP connection, unframed.
//!
//! `AWS-StartSSHSession` has no `type: LocalPortForwarding`, so the agent runs its port plugin
//! in basic mode (`shared/protocols/ssm.md` §5): it dials the destination (the instance's
//! sshd) right after the handshake and pumps raw bytes. `ssm(x).ssh(user)` runs SSH over one
//! [`BasicStream`] per SSH connection, as `ProxyCommand aws ssm start-session --document-name
//! AWS-StartSSHSession` does.
//!
//! The destination closing ends the agent's plugin and so the session (`channel_closed`):
//! that is this stream's clean end of stream. Any other end of the session is an error.
//! Dropping the stream terminates the session (TerminateSession).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::channel::{DataChannel, End, Inbound};

/// Writes queued for the session (each at most [`MAX_WRITE`] bytes).
const WRITE_QUEUE: usize = 64;
/// Largest single write taken at once.
const MAX_WRITE: usize = 64 * 1024;

/// One connection carried by one basic-mode SSM session.
pub struct BasicStream {
    channel: Arc<DataChannel>,
    rx: mpsc::Receiver<Inbound>,
    pending: Bytes,
    tx: PollSender<Bytes>,
}

impl BasicStream {
    /// Wraps a ready channel and its inbound side; starts the writer, which terminates the
    /// session when the stream is dropped.
    pub fn new(channel: Arc<DataChannel>, rx: mpsc::Receiver<Inbound>) -> BasicStream {
        let (tx, mut writes) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let ch = channel.clone();
        tokio::spawn(async move {
            while let Some(b) = writes.recv().await {
                if ch.send(&b).await.is_err() {
                    break;
                }
            }
            ch.terminate().await;
        });
        BasicStream {
            channel,
            rx,
            pending: Bytes::new(),
            tx: PollSender::new(tx),
        }
    }
}

impl AsyncRead for BasicStream {
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
                Some(Inbound::Output(b)) => self.pending = b,
                Some(Inbound::Stderr(t)) => tracing::warn!(
                    "SSM agent ({}): {}",
                    self.channel.label(),
                    String::from_utf8_lossy(&t).trim()
                ),
                Some(Inbound::Flag(_) | Inbound::ExitCode(_)) => {}
                None => {
                    return Poll::Ready(match self.channel.end() {
                        Some(End::Closed(_)) => Ok(()),
                        _ => Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            self.channel.end_error().to_string(),
                        )),
                    });
                }
            }
        }
    }
}

impl AsyncWrite for BasicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let gone = |s: &Self| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                if s.channel.is_closed() {
                    s.channel.end_error().to_string()
                } else {
                    "the SSM session's writer stopped".to_string()
                },
            )
        };
        if ready!(self.tx.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(gone(&self)));
        }
        let n = buf.len().min(MAX_WRITE);
        if self
            .tx
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .is_err()
        {
            return Poll::Ready(Err(gone(&self)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Basic mode has no half-close: like the plugin, nothing is sent; the session ends
    /// when the remote side closes or the stream is dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
