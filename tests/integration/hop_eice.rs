//! aws-hop through EC2 Instance Connect Endpoints, against the lab's AWS side: instance
//! lookup by Name tag, endpoint discovery, SendSSHPublicKey with an ephemeral key, SSH over
//! the presigned WebSocket tunnel, a real PostgreSQL query through a forward on it, and the
//! errors a user meets (ambiguous or unknown names, a stopped instance, a wrong port, no
//! credentials, a clock off by minutes, no endpoint in the VPC, a wrong secret key or an
//! expired SSO login, the endpoint's 20-tunnel limit, a tunnel's maximum duration), and
//! the ephemeral key pushed again when a session is re-dialed after the key expired, and
//! FIPS mode (the FIPS API names and the endpoint's FipsDnsName).
//!
//! Tests that change the AWS side (delete the endpoint, shorten the key lifetime, fill the
//! endpoint's 20 tunnels) run on an [`OwnedLab`], so the shared lab's other tests are
//! not disturbed.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_hop_lab::fixture::clients::psql_query;
use aws_hop_lab::lab::{AwsLab, POSTGRES_MARKER};
use aws_hop_lab::{HopCmd, Lab, OwnedLab, TestHome};

use crate::hop_common::{assert_ran_on, interrupt_and_expect_clean_exit, spawn_aws_ready};
use crate::hop_lab_bin;

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

