//! The lab's network: two namespaces, two veth links, addresses, the root namespace's
//! `unreachable` route, and the `/etc/netns/<ns>/hosts` files that make the
//! `*.<prefix>.internal` names resolve inside the namespaces only.
//!
//! ```text
//! root netns ("laptop")   <p8>-r0 N.0.1/24      + route: unreachable N.0.0/16
//!    | veth "internet"
//! <prefix>-pub            eth0 N.0.2/24 (bastion sshd :22, :2222)   eth1 N.1.1/24
//!    | veth "VPC"
//! <prefix>-priv           eth0 N.1.10 MariaDB, N.1.11 PostgreSQL, N.1.20 instance sshd,
//!                              N.1.30 spare (test servers)
//! ```
//!
//! Isolation has four layers: the root namespace has no route into `N.1.0/24` (the
//! unreachable route, gotcha 1), the bastion does not forward, the private namespace has
//! no route back to `N.0.0/24`, and neither namespace has a default route.
//! [`up`] is idempotent; [`down`] removes only this lab's pieces.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::Lab;
use super::exec::{self, ns_command};

/// `ip -n NS ARGS...`: an `ip` command applied inside a namespace, without the mount
/// namespace set-up that `ip netns exec` does (cheaper, and enough for `ip` itself).
fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    exec::run(Command::new("ip").args(["-n", ns]).args(args))
}

fn ip(args: &[&str]) -> Result<String> {
    exec::run(Command::new("ip").args(args))
}

/// Does namespace `ns` exist and work? A file under /run/netns that is no longer a live
/// namespace (gotcha 17) does not count.
fn ns_works(ns: &str) -> bool {
    exec::succeeds(Command::new("ip").args(["-n", ns, "link", "show", "lo"]))
}

fn ns_file(ns: &str) -> PathBuf {
    Path::new("/run/netns").join(ns)
}

fn has_link(ns: &str, name: &str) -> bool {
    exec::succeeds(Command::new("ip").args(["-n", ns, "link", "show", name]))
}

/// Creates namespace `ns` (replacing a stale name), with `lo` up and no forwarding.
pub(super) fn ensure_ns(ns: &str) -> Result<()> {
    if ns_file(ns).exists() && !ns_works(ns) {
        // Stale name (e.g. /run survived the namespace): `ip netns add` would say
        // "File exists".
        delete_ns(ns);
    }
    if !ns_file(ns).exists() {
        ip(&["netns", "add", ns])?;
    }
    ip_in(ns, &["link", "set", "lo", "up"])?;
    // No forwarding: neither the bastion nor the aws namespace may route the laptop's
    // packets into the private subnet (isolation layer 2).
    exec::run(ns_command(ns, "sysctl").args(["-qw", "net.ipv4.ip_forward=0"]))?;
    Ok(())
}

/// Builds (or repairs) the namespaces, links, addresses, route and hosts files.
pub(super) fn up(lab: &Lab) -> Result<()> {
    for ns in [&lab.ns_pub, &lab.ns_priv] {
        ensure_ns(ns)?;
    }

    let octet = |last: &str| format!("{}.{last}", lab.config.net);
    // "Internet" link: root <-> bastion eth0.
    if !has_link(&lab.ns_pub, "eth0") {
        let _ = ip(&["link", "del", &lab.veth_root]);
        ip(&[
            "link",
            "add",
            &lab.veth_root,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_pub_tmp,
        ])?;
        ip(&["link", "set", &lab.veth_pub_tmp, "netns", &lab.ns_pub])?;
        ip_in(
            &lab.ns_pub,
            &["link", "set", &lab.veth_pub_tmp, "name", "eth0"],
        )?;
    }
    ip(&[
        "addr",
        "replace",
        &format!("{}/24", lab.laptop_ip),
        "dev",
        &lab.veth_root,
    ])?;
    ip(&["link", "set", &lab.veth_root, "up"])?;
    ip_in(
        &lab.ns_pub,
        &[
            "addr",
            "replace",
            &format!("{}/24", lab.bastion_ip),
            "dev",
            "eth0",
        ],
    )?;
    ip_in(&lab.ns_pub, &["link", "set", "eth0", "up"])?;

    // "VPC" link: bastion eth1 <-> private eth0.
    if !has_link(&lab.ns_pub, "eth1") {
        let _ = ip_in(&lab.ns_priv, &["link", "del", "eth0"]);
        ip(&[
            "link",
            "add",
            &lab.veth_pub2_tmp,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_priv_tmp,
        ])?;
        ip(&["link", "set", &lab.veth_pub2_tmp, "netns", &lab.ns_pub])?;
        ip(&["link", "set", &lab.veth_priv_tmp, "netns", &lab.ns_priv])?;
        ip_in(
            &lab.ns_pub,
            &["link", "set", &lab.veth_pub2_tmp, "name", "eth1"],
        )?;
        ip_in(
            &lab.ns_priv,
            &["link", "set", &lab.veth_priv_tmp, "name", "eth0"],
        )?;
    }
    ip_in(
        &lab.ns_pub,
        &[
            "addr",
            "replace",
            &format!("{}/24", lab.bastion_priv_ip),
            "dev",
            "eth1",
        ],
    )?;
    ip_in(&lab.ns_pub, &["link", "set", "eth1", "up"])?;
    for addr in [
        lab.mariadb_ip,
        lab.postgres_ip,
        lab.instance_ip,
        lab.sink_ip,
    ] {
        ip_in(
            &lab.ns_priv,
            &["addr", "replace", &format!("{addr}/24"), "dev", "eth0"],
        )?;
    }
    ip_in(&lab.ns_priv, &["link", "set", "eth0", "up"])?;

    // Root netns: the host usually has a default route, so without this a packet to a
    // lab address outside the bastion link would leave the machine through the real NIC
    // (gotcha 1). The connected /24 of the bastion link is more specific and still wins.
    ip(&[
        "route",
        "replace",
        "unreachable",
        &format!("{}/16", octet("0.0")),
    ])?;

    write_hosts(lab)
}

