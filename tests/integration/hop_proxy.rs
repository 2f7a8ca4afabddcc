//! `aws-hop proxy` as OpenSSH's ProxyCommand, `aws-hop ssh-config`, and `connect()` with its
//! ordered fallback, against the lab's AWS side.
//!
//! OpenSSH's own `scp` and `ssh` run in the lab's mount namespace (its hosts file maps the
//! AWS names to the fakes) with the lab's AWS environment; they start `aws-hop proxy %h %p`
//! and log in over the route it opens with their own key and known_hosts.

use std::path::Path;
use std::process::{Command, Output};

use aws_hop_lab::{HopCmd, Lab, TestHome};

use crate::hop_common::assert_ran_on;
use crate::hop_lab_bin;

fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// An ssh_config for OpenSSH (given with `-F`; aws-hop's own `~/.ssh/config` stays empty):
/// the lab key, accept-new host keys in the home's known_hosts, and
/// `ProxyCommand aws-hop proxy [args] %h %p` for every host.
fn write_proxy_config(lab: &Lab, home: &TestHome, proxy_args: &str) -> std::path::PathBuf {
    let bin = aws_hop_lab::fixture::aws_hop_bin();
    write_openssh_config(
        home,
        &format!(
            "Host *\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
         UserKnownHostsFile {kh}\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n  \
         ConnectTimeout 20\n  ProxyCommand {bin} proxy {proxy_args} %h %p\n",
            user = lab.user,
            key = home.key_path().display(),
            kh = home.known_hosts_path().display(),
            bin = bin.display(),
        ),
    )
}

