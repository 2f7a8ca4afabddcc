//! Private keys for SSH authentication: key files and ssh-agent.
//!
//! Keys are read from disk only when the user names them (the `key` option, `IdentityFile` in
//! ~/.ssh/config) or, as OpenSSH does, from the default `~/.ssh/id_*` files. Key material stays
//! in memory and never appears in messages: errors name the file and the reason only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::{HashAlg, PrivateKey};

use crate::error::{Error, Result};

/// The default identity files OpenSSH tries, in its order.
const DEFAULT_IDENTITIES: &[&str] = &["id_ed25519", "id_ecdsa", "id_rsa"];

/// The user's home directory, from `$HOME`.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `~/.ssh/id_*` files that exist, in OpenSSH's order.
pub fn default_identity_files(home: &Path) -> Vec<PathBuf> {
    DEFAULT_IDENTITIES
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.is_file())
        .collect()
}

/// Loads an unencrypted private key file.
///
/// An encrypted key gives an error that points to ssh-agent, which is how aws-hop uses
/// passphrase-protected keys (it never asks for, or keeps, a passphrase).
pub fn load_key_file(path: &Path) -> Result<Arc<PrivateKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Key {
        path: path.to_path_buf(),
        reason: match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied reading it".into(),
            _ => e.to_string(),
        },
    })?;
    match russh::keys::decode_secret_key(&text, None) {
        Ok(k) => Ok(Arc::new(k)),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(Error::Key {
            path: path.to_path_buf(),
            reason: format!(
                "it is protected by a passphrase; add it to your agent with `ssh-add {}` and \
                 aws-hop will use the agent",
                path.display()
            ),
        }),
        Err(e) => Err(Error::Key {
            path: path.to_path_buf(),
            reason: format!("not a private key aws-hop can read ({e})"),
        }),
    }
}

/// True for the error [`load_key_file`] gives for a passphrase-protected key.
pub fn is_encrypted(e: &Error) -> bool {
    matches!(e, Error::Key { reason, .. } if reason.starts_with("it is protected by a passphrase"))
}

/// `SHA256:...` fingerprint of a private key's public half (safe to show).
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}
