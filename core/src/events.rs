//! Messages from background tasks to the user.
//!
//! Forwards and SSH sessions run as tasks; when something happens that the user should see
//! (a bastion dropped, a connection through a forward failed) they call [`emit`]. By default the
//! line goes to stderr; the REPL installs a sink that prints above the prompt without breaking
//! the line being edited (rustyline's external printer). Every event is also logged with
//! `tracing` for `-v`.

use std::sync::{Mutex, OnceLock};

type Sink = Box<dyn FnMut(String) + Send>;

/// The installed sink, if any; `None` means stderr.
static SINK: OnceLock<Mutex<Option<Sink>>> = OnceLock::new();

fn slot() -> &'static Mutex<Option<Sink>> {
    SINK.get_or_init(|| Mutex::new(None))
}

/// Sends `msg` to the user.
pub fn emit(msg: impl Into<String>) {
    let msg = msg.into();
    tracing::info!(target: "aws_hop::events", "{msg}");
    let mut guard = slot()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match guard.as_mut() {
        Some(sink) => sink(format!("aws-hop: {msg}")),
        None => say(&format!("aws-hop: {msg}")),
    }
}

/// Routes events to `sink` from now on (the REPL's printer).
pub fn set_sink(sink: impl FnMut(String) + Send + 'static) {
    *slot()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Box::new(sink));
}

/// Routes events back to stderr.
pub fn clear_sink() {
    *slot()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
}

/// Writes `line` to stderr, ignoring failure: after a terminal hangs up (SIGHUP, a closed
/// tmux pane), stderr is a dead pty, and `eprintln!` would panic there in the middle of
/// closing forwards and sessions.
pub fn say(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
