//! One WebSocket connection of a channel: the writer task, reading, in-order delivery with
//! flow control, acknowledgements, retransmission ticks, pings and the dead-connection timer.

use super::handshake::on_handshake_request;
use super::*;

/// Reads one connection until it ends, delivering, acknowledging and retransmitting.
pub(super) async fn connection(shared: &Arc<Shared>, ws: Ws, rx: &mut Incoming) -> Outcome {
    let (mut sink, mut source) = ws.split();
    let (wtx, mut wrx) = mpsc::channel::<Message>(WRITER_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(m) = wrx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            // What is already queued (a burst of acknowledgements, the chunks of one send)
            // goes out with it: one flush, one TLS write, instead of one per message.
            while let Ok(m) = wrx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // The unacknowledged backlog first (the agent keeps counting across a resume), then new
    // messages. A sender may slip one in between; the agent reorders, so that is harmless.
    *shared.writer.lock().expect("writer lock") = Some(wtx.clone());
    let backlog = shared.out.lock().expect("out lock").all(Instant::now());
    for wire in backlog {
        if wtx.send(Message::Binary(wire)).await.is_err() {
            break;
        }
    }

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_inbound = Instant::now();
    let outcome = loop {
        let deliverable = rx.held.contains_key(&rx.expected);
        // A clone: a permit borrows its sender, and `rx` is needed mutably beside it.
        let inbox = rx.inbox.clone();
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break Outcome::Final(End::Terminated),
            frame = source.next() => {
                last_inbound = Instant::now();
                let step = match frame {
                    Some(Ok(Message::Binary(data))) => on_binary(shared, rx, &wtx, data),
                    Some(Ok(Message::Text(text))) => on_text(shared, text.as_str()),
                    Some(Ok(Message::Close(frame))) => Some(on_close(frame)),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(Outcome::Lost(format!("WebSocket read failed: {e}"))),
                    None => Some(Outcome::Lost("the WebSocket ended without a close frame".into())),
                };
                if let Some(o) = step {
                    break o;
                }
                if let Some(o) = drain(shared, rx, &wtx) {
                    break o;
                }
            }
            permit = inbox.reserve(), if deliverable => {
                let Some(o) = deliver_one(shared, rx, &wtx, permit.ok()) else {
                    if let Some(o) = drain(shared, rx, &wtx) {
                        break o;
                    }
                    continue;
                };
                break o;
            }
            _ = tick.tick() => {
                let due = shared.out.lock().expect("out lock").due(Instant::now());
                match due {
                    Ok(wires) => for w in wires {
                        let _ = wtx.try_send(Message::Binary(w));
                    },
                    Err(seq) => break Outcome::Final(End::Lost(format!(
                        "the agent never acknowledged message {seq} after {MAX_ATTEMPTS} resends"
                    ))),
                }
                if last_inbound.elapsed() > DEAD_AFTER {
                    break Outcome::Lost(format!(
                        "nothing received for {} s", DEAD_AFTER.as_secs()
                    ));
                }
            }
            _ = ping.tick() => {
                let _ = wtx.try_send(Message::Ping(Bytes::from_static(b"keepalive")));
            }
        }
    };
    {
        let mut w = shared.writer.lock().expect("writer lock");
        if w.as_ref().is_some_and(|c| c.same_channel(&wtx)) {
            *w = None;
        }
    }
    drop(wtx);
    if matches!(outcome, Outcome::Lost(_)) {
        writer.abort();
    } else {
        // Let the writer send what is queued (a last acknowledgement) and a close frame.
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }
    outcome
}

/// A binary frame: an acknowledgement, stream data, or a service message.
fn on_binary(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    wtx: &mpsc::Sender<Message>,
    data: Bytes,
) -> Option<Outcome> {
    let msg = match ClientMessage::deserialize(data) {
        Ok(m) => m,
        Err(e) => {
            // Not acknowledged: if it was stream data, the agent sends it again.
            tracing::debug!("{}: skipping a message: {e}", shared.label);
            return None;
        }
    };
    match msg.message_type {
        MessageType::Acknowledge => {
            if let Ok(a) = parse_ack(&msg) {
                let acked = shared
                    .out
                    .lock()
                    .expect("out lock")
                    .ack(a.sequence_number, Instant::now());
                if acked {
                    shared.acked.notify_waiters();
                }
            }
            None
        }
        MessageType::OutputStreamData => {
            let seq = msg.sequence_number;
            tracing::trace!(
                "{}: output {seq} ({} bytes, type {:?}), expecting {}, {} held",
                shared.label,
                msg.payload.len(),
                msg.payload_type,
                rx.expected,
                rx.held.len()
            );
            if seq < rx.expected {
                // A duplicate of a delivered message: our acknowledgement was lost.
                send_ack(wtx, &msg, true);
                return None;
            }
            if let Some((_, acked)) = rx.held.get(&seq) {
                if *acked {
                    send_ack(wtx, &msg, seq == rx.expected);
                }
                return None;
            }
            let ahead = seq > rx.expected;
            // The expected message always gets in: it is what lets the held ones out.
            if ahead
                && (rx.held.len() >= MAX_HELD || rx.held_bytes + msg.payload.len() > MAX_HELD_BYTES)
            {
                // No room: unacknowledged, so the agent resends it later.
                return None;
            }
            let ack_now = ahead && rx.held.len() < ACK_AHEAD;
            if ack_now {
                send_ack(wtx, &msg, false);
            }
            rx.held_bytes += msg.payload.len();
            rx.held.insert(seq, (msg, ack_now));
            None
        }
        MessageType::ChannelClosed => {
            Some(Outcome::Final(End::Closed(closed_output(&msg.payload))))
        }
        MessageType::StartPublication => {
            shared.gate.send_modify(|g| g.1 = false);
            None
        }
        MessageType::PausePublication => {
            shared.gate.send_modify(|g| g.1 = true);
            None
        }
        MessageType::InputStreamData => None,
    }
}

