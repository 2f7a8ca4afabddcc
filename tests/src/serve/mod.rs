//! The test servers of `hop-lab serve MODE ADDR`: small TCP services with a known
//! answer, so a test through a forward can assert exactly which bytes arrived.
//!
//! One std thread per connection; each mode is a few lines:
//! - [`ServeMode::Echo`]: echo every byte back until EOF, then shut down the write side.
//! - [`ServeMode::Sink`]: read to EOF, then reply `<byte count> <sha256 hex>\n` and close.
//! - [`ServeMode::Source`]: read an 8-byte big-endian count N, send the first N bytes of
//!   the [`pattern`] (1 MiB writes from a precomputed buffer), close.
//! - [`ServeMode::Greet`]: server speaks first: `hello from ADDR\n`, then echo. Models
//!   MySQL-style protocols where the server sends a greeting before the client speaks.
//!
//! [`run`] binds and prints `listening on ADDR` (the bound address, so `:0` works) on
//! stdout once the socket accepts connections; callers wait for that line. The client
//! side of each protocol is in [`client`].

pub mod client;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::thread;

use sha2::{Digest, Sha256};

use crate::pattern;

/// Size of the read buffers: large enough that a forward, not the server, is the
/// bottleneck.
const BUF: usize = 256 * 1024;

/// What a test server does with each connection. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeMode {
    /// Echo every byte back until EOF.
    Echo,
    /// Count and hash everything until EOF, then reply `<count> <sha256 hex>\n`.
    Sink,
    /// Read an 8-byte big-endian count N, send N pattern bytes.
    Source,
    /// Send `hello from ADDR\n` first, then echo.
    Greet,
}

impl ServeMode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServeMode::Echo => "echo",
            ServeMode::Sink => "sink",
            ServeMode::Source => "source",
            ServeMode::Greet => "greet",
        }
    }
}

impl fmt::Display for ServeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ServeMode::Echo,
            ServeMode::Sink,
            ServeMode::Source,
            ServeMode::Greet,
        ]
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| format!("unknown serve mode {s:?} (echo, sink, source, greet)"))
    }
}

/// Binds `addr`, prints `listening on ADDR` on stdout, then serves forever.
pub fn run(mode: ServeMode, addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    serve(mode, &listener)
}

/// Accepts connections on `listener` forever, one thread each. Use it in-process on a
/// listener from [`Lab::listen_in`](crate::Lab::listen_in) to run a server in a lab
/// namespace without a child process.
pub fn serve(mode: ServeMode, listener: &TcpListener) -> io::Result<()> {
    let local = listener.local_addr()?;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        thread::spawn(move || {
            if let Err(e) = handle(mode, stream, local) {
                eprintln!("serve {mode} {local}: connection from {peer}: {e}");
            }
        });
    }
}

/// Serves one connection in `mode`.
pub fn handle(mode: ServeMode, stream: TcpStream, local: SocketAddr) -> io::Result<()> {
    stream.set_nodelay(true)?;
    match mode {
        ServeMode::Echo => echo(stream),
        ServeMode::Sink => sink(stream),
        ServeMode::Source => source(stream),
        ServeMode::Greet => {
            (&stream).write_all(format!("hello from {local}\n").as_bytes())?;
            echo(stream)
        }
    }
}

/// One `read`, retried on EINTR; 0 is end of stream.
fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match (&*stream).read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

fn echo(stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0; BUF];
    loop {
        let n = read_some(&stream, &mut buf)?;
        if n == 0 {
            break;
        }
        (&stream).write_all(&buf[..n])?;
    }
    stream.shutdown(Shutdown::Write)
}

fn sink(stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0; BUF];
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    loop {
        let n = read_some(&stream, &mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        count += n as u64;
    }
    let reply = format!("{count} {}\n", pattern::hex(&hasher.finalize()));
    (&stream).write_all(reply.as_bytes())?;
    stream.shutdown(Shutdown::Write)
}

fn source(stream: TcpStream) -> io::Result<()> {
    let mut header = [0u8; 8];
    (&stream).read_exact(&mut header)?;
    let n = u64::from_be_bytes(header);
    // Straight from the precomputed 1 MiB buffer: no copies, no extra buffering.
    pattern::write(&mut &stream, n)?;
    stream.shutdown(Shutdown::Write)
}
