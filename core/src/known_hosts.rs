//! TEMPORARY stand-in; replaced by the full implementation.
use russh::keys::ssh_key::{HashAlg, PublicKey};
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct KnownHosts {
    user: Vec<PathBuf>,
    global: Vec<PathBuf>,
}
pub struct RecordedKey {
    pub file: PathBuf,
    pub line: usize,
    pub algorithm: String,
    pub fingerprint: String,
}
#[derive(Debug)]
pub struct ChangedKey {
    pub host: String,
}
impl std::fmt::Display for ChangedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host key for {} has CHANGED", self.host)
    }
}
pub enum HostKeyStatus {
    Trusted { file: PathBuf, line: usize },
    Unknown { other_keys: Vec<RecordedKey> },
    Changed(ChangedKey),
    Revoked { file: PathBuf, line: usize },
}
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    #[error("known_hosts {0}")]
    Io(String),
}
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}
impl KnownHosts {
    pub fn new(user: Vec<PathBuf>, global: Vec<PathBuf>) -> Self {
        KnownHosts { user, global }
    }
    pub fn openssh_default(home: &Path) -> Self {
        Self::new(
            vec![home.join(".ssh/known_hosts")],
            vec![PathBuf::from("/etc/ssh/ssh_known_hosts")],
        )
    }
    pub fn user_files(&self) -> &[PathBuf] {
        &self.user
    }
    pub fn global_files(&self) -> &[PathBuf] {
        &self.global
    }
    pub fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<HostKeyStatus, KnownHostsError> {
        for f in &self.user {
            match russh::keys::check_known_hosts_path(host, port, key, f) {
                Ok(true) => {
                    return Ok(HostKeyStatus::Trusted {
                        file: f.clone(),
                        line: 0,
                    });
                }
                Ok(false) => {}
                Err(_) => return Ok(HostKeyStatus::Changed(ChangedKey { host: host.into() })),
            }
        }
        Ok(HostKeyStatus::Unknown { other_keys: vec![] })
    }
    pub fn learn(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<PathBuf, KnownHostsError> {
        let p = self.user[0].clone();
        russh::keys::known_hosts::learn_known_hosts_path(host, port, key, &p)
            .map_err(|e| KnownHostsError::Io(e.to_string()))?;
        Ok(p)
    }
}