/// A text frame: MGS may send the service messages as text.
fn on_text(shared: &Shared, text: &str) -> Option<Outcome> {
    match text.trim() {
        "channel_closed" => Some(Outcome::Final(End::Closed(String::new()))),
        "start_publication" => {
            shared.gate.send_modify(|g| g.1 = false);
            None
        }
        "pause_publication" => {
            shared.gate.send_modify(|g| g.1 = true);
            None
        }
        other => {
            tracing::debug!(
                "{}: ignoring a text frame ({} bytes)",
                shared.label,
                other.len()
            );
            None
        }
    }
}

/// A close frame: 1003 (and 1008) mean the token was refused; anything else is a lost
/// connection to resume (MGS closes with 1000 "Bye" about hourly).
fn on_close(frame: Option<tungstenite::protocol::CloseFrame>) -> Outcome {
    let (code, reason) = frame.map_or((1005, String::new()), |f| {
        (u16::from(f.code), f.reason.as_str().to_string())
    });
    if matches!(code, 1003 | 1008) {
        Outcome::Final(End::Refused { code, reason })
    } else {
        Outcome::Lost(format!(
            "the gateway closed the WebSocket ({code} {reason})"
        ))
    }
}

/// Delivers what is in order, as far as the consumer has room.
fn drain(shared: &Arc<Shared>, rx: &mut Incoming, wtx: &mpsc::Sender<Message>) -> Option<Outcome> {
    let inbox = rx.inbox.clone();
    while rx.held.contains_key(&rx.expected) {
        let permit = match inbox.try_reserve() {
            Ok(p) => Some(p),
            Err(mpsc::error::TrySendError::Full(())) => {
                // Handshake messages need no room; data waits (unacknowledged).
                let next = &rx.held[&rx.expected].0;
                if needs_room(next.payload_type) {
                    return None;
                }
                None
            }
            // Nobody reads any more: acknowledge and discard.
            Err(mpsc::error::TrySendError::Closed(())) => None,
        };
        if let Some(o) = deliver_one(shared, rx, wtx, permit) {
            return Some(o);
        }
    }
    None
}

fn needs_room(t: PayloadType) -> bool {
    matches!(
        t,
        PayloadType::Output
            | PayloadType::StdErr
            | PayloadType::Error
            | PayloadType::Flag
            | PayloadType::ExitCode
            | PayloadType::Undefined
    )
}

/// Delivers the message at `expected` (which must be held): acknowledges it and hands it to
/// the consumer through `permit` (`None`: consumer gone, or a handshake message).
fn deliver_one(
    shared: &Arc<Shared>,
    rx: &mut Incoming,
    wtx: &mpsc::Sender<Message>,
    permit: Option<mpsc::Permit<'_, Inbound>>,
) -> Option<Outcome> {
    let (msg, acked) = rx.held.remove(&rx.expected)?;
    rx.held_bytes = rx.held_bytes.saturating_sub(msg.payload.len());
    rx.expected += 1;
    if !acked {
        send_ack(wtx, &msg, true);
    }
    let event = match msg.payload_type {
        PayloadType::Output | PayloadType::Undefined => {
            if !shared.cfg.gated {
                shared.gate.send_modify(|g| g.0 = true);
            }
            (!msg.payload.is_empty()).then(|| Inbound::Output(msg.payload.clone()))
        }
        PayloadType::StdErr | PayloadType::Error => Some(Inbound::Stderr(msg.payload.clone())),
        PayloadType::Flag => msg
            .payload
            .get(..4)
            .map(|b| Inbound::Flag(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))),
        PayloadType::ExitCode => {
            let text = String::from_utf8_lossy(&msg.payload);
            let digits: String = text
                .trim()
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            digits.parse().ok().map(Inbound::ExitCode)
        }
        PayloadType::HandshakeRequest => return on_handshake_request(shared, rx, &msg.payload),
        PayloadType::HandshakeComplete => {
            if let Ok(c) = serde_json::from_slice::<HandshakeComplete>(&msg.payload)
                && let Err(e) = rx.handshake.on_complete(c)
            {
                tracing::debug!("{}: {e}", shared.label);
            }
            tracing::debug!("{}: handshake complete", shared.label);
            shared.gate.send_modify(|g| g.0 = true);
            None
        }
        _ => None,
    };
    if let (Some(event), Some(permit)) = (event, permit) {
        permit.send(event);
    }
    None
}

pub(super) fn send_ack(wtx: &mpsc::Sender<Message>, msg: &ClientMessage, sequential: bool) {
    if let Ok(ack) = build_ack(msg, sequential) {
        // Full queue: the agent resends, and the duplicate is acknowledged then.
        let _ = wtx.try_send(Message::Binary(ack.serialize()));
    }
}

/// The `Output` of a `channel_closed` payload (JSON), or the payload as text.
fn closed_output(payload: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => v
            .get("Output")
            .and_then(|o| o.as_str())
            .unwrap_or_default()
            .to_string(),
        Err(_) => String::from_utf8_lossy(payload).into_owned(),
    };
    let text = text.trim();
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_closed_output_is_read_from_its_json() {
        let p = br#"{"MessageId":"x","MessageType":"channel_closed","Output":"Session idle timeout","SessionId":"s"}"#;
        assert_eq!(closed_output(p), "Session idle timeout");
        assert_eq!(closed_output(b"plain text"), "plain text");
    }
}
