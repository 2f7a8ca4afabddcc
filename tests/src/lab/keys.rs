//! SSH key material and client files: the client key (ed25519, unencrypted), the
//! `authorized_keys` both sshds read, the host keys of the bastion and the instance, a
//! `known_hosts` that lets clients keep `StrictHostKeyChecking=yes`, and a ready-made
//! `ssh_config` (Host `bastion`, `bastion-nofwd`, and `instance` via ProxyJump).
//!
//! Keys are generated once per state directory (a second `up` keeps them); the text
//! files are rewritten on every `up`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::Lab;
use super::exec;

/// Generates an ed25519 key pair at `path` unless it exists.
fn keygen(path: &Path, comment: &str) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    exec::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    )?;
    Ok(())
}

/// `ssh-ed25519 AAAA...` (type and key, without the comment) from a `.pub` file.
fn public_key(pub_file: &Path) -> Result<String> {
    let text = fs::read_to_string(pub_file)
        .with_context(|| format!("cannot read {}", pub_file.display()))?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// Creates the keys (if missing) and writes authorized_keys, known_hosts and ssh_config.
pub(super) fn up(lab: &Lab) -> Result<()> {
    let keys = lab.config.dir.join("keys");
    fs::create_dir_all(&keys)?;
    for dir in [&lab.config.dir, &keys] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    keygen(
        &lab.ssh_key,
        &format!("aws-hop lab {} client", lab.config.prefix),
    )?;
    // sshd reads AuthorizedKeysFile as the target user: it must be readable by them.
    let authorized = keys.join("authorized_keys");
    fs::copy(lab.ssh_key.with_extension("pub"), &authorized)?;
    fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644))?;

    for (name, pub_file) in [
        ("bastion", &lab.bastion_host_key),
        ("instance", &lab.instance_host_key),
    ] {
        let private = pub_file.with_extension("");
        keygen(
            &private,
            &format!("aws-hop lab {} {name}", lab.config.prefix),
        )?;
    }
    let bastion_key = public_key(&lab.bastion_host_key)?;
    let instance_key = public_key(&lab.instance_host_key)?;
    let known_hosts = format!(
        "{},{} {bastion_key}\n[{}]:{} {bastion_key}\n{},{} {instance_key}\n",
        lab.bastion_ip,
        lab.bastion_host,
        lab.bastion_ip,
        lab.nofwd_port,
        lab.instance_ip,
        lab.instance_host,
    );
    fs::write(&lab.known_hosts, known_hosts)?;
    fs::write(&lab.ssh_config, ssh_config(lab))?;
    Ok(())
}

/// The client config: everything a tool would otherwise pass with `-o`. `ssh -J` does
/// not pass command-line `-i`/`-o` to the jump connection (gotcha 6), but ProxyJump's
/// inner ssh does inherit `-F`, so `ssh -F <this> instance` works.
fn ssh_config(lab: &Lab) -> String {
    format!(
        "# ssh -F {config} bastion  |  ssh -F {config} instance (via ProxyJump)\n\
         Host *\n\
         \x20 User {user}\n\
         \x20 IdentityFile {key}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {known_hosts}\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 BatchMode yes\n\
         \x20 ExitOnForwardFailure yes\n\
         \x20 ConnectTimeout 5\n\
         \x20 ServerAliveInterval 5\n\
         \x20 ServerAliveCountMax 2\n\
         Host bastion\n\
         \x20 HostName {bastion}\n\
         \x20 Port {ssh_port}\n\
         Host bastion-nofwd\n\
         \x20 HostName {bastion}\n\
         \x20 Port {nofwd_port}\n\
         Host instance\n\
         \x20 HostName {instance}\n\
         \x20 Port {ssh_port}\n\
         \x20 ProxyJump bastion\n",
        config = lab.ssh_config.display(),
        user = lab.user,
        key = lab.ssh_key.display(),
        known_hosts = lab.known_hosts.display(),
        bastion = lab.bastion_ip,
        instance = lab.instance_ip,
        ssh_port = lab.ssh_port,
        nofwd_port = lab.nofwd_port,
    )
}
