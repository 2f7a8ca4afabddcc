//! An SSH channel as a byte stream that tells EOF from failure.
//!
//! russh's own `ChannelStream` reads a channel that vanished (session lost, channel closed
//! without EOF) as a clean end of stream. For a forward that would be silent truncation: a
//! client would see a short file as complete. [`ChannelIo`] reports those cases as errors, so
//! the forward resets the local connection instead, and keeps the clean half-close semantics of
//! a real EOF.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::ReusableBoxFuture;

type Next = (ChannelReadHalf, Option<ChannelMsg>);

async fn next(mut rx: ChannelReadHalf) -> Next {
    let msg = rx.wait().await;
    (rx, msg)
}

/// Where the read side stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    Eof,
}

/// `AsyncRead + AsyncWrite` over one SSH channel; closes the channel when dropped.
pub struct ChannelIo {
    recv: ReusableBoxFuture<'static, Next>,
    /// Data received but not yet read out.
    pending: Bytes,
    state: ReadState,
    writer: Pin<Box<dyn AsyncWrite + Send>>,
    /// Kept to send CHANNEL_CLOSE on drop.
    write_half: Option<ChannelWriteHalf<Msg>>,
}

impl ChannelIo {
    /// Wraps an open channel.
    pub fn new(ch: Channel<Msg>) -> Self {
        let (rx, tx) = ch.split();
        ChannelIo {
            recv: ReusableBoxFuture::new(next(rx)),
            pending: Bytes::new(),
            state: ReadState::Open,
            writer: Box::pin(tx.make_writer()),
            write_half: Some(tx),
        }
    }
}

impl AsyncRead for ChannelIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if crate::hop::fill_from(&mut self.pending, buf) {
                return Poll::Ready(Ok(()));
            }
            if self.state == ReadState::Eof {
                return Poll::Ready(Ok(()));
            }
            let (rx, msg) = ready!(self.recv.poll(cx));
            match msg {
                Some(ChannelMsg::Data { data }) => {
                    self.pending = data;
                    self.recv.set(next(rx));
                }
                Some(ChannelMsg::Eof) => {
                    self.state = ReadState::Eof;
                    self.recv.set(next(rx));
                }
                Some(ChannelMsg::Close) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the far side closed the channel without ending the stream",
                    )));
                }
                None => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the SSH session was lost mid-stream",
                    )));
                }
                Some(_) => self.recv.set(next(rx)),
            }
        }
    }
}

impl AsyncWrite for ChannelIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

impl Drop for ChannelIo {
    fn drop(&mut self) {
        if let (Some(tx), Ok(rt)) = (
            self.write_half.take(),
            tokio::runtime::Handle::try_current(),
        ) {
            rt.spawn(async move {
                let _ = tx.close().await;
            });
        }
    }
}
