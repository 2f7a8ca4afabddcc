//! The lab's fake SSM Session Manager (API, gateway and web-1's agent, see
//! `tests/src/lab/aws/ssm.rs`), checked with an independent client only: `ssm_probe.py`
//! (boto3 + websockets, run as a laptop client through the lab hosts file and CA). These
//! tests show the fake speaks protocols/ssm.md, so that aws-hop's SSM tests can trust it.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use aws_hop_lab::Lab;

use crate::hop_lab_bin;

fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// Runs `ssm_probe.py ARGS` and returns its JSON line, failing the test on a non-zero exit.
#[track_caller]
fn probe(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .ssm_probe(args)
        .unwrap_or_else(|e| panic!("ssm_probe {args:?}: {e:#}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ssm_probe {args:?} failed ({})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[track_caller]
fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

/// A one-connection server in the private subnet (at a fresh `SINK_IP:port`): it sends
/// `greeting`, then echoes until EOF. Reports the client's address.
fn sink(lab: &Lab, greeting: &'static [u8]) -> (SocketAddr, mpsc::Receiver<SocketAddr>) {
    let addr = lab.sink_addr();
    let listener = lab.listen_in(&lab.ns_priv, addr).expect("listen in priv");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let _ = tx.send(peer);
        let _ = conn.write_all(greeting);
        let mut buf = [0u8; 16384];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

#[test]
fn ssm_describe_instance_information_web1_online_web2_lost() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let all = probe(lab, &["describe"]);
    let web1 = format!(
        "{{\"InstanceId\": \"{}\", \"PingStatus\": \"Online\"",
        ids.get("WEB1_ID")
    );
    let web2 = format!(
        "{{\"InstanceId\": \"{}\", \"PingStatus\": \"ConnectionLost\"",
        ids.get("WEB2_ID")
    );
    assert_has(&all, &web1);
    assert_has(&all, &web2);
    assert_has(&all, &format!("\"IPAddress\": \"{}\"", lab.instance_ip));
    assert!(
        !all.contains(ids.get("BASTION_ID")),
        "the bastion has no agent: {all}"
    );
    let only2 = probe(lab, &["describe", ids.get("WEB2_ID")]);
    assert_has(&only2, &web2);
    assert!(!only2.contains(ids.get("WEB1_ID")), "{only2}");
}

/// The probe's smux forward to PostgreSQL through web-1, sending an SSLRequest (the server
/// answers one byte, N or S).
fn forward_to_postgres(lab: &Lab) -> String {
    let ids = lab.aws.ids().unwrap();
    probe(
        lab,
        &[
            "forward",
            ids.get("WEB1_ID"),
            &lab.postgres_host,
            "5432",
            "0000000804d2162f",
        ],
    )
}

#[test]
fn ssm_port_forward_to_postgres_through_smux() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let out = forward_to_postgres(lab);
    assert!(
        out.contains("\"data_hex\": \"4e\"") || out.contains("\"data_hex\": \"53\""),
        "{out}"
    );
    assert_has(&out, "\"SessionType\": \"Port\"");
    assert_has(&out, "\"type\": \"LocalPortForwarding\"");
    assert_has(&out, &format!("\"host\": \"{}\"", lab.postgres_host));
    let stats = lab.aws.ssm_stats().unwrap();
    assert_has(&stats, "\"mode\": \"mux\"");
    assert_has(
        &stats,
        "\"DocumentName\": \"AWS-StartPortForwardingSessionToRemoteHost\"",
    );
    assert!(
        lab.aws.ssm_counter("upgrades_signed").unwrap() >= 1,
        "{stats}"
    );
    assert!(
        lab.aws.ssm_counter("terminated_by_api").unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn the_agent_acks_the_handshake_response_before_handshake_complete_unless_told_not_to() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let forward = || forward_to_postgres(lab);
    // As the real agent does (it acks right after handing the response to its handshake
    // goroutine), every time.
    for _ in 0..5 {
        assert_has(&forward(), "\"handshake_ack_first\": true");
    }
    // The other order, on request: for clients that must survive it.
    lab.aws
        .ssm_control(r#"{"late_handshake_ack": true}"#)
        .unwrap();
    let out = forward();
    assert_has(&out, "\"handshake_ack_first\": false");
    assert!(
        out.contains("\"data_hex\": \"4e\"") || out.contains("\"data_hex\": \"53\""),
        "{out}"
    );
}

#[test]
fn ssm_forward_dials_from_the_instance_and_reports_dial_failures() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let ids = lab.aws.ids().unwrap();
    let (addr, peer) = sink(lab, b"hello from the sink\n");
    let out = probe(
        lab,
        &[
            "forward",
            ids.get("WEB1_ID"),
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "",
        ],
    );
    assert_has(&out, "hello from the sink");
    let peer = peer.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(lab.instance_ip), "the agent's source");
    // Nothing listens there: ConnectToPortError (3) and a FIN on the stream.
    let refused = probe(
        lab,
        &[
            "forward",
            ids.get("WEB1_ID"),
            &lab.sink_ip.to_string(),
            "9",
            "00",
        ],
    );
    assert_has(&refused, "\"flags\": [3]");
    assert_has(&refused, "\"fin\": true");
}

#[test]
fn ssm_shell_runs_commands_on_a_pty() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let ids = lab.aws.ids().unwrap();
    let out = probe(
        lab,
        &[
            "shell",
            ids.get("WEB1_ID"),
            "echo ssm-$((6*7)); tty; stty size\nexit\n",
        ],
    );
    assert_has(&out, "ssm-42");
    assert_has(&out, "/dev/pts/");
    assert_has(&out, "43 132");
    assert_has(&out, "\"MessageType\": \"channel_closed\"");
    assert_has(&out, "\"payload_types\": [1]");
}

#[test]
fn ssm_ssh_session_is_basic_mode_and_ends_on_the_terminate_flag() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let out = probe(lab, &["ssh", ids.get("WEB1_ID"), ""]);
    assert_has(&out, "\"data\": \"SSH-2.0-OpenSSH");
    assert_has(&out, "\"Properties\": {\"portNumber\": \"22\"}");
    assert_has(&out, "\"MessageType\": \"channel_closed\"");
    assert_has(&out, "\"code\": 1000");
    let stats = lab.aws.ssm_stats().unwrap();
    assert_has(&stats, "\"mode\": \"basic\"");
    assert_eq!(
        lab.aws.ssm_counter("terminated_by_flag").unwrap(),
        1,
        "{stats}"
    );
}

