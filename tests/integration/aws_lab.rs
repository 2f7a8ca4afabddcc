//! The AWS side of the lab (moto plus the fakes in `tests/aws_fakes`), checked with
//! independent clients only: the venv's boto3 and websockets (`labclient.py`, run as a
//! laptop client through the lab hosts file and CA, see `Lab::aws_client`) and OpenSSH.
//! aws-hop does not speak AWS yet; these tests show the lab does, so that aws-hop's
//! AWS tests can trust it.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use aws_hop_lab::fixture::ScratchDir;
use aws_hop_lab::{HopCmd, Lab};

use crate::hop_lab_bin;

/// The shared lab, with its AWS side up.
fn lab() -> &'static Lab {
    Lab::shared_aws(hop_lab_bin())
}

/// Runs `labclient.py ARGS` and returns its JSON line (Python's `json.dumps`, so
/// `"key": value` with one space), failing the test on a non-zero exit.
#[track_caller]
fn client(lab: &Lab, args: &[&str]) -> String {
    let out = lab
        .aws_client(args)
        .unwrap_or_else(|e| panic!("labclient {args:?}: {e:#}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "labclient {args:?} failed ({})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[track_caller]
fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in {text}");
}

#[test]
fn describe_instances_finds_the_lab_instances_by_name_tag() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let web1 = client(lab, &["instance", "web-1"]);
    assert_has(&web1, &format!("\"id\": \"{}\"", ids.get("WEB1_ID")));
    assert_has(&web1, &format!("\"ip\": \"{}\"", lab.instance_ip));
    assert_has(&web1, "\"state\": \"running\"");
    assert_has(
        &web1,
        &format!("\"subnet\": \"{}\"", ids.get("PRIVATE_SUBNET_ID")),
    );
    let web2 = client(lab, &["instance", "web-2"]);
    assert_has(&web2, "\"state\": \"stopped\"");
    let bastion = client(lab, &["instance", "bastion"]);
    assert_has(&bastion, &format!("\"ip\": \"{}\"", lab.bastion_ip));
    assert_has(
        &bastion,
        &format!("\"public_ip\": \"{}\"", ids.get("BASTION_PUBLIC_IP")),
    );
}

#[test]
fn describe_instance_connect_endpoints_returns_the_lab_endpoint() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let eps = client(lab, &["endpoints"]);
    assert_has(
        &eps,
        &format!("\"InstanceConnectEndpointId\": \"{}\"", ids.get("EICE_ID")),
    );
    assert_has(&eps, &format!("\"DnsName\": \"{}\"", ids.get("EICE_DNS")));
    assert_has(
        &eps,
        &format!("\"SubnetId\": \"{}\"", ids.get("PRIVATE_SUBNET_ID")),
    );
    assert_has(&eps, "\"State\": \"create-complete\"");
    assert!(
        ids.get("EICE_DNS")
            .ends_with(".ec2-instance-connect-endpoint.us-east-1.amazonaws.com"),
        "{}",
        ids.get("EICE_DNS")
    );
}

#[test]
fn requests_signed_with_wrong_keys_are_refused() {
    let lab = lab();
    // The right key id with a wrong secret: the signature does not match.
    let wrong_secret = client(
        lab,
        &["call-with-keys", lab.aws.access_key_id, "not-the-secret"],
    );
    assert_has(&wrong_secret, "\"status\": 403");
    assert_has(&wrong_secret, "\"code\": \"SignatureDoesNotMatch\"");
    // A key id AWS does not know: EC2's AuthFailure.
    let unknown = client(lab, &["call-with-keys", "AKIAUNKNOWNKEY000000", "whatever"]);
    assert_has(&unknown, "\"status\": 401");
    assert_has(&unknown, "\"code\": \"AuthFailure\"");
}

/// `ssh -i KEY user@instance` through the bastion: the jump uses the lab's config and
/// key, the final hop only `key` (IdentitiesOnly), so it succeeds only if the instance
/// accepts that key.
fn ssh_with(lab: &Lab, key: &Path) -> bool {
    let out = Command::new("ssh")
        .arg("-i")
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", lab.known_hosts.display()))
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "ProxyCommand=ssh -F {} -W %h:%p bastion",
            lab.ssh_config.display()
        ))
        .arg(format!("{}@{}", lab.user, lab.instance_ip))
        .arg("echo eic-login-ok")
        .output()
        .expect("run ssh");
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("eic-login-ok");
    if !ok {
        eprintln!("ssh: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    ok
}

/// Restores the 60 s key lifetime when the test ends, even if it fails.
struct KeyTtl<'a>(&'a Lab);

impl Drop for KeyTtl<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_eic_key_ttl(Duration::from_mins(1));
    }
}

#[test]
fn send_ssh_public_key_installs_the_key_for_its_lifetime() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let scratch = ScratchDir::new("eic").unwrap();
    let key = scratch.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = key.with_extension("pub");
    let public = public.to_str().unwrap();
    assert!(
        !ssh_with(lab, &key),
        "the instance accepted a key nobody pushed"
    );

    // 3 s instead of AWS's 60, so the test can watch the key expire.
    let ttl = Duration::from_secs(3);
    lab.set_eic_key_ttl(ttl).unwrap();
    let _restore = KeyTtl(lab);
    let pushed = Instant::now();
    let sent = client(lab, &["send-key", ids.get("WEB1_ID"), &lab.user, public]);
    assert_has(&sent, "\"success\": true");
    assert!(ssh_with(lab, &key), "the pushed key was not accepted");
    assert!(
        pushed.elapsed() < ttl,
        "too slow to check the key within its lifetime"
    );
    thread::sleep(ttl.saturating_sub(pushed.elapsed()) + Duration::from_millis(1200));
    assert!(!ssh_with(lab, &key), "the key still works after it expired");

    // The API's own errors.
    let root = client(
        lab,
        &["send-key", ids.get("WEB1_ID"), "no-such-user", public],
    );
    assert_has(&root, "\"code\": \"InvalidArgsException\"");
    let stopped = client(lab, &["send-key", ids.get("WEB2_ID"), &lab.user, public]);
    assert_has(&stopped, "\"code\": \"EC2InstanceStateInvalidException\"");
    let missing = client(lab, &["send-key", "i-0123456789abcdef0", &lab.user, public]);
    assert_has(&missing, "\"code\": \"EC2InstanceNotFoundException\"");
}

