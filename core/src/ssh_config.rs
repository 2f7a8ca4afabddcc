//! TEMPORARY stand-in; replaced by the full implementation.
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("{0}")]
    Bad(String),
}
pub struct Destination {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}
pub struct ResolvedHost {
    pub alias: String,
    pub hostname: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub identities_only: bool,
    pub proxy_jump: Vec<String>,
    pub user_known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: Option<String>,
    pub host_key_alias: Option<String>,
    pub connect_timeout: Option<std::time::Duration>,
}
pub fn parse_destination(s: &str) -> Result<Destination, SshConfigError> {
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, s),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h.to_string(),
            Some(
                p.parse()
                    .map_err(|_| SshConfigError::Bad(format!("bad port in {s}")))?,
            ),
        ),
        None => (rest.to_string(), None),
    };
    Ok(Destination { user, host, port })
}
pub fn resolve(
    d: &Destination,
    _c: Option<&Path>,
    _home: &Path,
) -> Result<ResolvedHost, SshConfigError> {
    Ok(ResolvedHost {
        alias: d.host.clone(),
        hostname: d.host.clone(),
        port: d.port.unwrap_or(22),
        user: d
            .user
            .clone()
            .unwrap_or_else(|| std::env::var("USER").unwrap_or("root".into())),
        identity_files: vec![],
        identities_only: false,
        proxy_jump: vec![],
        user_known_hosts_files: vec![],
        strict_host_key_checking: None,
        host_key_alias: None,
        connect_timeout: None,
    })
}
