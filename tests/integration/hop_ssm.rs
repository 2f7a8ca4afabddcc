//! aws-hop through SSM Session Manager, against the lab's fake Session Manager (API, gateway
//! and web-1's agent, written from protocols/ssm.md independently of aws-hop): a real
//! PostgreSQL query through a remote-host forward, many connections over one session, bulk
//! transfers through dropped, duplicated and reordered frames, a WebSocket closed
//! mid-transfer and resumed, SSH with a pushed key over AWS-StartSSHSession, a shell, and
//! the errors a user meets (offline agent, unknown instance, refused token, IAM refusal,
//! idle timeout, a KMS-encrypted shell).
//!
//! Tests that change the fake's controls or read its counters hold `ssm_lock()`.
//!
//! Smux carries no half-close (the agent closes a stream on the first EOF), so the servers
//! here never wait for the client's EOF before answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use aws_hop_lab::fixture::TestServer;
use aws_hop_lab::fixture::clients::psql_query;
use aws_hop_lab::lab::POSTGRES_MARKER;
use aws_hop_lab::serve::ServeMode;
use aws_hop_lab::serve::client::source_fetch;
use aws_hop_lab::{HopCmd, HopProcess, Lab, TestHome, pattern};
use sha2::{Digest, Sha256};

use crate::hop_common::{interrupt_and_expect_clean_exit, spawn_aws_ready};
use crate::hop_lab_bin;

const MB: u64 = 1 << 20;

/// The shared lab, with its AWS side up.
fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// A HOME with no usable SSH key: a login can only succeed with the pushed ephemeral key.
fn keyless_home(lab: &Lab) -> TestHome {
    let home = TestHome::new(lab);
    let _ = std::fs::remove_file(home.key_path());
    home
}

/// An echo server in the private subnet: echoes each connection until it ends.
fn echo_server(lab: &Lab) -> SocketAddr {
    let addr = lab.sink_addr();
    let listener = lab.listen_in(&lab.ns_priv, addr).expect("listen in priv");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A server in the private subnet that reads exactly `n` bytes per connection, then answers
/// `<count> <sha256>\n` and closes (no half-close needed).
fn counting_sink(lab: &Lab, n: u64) -> SocketAddr {
    let addr = lab.sink_addr();
    let listener = lab.listen_in(&lab.ns_priv, addr).expect("listen in priv");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            thread::spawn(move || {
                let mut hasher = Sha256::new();
                let mut left = n;
                let mut buf = vec![0u8; 256 * 1024];
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap();
                    match conn.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            hasher.update(&buf[..k]);
                            left -= k as u64;
                        }
                    }
                }
                let _ = writeln!(conn, "{} {}", n - left, pattern::hex(&hasher.finalize()));
            });
        }
    });
    addr
}

