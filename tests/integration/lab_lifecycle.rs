//! The lab's own contract: `up` is idempotent and restarts only dead daemons, the
//! bastion can be taken down and brought back (breaking live tunnels), and `down`, or the
//! watch guard once the owning process is gone, leaves nothing behind.
//!
//! These tests bring up labs of their own (they break things), alongside the shared one.

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use aws_hop_lab::fixture::clients::mariadb_query;
use aws_hop_lab::fixture::{OwnedLab, SshTunnel};
use aws_hop_lab::{Lab, LabConfig};

use crate::hop_lab_bin;

fn pid_of(lab: &Lab, daemon: &str) -> u32 {
    lab.daemon_pids()
        .into_iter()
        .find(|(name, _)| *name == daemon)
        .and_then(|(_, pid)| pid)
        .unwrap_or_else(|| panic!("{daemon} is not running"))
}

/// Reads MariaDB's greeting from the bastion namespace.
fn mariadb_greets(lab: &Lab) -> bool {
    let addr = SocketAddr::from((lab.mariadb_ip, lab.mariadb_port));
    let Ok(mut stream) = lab.connect_in(&lab.ns_pub, addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 64];
    stream
        .read(&mut buf)
        .is_ok_and(|n| buf[..n].windows(7).any(|w| w == b"MariaDB"))
}

#[test]
fn up_is_idempotent_and_down_leaves_nothing() {
    let lab = OwnedLab::start(hop_lab_bin()).unwrap();
    let before = lab.daemon_pids();
    assert!(before.iter().all(|(_, pid)| pid.is_some()), "{before:?}");

    // A second `up` changes nothing.
    let t = Instant::now();
    lab.up().unwrap();
    eprintln!("second up: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(lab.daemon_pids(), before);

    // Dead daemons are restarted, and only those: both databases killed hard (their
    // zombies and lock files must not stop the restart, gotcha 10).
    let killed = ["mariadb", "postgres"];
    let old: Vec<u32> = killed.iter().map(|name| pid_of(&lab, name)).collect();
    for pid in &old {
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        assert!(status.unwrap().success(), "kill -KILL {pid}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while old.iter().any(|&pid| aws_hop_lab::lab::alive(pid)) {
        assert!(Instant::now() < deadline, "{old:?} survived KILL");
        thread::sleep(Duration::from_millis(10));
    }
    lab.up().unwrap();
    for (name, pid) in lab.daemon_pids() {
        let was = before.iter().find(|(n, _)| *n == name).unwrap().1;
        if killed.contains(&name) {
            assert!(
                pid.is_some() && pid != was,
                "{name} was not restarted: {was:?} -> {pid:?}"
            );
        } else {
            assert_eq!(pid, was, "{name} was restarted");
        }
    }
    assert!(
        mariadb_greets(&lab),
        "mariadb does not answer after its restart"
    );
    let postgres = SocketAddr::from((lab.postgres_ip, lab.postgres_port));
    lab.connect_in(&lab.ns_pub, postgres, Duration::from_secs(3))
        .expect("postgres does not accept after its restart");

    // The bastion goes down: the live tunnel through it breaks, new logins fail.
    let target = format!("{}:{}", lab.mariadb_host, lab.mariadb_port);
    let mut tunnel = SshTunnel::open(&lab, &target, lab.ssh_port).unwrap();
    assert!(
        mariadb_query(tunnel.local_port, "select 1").is_ok(),
        "{}",
        tunnel.stderr()
    );
    lab.stop_bastion().unwrap();
    assert!(
        tunnel.wait_exit(Duration::from_secs(10)).is_some(),
        "ssh survived the bastion"
    );
    let refused = std::net::TcpStream::connect_timeout(
        &SocketAddr::from((lab.bastion_ip, lab.ssh_port)),
        Duration::from_secs(3),
    );
    assert!(refused.is_err(), "bastion port 22 still accepts");
    assert_eq!(
        lab.daemon_pids()
            .iter()
            .filter(|(_, pid)| pid.is_none())
            .count(),
        1,
        "only the bastion is down: {:?}",
        lab.daemon_pids()
    );
    // And comes back, with the same host key (the tunnel checks it strictly).
    lab.start_bastion().unwrap();
    let tunnel = SshTunnel::open(&lab, &target, lab.ssh_port).unwrap();
    assert!(
        mariadb_query(tunnel.local_port, "select 1").is_ok(),
        "{}",
        tunnel.stderr()
    );
    drop(tunnel);

    let config = lab.config.clone();
    let t = Instant::now();
    lab.down().unwrap();
    eprintln!("down: {:.2} s", t.elapsed().as_secs_f64());
    let gone = Lab::new(config).unwrap();
    // The lab's guard notices within its 200 ms poll that the lab is gone, and exits.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gone.leftovers().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gone.leftovers(), Vec::<String>::new());
    // down twice is fine.
    gone.down().unwrap();
}

#[test]
fn the_guard_tears_the_lab_down_when_its_owner_exits() {
    Lab::preflight().unwrap();
    let lab = Lab::new(LabConfig::unique().unwrap()).unwrap();
    // The owner: a short-lived process standing in for a test run.
    let mut owner = Command::new("sleep").arg("30").spawn().unwrap();
    let result = lab.prepare_state().and_then(|()| {
        Command::new(hop_lab_bin())
            .args(["watch", "--pid", &owner.id().to_string(), "--dir"])
            .arg(lab.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        lab.up()
    });
    if let Err(e) = result {
        let _ = owner.kill();
        let _ = lab.down();
        panic!("{e:#}");
    }
    assert!(
        lab.leftovers().len() > 3,
        "the lab is not up: {:?}",
        lab.leftovers()
    );

    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab.leftovers().is_empty() {
        if Instant::now() > deadline {
            let left = lab.leftovers();
            let _ = lab.down();
            panic!("the guard did not tear the lab down: {left:?}");
        }
        thread::sleep(Duration::from_millis(100));
    }
}