/// `labclient.py tunnel` to `ip:port` through the lab endpoint, presigned `age` seconds ago.
fn tunnel(lab: &Lab, ip: &str, port: u16, age: u32) -> String {
    let ids = lab.aws.ids().unwrap();
    client(
        lab,
        &[
            "tunnel",
            ids.get("EICE_DNS"),
            ids.get("EICE_ID"),
            ip,
            &port.to_string(),
            &age.to_string(),
        ],
    )
}

#[test]
fn eice_tunnel_reaches_the_instance_sshd() {
    let lab = lab();
    let out = tunnel(lab, &lab.instance_ip.to_string(), 22, 0);
    assert_has(&out, "\"status\": 101");
    assert_has(&out, "\"data\": \"SSH-2.0-OpenSSH");
}

#[test]
fn eice_refuses_ports_other_than_22_and_3389() {
    let lab = lab();
    let out = tunnel(lab, &lab.postgres_ip.to_string(), 5432, 0);
    assert_has(&out, "\"upgraded\": false");
    assert_has(&out, "\"status\": 400");
    assert_has(&out, "\"ErrorCode\": \"InvalidParameter\"");
    assert_has(&out, "Specify either 22 or 3389");
}

#[test]
fn eice_closes_with_a_reason_when_the_target_is_unreachable() {
    let lab = lab();
    // N.1.99: in the private subnet, no host there.
    let ip = format!("{}.1.99", lab.config.net);
    let out = tunnel(lab, &ip, 22, 0);
    assert_has(&out, "\"status\": 101");
    assert_has(&out, "\"close_code\": 1011");
    assert_has(&out, &format!("Failed to connect to {ip}:22"));
}

#[test]
fn eice_refuses_a_presign_two_minutes_old() {
    let lab = lab();
    let out = tunnel(lab, &lab.instance_ip.to_string(), 22, 120);
    assert_has(&out, "\"upgraded\": false");
    assert_has(&out, "\"status\": 403");
    assert_has(&out, "Request has expired");
}

#[test]
fn the_rds_endpoint_resolves_inside_the_vpc_only() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let name = ids.get("RDS_ENDPOINT");
    assert_eq!(ids.get("RDS_PORT"), "5432");
    let inside = lab
        .run_in(&lab.ns_pub, "getent", ["-s", "files", "hosts", name])
        .unwrap();
    assert!(
        inside.starts_with(&lab.postgres_ip.to_string()),
        "{name} on the bastion: {inside}"
    );
    let root = Command::new("getent")
        .args(["-s", "files", "hosts", name])
        .output()
        .unwrap();
    assert!(!root.status.success(), "{name} resolves on the laptop");
}

#[test]
fn hop_cmd_aws_sees_the_fake_names_and_only_the_lab_environment() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let hosts = HopCmd::new()
        .program("/usr/bin/getent")
        .aws(lab)
        .args(["hosts", "ec2.us-east-1.amazonaws.com", ids.get("EICE_DNS")])
        .run();
    hosts.assert_success();
    let lines: Vec<&str> = hosts.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", hosts.stdout);
    assert!(
        lines[0].starts_with(&format!("{} ", lab.aws.api_ip)),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{} ", lab.aws.eice_ip)),
        "{}",
        lines[1]
    );
    let env = HopCmd::new().program("/usr/bin/env").aws(lab).run();
    env.assert_success();
    let aws_vars: Vec<&str> = env
        .stdout
        .lines()
        .filter(|l| l.starts_with("AWS_") || l.starts_with("SSL_"))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        {
            let mut v = aws_vars.clone();
            v.sort_unstable();
            v
        },
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_EC2_METADATA_DISABLED",
            "AWS_REGION",
            "AWS_SECRET_ACCESS_KEY",
            "SSL_CERT_FILE"
        ]
    );
}

#[test]
fn the_fakes_are_reachable_from_the_laptop_but_the_private_subnet_is_not() {
    let lab = lab();
    for ip in [lab.aws.api_ip, lab.aws.eice_ip] {
        TcpStream::connect_timeout(&SocketAddr::from((ip, 443)), Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("laptop -> {ip}:443: {e}"));
    }
    // Gotcha 1: the root netns still has no route into the private subnet.
    let route = Command::new("ip")
        .args(["route", "get", &lab.instance_ip.to_string()])
        .output()
        .unwrap();
    assert!(
        !route.status.success(),
        "the laptop has a route to the instance"
    );
    // The aws namespace reaches the private subnet but forwards nothing.
    let forward = lab
        .run_in(&lab.aws.ns, "sysctl", ["-n", "net.ipv4.ip_forward"])
        .unwrap();
    assert_eq!(forward.trim(), "0");
    lab.connect_in(
        &lab.aws.ns,
        SocketAddr::from((lab.instance_ip, lab.ssh_port)),
        Duration::from_secs(3),
    )
    .expect("the aws namespace reaches the instance");
}
