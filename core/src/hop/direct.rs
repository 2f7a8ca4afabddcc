//! Direct TCP: the first hop of every chain.

use std::time::Duration;

use tokio::net::TcpStream;

use super::Stream;
use crate::error::{Error, Result};

/// How long a TCP connect may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `host:port` with TCP_NODELAY set.
pub async fn connect(host: &str, port: u16) -> Result<Stream> {
    Ok(Box::new(connect_tcp(host, port, CONNECT_TIMEOUT).await?))
}

/// Connects to `host:port` within `limit`, returning the TCP stream itself (SSH uses it
/// directly).
pub async fn connect_tcp(host: &str, port: u16, limit: Duration) -> Result<TcpStream> {
    let what = format!("{host}:{port}");
    let sock = tokio::time::timeout(limit, TcpStream::connect((host, port)))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("TCP connect to {what}"),
            secs: limit.as_secs_f64(),
            hint: "a security group or firewall may drop the traffic, or the host is down".into(),
        })?
        .map_err(|source| Error::Connect { what, source })?;
    // Small writes (a MySQL greeting, an SSH auth packet) must not wait for a delayed ACK.
    let _ = sock.set_nodelay(true);
    Ok(sock)
}
