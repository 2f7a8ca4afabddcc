//! The lab models a private subnet: from the laptop (the root namespace) its addresses
//! are unreachable and its names do not resolve; from the bastion both work.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use aws_hop_lab::lab::ns_command;

use crate::lab;

/// `ip route get ADDR` in the root namespace: Err with ip's message if there is no route.
fn route_get(addr: &str) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["route", "get", addr])
        .output()
        .expect("run ip");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Removes a route from the root namespace when dropped.
struct TempRoute(Vec<String>);

impl Drop for TempRoute {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .arg("route")
            .arg("del")
            .args(&self.0)
            .status();
    }
}

/// One test, not three: the last step adds a route to the root namespace, which would
/// break the first step if they ran in parallel.
#[test]
fn laptop_cannot_reach_the_private_subnet() {
    let lab = lab();
    // Gotcha 1: never probe a lab address unless the root netns has no route to it
    // (otherwise the probe could leave the machine through the default route).
    for ip in [lab.mariadb_ip, lab.postgres_ip, lab.instance_ip] {
        let err = route_get(&ip.to_string())
            .expect_err("the root netns must have no route into the private subnet");
        assert!(err.contains("No route to host"), "ip route get {ip}: {err}");
    }

    for addr in [
        SocketAddr::from((lab.mariadb_ip, lab.mariadb_port)),
        SocketAddr::from((lab.postgres_ip, lab.postgres_port)),
    ] {
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .expect_err("a direct connection to a private database must fail");
        // Fails at once, locally: not a timeout (which would mean packets went somewhere).
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EHOSTUNREACH),
            "connect {addr}: {err}"
        );
    }

    // Even with a (mis)configured route via the bastion: the bastion does not forward.
    let net = format!("{}.1.0/24", lab.config.net);
    let status = Command::new("ip")
        .args(["route", "add", &net, "via", &lab.bastion_ip.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "ip route add {net}");
    let _route = TempRoute(vec![net.clone(), "via".into(), lab.bastion_ip.to_string()]);
    let via = route_get(&lab.mariadb_ip.to_string()).expect("route via the bastion");
    assert!(via.contains(&lab.bastion_ip.to_string()), "{via}");
    let addr = SocketAddr::from((lab.mariadb_ip, lab.mariadb_port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "the bastion forwarded a packet from the laptop to {addr}"
    );
}

#[test]
fn private_names_resolve_only_inside_the_lab() {
    let lab = lab();
    let names = [
        (&lab.mariadb_host, lab.mariadb_ip),
        (&lab.postgres_host, lab.postgres_ip),
        (&lab.instance_host, lab.instance_ip),
    ];
    for (name, ip) in names {
        // -s files: the hosts file only, never a DNS query from the root netns (gotcha 2).
        let root = Command::new("getent")
            .args(["-s", "files", "hosts", name])
            .output()
            .unwrap();
        assert!(
            !root.status.success(),
            "{name} resolves in the root netns: {:?}",
            root.stdout
        );
        for ns in [&lab.ns_pub, &lab.ns_priv] {
            let answer = lab
                .run_in(ns, "getent", ["-s", "files", "hosts", name.as_str()])
                .unwrap_or_else(|e| panic!("{name} does not resolve in {ns}: {e:#}"));
            assert_eq!(
                answer.split_whitespace().next(),
                Some(ip.to_string().as_str()),
                "{name} in {ns}"
            );
        }
    }
}

#[test]
fn the_bastion_reaches_the_private_hosts() {
    let lab = lab();
    let read_some = |addr: SocketAddr| {
        let mut stream = lab
            .connect_in(&lab.ns_pub, addr, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("bastion -> {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 64];
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read from {addr}: {e}"));
        buf[..n].to_vec()
    };
    // The instance's sshd and MariaDB both speak first.
    let banner = read_some(SocketAddr::from((lab.instance_ip, lab.ssh_port)));
    assert!(
        banner.starts_with(b"SSH-2.0-"),
        "{:?}",
        String::from_utf8_lossy(&banner)
    );
    let greeting = read_some(SocketAddr::from((lab.mariadb_ip, lab.mariadb_port)));
    assert!(
        greeting.windows(7).any(|w| w == b"MariaDB"),
        "{:?}",
        String::from_utf8_lossy(&greeting)
    );
    // And a name resolved on the bastion, as `ssh -L` would resolve it.
    let out = ns_command(&lab.ns_pub, "getent")
        .args(["hosts", &lab.postgres_host])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&lab.postgres_ip.to_string()));
}
