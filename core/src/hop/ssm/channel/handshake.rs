//! The agent's `HandshakeRequest` and our `HandshakeResponse` (`shared/protocols/ssm.md` §4),
//! on aws-ssm-bridge's handshake types. KMS encryption is declined, and ends the channel with
//! an error that names the key.

use super::*;

/// The agent's HandshakeRequest: answer it (from a task: the reader must not wait for the
/// send lock). A request for KMS encryption ends the channel: aws-hop does not do it.
pub(super) fn on_handshake_request(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    payload: &[u8],
) -> Option<Outcome> {
    let request: HandshakeRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            return Some(Outcome::Final(End::Failed(format!(
                "the agent's HandshakeRequest is malformed: {e}"
            ))));
        }
    };
    let kms_key = request
        .requested_client_actions
        .iter()
        .find(|a| a.action_type == ActionType::KmsEncryption)
        .map(|a| {
            a.action_parameters
                .get("KMSKeyId")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_string()
        });
    let _ = shared.agent_version.set(request.agent_version.clone());
    // `on_request` is async only for KMS, which is answered here without it.
    let mut response = match futures_util::FutureExt::now_or_never(rx.handshake.on_request(request))
    {
        Some(Ok(Some(r))) => r,
        Some(Ok(None)) => return None,
        Some(Err(e)) => return Some(Outcome::Final(End::Failed(e.to_string()))),
        None => return Some(Outcome::Final(End::Failed("handshake stalled".into()))),
    };
    for a in &mut response.processed_client_actions {
        if a.action_type == ActionType::KmsEncryption {
            a.action_status = ActionStatus::Unsupported;
            a.error = Some("aws-hop does not do KMS-encrypted sessions yet".into());
        }
    }
    if kms_key.is_some() {
        response.errors = vec!["aws-hop does not do KMS-encrypted sessions yet".into()];
    }
    let body = match serde_json::to_vec(&response) {
        Ok(b) => Bytes::from(b),
        Err(e) => return Some(Outcome::Final(End::Failed(e.to_string()))),
    };
    let s = shared.clone();
    tokio::spawn(async move {
        let mut seq = s.send_lock.lock().await;
        let _ = s
            .push(&mut seq, PayloadType::HandshakeResponse, body, false)
            .await;
    });
    kms_key.map(|key| Outcome::Final(End::KmsRequired(key)))
}