#[test]
fn ssm_bad_token_is_closed_with_1003() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let ids = lab.aws.ids().unwrap();
    let out = probe(lab, &["bad-token", ids.get("WEB1_ID")]);
    assert_has(&out, "\"code\": 1003");
    assert_has(&out, "token");
}

#[test]
fn ssm_api_errors_offline_agent_unknown_target_document_and_access_denied() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let web1 = ids.get("WEB1_ID");
    let _lock = lab.aws.ssm_lock().unwrap();
    let unknown = probe(lab, &["start", "i-0123456789abcdef0"]);
    assert_has(&unknown, "\"code\": \"TargetNotConnected\"");
    assert_has(&unknown, "i-0123456789abcdef0 is not connected.");
    let stopped = probe(lab, &["start", ids.get("WEB2_ID")]);
    assert_has(&stopped, "\"code\": \"TargetNotConnected\"");
    let doc = probe(lab, &["start", web1, "No-Such-Document"]);
    assert_has(&doc, "\"code\": \"InvalidDocument\"");

    lab.aws
        .ssm_control(r#"{"access_denied_next_start": true}"#)
        .unwrap();
    let denied = probe(lab, &["start", web1]);
    assert_has(&denied, "\"code\": \"AccessDeniedException\"");
    let again = probe(lab, &["start", web1]);
    assert_has(&again, "\"ok\": true");

    lab.aws
        .ssm_control(&format!(r#"{{"agent_online": {{"{web1}": false}}}}"#))
        .unwrap();
    let offline = probe(lab, &["start", web1]);
    assert_has(&offline, "\"code\": \"TargetNotConnected\"");
    assert_has(&offline, &format!("{web1} is not connected."));
    let described = probe(lab, &["describe", web1]);
    assert_has(&described, "\"PingStatus\": \"ConnectionLost\"");
    lab.aws
        .ssm_control(&format!(r#"{{"agent_online": {{"{web1}": true}}}}"#))
        .unwrap();
    assert_has(
        &probe(lab, &["describe", web1]),
        "\"PingStatus\": \"Online\"",
    );
    assert!(lab.aws.ssm_control(r#"{"no_such_control": 1}"#).is_err());
}

#[test]
fn ssm_session_survives_bye_and_faults_through_resume() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let (addr, _peer) = sink(lab, b"");
    lab.aws
        .ssm_control(
            r#"{"seed": 1, "drop": 0.05, "duplicate": 0.05, "reorder": 0.05, "close_after_bytes": 30000}"#,
        )
        .unwrap();
    let out = probe(
        lab,
        &[
            "resume",
            ids.get("WEB1_ID"),
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ],
    );
    assert_has(&out, "\"intact\": true");
    assert_has(&out, "\"reason\": \"Bye\"");
    let stats = lab.aws.ssm_stats().unwrap();
    let count = |c: &str| lab.aws.ssm_counter(c).unwrap();
    for counter in ["closed_bye", "sessions_resumed"] {
        assert!(count(counter) >= 1, "{counter}: {stats}");
    }
    // Each fault at 5% over some 200 frames: it happened, in one direction or the other (a
    // single direction carries few enough frames that it may draw none).
    for fault in ["dropped", "duplicated", "reordered"] {
        assert!(
            count(&format!("{fault}_to_agent")) + count(&format!("{fault}_to_client")) >= 1,
            "{fault}: {stats}"
        );
    }
}

#[test]
fn ssm_timeouts_end_sessions_with_channel_closed() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    lab.aws.ssm_control(r#"{"idle_timeout_s": 1}"#).unwrap();
    // `sleep 5` keeps the shell quiet past the idle timeout.
    let out = probe(lab, &["shell", ids.get("WEB1_ID"), "sleep 5\n"]);
    assert_has(&out, "timed out due to inactivity");
    assert!(lab.aws.ssm_counter("timed_out_idle").unwrap() >= 1);
    let history = probe(lab, &["sessions", "History"]);
    assert_has(&history, "\"Status\": \"Terminated\"");
}
