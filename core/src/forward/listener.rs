//! One forward: a local listener whose every connection goes through a hop.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::pump::{Counted, pump};
use super::stats::{Stats, StatsSnapshot, human_bytes};
use crate::error::{Error, Result};
use crate::events;
use crate::hop::Hop;

/// Where a forward listens: `3307`, `"127.0.0.1:3307"`, `"0.0.0.0:3307"`, `"[::1]:3307"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindSpec(pub SocketAddr);

impl BindSpec {
    /// A port on 127.0.0.1 (0 picks a free one).
    pub fn port(port: u16) -> Self {
        BindSpec(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    /// Parses `"port"`, `"addr:port"` or `"localhost:port"`.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(p) = s.parse::<u16>() {
            return Ok(Self::port(p));
        }
        if let Some(p) = s.strip_prefix("localhost:")
            && let Ok(p) = p.parse::<u16>()
        {
            return Ok(Self::port(p));
        }
        s.parse::<SocketAddr>().map(BindSpec).map_err(|_| {
            Error::invalid(format!(
                "local address '{s}' is not a port or addr:port (for example 3307, \
                 \"127.0.0.1:3307\" or \"0.0.0.0:3307\")"
            ))
        })
    }
}

/// A live forward. Cheap to clone; clones share the listener.
#[derive(Clone)]
pub struct Forward {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    local: SocketAddr,
    host: String,
    port: u16,
    hop: Hop,
    stats: Arc<Stats>,
    /// Cancelled by `close()`: stops the accept loop and every connection of this forward.
    cancel: CancellationToken,
    closed: AtomicBool,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Forward {
    /// Binds `bind` and starts accepting; each connection goes to `host:port` through `hop`.
    /// Must be called from within the runtime.
    pub async fn open(bind: &BindSpec, host: &str, port: u16, hop: Hop) -> Result<Forward> {
        let listener = TcpListener::bind(bind.0)
            .await
            .map_err(|source| Error::Bind {
                addr: bind.0.to_string(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listener's address", e))?;
        let inner = Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            local,
            host: host.to_string(),
            port,
            hop,
            stats: Arc::new(Stats::default()),
            cancel: CancellationToken::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(Forward { inner })
    }

    /// A process-unique number.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// The bound port.
    pub fn local_port(&self) -> u16 {
        self.inner.local.port()
    }

    /// `host:port` on the far side.
    pub fn remote(&self) -> String {
        format!("{}:{}", self.inner.host, self.inner.port)
    }

    /// The hop connections go through.
    pub fn hop(&self) -> &Hop {
        &self.inner.hop
    }

    /// Counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// False once closed.
    pub fn is_open(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
    }

    /// Stops listening and ends this forward's connections. Idempotent.
    pub fn close(&self) {
        if !self.inner.closed.swap(true, Ordering::SeqCst) {
            self.inner.cancel.cancel();
        }
    }

    /// One readable line: where, to where, through what, and how it is doing.
    pub fn summary(&self) -> String {
        let s = self.stats();
        let mut line = format!(
            "{} -> {} via {}",
            self.local_addr(),
            self.remote(),
            self.inner.hop.describe()
        );
        if self.is_open() {
            let _ = write!(
                line,
                " ({} connections, {} active, {} in, {} out",
                s.connections,
                s.active,
                human_bytes(s.bytes_in),
                human_bytes(s.bytes_out)
            );
            if s.failed > 0 {
                let _ = write!(line, ", {} failed", s.failed);
            }
            line.push(')');
        } else {
            line.push_str(" (closed)");
        }
        line
    }
}

impl std::fmt::Display for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "forward {}", self.summary())
    }
}

/// How often a failing accept is reported.
const REPORT_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut failures = 0u64;
    let mut last_report: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = inner.cancel.cancelled() => break,
        };
        match accepted {
            Ok((conn, peer)) => {
                tokio::spawn(serve(conn, peer, inner.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off and keep the port; say so once per 10 s, with
                // how many failures there were meanwhile, rather than once per retry.
                failures += 1;
                if last_report.is_none_or(|t: Instant| t.elapsed() >= REPORT_EVERY) {
                    let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                        " (this process has too many open files: raise `ulimit -n`)"
                    } else {
                        ""
                    };
                    events::emit(format!(
                        "forward {}: accept failed {failures} time{}: {e}{hint}; clients wait \
                         in the queue meanwhile",
                        inner.local,
                        if failures == 1 { "" } else { "s" }
                    ));
                    last_report = Some(Instant::now());
                    failures = 0;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Carries one client connection.
async fn serve(mut conn: TcpStream, peer: SocketAddr, inner: Arc<Inner>) {
    let _ = conn.set_nodelay(true);
    let stats = &inner.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::Relaxed);
    let target = format!("{}:{}", inner.host, inner.port);

    let opened = tokio::select! {
        r = inner.hop.open(&inner.host, inner.port, Some(peer)) => Some(r),
        () = inner.cancel.cancelled() => None,
    };
    match opened {
        None => {}
        Some(Err(e)) => {
            let why = e.to_string();
            events::emit(format!(
                "forward {} -> {target}: connection from {peer} failed: {why} (the forward stays open)",
                inner.local
            ));
            stats.fail(why);
            reset(conn);
        }
        Some(Ok(mut remote)) => {
            let result = {
                let mut local = Counted::new(&mut conn, &stats.bytes_out);
                let mut far = Counted::new(&mut remote, &stats.bytes_in);
                tokio::select! {
                    r = pump(&mut local, &mut far) => Some(r),
                    () = inner.cancel.cancelled() => None,
                }
            };
            if let Some(Err(e)) = result {
                let why = format!("connection from {peer} broke: {e}");
                tracing::debug!("forward {} -> {target}: {why}", inner.local);
                stats.fail(why);
                reset(conn);
            }
        }
    }
    stats.active.fetch_sub(1, Ordering::Relaxed);
}

/// Closes with a reset, so the client sees a failure and not a clean end of data.
fn reset(conn: TcpStream) {
    #[allow(deprecated)]
    let _ = conn.set_linger(Some(Duration::ZERO));
    drop(conn);
}