/// Sends the first `n` pattern bytes to a [`counting_sink`] and returns its answer line.
fn upload(port: u16, n: u64) -> String {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    pattern::write(&mut &s, n).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// Downloads `n` pattern bytes from a source server, checking every byte.
fn download(port: u16, n: u64) -> u64 {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    source_fetch(&s, n).unwrap()
}

fn counter(lab: &Lab, key: &str) -> u64 {
    lab.aws.ssm_counter(key).unwrap()
}

/// aws-hop holding one forward through `ssm("web-1")` to `target`, and its local port.
fn one_forward(lab: &Lab, home: &TestHome, target: SocketAddr) -> (HopProcess, u16) {
    let script = format!(
        r#"
let f = ssm("web-1").forward(0, "{target}");
print(`READY ${{f.local_port}}`);
wait();
"#
    );
    let (proc, ports) = spawn_aws_ready(lab, home, script);
    (proc, ports[0])
}

/// aws-hop holding two forwards through one `ssm("web-1", OPTS)`: `up` to a
/// [`counting_sink`] of `n` bytes, `down` to a pattern source. Owns the process and the source.
struct UpDown {
    proc: HopProcess,
    up: u16,
    down: u16,
    _source: TestServer,
}

impl UpDown {
    fn start(lab: &Lab, home: &TestHome, ssm_opts: &str, n: u64) -> UpDown {
        let sink = counting_sink(lab, n);
        let source =
            TestServer::start(lab, &lab.ns_priv, ServeMode::Source, lab.sink_addr()).unwrap();
        let script = format!(
            r#"
let s = ssm("web-1", {ssm_opts});
let up = s.forward(0, "{sink}");
let down = s.forward(0, "{source}");
print(`READY ${{up.local_port}} ${{down.local_port}}`);
wait();
"#,
            source = source.addr,
        );
        let (proc, ports) = spawn_aws_ready(lab, home, script);
        UpDown {
            proc,
            up: ports[0],
            down: ports[1],
            _source: source,
        }
    }

    /// `n` bytes up and `n` down at the same time; both must arrive whole (`when` says
    /// during what, for the failure message).
    fn both_ways(&self, n: u64, when: &str) {
        let (up_port, down_port) = (self.up, self.down);
        let up = thread::spawn(move || upload(up_port, n));
        let down = thread::spawn(move || download(down_port, n));
        assert_eq!(
            up.join().unwrap(),
            format!("{n} {}", pattern::sha256_hex_of_pattern(n)),
            "upload corrupted or truncated {when}"
        );
        assert_eq!(down.join().unwrap(), n, "download truncated {when}");
    }
}

#[test]
fn ssm_forward_reaches_postgres_through_a_remote_host_session() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let s = ssm("web-1");
print(`HOP ${{s}}`);
let p = s.forward("127.0.0.1:0", "{phost}:5432");
print(`READY ${{p.local_port}}`);
wait();
"#,
        phost = lab.postgres_host,
    );
    let (proc, ports) = spawn_aws_ready(lab, &home, script);
    let row = psql_query(
        ports[0],
        "select inet_client_addr(), (select name from whoami)",
    )
    .unwrap();
    let (client, name) = row.split_once('|').unwrap_or_else(|| panic!("row {row:?}"));
    assert_eq!(name, POSTGRES_MARKER);
    // The agent dials from the instance: PostgreSQL sees web-1's address.
    assert_eq!(client, lab.instance_ip.to_string());
    assert_eq!(psql_query(ports[0], "select 40 + 2").unwrap(), "42");
    let stats = lab.aws.ssm_stats().unwrap();
    assert!(
        stats.contains("AWS-StartPortForwardingSessionToRemoteHost"),
        "{stats}"
    );
    let out = proc.merged_output();
    assert!(
        out.contains(&format!("HOP ssm {} (web-1)", ids.get("WEB1_ID"))),
        "{out}"
    );
    interrupt_and_expect_clean_exit(proc);
    // Closing the hop terminated its session.
    assert!(
        counter(lab, "terminated_by_api") >= 1,
        "{}",
        lab.aws.ssm_stats().unwrap()
    );
}

/// The managed node (hybrid activation) the lab's gateway serves with web-1's agent.
const NODE: &str = "mi-0123456789abcdef0";

#[test]
fn a_managed_node_is_reached_by_its_mi_id_through_ssm_and_refused_by_eice() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    lab.aws
        .ssm_control(&format!(r#"{{"hybrid_node": "{NODE}"}}"#))
        .unwrap();
    // ssm_status and a forward, by the mi- id: not looked up as a Name tag.
    let home = TestHome::new(lab);
    let (mut proc, ports) = spawn_aws_ready(
        lab,
        &home,
        format!(
            r#"
let st = ssm_status("{NODE}");
print(`STATUS ${{st.state}} ${{st.online}} ${{st.name}}`);
let f = ssm("{NODE}").forward(0, "{echo}");
print(`READY ${{f.local_port}}`);
wait();
"#,
            echo = echo_server(lab)
        ),
    );
    let mut s = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"to a managed node\n").unwrap();
    let mut got = [0u8; 18];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"to a managed node\n");
    drop(s);
    proc.interrupt();
    proc.wait_exit(Duration::from_secs(15))
        .assert_success()
        .assert_stdout_contains("STATUS managed true onprem-web");

    // connect(): eice skips it with the reason, ssm logs in with the user's key (EC2
    // Instance Connect cannot push one to a managed node).
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(format!(
            r#"
let h = connect("{NODE}", #{{ user: "{user}", key: "{key}", known_hosts: "accept-new" }});
let ran = h.exec("hostname -I").stdout;
print(`RAN ${{ran}}`);
"#,
            user = lab.user,
            key = home.key_path().display()
        ))
        .timeout(60)
        .run();
    out.assert_success()
        .assert_stderr_contains(&format!(
            "eice: skipped ({NODE} is a managed node (hybrid, registered with SSM), not an EC2 instance"
        ))
        .assert_stderr_contains("ssm: ok");
    crate::hop_common::assert_ran_on(&out, "RAN", lab.instance_ip);

    // Without a key: what to do instead, not a SendSSHPublicKey failure.
    let keyless = keyless_home(lab);
    HopCmd::new()
        .aws(lab)
        .home(keyless.path())
        .script(format!(
            r#"ssm("{NODE}").ssh("{}", #{{ known_hosts: "accept-new" }});"#,
            lab.user
        ))
        .status(1)
        .stderr_contains(format!(
            "onprem-web ({NODE}) is a managed node (hybrid, not EC2): EC2 Instance Connect cannot push a key"
        ))
        .stderr_contains("needs a key that is installed there")
        .timeout(60)
        .run();
}