/// Writes `text` as the config file OpenSSH gets with `-F`.
fn write_openssh_config(home: &TestHome, text: &str) -> std::path::PathBuf {
    let path = home.path().join("openssh_config");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs an OpenSSH client (`ssh`, `scp`) as the laptop with the lab's AWS environment.
fn openssh(lab: &Lab, home: &TestHome, program: &str, args: &[&str]) -> Output {
    let mut cmd: Command = lab.aws.wrap(program);
    cmd.args(args)
        .env("HOME", home.path())
        .env_remove("SSL_CERT_DIR");
    for (k, v) in lab.aws.client_env() {
        cmd.env(k, v);
    }
    aws_hop_lab::lab::output_with_timeout(&mut cmd, std::time::Duration::from_secs(90))
        .expect("cannot run the OpenSSH client")
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// scp of 1 MB to web-1 and back through `ProxyCommand aws-hop proxy PROXY_ARGS %h %p`,
/// then `hostname -I` there: the bytes come back unchanged, from the private instance.
fn scp_round_trip(lab: &Lab, proxy_args: &str) {
    let home = TestHome::new(lab);
    let config = write_proxy_config(lab, &home, proxy_args);
    let config = config.to_str().unwrap();

    // 1 MB of pseudo-random bytes, there and back again.
    let local = home.path().join("payload.bin");
    let mut data = vec![0u8; 1 << 20];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut data {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = (seed >> 24) as u8;
    }
    std::fs::write(&local, &data).unwrap();
    let remote = format!(
        "/tmp/aws-hop-proxy-{}-{}.bin",
        std::process::id(),
        proxy_args.len()
    );

    let up = openssh(
        lab,
        &home,
        "scp",
        &[
            "-F",
            config,
            local.to_str().unwrap(),
            &format!("web-1:{remote}"),
        ],
    );
    assert!(
        up.status.success(),
        "scp to web-1 through `aws-hop proxy {proxy_args}` failed:\n{}{}",
        String::from_utf8_lossy(&up.stderr),
        lab.log_tails(30)
    );
    let back = home.path().join("back.bin");
    let down = openssh(
        lab,
        &home,
        "scp",
        &[
            "-F",
            config,
            &format!("web-1:{remote}"),
            back.to_str().unwrap(),
        ],
    );
    assert!(
        down.status.success(),
        "scp from web-1 through `aws-hop proxy {proxy_args}` failed:\n{}{}",
        String::from_utf8_lossy(&down.stderr),
        lab.log_tails(30)
    );
    assert_eq!(sha256(&local), sha256(&back), "the file changed on the way");

    // It really was the private instance, and the host key was recorded under the name ssh
    // was given.
    let who = openssh(
        lab,
        &home,
        "ssh",
        &[
            "-F",
            config,
            "web-1",
            &format!("hostname -I; rm -f {remote}"),
        ],
    );
    let ips = String::from_utf8_lossy(&who.stdout);
    assert!(
        ips.split_whitespace()
            .any(|ip| ip == lab.instance_ip.to_string()),
        "not the instance: {ips} / {}",
        String::from_utf8_lossy(&who.stderr)
    );
    let kh = std::fs::read_to_string(home.known_hosts_path()).unwrap();
    assert!(kh.starts_with("web-1 "), "known_hosts: {kh}");
}

#[test]
fn scp_through_proxycommand_reaches_a_private_instance_over_eice() {
    scp_round_trip(lab(), "");
}

/// How many of the fake's recorded sessions (since its last reset) have `"key": "value"`.
fn sessions_with(stats: &str, key: &str, value: &str) -> usize {
    stats.matches(&format!("\"{key}\": \"{value}\"")).count()
}

#[test]
fn scp_through_proxycommand_via_ssm() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    // An IAM policy that allows StartSession only with AWS-StartSSHSession, as teams write it
    // for `ProxyCommand aws ssm start-session --document-name AWS-StartSSHSession`.
    lab.aws
        .ssm_control(r#"{"allowed_documents": ["AWS-StartSSHSession"]}"#)
        .unwrap();
    // -vv: a failure shows where the proxy's time went (the session, its handshake).
    scp_round_trip(lab, "--via ssm -vv");
    let stats = lab.aws.ssm_stats().unwrap();
    // Three ssh runs, each its own AWS-StartSSHSession session to web-1:22 ...
    assert_eq!(
        lab.aws.ssm_counter("sessions_started").unwrap(),
        3,
        "{stats}"
    );
    assert_eq!(
        sessions_with(&stats, "DocumentName", "AWS-StartSSHSession"),
        3,
        "{stats}"
    );
    // ... and every one terminated when its ssh exited (ssh hangs up on its ProxyCommand:
    // SIGHUP must end the session cleanly, not leave it Connected until the idle timeout).
    assert_eq!(sessions_with(&stats, "Status", "Terminated"), 3, "{stats}");
    assert_eq!(lab.aws.ssm_counter("start_refused").unwrap(), 0, "{stats}");

    // Port forwarding on request (-o mode=forward), against a policy that allows only that.
    lab.aws
        .ssm_control(r#"{"reset": true, "allowed_documents": ["AWS-StartPortForwardingSession"]}"#)
        .unwrap();
    scp_round_trip(lab, "--via ssm -o mode=forward");
    let stats = lab.aws.ssm_stats().unwrap();
    assert_eq!(
        sessions_with(&stats, "DocumentName", "AWS-StartPortForwardingSession"),
        3,
        "{stats}"
    );
    assert_eq!(sessions_with(&stats, "Status", "Terminated"), 3, "{stats}");

    // The default again, under the port-forwarding-only policy: refused, and the message
    // names the document the policy must allow.
    lab.aws.ssm_control(r#"{"reset": true}"#).unwrap();
    lab.aws
        .ssm_control(r#"{"allowed_documents": ["AWS-StartPortForwardingSession"]}"#)
        .unwrap();
    let home = TestHome::new(lab);
    let config = write_proxy_config(lab, &home, "--via ssm");
    let out = openssh(
        lab,
        &home,
        "ssh",
        &["-F", config.to_str().unwrap(), "web-1", "true"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ssm:StartSession"), "{stderr}");
    assert!(stderr.contains("document/AWS-StartSSHSession"), "{stderr}");
}

/// ssh hangs up on its ProxyCommand (SIGHUP) as it exits, often before the stream has
/// ended. A port-forwarding session outlives its stream, so only a clean exit on SIGHUP
/// terminates it.
#[test]
fn sighup_ends_a_proxy_cleanly_and_terminates_its_ssm_session() {
    let lab = lab();
    let _lock = lab.aws.ssm_lock().unwrap();
    let home = TestHome::new(lab);
    let mut proc = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .args(["proxy", "--via", "ssm", "-o", "mode=forward", "web-1", "22"])
        .spawn();
    // The instance's sshd greets through the session: it is Connected.
    proc.wait_for_line("SSH-2.0-", std::time::Duration::from_secs(30));
    let stats = lab.aws.ssm_stats().unwrap();
    assert_eq!(sessions_with(&stats, "Status", "Connected"), 1, "{stats}");
    proc.hang_up();
    let out = proc.wait_exit(std::time::Duration::from_secs(15));
    out.assert_success();
    let stats = lab.aws.ssm_stats().unwrap();
    assert_eq!(sessions_with(&stats, "Status", "Terminated"), 1, "{stats}");
    assert!(
        lab.aws.ssm_counter("terminated_by_api").unwrap() >= 1,
        "{stats}"
    );
}

#[test]
fn proxy_via_bastion_and_its_errors() {
    let lab = lab();
    let home = TestHome::new(lab);
    home.trust_lab_hosts();
    let bastion = format!("{}@{}", lab.user, lab.bastion_ip);
    let config = write_proxy_config(lab, &home, &format!("--via bastion -o bastion={bastion}"));
    let out = openssh(
        lab,
        &home,
        "ssh",
        &[
            "-F",
            config.to_str().unwrap(),
            &lab.instance_ip.to_string(),
            "hostname -I",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&lab.instance_ip.to_string()),
        "ssh through `aws-hop proxy --via bastion` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without the bastion option, the report says what is missing; a misspelt strategy is
    // named with the right one.
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .args(["proxy", "--via", "bastion", "10.99.99.99", "22"])
        .status(1)
        .stderr_contains("no strategy reached 10.99.99.99:")
        .stderr_contains("bastion: failed (no bastion given")
        .run();
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .args(["proxy", "--via", "eicee", "web-1"])
        .status(2)
        .stderr_contains("no strategy plugin named `eicee` (did you mean `eice`?)")
        .run();
}

#[test]
fn ssh_config_lists_named_instances_and_works_as_printed() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let home = TestHome::new(lab);
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .args(["ssh-config", "--user", &lab.user])
        .run();
    out.assert_success()
        .assert_stdout_contains(&format!(
            "\nHost web-1\n    HostName {}\n",
            ids.get("WEB1_ID")
        ))
        .assert_stdout_contains(" proxy %h %p\n")
        .assert_stdout_contains(&format!("    User {}\n", lab.user));

    // The printed block, as a user would paste it, plus the lab key and known_hosts.
    let block = out.stdout.clone();
    let config = write_openssh_config(
        &home,
        &format!(
            "{block}\nHost *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
         StrictHostKeyChecking accept-new\n  BatchMode yes\n",
            key = home.key_path().display(),
            kh = home.known_hosts_path().display(),
        ),
    );
    let who = openssh(
        lab,
        &home,
        "ssh",
        &["-F", config.to_str().unwrap(), "web-1", "hostname -I"],
    );
    assert!(
        String::from_utf8_lossy(&who.stdout).contains(&lab.instance_ip.to_string()),
        "ssh web-1 with the printed block failed:\n{}\n{block}",
        String::from_utf8_lossy(&who.stderr)
    );
    // HostName is the instance id, so the key is recorded under it (as aws-hop's own EICE
    // hops record it), not under a reusable IP.
    let kh = std::fs::read_to_string(home.known_hosts_path()).unwrap();
    assert!(
        kh.starts_with(&format!("{} ", ids.get("WEB1_ID"))),
        "known_hosts: {kh}"
    );
}

#[test]
fn connect_falls_back_in_order_and_reports_every_attempt() {
    let lab = lab();
    let home = TestHome::new(lab);
    let _ = std::fs::remove_file(home.key_path());
    // connect() picks eice for a running instance in a VPC with an endpoint.
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(format!(
            r#"
let h = connect("web-1", #{{ user: "{}", known_hosts: "accept-new" }});
print(`HOP ${{h}}`);
let ran = h.exec("hostname -I").stdout;
ran.trim();
print(`RAN ${{ran}}`);
"#,
            lab.user
        ))
        .timeout(60)
        .run();
    out.assert_success().assert_stdout_contains("HOP ssh ");
    assert_ran_on(&out, "RAN", lab.instance_ip);
    assert!(out.stdout.contains(" via eice"), "{}", out.report());

    // Forced order: bastion first (not given, so it fails), then eice wins; the event line
    // names both.
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(format!(
            r#"let h = connect("web-1", #{{ strategies: ["bastion", "eice"], user: "{}", known_hosts: "accept-new" }});
print(h.exec("true").status);"#,
            lab.user
        ))
        .timeout(60)
        .stderr_contains("connect web-1: bastion: failed (no bastion given")
        .stderr_contains("; eice: ok (ssh ")
        .run()
        .assert_success();

    // Nothing works for an unknown instance: every strategy's reason, at the script line.
    let out = HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script("let h = connect(\"i-0123456789abcdef0\");\n")
        .timeout(60)
        .status(1)
        .run();
    out.assert_stderr_contains("no strategy reached i-0123456789abcdef0:")
        .assert_stderr_contains("eice: skipped (")
        .assert_stderr_contains("bastion: failed (no bastion given")
        .assert_stderr_contains("direct: skipped (an instance id is not a host name")
        .assert_stderr_contains(":1:9");
}
