//! OpenSSH through the lab: the baseline aws-hop is measured against. A real `ssh -N -L`
//! via the bastion carries real `psql` and `mariadb` queries, the databases see the
//! bastion's private address, ProxyJump reaches the instance, host keys are checked,
//! and the bastion's port-2222 listener refuses forwarding.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use aws_hop_lab::fixture::clients::{mariadb_query, psql_query};
use aws_hop_lab::fixture::{SshTunnel, ssh_args};
use aws_hop_lab::lab::{MARIADB_MARKER, POSTGRES_MARKER};

use crate::lab;

#[test]
fn postgres_through_an_openssh_tunnel_sees_the_bastion() {
    let lab = lab();
    let target = format!("{}:{}", lab.postgres_host, lab.postgres_port);
    let tunnel = SshTunnel::open(lab, &target, lab.ssh_port).unwrap();
    let row = psql_query(
        tunnel.local_port,
        "select inet_client_addr(), inet_server_addr(), (select name from whoami)",
    )
    .unwrap_or_else(|e| panic!("{e:#}\nssh stderr: {}", tunnel.stderr()));
    assert_eq!(
        row,
        format!(
            "{}|{}|{POSTGRES_MARKER}",
            lab.bastion_priv_ip, lab.postgres_ip
        ),
        "the database must see the bastion's private address as the client"
    );
}

#[test]
fn mariadb_through_an_openssh_tunnel_sees_the_bastion() {
    let lab = lab();
    let target = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    let tunnel = SshTunnel::open(lab, &target, lab.ssh_port).unwrap();
    let row = mariadb_query(
        tunnel.local_port,
        "select name, @@bind_address, substring_index(user(), '@', -1) from whoami",
    )
    .unwrap_or_else(|e| panic!("{e:#}\nssh stderr: {}", tunnel.stderr()));
    assert_eq!(
        row,
        format!(
            "{MARIADB_MARKER}\t{}\t{}",
            lab.mariadb_ip, lab.bastion_priv_ip
        )
    );
}

#[test]
fn instance_via_proxyjump_resolves_the_databases() {
    let lab = lab();
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&lab.ssh_config)
        .arg("instance")
        .arg(format!("id -un; getent hosts {}", lab.mariadb_host))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh instance: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(lab.user.as_str()));
    let hosts = lines.next().unwrap_or_default();
    assert!(hosts.starts_with(&lab.mariadb_ip.to_string()), "{stdout}");
}

#[test]
fn an_unknown_host_key_is_refused() {
    let lab = lab();
    let empty =
        std::env::temp_dir().join(format!("aws-hop-empty-known-hosts-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let mut args = ssh_args(lab);
    let known = args
        .iter()
        .position(|a| a.starts_with("UserKnownHostsFile="))
        .unwrap();
    args[known] = format!("UserKnownHostsFile={}", empty.display());
    let out = Command::new("ssh")
        .args(&args)
        .arg(format!("{}@{}", lab.user, lab.bastion_ip))
        .arg("true")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&empty);
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Host key verification failed"), "{stderr}");
}

#[test]
fn the_nofwd_listener_refuses_port_forwarding() {
    let lab = lab();
    let target = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    // The session itself is fine (ExitOnForwardFailure only covers the local bind,
    // gotcha 12): the refusal shows when a connection is forwarded.
    let tunnel = SshTunnel::open(lab, &target, lab.nofwd_port).unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", tunnel.local_port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    // Closed without a byte of the MariaDB greeting (EOF, or a reset).
    let got = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(
        got,
        0,
        "data arrived through a refused forward: {:?}",
        &buf[..got]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tunnel.stderr().contains("administratively prohibited") {
        assert!(Instant::now() < deadline, "ssh stderr: {}", tunnel.stderr());
        thread::sleep(Duration::from_millis(20));
    }
}