#[test]
fn a_late_ack_of_the_handshake_response_does_not_disturb_the_session() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    lab.aws
        .ssm_control(r#"{"late_handshake_ack": true}"#)
        .unwrap();
    let home = keyless_home(lab);
    let (proc, port) = one_forward(lab, &home, echo_server(lab));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"after a late ack\n").unwrap();
    let mut got = [0u8; 17];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"after a late ack\n");
    drop(s);
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn ten_concurrent_connections_share_one_session_each_with_its_own_bytes() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let target = echo_server(lab);
    let (proc, port) = one_forward(lab, &home, target);
    let handles: Vec<_> = (0..10u32)
        .map(|i| {
            thread::spawn(move || {
                let payload: Vec<u8> = (0..200_000u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i * 7919) >> 13) as u8)
                    .collect();
                let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                let mut w = s.try_clone().unwrap();
                let sent = payload.clone();
                let writer = thread::spawn(move || w.write_all(&sent).unwrap());
                let mut back = vec![0u8; payload.len()];
                (&s).read_exact(&mut back).unwrap();
                writer.join().unwrap();
                assert!(
                    back == payload,
                    "connection {i} did not get its own bytes back"
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        counter(lab, "sessions_started"),
        1,
        "ten connections must share one session: {}",
        lab.aws.ssm_stats().unwrap()
    );
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn hundred_mb_each_way_survive_dropped_duplicated_and_reordered_frames() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let n = 100 * MB;
    lab.aws
        // Uploads are ~3 200 frames of 32 KiB, downloads ~100 000 of 1 KiB: rates that make
        // every fault happen in both directions (the test checks that it did).
        .ssm_control(
            r#"{"seed": 7, "drop_to_client": 0.002, "duplicate_to_client": 0.002,
                "reorder_to_client": 0.002, "drop_to_agent": 0.01,
                "duplicate_to_agent": 0.01, "reorder_to_agent": 0.01}"#,
        )
        .unwrap();
    let t = UpDown::start(lab, &home, "#{ chunk_size: 32768 }", n);
    t.both_ways(n, "through the faults");
    let stats = lab.aws.ssm_stats().unwrap();
    for c in [
        "dropped_to_agent",
        "dropped_to_client",
        "duplicated_to_agent",
        "duplicated_to_client",
        "reordered_to_agent",
        "reordered_to_client",
    ] {
        assert!(
            counter(lab, c) > 0,
            "{c} is 0: the faults did not happen\n{stats}"
        );
    }
    interrupt_and_expect_clean_exit(t.proc);
}

#[test]
fn a_websocket_closed_mid_transfer_is_resumed_and_nothing_is_lost() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let n = 40 * MB;
    let t = UpDown::start(lab, &home, "#{}", n);
    // Both sessions exist before the gateway starts counting towards the close.
    assert_eq!(download(t.down, MB), MB);
    assert_eq!(
        upload(t.up, n),
        format!("{n} {}", pattern::sha256_hex_of_pattern(n))
    );
    // MGS closes every data channel (1000 Bye) once 30 MB more have gone through.
    lab.aws
        .ssm_control(r#"{"close_after_bytes": 30000000}"#)
        .unwrap();
    t.both_ways(n, "across the resume");
    let stats = lab.aws.ssm_stats().unwrap();
    assert!(counter(lab, "closed_bye") >= 1, "{stats}");
    assert!(counter(lab, "sessions_resumed") >= 1, "{stats}");
    // Resumed, not replaced: still one session per target, and the same local ports work.
    assert_eq!(counter(lab, "sessions_started"), 2, "{stats}");
    assert_eq!(download(t.down, MB), MB);
    interrupt_and_expect_clean_exit(t.proc);
}

#[test]
fn ssm_ssh_logs_in_with_a_pushed_key_over_ssh_sessions() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let h = ssm("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
print(`HOP ${{h}}`);
let r = h.exec("hostname");
print(`STATUS ${{r.status}} HOSTNAME ${{r.stdout}}`);
let w = h.exec("id -un");
print(`USER ${{w.stdout}}`);
"#,
        user = lab.user
    );
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(script)
        .timeout(60)
        .run();
    out.assert_success()
        .assert_stdout_contains("STATUS 0")
        .assert_stdout_contains(&format!("USER {}", lab.user))
        .assert_stdout_contains("AWS-StartSSHSession");
    assert!(!out.stdout.contains("HOSTNAME \n"), "{}", out.report());
    let known = home.read_known_hosts();
    assert!(known.contains(ids.get("WEB1_ID")), "known_hosts: {known}");
    let stats = lab.aws.ssm_stats().unwrap();
    assert!(stats.contains("AWS-StartSSHSession"), "{stats}");
}