/// A script that runs `echo one` over EICE + SSH (tunnel limited to `max_duration` s), waits
/// `pause` s so the endpoint ends the tunnel, then runs `echo two`, which needs a new tunnel
/// and SSH login. Prints `FIRST one` and `SECOND two`.
fn exec_twice_across_max_duration(user: &str, max_duration: u64, pause: u64) -> String {
    format!(
        r#"
let h = eic_endpoint("web-1", #{{ max_duration: {max_duration} }}).ssh("{user}", #{{ known_hosts: "accept-new" }});
let r = h.exec("echo one");
print(`FIRST ${{r.stdout}}`);
sleep({pause});
let r = h.exec("echo two");
print(`SECOND ${{r.stdout}}`);
"#
    )
}

#[test]
fn eice_ssh_logs_in_with_a_pushed_ephemeral_key() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let web = instance("web-1");
print(`INSTANCE ${{web.id}} ${{web.state}} ${{web.private_ip}}`);
let e = eic_endpoint("web-1");
print(`HOP ${{e}}`);
let h = e.ssh("{user}", #{{ known_hosts: "accept-new" }});
let r = h.exec("hostname -I");
let ips = r.stdout;
ips.trim(); // in place: Rhai's trim returns nothing
print(`IPS ${{ips}} STATUS ${{r.status}}`);
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
        .assert_stdout_contains(&format!(
            "INSTANCE {} running {}",
            ids.get("WEB1_ID"),
            lab.instance_ip
        ))
        .assert_stdout_contains(&format!("via {}", ids.get("EICE_ID")))
        .assert_stdout_contains("STATUS 0");
    // The addresses the instance itself reports (not the lookup's line above).
    assert_ran_on(&out, "IPS", lab.instance_ip);
    // The host key is recorded under the instance id, not the (reusable) private IP.
    let known = home.read_known_hosts();
    assert!(known.contains(ids.get("WEB1_ID")), "known_hosts: {known}");
}

#[test]
fn postgres_answers_through_a_forward_over_eice_and_ssh() {
    let lab = lab();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let h = eic_endpoint("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
let p = h.forward("127.0.0.1:0", "{phost}:5432");
print(`READY ${{p.local_port}}`);
wait();
"#,
        user = lab.user,
        phost = lab.postgres_host,
    );
    let (proc, ports) = spawn_aws_ready(lab, &home, script);
    let row = psql_query(
        ports[0],
        "select inet_client_addr(), (select name from whoami)",
    )
    .unwrap();
    // The connection leaves from the instance, in the private subnet: not from the laptop,
    // nor from the endpoint's address. (In the lab the instance shares its namespace with
    // the databases, so PostgreSQL sees that namespace's primary address.)
    let (client, name) = row.split_once('|').unwrap_or_else(|| panic!("row {row:?}"));
    assert_eq!(name, POSTGRES_MARKER);
    let private = [lab.mariadb_ip, lab.postgres_ip, lab.instance_ip].map(|ip| ip.to_string());
    assert!(
        private.iter().any(|ip| ip == client),
        "PostgreSQL must see a client in the private subnet, not {client}"
    );
    assert_eq!(psql_query(ports[0], "select 40 + 2").unwrap(), "42");
    interrupt_and_expect_clean_exit(proc);
}

/// In FIPS mode (`AWS_USE_FIPS_ENDPOINT=true`, as a user in GovCloud or under FedRAMP sets
/// it), every connection goes to a FIPS name: the SDK's EC2 and EC2 Instance Connect calls
/// to `ec2-fips.<region>.amazonaws.com` and `ec2-instance-connect-fips.<region>...`, and
/// the tunnel to the endpoint's `FipsDnsName`. The lab serves the regional names too, so
/// only the front's log (the Host of each call and tunnel) tells them apart. Only this
/// test runs in FIPS mode, so the FIPS lines of the shared lab's log are its own.
#[test]
fn fips_mode_dials_the_fips_names_and_logs_in() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let eice_id = ids.get("EICE_ID");
    let names = boto3(
        lab,
        &format!(
            "import boto3; e = boto3.client('ec2').describe_instance_connect_endpoints(\
             InstanceConnectEndpointIds=['{eice_id}'])['InstanceConnectEndpoints'][0]; \
             print(e['DnsName'], e['FipsDnsName'])"
        ),
    );
    let (dns_name, fips_dns_name) = names.split_once(' ').unwrap();
    assert_ne!(dns_name, fips_dns_name);
    let fips_tunnels = |lab: &Lab| {
        lab.eice_tunnels()
            .unwrap()
            .into_iter()
            .filter(|t| t.fips)
            .collect::<Vec<_>>()
    };
    let fips_hosts = |lab: &Lab| {
        lab.aws_api_hosts()
            .unwrap()
            .into_iter()
            .filter(|h| h.contains("-fips."))
            .collect::<Vec<_>>()
    };
    let (tunnels_before, hosts_before) = (fips_tunnels(lab).len(), fips_hosts(lab).len());

    let home = keyless_home(lab);
    let script = format!(
        r#"
let h = eic_endpoint("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
let r = h.exec("hostname -I");
let ips = r.stdout;
ips.trim();
print(`IPS ${{ips}} STATUS ${{r.status}}`);
"#,
        user = lab.user
    );
    let out = HopCmd::new()
        .aws(lab)
        .env("AWS_USE_FIPS_ENDPOINT", "true")
        .home(home.path())
        .script(script)
        .timeout(60)
        .run();
    out.assert_success().assert_stdout_contains("STATUS 0");
    assert_ran_on(&out, "IPS", lab.instance_ip);

    // The tunnel went to the endpoint's FipsDnsName.
    let tunnels = fips_tunnels(lab);
    let ours = &tunnels[tunnels_before..];
    assert_eq!(
        ours.len(),
        1,
        "expected one tunnel dialed by the FipsDnsName {fips_dns_name}, got {ours:?}\n{}",
        out.report()
    );
    assert_eq!(ours[0].host, fips_dns_name);
    assert_eq!(ours[0].endpoint_id, eice_id);
    assert_eq!(ours[0].target, format!("{}:22", lab.instance_ip));

    // The API calls went to the FIPS names: EC2 (instance lookup, endpoint discovery) and
    // EC2 Instance Connect (SendSSHPublicKey).
    let hosts = fips_hosts(lab);
    let ours = &hosts[hosts_before..];
    for service in ["ec2", "ec2-instance-connect"] {
        let fips = format!("{service}-fips.{}.amazonaws.com", lab.aws.region);
        assert!(
            ours.contains(&fips),
            "no API call to {fips}; FIPS hosts called: {ours:?}\n{}",
            out.report()
        );
    }
}

#[test]
fn instance_lookup_errors_name_the_candidates_and_the_state() {
    let lab = lab();
    let ids = lab.aws.ids().unwrap();
    let home = keyless_home(lab);
    let run = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .timeout(30)
            .run()
    };
    run(r#"instance("web-*");"#)
        .assert_status(1)
        .assert_stderr_contains("'web-*' matches 2 instances")
        .assert_stderr_contains(ids.get("WEB1_ID"))
        .assert_stderr_contains(ids.get("WEB2_ID"))
        .assert_stderr_contains("stopped");
    run(r#"instance("no-such-host");"#)
        .assert_status(1)
        .assert_stderr_contains("no instance matches Name tag 'no-such-host'")
        .assert_stderr_contains("us-east-1");
    run(r#"eic_endpoint("web-2");"#)
        .assert_status(1)
        .assert_stderr_contains("is stopped")
        .assert_stderr_contains("start-instances");
    run(&format!(
        r#"let i = instance("{ip}"); print(`BYIP ${{i.name}}`);"#,
        ip = lab.instance_ip
    ))
    .assert_success()
    .assert_stdout_contains("BYIP web-1");
}

#[test]
fn eice_refuses_other_ports_and_hosts_with_the_reason() {
    let lab = lab();
    let home = keyless_home(lab);
    let run = |script: &str| {
        HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(script)
            .timeout(30)
            .run()
    };
    run(&format!(
        r#"eic_endpoint("web-1").ssh("{user}", #{{ port: 2222, known_hosts: "accept-new" }});"#,
        user = lab.user
    ))
    .assert_status(1)
    .assert_stderr_contains("ports 22 and 3389");
    run(&format!(
        r#"eic_endpoint("web-1").ssh("{user}@{host}", #{{ known_hosts: "accept-new" }});"#,
        user = lab.user,
        host = lab.postgres_host
    ))
    .assert_status(1)
    .assert_stderr_contains("reaches only its instance");
}

#[test]
fn missing_credentials_and_region_say_what_to_set() {
    let lab = lab();
    let home = keyless_home(lab);
    HopCmd::new()
        .home(home.path())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .script(r#"instance("web-1");"#)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("no AWS credentials")
        .assert_stderr_contains("AWS_ACCESS_KEY_ID");
    HopCmd::new()
        .home(home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .script(r#"instance("web-1");"#)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("cannot choose an AWS region")
        .assert_stderr_contains("AWS_REGION");
}

// ---------------------------------------------------------------------------------------
// Failures a user meets with eic_endpoint(), each with its cause and fix
// ---------------------------------------------------------------------------------------

/// A lab of the calling test's own, with its AWS side up: for tests that change the AWS
/// side (the shared lab's other tests run concurrently).
fn owned_aws_lab() -> OwnedLab {
    let lab = OwnedLab::start(hop_lab_bin()).unwrap();
    lab.up_aws().unwrap();
    lab
}

/// Runs Python `code` with the venv's boto3 as a client on the laptop (the lab's hosts
/// file, CA and fake keys), and returns its stdout; fails the test if it fails.
#[track_caller]
fn boto3(lab: &Lab, code: &str) -> String {
    let mut cmd = lab.aws.wrap(AwsLab::python());
    cmd.arg("-c").arg(code);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(lab.aws.client_env())
        .env("AWS_DEFAULT_REGION", lab.aws.region)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = aws_hop_lab::lab::output_with_timeout(&mut cmd, Duration::from_mins(1)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "python -c {code:?} failed ({})\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// libfaketime's preload library (Debian package `faketime`, installed by tests/setup.sh).
fn libfaketime() -> PathBuf {
    let mut candidates = vec![PathBuf::from("/usr/lib/faketime/libfaketime.so.1")];
    if let Ok(dirs) = std::fs::read_dir("/usr/lib") {
        candidates.extend(
            dirs.flatten()
                .map(|d| d.path().join("faketime/libfaketime.so.1")),
        );
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("libfaketime is missing: run `sudo tests/setup.sh` (Debian package faketime)")
}

/// Seconds since the epoch of a SigV4 timestamp (`20260102T030405Z`).
fn sigv4_time(stamp: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 {
        stamp[r]
            .parse()
            .unwrap_or_else(|_| panic!("bad timestamp {stamp}"))
    };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15)
}

fn unix_now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[test]
fn a_clock_minutes_ahead_is_named_as_the_cause_of_a_refused_tunnel() {
    let lab = lab();
    let home = keyless_home(lab);
    let script = format!(
        r#"
let h = eic_endpoint("web-1").ssh("{user}", #{{ known_hosts: "accept-new" }});
print(`LOGGED IN ${{h.exec("true").status}}`);
"#,
        user = lab.user
    );
    let run = |faketime: Option<&str>| {
        let mut cmd = HopCmd::new()
            .aws(lab)
            .home(home.path())
            .script(&script)
            .timeout(30);
        if let Some(offset) = faketime {
            cmd = cmd
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        cmd.run()
    };
    // With the true clock the script logs in: what fails below is the clock alone.
    run(None)
        .assert_success()
        .assert_stdout_contains("LOGGED IN 0");
    // Five minutes ahead. The API calls still pass (AWS allows 15 minutes of skew for
    // header signatures, and so do the fakes); the tunnel URL, valid 60 s from its
    // X-Amz-Date, does not. (Behind, rather than ahead, the lab's fresh TLS certificate
    // would not be valid yet, which real AWS certificates always are.)
    let before = unix_now();
    let out = run(Some("+5m"));
    out.assert_status(1)
        .assert_stderr_contains("outside its validity window")
        .assert_stderr_contains("check this machine's clock")
        .assert_stderr_contains("HTTP 403")
        .assert_stderr_contains("not yet valid");
    // The clock really moved inside aws-hop: the X-Amz-Date the endpoint quotes is the
    // one aws-hop signed, about 5 minutes ahead of the real time.
    let stamp = out
        .stderr
        .split("X-Amz-Date ")
        .skip(1)
        .filter_map(|rest| rest.get(..16))
        .find(|s| {
            s.len() == 16 && s.as_bytes()[8] == b'T' && s[..8].bytes().all(|b| b.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no X-Amz-Date in the error\n{}", out.report()));
    let ahead = sigv4_time(stamp) - before;
    assert!(
        (240..=330).contains(&ahead),
        "X-Amz-Date {stamp} is {ahead} s from the real time, not about 300"
    );
}

#[test]
fn an_unknown_endpoint_id_says_to_check_the_id() {
    let lab = lab();
    let home = keyless_home(lab);
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(r#"eic_endpoint("web-1", #{ endpoint: "eice-0123456789abcdef0" });"#)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("no Instance Connect Endpoint eice-0123456789abcdef0")
        .assert_stderr_contains("InvalidInstanceConnectEndpointId.NotFound")
        .assert_stderr_contains("check the id and the region");
}

#[test]
fn no_endpoint_in_the_vpc_names_the_vpc_and_how_to_create_one() {
    let lab = owned_aws_lab();
    let ids = lab.aws.ids().unwrap();
    let home = keyless_home(&lab);
    let run = || {
        HopCmd::new()
            .aws(&lab)
            .home(home.path())
            .script(r#"let e = eic_endpoint("web-1"); print(`HOP ${e}`);"#)
            .timeout(30)
            .run()
    };
    run()
        .assert_success()
        .assert_stdout_contains(&format!("via {}", ids.get("EICE_ID")));
    boto3(
        &lab,
        &format!(
            "import boto3; boto3.client('ec2').delete_instance_connect_endpoint(\
             InstanceConnectEndpointId='{}')",
            ids.get("EICE_ID")
        ),
    );
    run()
        .assert_status(1)
        .assert_stderr_contains(&format!(
            "no EC2 Instance Connect Endpoint in {} for instance web-1",
            ids.get("VPC_ID")
        ))
        .assert_stderr_contains(&format!(
            "aws ec2 create-instance-connect-endpoint --subnet-id {}",
            ids.get("PRIVATE_SUBNET_ID")
        ))
        .assert_stderr_contains("allow port 22");
    // Doing what the message says fixes it.
    let created = boto3(
        &lab,
        &format!(
            "import boto3; print(boto3.client('ec2').create_instance_connect_endpoint(\
             SubnetId='{}')['InstanceConnectEndpoint']['InstanceConnectEndpointId'])",
            ids.get("PRIVATE_SUBNET_ID")
        ),
    );
    assert!(created.starts_with("eice-"), "{created}");
    run()
        .assert_success()
        .assert_stdout_contains(&format!("via {created}"));
    lab.down().unwrap();
}

/// Sets the lab's pushed-key lifetime back to AWS's 60 s when dropped.
struct KeyTtl<'a>(&'a Lab);

impl Drop for KeyTtl<'_> {
    fn drop(&mut self) {
        let _ = self.0.set_eic_key_ttl(Duration::from_mins(1));
    }
}

/// What the instance's sshd would accept now for `user` from SendSSHPublicKey: the
/// output of its AuthorizedKeysCommand (one `type base64` line per live pushed key).
fn pushed_keys_accepted_now(lab: &Lab) -> String {
    let out = Command::new("/opt/aws-hop-lab/bin/eic-authorized-keys")
        .arg(
            lab.aws
                .dir
                .join("eic-keys")
                .join(lab.instance_ip.to_string()),
        )
        .arg(&lab.user)
        .output()
        .unwrap();
    assert!(out.status.success(), "eic-authorized-keys: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// How many SendSSHPublicKey calls the lab's front served for `instance_id`.
fn key_pushes(lab: &Lab, instance_id: &str) -> usize {
    let log = std::fs::read_to_string(lab.log_dir().join("aws-front.log")).unwrap();
    log.lines()
        .filter(|l| l.contains(&format!("SendSSHPublicKey {instance_id} ")))
        .count()
}

#[test]
fn an_expired_pushed_key_is_pushed_again_when_the_session_is_redialed() {
    let lab = owned_aws_lab();
    let ids = lab.aws.ids().unwrap();
    let web1 = ids.get("WEB1_ID");
    let home = keyless_home(&lab);
    // 3 s instead of AWS's 60, so the key expires within the test.
    lab.set_eic_key_ttl(Duration::from_secs(3)).unwrap();
    let restore = KeyTtl(&lab);
    // The endpoint ends the tunnel after 5 s (as AWS does after max_duration, 1 h by
    // default); the next exec must dial a new SSH session, whose login needs a live key.
    let script = exec_twice_across_max_duration(&lab.user, 5, 7);
    let mut proc = HopCmd::new()
        .aws(&lab)
        .home(home.path())
        .script(script)
        .spawn();
    proc.wait_for_line("FIRST one", Duration::from_secs(30));
    let key = pushed_keys_accepted_now(&lab);
    assert!(key.starts_with("ssh-ed25519 "), "pushed keys: {key:?}");
    assert_eq!(key_pushes(&lab, web1), 1);
    // Past the key's lifetime: sshd now accepts no pushed key, so a login with the same
    // key and no new push would be refused.
    thread::sleep(Duration::from_secs(4));
    assert_eq!(
        pushed_keys_accepted_now(&lab),
        "",
        "the first push has not expired: this test would not show the re-push"
    );
    let lost = proc.wait_for_line("connection lost", Duration::from_secs(10));
    assert!(lost.contains("Tunnel duration exceeded"), "{lost}");
    proc.wait_for_line("SECOND two", Duration::from_secs(20));
    let out = proc.wait_exit(Duration::from_secs(15));
    out.assert_success();
    // The re-dial pushed the same in-memory key again, and the login used it.
    assert_eq!(key_pushes(&lab, web1), 2, "{}", out.report());
    assert_eq!(pushed_keys_accepted_now(&lab), key);
    drop(restore);
    lab.down().unwrap();
}

#[test]
fn a_wrong_secret_key_or_an_expired_sso_login_names_the_profile_and_the_fix() {
    let lab = lab();
    let home = keyless_home(lab);
    let script = r#"eic_endpoint("web-1");"#;
    // The right key id, a wrong secret: the front refuses the signature, as AWS does.
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "not/the/right/secret/0000000000000000000",
        )
        .script(script)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("SignatureDoesNotMatch")
        .assert_stderr_contains("check AWS_SECRET_ACCESS_KEY")
        .assert_stderr_contains("profile default");
    // A key id AWS does not know.
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .env("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        .script(script)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("AuthFailure")
        .assert_stderr_contains("check AWS_ACCESS_KEY_ID (or profile default)");
    // An SSO profile whose login has expired (a cached token past its expiry, with no
    // refresh token): nothing is sent anywhere, and the fix is to log in again.
    let aws_dir = home.path().join(".aws");
    std::fs::create_dir_all(aws_dir.join("sso/cache")).unwrap();
    std::fs::write(
        aws_dir.join("config"),
        "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n\
         sso_role_name = Admin\nregion = us-east-1\n\n[sso-session corp]\n\
         sso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n",
    )
    .unwrap();
    let sha1 = Command::new("sh")
        .args(["-c", "printf corp | sha1sum"])
        .output()
        .unwrap();
    let cache_name = String::from_utf8_lossy(&sha1.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(
        aws_dir.join(format!("sso/cache/{cache_name}.json")),
        r#"{"accessToken": "expired-token", "expiresAt": "2020-01-01T00:00:00Z", "region": "us-east-1", "startUrl": "https://example.awsapps.com/start"}"#,
    )
    .unwrap();
    HopCmd::new()
        .home(home.path())
        .env("AWS_PROFILE", "dev")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .script(script)
        .timeout(30)
        .run()
        .assert_status(1)
        .assert_stderr_contains("profile dev is missing or expired")
        .assert_stderr_contains("aws sso login --profile dev");
}

/// Reads an SSH server's greeting line from `conn`: `Ok(line)`, or `Err(what happened)`.
fn ssh_greeting(conn: &mut TcpStream) -> Result<String, String> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') {
        match conn.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {got:?}")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{e} after {got:?}")),
        }
    }
    Ok(String::from_utf8_lossy(&got).trim().to_owned())
}

#[test]
fn the_21st_concurrent_tunnel_is_refused_naming_the_20_tunnel_limit() {
    let lab = owned_aws_lab();
    let home = keyless_home(&lab);
    // Each connection to a forward straight over the EICE hop is a tunnel of its own.
    let script = r#"
let f = eic_endpoint("web-1").forward("127.0.0.1:0", "web-1:22");
print(`READY ${f.local_port}`);
wait();
"#;
    let (mut proc, ports) = spawn_aws_ready(&lab, &home, script);
    let port = ports[0];
    let connect = || TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut open = Vec::new();
    for i in 1..=20 {
        let mut conn = connect();
        let greeting = ssh_greeting(&mut conn)
            .unwrap_or_else(|e| panic!("tunnel {i} of 20: {e}\n{}", proc.merged_output()));
        assert!(greeting.starts_with("SSH-2.0-"), "tunnel {i}: {greeting}");
        open.push(conn);
    }
    let mut extra = connect();
    let refused = ssh_greeting(&mut extra);
    assert!(refused.is_err(), "the 21st tunnel opened: {refused:?}");
    let line = proc.wait_for_line("at most 20 concurrent connections", Duration::from_secs(10));
    assert!(line.contains("HTTP 429"), "{line}");
    assert!(line.contains("the forward stays open"), "{line}");
    // The limit counts open tunnels: close one, and a new one opens.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ssh_greeting(&mut connect()) {
            Ok(g) if g.starts_with("SSH-2.0-") => break,
            other => assert!(
                Instant::now() < deadline,
                "no tunnel after one was closed: {other:?}\n{}",
                proc.merged_output()
            ),
        }
        thread::sleep(Duration::from_millis(200));
    }
    drop(open);
    interrupt_and_expect_clean_exit(proc);
    lab.down().unwrap();
}

#[test]
fn a_tunnel_past_its_max_duration_ends_with_the_reason_and_the_session_redials() {
    let lab = lab();
    let home = keyless_home(lab);
    let script = exec_twice_across_max_duration(&lab.user, 2, 3);
    HopCmd::new()
        .aws(lab)
        .home(home.path())
        .script(script)
        .timeout(30)
        .run()
        .assert_success()
        .assert_stdout_contains("FIRST one")
        .assert_stdout_contains("SECOND two")
        .assert_stderr_contains("connection lost")
        .assert_stderr_contains("the EICE endpoint closed the tunnel: 1008")
        .assert_stderr_contains("maxTunnelDuration is 2 s")
        .assert_stderr_contains("maximum duration")
        .assert_stderr_contains("will re-dial");
}
