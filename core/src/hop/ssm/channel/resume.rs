//! Resuming a lost WebSocket: `ResumeSession` with retries and backoff, then a new
//! connection with the new token. The sequence numbers carry on; the caller resends the
//! backlog.

use super::dial::dial;
use super::*;

/// ResumeSession with retries, then a new WebSocket.
pub(super) async fn resume(shared: &Shared, why: &str) -> std::result::Result<Ws, End> {
    let mut delay = RESUME_DELAY;
    let mut last = why.to_string();
    for _ in 0..RESUME_ATTEMPTS {
        tokio::select! {
            () = shared.stop.cancelled() => return Err(End::Terminated),
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(3));
        match shared.api.resume(&shared.session_id).await {
            Ok(Some(started)) => match dial(shared.api.as_ref(), &started, &shared.label).await {
                Ok(ws) => return Ok(ws),
                Err(e) if e.refused.is_some() => {
                    let (code, reason) = e.refused.unwrap_or_default();
                    return Err(End::Refused { code, reason });
                }
                Err(e) => last = e.error.to_string(),
            },
            Ok(None) => {
                return Err(End::Lost(
                    "ResumeSession gave no token: the session timed out (its idle timeout or \
                     maximum duration passed)"
                        .into(),
                ));
            }
            Err(e) if e.retry => last = e.error.to_string(),
            Err(e) => return Err(End::Lost(e.error.to_string())),
        }
    }
    Err(End::Lost(format!(
        "{RESUME_ATTEMPTS} ResumeSession attempts failed; last: {last}"
    )))
}
