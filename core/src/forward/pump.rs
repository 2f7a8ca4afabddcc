//! Moving bytes between a local client and a hop stream.
//!
//! Each direction is its own copy loop with a buffer that starts at [`MIN_BUFFER`] and doubles,
//! up to [`MAX_BUFFER`], whenever a read fills it. Bulk transfers reach 256 KiB reads within a
//! few reads (full 32 KiB SSH packets and a quarter of the wake-ups of 8 KiB buffers, per
//! shared/notes/russh-throughput.md), while the many small connections of a database pool stay
//! at 16 KiB: allocating 2 x 256 KiB up front per connection cost 550 MB of RSS for 1000
//! connections once the allocator stopped handing out fresh zero pages (`hop-lab bench`).
//!
//! EOF on one side is passed on as a half-close (`shutdown`), and the other direction keeps
//! flowing. Every write is flushed before the next read, so streams that buffer (WebSocket
//! frames) never sit on data. Bytes are counted as they are read, so `stats()` is live.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// First copy buffer per direction.
pub const MIN_BUFFER: usize = 16 * 1024;

/// Largest copy buffer per direction.
pub const MAX_BUFFER: usize = 256 * 1024;

/// A stream that adds the bytes read from it to a counter.
pub struct Counted<'a, S> {
    inner: S,
    read: &'a AtomicU64,
}

impl<'a, S> Counted<'a, S> {
    pub fn new(inner: S, read: &'a AtomicU64) -> Self {
        Counted { inner, read }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Pumps both ways until both directions are closed; returns (to remote, to local) byte counts.
/// The first error in either direction ends both.
pub async fn pump<A, B>(local: &mut A, remote: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut local_rx, mut local_tx) = tokio::io::split(local);
    let (mut remote_rx, mut remote_tx) = tokio::io::split(remote);
    tokio::try_join!(
        copy_half(&mut local_rx, &mut remote_tx),
        copy_half(&mut remote_rx, &mut local_tx)
    )
}

/// Copies `r` to `w` until EOF, then shuts `w` down (the half-close); returns the byte count.
async fn copy_half<R, W>(r: &mut R, w: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; MIN_BUFFER];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            w.shutdown().await?;
            return Ok(total);
        }
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        total += n as u64;
        if n == buf.len() && buf.len() < MAX_BUFFER {
            buf.resize((buf.len() * 2).min(MAX_BUFFER), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Both directions arrive whole, and EOF on one side is a half-close: the other side
    /// can still answer afterwards.
    #[tokio::test]
    async fn bytes_arrive_whole_and_half_close_is_carried() {
        let (mut client, mut local) = tokio::io::duplex(64 * 1024);
        let (mut remote, mut server) = tokio::io::duplex(64 * 1024);
        let pumping = tokio::spawn(async move { pump(&mut local, &mut remote).await });

        let up: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = up.clone();
        let sender = tokio::spawn(async move {
            client.write_all(&up).await.unwrap();
            client.shutdown().await.unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            answer
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(
            got == expected,
            "upload corrupted or truncated: {} bytes",
            got.len()
        );
        // After the client's EOF, the server still answers.
        server.write_all(b"done after your EOF").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(sender.await.unwrap(), b"done after your EOF");
        let (to_remote, to_local) = pumping.await.unwrap().unwrap();
        assert_eq!((to_remote, to_local), (3_000_000, 19));
    }

    /// A read error on one side ends the pump with that error (the forward then resets the
    /// client instead of pretending the stream ended cleanly).
    #[tokio::test]
    async fn an_error_on_one_side_ends_the_pump_with_it() {
        struct Broken;
        impl AsyncRead for Broken {
            fn poll_read(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                _: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "lost")))
            }
        }
        impl AsyncWrite for Broken {
            fn poll_write(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
                b: &[u8],
            ) -> Poll<io::Result<usize>> {
                Poll::Ready(Ok(b.len()))
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
        }
        let (_client, mut local) = tokio::io::duplex(1024);
        let err = pump(&mut local, &mut Broken).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