/// `/etc/netns/<ns>/hosts` for both namespaces: `ip netns exec` bind-mounts it over
/// `/etc/hosts`, so the lab names resolve there (the bastion, for `ssh -L` targets; the
/// private instance too, for multi-hop) and nowhere else. With the AWS side seeded,
/// the RDS endpoint's name too, as an RDS endpoint resolves inside its VPC.
pub(super) fn write_hosts(lab: &Lab) -> Result<()> {
    let text = format!(
        "127.0.0.1 localhost\n\
         ::1 localhost ip6-localhost ip6-loopback\n\
         {} {}\n{} {}\n{} {}\n{} {}\n{}",
        lab.bastion_ip,
        lab.bastion_host,
        lab.mariadb_ip,
        lab.mariadb_host,
        lab.postgres_ip,
        lab.postgres_host,
        lab.instance_ip,
        lab.instance_host,
        super::aws::vpc_hosts(lab),
    );
    for ns in [&lab.ns_pub, &lab.ns_priv] {
        let dir = Path::new("/etc/netns").join(ns);
        let file = dir.join("hosts");
        // A concurrent `down` of another lab may remove an empty /etc/netns between our
        // create_dir_all and write: retry on NotFound.
        let mut attempts = 0;
        loop {
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            match fs::write(&file, &text) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot write {}", file.display()));
                }
            }
        }
    }
    Ok(())
}

/// Deletes namespace `ns`, live or stale. Deleting a namespace destroys the veth ends in
/// it, and a veth's peer goes with it.
pub(super) fn delete_ns(ns: &str) {
    if exec::run(Command::new("ip").args(["netns", "del", ns])).is_err() {
        let _ = fs::remove_file(ns_file(ns));
    }
}

/// Removes this lab's namespaces, root-side interface, route and hosts files. Every step
/// tolerates "already gone".
pub(super) fn down(lab: &Lab) {
    for ns in [&lab.ns_pub, &lab.ns_priv, &lab.aws.ns] {
        if ns_file(ns).exists() {
            delete_ns(ns);
        }
    }
    let _ = exec::run(Command::new("ip").args(["link", "del", &lab.veth_root]));
    let _ = exec::run(Command::new("ip").args(["link", "del", lab.aws.veth_root()]));
    let route = format!("{}.0.0/16", lab.config.net);
    let _ = exec::run(Command::new("ip").args(["route", "del", "unreachable", &route]));
    for ns in [&lab.ns_pub, &lab.ns_priv, &lab.aws.ns] {
        let _ = fs::remove_dir_all(Path::new("/etc/netns").join(ns));
    }
    // Only if empty: other labs may be using it.
    let _ = fs::remove_dir("/etc/netns");
}

/// Is anything of this lab's network still present? For tests of `down`.
pub(super) fn leftovers(lab: &Lab) -> Vec<String> {
    let mut found = Vec::new();
    for ns in [&lab.ns_pub, &lab.ns_priv, &lab.aws.ns] {
        if ns_file(ns).exists() {
            found.push(format!("namespace {ns}"));
        }
        if Path::new("/etc/netns").join(ns).exists() {
            found.push(format!("/etc/netns/{ns}"));
        }
    }
    for link in [&lab.veth_root, lab.aws.veth_root()] {
        if has_link_in_root(link) {
            found.push(format!("interface {link}"));
        }
    }
    let routes = ip(&["route"]).unwrap_or_default();
    let prefix = format!("{}.", lab.config.net);
    for line in routes
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w.starts_with(&prefix)))
    {
        found.push(format!("route {line}"));
    }
    found
}

fn has_link_in_root(name: &str) -> bool {
    exec::succeeds(Command::new("ip").args(["link", "show", name]))
}
