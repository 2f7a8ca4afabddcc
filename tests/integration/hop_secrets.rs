//! Nothing secret reaches the output at the widest log setting.
//!
//! aws-hop runs an EICE login with a pushed key, an SSM forward that carries bytes, an SSM
//! shell, and a SIGTERM'd SSM session at `RUST_LOG=trace` and `-vvv`, with a session token
//! in its credentials. Its whole output (stdout and stderr) must hold none of: the secret
//! key, the session token, any stream token the lab's gateway handed out, a SigV4 signature
//! or presigned-URL signature, and any private key (the lab key's body, a PEM header).
//! Dependencies log requests, URLs and bodies at debug and trace; this is the test that
//! their cap (`core/src/logging.rs`) holds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aws_hop_lab::{HopCmd, HopOutput, Lab, TestHome};

use crate::hop_common::ready_ports;
use crate::hop_lab_bin;

/// A session token the lab's fakes accept (they check the signature, which covers it).
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEHopLabSessionTokenThatMustNeverBeLogged0123456789";

fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// aws-hop against the lab's AWS, as loud as it gets.
fn loud(lab: &Lab, home: &TestHome) -> HopCmd {
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
        .env("RUST_LOG", "trace")
        .arg("-vvv")
}

/// Every needle that must not appear, with what it is.
fn secrets(lab: &Lab, home: &TestHome) -> Vec<(String, &'static str)> {
    let mut out = vec![
        (
            lab.aws.secret_access_key.to_string(),
            "the secret access key",
        ),
        (SESSION_TOKEN.to_string(), "the session token"),
        ("X-Amz-Signature".to_string(), "a presigned URL's signature"),
        ("Signature=".to_string(), "a SigV4 Authorization header"),
        (
            "X-Amz-Security-Token".to_string(),
            "a presigned URL's session token",
        ),
        (
            "TokenValue".to_string(),
            "a StartSession answer or the token frame",
        ),
        ("PRIVATE KEY".to_string(), "a private key in PEM form"),
    ];
    let stats = lab.aws.ssm_stats().unwrap();
    let tokens = regex::Regex::new(r#""([A-Za-z0-9_-]{100,})""#).unwrap();
    let issued: Vec<String> = tokens
        .captures_iter(&stats)
        .map(|c| c[1].to_string())
        .collect();
    assert!(
        !issued.is_empty(),
        "the gateway handed out no token: {stats}"
    );
    for t in issued {
        out.push((t, "a stream token the gateway handed out"));
    }
    // The lab key's body lines (what a leaked key file would show).
    let key = std::fs::read_to_string(home.key_path()).unwrap_or_default();
    for line in key
        .lines()
        .filter(|l| l.len() > 40 && !l.starts_with("-----"))
    {
        out.push((line.to_string(), "the lab's private key"));
    }
    out
}

#[track_caller]
fn assert_clean(outputs: &[&HopOutput], needles: &[(String, &str)]) {
    for out in outputs {
        let all = format!("{}\n{}", out.stdout, out.stderr);
        assert!(
            all.contains(" TRACE "),
            "trace logging did not happen, so this test proves nothing:\n{}",
            out.report()
        );
        for (needle, what) in needles {
            if let Some(at) = all.find(needle.as_str()) {
                let start = all[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = all[at..].find('\n').map_or(all.len(), |i| at + i);
                panic!(
                    "{what} reached the output of {}:\n{}",
                    out.command,
                    &all[start..end.min(start + 400)]
                );
            }
        }
    }
}

#[test]
fn nothing_secret_reaches_the_output_at_rust_log_trace() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = TestHome::new(lab);
    let user = &lab.user;

    // An EICE login with a pushed ephemeral key, and an SSM shell.
    let login = loud(lab, &home)
        .script(format!(
            r#"
let h = eic_endpoint("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
print(`EICE ${{h.exec("echo over-eice").stdout}}`);
let code = ssm("web-1").shell();
print(`SHELL ${{code}}`);
"#
        ))
        .stdin("echo SSM-SHELL-OK\nexit\n")
        .timeout(90)
        .run();
    login
        .assert_success()
        .assert_stdout_contains("EICE over-eice")
        .assert_stdout_contains("SSM-SHELL-OK");

    // An SSM forward that carries bytes, ended by SIGTERM.
    let echo = lab.sink_addr();
    let listener = lab.listen_in(&lab.ns_priv, echo).expect("listen in priv");
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut proc = loud(lab, &home)
        .script(format!(
            r#"
let f = ssm("web-1").forward(0, "{echo}");
print(`READY ${{f.local_port}}`);
wait();
"#
        ))
        .spawn();
    let port = ready_ports(&mut proc)[0];
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"secret-free bytes\n").unwrap();
    let mut got = [0u8; 18];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"secret-free bytes\n");
    drop(s);
    // SIGTERM is a clean end: forwards closed, the session terminated, exit 0.
    proc.terminate();
    let forward = proc.wait_exit(Duration::from_secs(20));
    forward
        .assert_success()
        .assert_stderr_contains("forwards closed");
    let stats = lab.aws.ssm_stats().unwrap();
    assert!(stats.contains("\"active_sessions\": 0"), "{stats}");

    assert_clean(&[&login, &forward], &secrets(lab, &home));
}
