//! What the SSM transport asks of the Session Manager API, owned here and implemented by the
//! AWS layer (`aws::ssm`), so that the transport never imports `aws`.
//!
//! A [`SessionApi`] is bound to one target (instance or managed node): it starts sessions with
//! a [`Document`], resumes and terminates them, and (as a [`Signer`]) signs the data channel's
//! WebSocket upgrade.

use super::super::tunnel::{BoxFuture, Signer};
use crate::error::{Error, Result};

/// The SSM session parameters of `StartSession`: document name (none: the default shell)
/// and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `AWS-StartPortForwardingSession`, ...; `None` for `SSM-SessionManagerRunShell`.
    pub name: Option<String>,
    /// Parameter name → value (each sent as a one-element list).
    pub parameters: Vec<(String, String)>,
}

impl Document {
    /// The name, for messages.
    pub fn shown(&self) -> &str {
        self.name.as_deref().unwrap_or("SSM-SessionManagerRunShell")
    }
}

/// A started (or resumed) session: its id, the data channel's URL, and the token that opens it.
///
/// The token never appears in a message or a log line (its `Debug` is redacted); it lives only
/// until the data channel's first frame is sent.
pub struct Started {
    /// `SessionId`.
    pub session_id: String,
    /// `StreamUrl` (`wss://ssmmessages.<region>.amazonaws.com/v1/data-channel/<id>?...`).
    pub stream_url: String,
    /// `TokenValue`: a credential; never shown.
    pub token: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A failed `ResumeSession`, and whether trying again may help.
#[derive(Debug)]
pub struct ResumeError {
    /// True for throttling and network failures.
    pub retry: bool,
    /// The error, with its fix.
    pub error: Error,
}

/// Session Manager's API for one target.
pub trait SessionApi: Signer {
    /// `StartSession` with `document`; `reason` is recorded in CloudTrail.
    fn start<'a>(
        &'a self,
        document: &'a Document,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Started>>;

    /// `ResumeSession`: a new token (and stream URL) for the same session. `Ok(None)` when the
    /// service gives no token: the session timed out and cannot be resumed.
    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<Option<Started>, ResumeError>>;

    /// `TerminateSession`, best effort.
    fn terminate<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_never_shown() {
        let s = Started {
            session_id: "s-1".into(),
            stream_url: "wss://x".into(),
            token: "SECRET".into(),
        };
        assert!(!format!("{s:?}").contains("SECRET"));
    }
}
