//! The client side of the test servers' protocols: what a test does with a stream that
//! reaches a `hop-lab serve` server, directly or through a forward.
//!
//! Every function takes a connected [`TcpStream`] and returns what arrived, so the test
//! can assert on it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

use crate::pattern;

/// The `sink` server's reply: how many bytes it received and their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkReply {
    /// Byte count the server saw before EOF.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of those bytes.
    pub sha256: String,
}

/// Sends `data` to an `echo` (or, after its greeting, `greet`) server, shuts down the
/// write side, and returns everything echoed until EOF. Writes on a second thread, so
/// large payloads do not deadlock on full buffers.
pub fn echo(stream: &TcpStream, data: &[u8]) -> io::Result<Vec<u8>> {
    let writer = stream.try_clone()?;
    let mut received = Vec::with_capacity(data.len());
    thread::scope(|s| {
        let sent = s.spawn(move || -> io::Result<()> {
            (&writer).write_all(data)?;
            writer.shutdown(Shutdown::Write)
        });
        let read = (&*stream).read_to_end(&mut received);
        sent.join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        read.map(|_| ())
    })?;
    Ok(received)
}

/// Sends the first `n` bytes of the pattern to a `sink` server, shuts down the write
/// side, and parses its `<count> <sha256>` reply. Compare with `n` and
/// [`pattern::sha256_hex_of_pattern`].
pub fn sink_send(stream: &TcpStream, n: u64) -> io::Result<SinkReply> {
    pattern::write(&mut &*stream, n)?;
    stream.shutdown(Shutdown::Write)?;
    let mut line = String::new();
    (&*stream).read_to_string(&mut line)?;
    let mut words = line.split_whitespace();
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad sink reply {line:?}"),
        )
    };
    let bytes = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let sha256 = words.next().ok_or_else(bad)?.to_owned();
    Ok(SinkReply { bytes, sha256 })
}

/// Asks a `source` server for `n` bytes and reads to EOF, checking each byte against the
/// pattern. Returns the number of bytes received (an error if any byte was wrong).
pub fn source_fetch(stream: &TcpStream, n: u64) -> io::Result<u64> {
    (&*stream).write_all(&n.to_be_bytes())?;
    pattern::read_and_verify(&mut &*stream)
}

/// Reads the first line a `greet` server sends (without the newline). Reads byte by
/// byte, so nothing after the line is consumed.
pub fn greeting(stream: &TcpStream) -> io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match (&*stream).read(&mut byte)? {
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}
