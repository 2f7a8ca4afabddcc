//! Outgoing messages and the retransmission timer: every message is kept until the agent
//! acknowledges it, the head is resent after the retransmission timeout (Jacobson/Karels
//! with the plugin's 200 ms–1 s bounds, Karn's rule), a hole below an acknowledged message at
//! once, and the whole backlog on a resumed connection.

use super::*;

pub(super) struct Pending {
    seq: i64,
    wire: Bytes,
    last_sent: Instant,
    attempts: u32,
}

/// Sent, unacknowledged messages and the RTT estimate (RFC 6298 with the plugin's bounds).
pub(super) struct Outgoing {
    q: VecDeque<Pending>,
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
    /// The highest sequence number acknowledged so far.
    max_acked: i64,
}

impl Outgoing {
    pub(super) fn new() -> Outgoing {
        Outgoing {
            q: VecDeque::new(),
            srtt: Duration::from_millis(100),
            rttvar: Duration::ZERO,
            rto: MIN_RTO,
            max_acked: -1,
        }
    }

    /// How many messages are unacknowledged.
    pub(super) fn len(&self) -> usize {
        self.q.len()
    }

    pub(super) fn push(&mut self, seq: i64, wire: Bytes, now: Instant) {
        self.q.push_back(Pending {
            seq,
            wire,
            last_sent: now,
            attempts: 1,
        });
    }

    /// Retires `seq`; true if it was pending.
    pub(super) fn ack(&mut self, seq: i64, now: Instant) -> bool {
        self.max_acked = self.max_acked.max(seq);
        // Acknowledgements come mostly in order: look from the front.
        let Some(i) = self.q.iter().position(|p| p.seq == seq) else {
            return false;
        };
        let p = self.q.remove(i).expect("position is in range");
        if p.attempts == 1 {
            // Karn: only first transmissions give RTT samples.
            let sample = now.saturating_duration_since(p.last_sent);
            let diff = self.srtt.abs_diff(sample);
            self.rttvar = self.rttvar * 3 / 4 + diff / 4;
            self.srtt = self.srtt * 7 / 8 + sample / 8;
            self.rto = (self.srtt + (self.rttvar * 4).max(Duration::from_millis(10)))
                .clamp(MIN_RTO, MAX_RTO);
        }
        true
    }

    /// What to resend now: the head once its timeout passed, and any message below the
    /// highest acknowledged one that was sent more than one smoothed RTT ago (a hole).
    /// `Err(seq)` when a message used up its attempts.
    pub(super) fn due(&mut self, now: Instant) -> std::result::Result<Vec<Bytes>, i64> {
        let mut out = Vec::new();
        let rto = self.rto;
        let hole_age = (self.srtt * 2).max(Duration::from_millis(20));
        let max_acked = self.max_acked;
        for (i, p) in self.q.iter_mut().enumerate() {
            let age = now.saturating_duration_since(p.last_sent);
            let head_due = i == 0 && age > rto;
            let hole = p.seq < max_acked && age > hole_age;
            if !(head_due || hole) {
                if p.seq >= max_acked {
                    break;
                }
                continue;
            }
            if p.attempts >= MAX_ATTEMPTS {
                return Err(p.seq);
            }
            p.attempts += 1;
            p.last_sent = now;
            out.push(p.wire.clone());
            if out.len() >= 64 {
                break;
            }
        }
        Ok(out)
    }

    /// Every unacknowledged message, to resend on a resumed connection.
    pub(super) fn all(&mut self, now: Instant) -> Vec<Bytes> {
        self.q
            .iter_mut()
            .map(|p| {
                p.last_sent = now;
                p.attempts = p.attempts.saturating_add(1);
                p.wire.clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retransmission_resends_the_head_after_the_timeout_and_holes_at_once() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        for seq in 0..4 {
            o.push(seq, Bytes::from(vec![u8::try_from(seq).unwrap()]), t0);
        }
        // Nothing is due before the timeout.
        assert!(o.due(t0 + Duration::from_millis(50)).unwrap().is_empty());
        // The agent acknowledges 2 and 3 (it buffered them): 0 and 1 are holes.
        assert!(o.ack(2, t0 + Duration::from_millis(30)));
        assert!(o.ack(3, t0 + Duration::from_millis(30)));
        assert!(!o.ack(3, t0 + Duration::from_millis(31)), "a duplicate ack");
        assert!(o.due(t0 + Duration::from_millis(100)).unwrap().is_empty());
        let due = o.due(t0 + Duration::from_millis(180)).unwrap();
        assert_eq!(due, vec![Bytes::from(vec![0u8]), Bytes::from(vec![1u8])]);
        // Just resent: not again at once.
        assert!(o.due(t0 + Duration::from_millis(190)).unwrap().is_empty());
        assert!(o.ack(0, t0 + Duration::from_millis(200)));
        assert!(o.ack(1, t0 + Duration::from_millis(200)));
        assert!(o.q.is_empty());
    }

    #[test]
    fn a_resume_resends_the_whole_backlog_in_order() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        for seq in 0..3 {
            o.push(seq, Bytes::from(vec![u8::try_from(seq).unwrap()]), t0);
        }
        o.ack(1, t0);
        assert_eq!(
            o.all(t0),
            vec![Bytes::from(vec![0u8]), Bytes::from(vec![2u8])]
        );
    }

    #[test]
    fn the_rto_stays_within_its_bounds() {
        let t0 = Instant::now();
        let mut o = Outgoing::new();
        o.push(0, Bytes::new(), t0);
        o.ack(0, t0 + Duration::from_millis(1));
        assert_eq!(o.rto, MIN_RTO);
        o.push(1, Bytes::new(), t0);
        o.ack(1, t0 + Duration::from_secs(30));
        assert_eq!(o.rto, MAX_RTO);
    }
}