#[test]
fn offline_agent_unknown_instance_refused_token_and_iam_refusal_say_what_to_fix() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let web1 = ids.get("WEB1_ID");
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let run = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .timeout(60)
            .run()
    };
    let login = format!(
        r#"ssm("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});"#,
        user = lab.user
    );

    lab.aws
        .ssm_control(&format!(r#"{{"agent_online": {{"{web1}": false}}}}"#))
        .unwrap();
    run(r#"ssm("web-1");"#)
        .assert_status(1)
        .assert_stderr_contains(&format!(
            "the SSM agent on web-1 ({web1}) is ConnectionLost"
        ))
        .assert_stderr_contains("amazon-ssm-agent")
        .assert_stderr_contains("AmazonSSMManagedInstanceCore");
    lab.aws
        .ssm_control(&format!(r#"{{"agent_online": {{"{web1}": true}}}}"#))
        .unwrap();

    run(r#"ssm("no-such-host");"#)
        .assert_status(1)
        .assert_stderr_contains("no instance matches Name tag 'no-such-host'");
    run(r#"ssm("web-2");"#)
        .assert_status(1)
        .assert_stderr_contains("is stopped")
        .assert_stderr_contains("start-instances");

    lab.aws
        .ssm_control(r#"{"corrupt_next_token": true}"#)
        .unwrap();
    let out = run(&login);
    out.assert_status(1)
        .assert_stderr_contains("refused the data channel")
        .assert_stderr_contains("close 1003");
    assert!(
        !out.stderr.contains("corrupt-"),
        "a token was shown: {}",
        out.stderr
    );

    lab.aws
        .ssm_control(r#"{"access_denied_next_start": true}"#)
        .unwrap();
    run(&login)
        .assert_status(1)
        .assert_stderr_contains("AccessDeniedException")
        .assert_stderr_contains("ssm:StartSession");

    run(r#"ssm("web-1", #{ chunk_sise: 1024 });"#)
        .assert_status(1)
        .assert_stderr_contains("did you mean `chunk_size`?");
}

#[test]
fn an_idle_timeout_is_reported_in_the_services_words_and_the_next_connection_starts_again() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let target = echo_server(lab);
    lab.aws.ssm_control(r#"{"idle_timeout_s": 2}"#).unwrap();
    let (mut proc, port) = one_forward(lab, &home, target);
    let ping = |port: u16| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping");
        s
    };
    let idle = ping(port);
    proc.wait_for_line("timed out due to inactivity", Duration::from_secs(20));
    // The connection that was open when the session ended is reset, not ended cleanly.
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!((&idle).read(&mut [0u8; 1]).is_err());
    // The forward keeps its port; the next connection starts a new session.
    drop(ping(port));
    assert_eq!(counter(lab, "sessions_started"), 2);
    // At least ours: sessions that earlier tests left open time out under the same setting.
    assert!(counter(lab, "timed_out_idle") >= 1);
    interrupt_and_expect_clean_exit(proc);
}

#[test]
fn ssm_shell_runs_commands_and_a_kms_shell_says_what_to_do_instead() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = keyless_home(lab);
    let shell = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .stdin("echo SSM-SHELL-$((40 + 2))\nexit 3\n")
            .timeout(60)
            .run()
    };
    let run = || shell(r#"let code = ssm("web-1").shell(); print(`EXIT ${code}`);"#);
    // Session Manager's interactive shell carries no exit status (the agent sends ExitCode
    // only for NonInteractiveCommands): -1, "not reported", exactly.
    let out = run();
    out.assert_success()
        .assert_stdout_contains("SSM-SHELL-42")
        .assert_stdout_contains("EXIT -1");
    // Logged in over SSM with SSH, the shell's own status arrives.
    let out = shell(&format!(
        r#"let code = ssm("web-1").ssh("{}", #{{ known_hosts: "accept-new" }}).shell(); print(`EXIT ${{code}}`);"#,
        lab.user
    ));
    out.assert_success()
        .assert_stdout_contains("SSM-SHELL-42")
        .assert_stdout_contains("EXIT 3");
    lab.aws
        .ssm_control(r#"{"kms_required": true, "kms_key_id": "alias/hop-kms"}"#)
        .unwrap();
    run()
        .assert_status(1)
        .assert_stderr_contains("require KMS encryption")
        .assert_stderr_contains("alias/hop-kms")
        .assert_stderr_contains(&format!(
            "ssm(\"{}\").ssh(\"ec2-user\").shell()",
            ids.get("WEB1_ID")
        ));
}
