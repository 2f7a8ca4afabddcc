//! Logs on stderr (`-v`, `-vv`, `-vvv`, `RUST_LOG`), with secrets kept out at every level.
//!
//! aws-hop's own events (`aws_hop::…`) never carry a secret: credentials, presigned URLs,
//! session and stream tokens and keys are redacted where they are formatted. Dependencies are
//! another matter: at debug and trace level they log what they send and receive, and that
//! includes the EICE presigned URL (tungstenite's handshake request), SigV4 `Authorization`
//! headers and signing parameters (aws-sigv4, the SDK's orchestrator) and response bodies
//! such as StartSession's `TokenValue`. So whatever `RUST_LOG` asks for, a dependency's event
//! passes only at info level or above ([`safe`]); russh passes at debug (its debug lines on
//! the client side are protocol steps, and the test of this module's promise greps them
//! too), never at trace (packet dumps).
//!
//! `tests/integration/hop_secrets.rs` runs an EICE login, an SSM forward and an SSM shell at
//! `RUST_LOG=trace -vvv` and finds none of the lab's secrets in the output.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Installs the stderr logger: `verbose` (0 warn … 3 trace) for aws-hop's own targets unless
/// `RUST_LOG` says otherwise, and the dependency cap of [`safe`] in every case.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("aws_hop={level}")));
    // Colour only on a terminal: ssh shows a ProxyCommand's stderr as it is, and logs saved to
    // a file must stay plain text. NO_COLOR turns it off everywhere.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let layer = fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter.and(filter_fn(safe)));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// True when an event of this target and level may be shown (see the module docs).
pub fn safe(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let level = *meta.level();
    if target == "aws_hop" || target.starts_with("aws_hop::") {
        return true;
    }
    if target == "russh" || target.starts_with("russh::") {
        return level <= Level::DEBUG;
    }
    level <= Level::INFO
}
