//! Host key verification against OpenSSH's `known_hosts` files, with OpenSSH's rules.
//!
//! russh's own `russh::keys::known_hosts` ignores markers, wildcards and negation, and one
//! unparseable line aborts its whole check; this module reads the files the way `ssh(1)` does
//! (`hostfile.c` and `sshconnect.c` of OpenSSH 9.x, and `man sshd`, "SSH_KNOWN_HOSTS FILE FORMAT").
//!
//! # Layout
//!
//! - [`KnownHosts`]: the files to read (user files first, then global ones) and the one to record
//!   in. [`KnownHosts::check`] answers a [`HostKeyStatus`]; [`KnownHosts::learn`] appends a line;
//!   [`KnownHosts::recorded_algorithms`] says which key types are on record, so the caller can
//!   prefer them during key exchange as `ssh` does.
//! - [`HostKeyStatus`], [`RecordedKey`], [`ChangedKey`]: the verdict. `ChangedKey`'s `Display` is
//!   the loud refusal shown to the user.
//! - [`lookup_name`] and [`fingerprint`]: the name a host is looked up under (`host` or
//!   `[host]:port`) and the `SHA256:...` fingerprint, as `ssh-keygen -l` prints it.
//! - Private helpers below: line parsing (`parse_line`), host pattern matching (`hosts_match`,
//!   `match_pattern_list`, `match_pattern`) and hashed names (`hashed_name_matches`).
//! - [`KnownHostsError`]: files that cannot be read or written.
//!
//! # The rules, as OpenSSH applies them
//!
//! - A line is `[@marker] patterns keytype base64 [comment]`, fields separated by spaces or tabs.
//!   Blank lines and `#` comments are skipped. A line that cannot be parsed (unknown marker, key
//!   type or base64 that does not decode, type that does not match the key inside) is skipped;
//!   the other lines still count. A file that does not exist is empty.
//! - Patterns are comma-separated; `*` and `?` are wildcards; `!pattern` negates (a line whose
//!   negated pattern matches never applies); names compare case-insensitively. A field starting
//!   with `|` is one hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
//! - The name looked up is the lowercased host for port 22, `[host]:port` otherwise.
//! - Every line matching the name, from the user files then the global files, is one list. A line
//!   with the same key makes the key trusted. Otherwise any other (unmarked) line for the name,
//!   **whatever its key type**, makes it changed: OpenSSH 9 refuses an ed25519 key for a host it
//!   only knows by an ECDSA key. `ssh` avoids that case by preferring the recorded key types during
//!   key exchange; [`KnownHosts::recorded_algorithms`] gives them to do the same.
//! - `@revoked` lines whose patterns match the name revoke their key: if it is the presented one,
//!   the verdict is [`HostKeyStatus::Revoked`], whatever else matched.
//! - `@cert-authority` lines are read but ignored: aws-hop checks plain host keys, not host
//!   certificates, yet.
//! - A key not found under `[host]:port` is also looked up under plain `host`; only a match there
//!   counts (OpenSSH's "checking without port identifier").
//!
//! Not implemented: writing hashed names (`HashKnownHosts yes`): learned lines are plain, which
//! OpenSSH reads the same; `CheckHostIP` (off by default since OpenSSH 8.5); `KnownHostsCommand`.

use crate::openssh_match::{PatternMatch, match_pattern_list};
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// The known_hosts files of one user, read and written as OpenSSH does.
///
/// # Example
///
/// ```no_run
/// # use std::path::Path;
/// # fn demo(key: &russh::keys::ssh_key::PublicKey) -> Result<(), Box<dyn std::error::Error>> {
/// use aws_hop::known_hosts::{HostKeyStatus, KnownHosts};
///
/// let known = KnownHosts::openssh_default(Path::new("/home/me"));
/// match known.check("10.0.0.2", 2222, key)? {
///     HostKeyStatus::Trusted { .. } => {}
///     HostKeyStatus::Unknown => { known.learn("10.0.0.2", 2222, key)?; }
///     HostKeyStatus::Changed(changed) => return Err(changed.to_string().into()),
///     HostKeyStatus::Revoked { file, line } => {
///         return Err(format!("revoked at {}:{line}", file.display()).into())
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHosts {
    /// `UserKnownHostsFile`: read first; the first one is where new keys are recorded.
    user_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile`: read after the user files, never written.
    global_files: Vec<PathBuf>,
}

/// What the known_hosts files say about a presented host key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// A line for this host holds this very key.
    Trusted {
        /// The file of the matching line.
        file: PathBuf,
        /// Its line number, from 1.
        line: usize,
    },
    /// No (unmarked) line matches this host at all, with any key type.
    ///
    /// Under OpenSSH's rules a line of another key type for the host is not "unknown" but
    /// [`HostKeyStatus::Changed`], so there are no "other keys" to report here.
    Unknown,
    /// Lines for this host hold other keys, and none holds this one: refuse.
    Changed(ChangedKey),
    /// An `@revoked` line for this host holds this key: refuse, whatever else matched.
    Revoked {
        /// The file of the `@revoked` line.
        file: PathBuf,
        /// Its line number, from 1.
        line: usize,
    },
}

/// One key line of a known_hosts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedKey {
    /// The file it is in.
    pub file: PathBuf,
    /// Its line number, from 1.
    pub line: usize,
    /// The key type, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

impl fmt::Display for RecordedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} at {}:{}",
            self.algorithm,
            self.fingerprint,
            self.file.display(),
            self.line
        )
    }
}

/// A presented host key that differs from the recorded one(s).
///
/// Its `Display` is the multi-line refusal shown to the user, with the command that removes the
/// old key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedKey {
    /// The name looked up, e.g. `[10.0.0.2]:2222`.
    pub host: String,
    /// The type of the key the server presented.
    pub presented_algorithm: String,
    /// Its fingerprint, `SHA256:...`.
    pub presented_fingerprint: String,
    /// The line OpenSSH calls "offending": the last mismatching line (user files, then global).
    pub recorded: RecordedKey,
    /// The other mismatching lines for the host, in file order (usually none).
    pub also_recorded: Vec<RecordedKey>,
}

impl fmt::Display for ChangedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        writeln!(
            f,
            "host key for {host} has CHANGED, refusing to connect: someone may be intercepting \
             the connection, or the host was rebuilt"
        )?;
        writeln!(
            f,
            "  presented: {} {}",
            self.presented_algorithm, self.presented_fingerprint
        )?;
        for other in &self.also_recorded {
            writeln!(f, "  recorded:  {other}")?;
        }
        writeln!(f, "  recorded:  {}", self.recorded)?;
        if self
            .also_recorded
            .iter()
            .chain(std::iter::once(&self.recorded))
            .any(|k| k.algorithm != self.presented_algorithm)
        {
            writeln!(
                f,
                "  (a recorded key has another type than the presented one; OpenSSH refuses that too)"
            )?;
        }
        let mut files: Vec<&Path> = Vec::new();
        for k in self
            .also_recorded
            .iter()
            .chain(std::iter::once(&self.recorded))
        {
            if !files.contains(&k.file.as_path()) {
                files.push(&k.file);
            }
        }
        let commands = files
            .iter()
            .map(|file| {
                format!(
                    "ssh-keygen -R {} -f {}",
                    shell_quote_always(host),
                    shell_quote(&file.display().to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(" && ");
        if self.also_recorded.is_empty() {
            write!(
                f,
                "If the change is expected, remove the old key with: {commands} (or delete line {} \
                 of that file), then connect again",
                self.recorded.line
            )
        } else {
            write!(
                f,
                "If the change is expected, remove the old keys with: {commands} (or delete the \
                 lines listed above), then connect again"
            )
        }
    }
}

/// Why a known_hosts file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// A known_hosts file exists but cannot be read.
    #[error("cannot read known_hosts file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file to record a key in cannot be created or appended to.
    #[error("cannot record the host key in {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// There is no user known_hosts file to record a key in.
    #[error("cannot record the host key: no user known_hosts file is configured")]
    NoUserFile,
    /// The host name cannot be written as a known_hosts pattern.
    #[error("cannot record a host key for {host:?}: {reason}")]
    InvalidHost {
        /// The name as given.
        host: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key cannot be written in OpenSSH format.
    #[error("cannot encode the {algorithm} host key: {message}")]
    Encode {
        /// The key type.
        algorithm: String,
        /// The encoder's message.
        message: String,
    },
}

/// The port OpenSSH leaves out of the looked-up name.
const DEFAULT_PORT: u16 = 22;

/// The name `host` is looked up and recorded under: the lowercased host for port 22 (and for the
/// port 0 OpenSSH uses for "no port"), `[host]:port` otherwise.
///
/// ```
/// # use aws_hop::known_hosts::lookup_name;
/// assert_eq!(lookup_name("Bastion.example.com", 22), "bastion.example.com");
/// assert_eq!(lookup_name("10.0.0.2", 2222), "[10.0.0.2]:2222");
/// ```
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_PORT || port == 0 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The `SHA256:...` fingerprint of `key`, as `ssh-keygen -l` and `ssh` print it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl KnownHosts {
    /// Reads `user_files` (in order) then `global_files`; records in the first user file.
    pub fn new(user_files: Vec<PathBuf>, global_files: Vec<PathBuf>) -> Self {
        Self {
            user_files,
            global_files,
        }
    }

    /// OpenSSH's defaults: `~/.ssh/known_hosts`, `~/.ssh/known_hosts2`, then
    /// `/etc/ssh/ssh_known_hosts`, `/etc/ssh/ssh_known_hosts2`.
    pub fn openssh_default(home: &Path) -> Self {
        let dot_ssh = home.join(".ssh");
        Self::new(
            vec![dot_ssh.join("known_hosts"), dot_ssh.join("known_hosts2")],
            vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
        )
    }

    /// The user files, in lookup order; the first one is where [`KnownHosts::learn`] writes.
    pub fn user_files(&self) -> &[PathBuf] {
        &self.user_files
    }

    /// The global (system) files, read after the user files.
    pub fn global_files(&self) -> &[PathBuf] {
        &self.global_files
    }

    /// Checks `key`, presented by `host` on `port`, against every file.
    ///
    /// `host` is the name to look up: the HostName, or an instance id. With `HostKeyAlias`, pass
    /// the alias and port 22: OpenSSH looks an alias up as written, without a port.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<HostKeyStatus, KnownHostsError> {
        let name = lookup_name(host, port);
        let status = self.check_name(&name, key)?;
        if status == HostKeyStatus::Unknown && name != lookup_name(host, DEFAULT_PORT) {
            // sshconnect.c: "checking without port identifier"; only a match counts there.
            let plain = self.check_name(&lookup_name(host, DEFAULT_PORT), key)?;
            if matches!(plain, HostKeyStatus::Trusted { .. }) {
                tracing::debug!("host key for {name} found without the port");
                return Ok(plain);
            }
        }
        Ok(status)
    }

    /// The key types recorded for `host`/`port`, in file order, without duplicates.
    ///
    /// `ssh` puts these first in its host key algorithm preference, so the server presents the
    /// recorded key rather than another type (which [`KnownHosts::check`] reports as changed). For
    /// RSA the recorded type is `ssh-rsa` (`Algorithm::Rsa { hash: None }`): prefer the
    /// `rsa-sha2-512`/`rsa-sha2-256` signature algorithms for it.
    pub fn recorded_algorithms(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<Algorithm>, KnownHostsError> {
        let mut names = vec![lookup_name(host, port)];
        let plain = lookup_name(host, DEFAULT_PORT);
        if names[0] != plain {
            names.push(plain);
        }
        let mut algorithms = Vec::new();
        for name in &names {
            for entry in self.matching_entries(name)? {
                let algorithm = entry.key.algorithm();
                if entry.marker == Marker::None && !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        Ok(algorithms)
    }

    /// Appends `name keytype base64` (name as in [`lookup_name`]) to the first user file.
    ///
    /// Creates the file's missing directories with mode 0700 and the file with mode 0600, and
    /// first adds a newline if the file does not end with one. Returns the path written.
    pub fn learn(
        &self,
        host: &str,
        port: u16,
        key: &PublicKey,
    ) -> Result<PathBuf, KnownHostsError> {
        let path = self
            .user_files
            .first()
            .ok_or(KnownHostsError::NoUserFile)?
            .clone();
        check_learnable(host)?;
        let line = format!("{} {}\n", lookup_name(host, port), key_text(key)?);
        let write_err = |source| KnownHostsError::Write {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(write_err)?;
        }
        let mut options = fs::OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(write_err)?;
        let mut text = String::new();
        if file.metadata().map_err(write_err)?.len() > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(write_err)?;
            file.read_exact(&mut last).map_err(write_err)?;
            if last[0] != b'\n' {
                text.push('\n');
            }
        }
        text.push_str(&line);
        file.write_all(text.as_bytes()).map_err(write_err)?;
        file.flush().map_err(write_err)?;
        Ok(path)
    }

    /// The verdict for one looked-up name (`check_hostkeys_by_key_or_type` in OpenSSH).
    fn check_name(&self, name: &str, key: &PublicKey) -> Result<HostKeyStatus, KnownHostsError> {
        let entries = self.matching_entries(name)?;
        if let Some(revoked) = entries
            .iter()
            .find(|e| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
        {
            return Ok(HostKeyStatus::Revoked {
                file: revoked.file.clone(),
                line: revoked.line,
            });
        }
        let mut mismatches = Vec::new();
        for entry in entries.iter().filter(|e| e.marker == Marker::None) {
            if entry.key.key_data() == key.key_data() {
                return Ok(HostKeyStatus::Trusted {
                    file: entry.file.clone(),
                    line: entry.line,
                });
            }
            mismatches.push(entry.recorded());
        }
        Ok(match mismatches.pop() {
            None => HostKeyStatus::Unknown,
            Some(recorded) => HostKeyStatus::Changed(ChangedKey {
                host: name.to_owned(),
                presented_algorithm: key.algorithm().as_str().to_owned(),
                presented_fingerprint: fingerprint(key),
                recorded,
                also_recorded: mismatches,
            }),
        })
    }

    /// Every parseable line of every file whose patterns match `name`, user files first.
    fn matching_entries(&self, name: &str) -> Result<Vec<Entry>, KnownHostsError> {
        let mut entries = Vec::new();
        for path in self.user_files.iter().chain(&self.global_files) {
            let bytes = match fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(KnownHostsError::Read {
                        path: path.clone(),
                        source,
                    });
                }
            };
            for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
                let text = String::from_utf8_lossy(raw);
                let Some(parsed) = parse_line(&text) else {
                    continue;
                };
                let line = index + 1;
                let parsed = match parsed {
                    Ok(parsed) => parsed,
                    Err(why) => {
                        tracing::debug!("{}:{line}: skipped: {why}", path.display());
                        continue;
                    }
                };
                match hosts_match(parsed.hosts, name) {
                    Some(true) => {}
                    Some(false) => continue,
                    None => {
                        tracing::debug!("{}:{line}: skipped: bad host hash", path.display());
                        continue;
                    }
                }
                match parse_key(parsed.key_type, parsed.key_base64) {
                    Ok(key) => entries.push(Entry {
                        file: path.clone(),
                        line,
                        marker: parsed.marker,
                        key,
                    }),
                    Err(why) => tracing::debug!("{}:{line}: skipped: {why}", path.display()),
                }
            }
        }
        Ok(entries)
    }
}

/// The marker at the start of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    /// A plain host key line.
    None,
    /// `@cert-authority`: a CA for host certificates (ignored for plain keys).
    CertAuthority,
    /// `@revoked`: this key must never be accepted.
    Revoked,
}

/// A line that matched the looked-up name and whose key parsed.
#[derive(Debug)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    key: PublicKey,
}

impl Entry {
    fn recorded(&self) -> RecordedKey {
        RecordedKey {
            file: self.file.clone(),
            line: self.line,
            algorithm: self.key.algorithm().as_str().to_owned(),
            fingerprint: fingerprint(&self.key),
        }
    }
}

/// The fields of a non-comment line, before its key is decoded.
#[derive(Debug, PartialEq, Eq)]
struct ParsedLine<'a> {
    marker: Marker,
    hosts: &'a str,
    key_type: &'a str,
    key_base64: &'a str,
}

/// Splits a line into its fields; `None` for blank and comment lines, `Err` for lines to skip.
fn parse_line(line: &str) -> Option<Result<ParsedLine<'_>, &'static str>> {
    let is_space = |c: char| c == ' ' || c == '\t';
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line.trim_start_matches(is_space);
    if rest.is_empty() || rest.starts_with('#') {
        return None;
    }
    let mut fields = rest.split(is_space).filter(|f| !f.is_empty());
    let mut first = fields.next()?;
    let marker = match first {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        m if m.starts_with('@') => return Some(Err("unknown marker")),
        _ => Marker::None,
    };
    if marker != Marker::None {
        match fields.next() {
            Some(hosts) if !hosts.starts_with('@') => first = hosts,
            Some(_) => return Some(Err("more than one marker")),
            None => return Some(Err("no host patterns")),
        }
    }
    let (Some(key_type), Some(key_base64)) = (fields.next(), fields.next()) else {
        return Some(Err("no key"));
    };
    Some(Ok(ParsedLine {
        marker,
        hosts: first,
        key_type,
        key_base64,
    }))
}

/// Decodes `keytype base64`; the type must be one OpenSSH knows and match the key inside.
fn parse_key(key_type: &str, key_base64: &str) -> Result<PublicKey, &'static str> {
    let key = PublicKey::from_openssh(&format!("{key_type} {key_base64}"))
        .map_err(|_| "key type or base64 does not parse")?;
    if matches!(key.algorithm(), Algorithm::Other(_)) {
        return Err("unsupported key type");
    }
    Ok(key)
}

/// Whether the hosts field of a line matches `name` (already lowercased); `None` for a hashed
/// field that is malformed (the line is skipped).
fn hosts_match(hosts: &str, name: &str) -> Option<bool> {
    if hosts.starts_with('|') {
        hashed_name_matches(hosts, name)
    } else {
        Some(match_pattern_list(name, hosts, true) == PatternMatch::Positive)
    }
}

/// `|1|salt|hash`: whether HMAC-SHA1 of `name` keyed with the salt re-encodes to this field.
fn hashed_name_matches(field: &str, name: &str) -> Option<bool> {
    let rest = field.strip_prefix("|1|")?;
    let (salt_b64, _) = rest.split_once('|')?;
    if salt_b64.is_empty() || salt_b64.len() > 1024 {
        return None;
    }
    let salt = BASE64.decode(salt_b64).ok()?;
    if salt.len() != 20 {
        return None;
    }
    let mut mac = Hmac::<Sha1>::new_from_slice(&salt).ok()?;
    mac.update(name.as_bytes());
    let hash = mac.finalize().into_bytes();
    let expected = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(hash));
    Some(expected == field)
}

/// Refuses names that would not read back as one literal pattern.
fn check_learnable(host: &str) -> Result<(), KnownHostsError> {
    let reason = if host.is_empty() {
        Some("the name is empty")
    } else if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '*' | '?'))
    {
        Some("it contains whitespace, a comma or a wildcard")
    } else if host.starts_with(['!', '|', '@', '#', '[']) {
        Some("it starts with a character that known_hosts treats specially")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KnownHostsError::InvalidHost {
            host: host.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `keytype base64`, without the comment (as OpenSSH's `sshkey_write`).
fn key_text(key: &PublicKey) -> Result<String, KnownHostsError> {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|s| s.trim_end().to_owned())
        .map_err(|e| KnownHostsError::Encode {
            algorithm: key.algorithm().as_str().to_owned(),
            message: e.to_string(),
        })
}

/// `s` single-quoted for a POSIX shell.
fn shell_quote_always(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `s` as is if the shell would not change it, else single-quoted.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+' | ':' | ',')
        })
    {
        s.to_owned()
    } else {
        shell_quote_always(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openssh_match::match_pattern;

    /// ed25519 key "A" (`ssh-keygen -t ed25519`), SHA256:He4uPb6Dmz7Q/x2HMPFU5iPheF0mdBeHOQmE3jvr8Kc.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPGwesV1ktLPJATxGA5ga0oRvsyFRFvZFB6Hw4EZe1q2";
    const FP_A: &str = "SHA256:He4uPb6Dmz7Q/x2HMPFU5iPheF0mdBeHOQmE3jvr8Kc";
    /// ed25519 key "B", SHA256:kpZ0PuUal54LFjiwEva4sGkushRmlCVtuTdQDzt4F/o.
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICFtcNdG9IMhVOl7XADaiEYY++hhDH4KClB3KuqSrW3K";
    const FP_B: &str = "SHA256:kpZ0PuUal54LFjiwEva4sGkushRmlCVtuTdQDzt4F/o";
    /// ECDSA P-256 key "C", SHA256:z8SiY1yiVg7P3tsakpFbqHq4CblOp4qF0e/dqy1sSK4.
    const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHLQ1KT5TN1EdxZo0+YK6YbffBtmT6kZNQHfGPuLv0Us9/iU8PfVdnOmUdohdqJjPYG30mSB+P94qYbB2G5TPjw=";
    const FP_C: &str = "SHA256:z8SiY1yiVg7P3tsakpFbqHq4CblOp4qF0e/dqy1sSK4";
    /// RSA 2048 key "R", SHA256:Su0owIMgTcrq/DyMyaXybeG6qIfFlvlPltFrY0dbeYk.
    const KEY_R: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDM1IoVbNE0L1V+0pJ+Lh2xzcOfvYQdXGkDoMBMAonOfFp6GndHt4Jq8+la4LV0Rnp3kgTiyAHGzGLrkieFxkDtFJOEL0pDyuCz2u9qC3Da3gYZP7UKfnyHDbhXt8AtXoZhjq3WETy5CKWZB+6hK9qX1cWsuoA8+xBxrGd8rkK/B+8MpvInc/7wd2uCRaW0mXfAUjImCc8ndAtf8hC+scfmDBSdRFzHmXOQTo3FAQeDmhl8qHmwVTJJqzNuE3fHbslbHpEgr70PpRo/Za1oc2he45fMKwYjOVqEkbYmvEL0/j/3DDzf6ZHK6ybA7GgKQfSB1J+ASoOWfVEbQKioo5qt";
    const FP_R: &str = "SHA256:Su0owIMgTcrq/DyMyaXybeG6qIfFlvlPltFrY0dbeYk";

    /// Lines produced by OpenSSH 9.2's `ssh-keygen -H -f` from
    /// `Example.COM <KEY_A>` and `[example.com]:2222 <KEY_B>`.
    const HASHED_BY_SSH_KEYGEN: &str = "\
|1|4iMyzK4GP8po7vcpRV6392Q6Q9U=|3qZQkiss/vVaRFO3etJie9OxanM= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPGwesV1ktLPJATxGA5ga0oRvsyFRFvZFB6Hw4EZe1q2 
|1|xv6PUsOk1y0NiIueLzeEpSJn03U=|VxDFnW5+J4+3cJ8hcGCihPXmV58= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICFtcNdG9IMhVOl7XADaiEYY++hhDH4KClB3KuqSrW3K 
";

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("test key parses")
    }

    /// A temp dir with `known_hosts` holding `content`, and a `KnownHosts` over it alone.
    fn fixture(content: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        fs::write(&path, content).expect("write fixture");
        let known = KnownHosts::new(vec![path], vec![]);
        (dir, known)
    }

    fn check(content: &str, host: &str, port: u16, presented: &str) -> HostKeyStatus {
        let (_dir, known) = fixture(content);
        known.check(host, port, &key(presented)).expect("check")
    }

    #[test]
    fn fingerprints_match_ssh_keygen() {
        assert_eq!(fingerprint(&key(KEY_A)), FP_A);
        assert_eq!(fingerprint(&key(KEY_B)), FP_B);
        assert_eq!(fingerprint(&key(KEY_C)), FP_C);
        assert_eq!(fingerprint(&key(KEY_R)), FP_R);
    }

    #[test]
    fn lookup_names() {
        assert_eq!(lookup_name("Host.Example", 22), "host.example");
        assert_eq!(lookup_name("10.0.0.2", 2222), "[10.0.0.2]:2222");
        assert_eq!(lookup_name("::1", 2222), "[::1]:2222");
        assert_eq!(lookup_name("i-0abc", 0), "i-0abc");
    }

    #[test]
    fn plain_name_is_trusted_case_insensitively() {
        let kh =
            format!("# comment\n\nother.example {KEY_B}\nBASTION.example.com {KEY_A} me@laptop\n");
        let status = check(&kh, "bastion.example.com", 22, KEY_A);
        assert!(
            matches!(status, HostKeyStatus::Trusted { line: 4, .. }),
            "{status:?}"
        );
        assert!(matches!(
            check(&kh, "Bastion.Example.COM", 22, KEY_A),
            HostKeyStatus::Trusted { line: 4, .. }
        ));
        assert_eq!(
            check(&kh, "nobody.example", 22, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn several_patterns_tabs_and_spaces() {
        let kh = format!("  a.example,b.example,10.0.0.9\t \t{KEY_A}\t comment with  spaces\n");
        for host in ["a.example", "b.example", "10.0.0.9"] {
            assert!(matches!(
                check(&kh, host, 22, KEY_A),
                HostKeyStatus::Trusted { line: 1, .. }
            ));
        }
        assert_eq!(check(&kh, "c.example", 22, KEY_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn wildcards() {
        let kh = format!("*.internal.example {KEY_A}\nweb-?? {KEY_B}\n");
        assert!(matches!(
            check(&kh, "db.internal.example", 22, KEY_A),
            HostKeyStatus::Trusted { .. }
        ));
        assert_eq!(
            check(&kh, "internal.example", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        assert!(matches!(
            check(&kh, "web-01", 22, KEY_B),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
        assert_eq!(check(&kh, "web-1", 22, KEY_B), HostKeyStatus::Unknown);
        assert_eq!(check(&kh, "web-001", 22, KEY_B), HostKeyStatus::Unknown);
    }

    #[test]
    fn negation_excludes_the_line() {
        let kh = format!("*.example,!bad.example {KEY_A}\n");
        assert!(matches!(
            check(&kh, "good.example", 22, KEY_A),
            HostKeyStatus::Trusted { .. }
        ));
        assert_eq!(check(&kh, "bad.example", 22, KEY_A), HostKeyStatus::Unknown);
        // The negation wins wherever it stands in the list.
        let kh = format!("!bad.example,*.example {KEY_A}\n");
        assert_eq!(check(&kh, "bad.example", 22, KEY_A), HostKeyStatus::Unknown);
        // A negated line is not a mismatch either: another key is not "changed" by it.
        let kh = format!("!bad.example,*.example {KEY_B}\nbad.example {KEY_A}\n");
        assert!(matches!(
            check(&kh, "bad.example", 22, KEY_A),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
    }

    #[test]
    fn hashed_lines_from_real_ssh_keygen() {
        assert!(matches!(
            check(HASHED_BY_SSH_KEYGEN, "example.com", 22, KEY_A),
            HostKeyStatus::Trusted { line: 1, .. }
        ));
        // ssh lowercases the name before hashing, as ssh-keygen -H did.
        assert!(matches!(
            check(HASHED_BY_SSH_KEYGEN, "EXAMPLE.com", 22, KEY_A),
            HostKeyStatus::Trusted { line: 1, .. }
        ));
        assert!(matches!(
            check(HASHED_BY_SSH_KEYGEN, "example.com", 2222, KEY_B),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
        assert_eq!(
            check(HASHED_BY_SSH_KEYGEN, "example.org", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        let HostKeyStatus::Changed(changed) = check(HASHED_BY_SSH_KEYGEN, "example.com", 22, KEY_B)
        else {
            panic!("a different key for a hashed name is a change");
        };
        assert_eq!(changed.recorded.line, 1);
    }

    #[test]
    fn hashed_line_computed_here() {
        let salt = [7u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).expect("hmac key");
        mac.update(b"[10.0.0.5]:2200");
        let field = format!(
            "|1|{}|{}",
            BASE64.encode(salt),
            BASE64.encode(mac.finalize().into_bytes())
        );
        let kh = format!("{field} {KEY_A}\n|1|bad|salt {KEY_B}\n|2|x|y {KEY_B}\n");
        assert!(matches!(
            check(&kh, "10.0.0.5", 2200, KEY_A),
            HostKeyStatus::Trusted { line: 1, .. }
        ));
        assert_eq!(check(&kh, "10.0.0.5", 22, KEY_A), HostKeyStatus::Unknown);
    }

    #[test]
    fn port_forms() {
        let kh = format!("[10.0.0.2]:2222 {KEY_A}\n10.0.0.3 {KEY_B}\n[10.0.0.4]:22 {KEY_A}\n");
        assert!(matches!(
            check(&kh, "10.0.0.2", 2222, KEY_A),
            HostKeyStatus::Trusted { line: 1, .. }
        ));
        // Port 22 is looked up without brackets, so `[h]:2222` does not apply to it...
        assert_eq!(check(&kh, "10.0.0.2", 22, KEY_A), HostKeyStatus::Unknown);
        // ...and neither does `[h]:22`, which OpenSSH never looks up.
        assert_eq!(check(&kh, "10.0.0.4", 22, KEY_A), HostKeyStatus::Unknown);
        assert_eq!(check(&kh, "10.0.0.2", 2200, KEY_A), HostKeyStatus::Unknown);
        // A key under the plain name also serves other ports ("checking without port identifier").
        assert!(matches!(
            check(&kh, "10.0.0.3", 2222, KEY_B),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
        // ...but a different key there does not make the port's key "changed".
        assert_eq!(check(&kh, "10.0.0.3", 2222, KEY_A), HostKeyStatus::Unknown);
        // Wildcards apply inside the brackets too.
        let kh = format!("[10.0.0.*]:2222 {KEY_A}\n");
        assert!(matches!(
            check(&kh, "10.0.0.7", 2222, KEY_A),
            HostKeyStatus::Trusted { .. }
        ));
    }

    #[test]
    fn revoked_wins_over_a_trusted_line() {
        let kh = format!("host.example {KEY_A}\n@revoked * {KEY_A}\n");
        assert!(matches!(
            check(&kh, "host.example", 22, KEY_A),
            HostKeyStatus::Revoked { line: 2, .. }
        ));
        // Only the revoked key is refused.
        let kh2 = format!("host.example {KEY_B}\n@revoked * {KEY_A}\n");
        assert!(matches!(
            check(&kh2, "host.example", 22, KEY_B),
            HostKeyStatus::Trusted { line: 1, .. }
        ));
        // @revoked applies where its patterns match, as any line.
        let kh3 = format!("@revoked other.example {KEY_A}\nhost.example {KEY_A}\n");
        assert!(matches!(
            check(&kh3, "host.example", 22, KEY_A),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
        // A revoked line is not a recorded key: alone, the host is unknown for other keys.
        let kh4 = format!("@revoked * {KEY_A}\n");
        assert_eq!(
            check(&kh4, "host.example", 22, KEY_B),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn cert_authority_lines_are_ignored() {
        let kh = format!("@cert-authority *.example {KEY_A}\n");
        assert_eq!(
            check(&kh, "host.example", 22, KEY_A),
            HostKeyStatus::Unknown
        );
        assert_eq!(
            check(&kh, "host.example", 22, KEY_B),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn changed_key_reports_the_offending_line() {
        let kh = format!("# keys\nhost.example {KEY_B}\n");
        let HostKeyStatus::Changed(changed) = check(&kh, "host.example", 22, KEY_A) else {
            panic!("expected a change");
        };
        assert_eq!(changed.host, "host.example");
        assert_eq!(changed.presented_algorithm, "ssh-ed25519");
        assert_eq!(changed.presented_fingerprint, FP_A);
        assert_eq!(changed.recorded.line, 2);
        assert_eq!(changed.recorded.fingerprint, FP_B);
        assert!(changed.also_recorded.is_empty());
        // A match anywhere (a later line, another file) wins over a mismatch.
        let kh = format!("host.example {KEY_B}\nhost.example {KEY_A}\n");
        assert!(matches!(
            check(&kh, "host.example", 22, KEY_A),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
    }

    #[test]
    fn changed_key_display_is_loud_and_says_how_to_fix() {
        let kh = format!("\n\n[10.231.0.2]:2222 {KEY_B}\n");
        let (dir, known) = fixture(&kh);
        let HostKeyStatus::Changed(changed) =
            known.check("10.231.0.2", 2222, &key(KEY_A)).expect("check")
        else {
            panic!("expected a change");
        };
        let file = dir.path().join("known_hosts");
        let text = changed.to_string();
        let expected = format!(
            "host key for [10.231.0.2]:2222 has CHANGED, refusing to connect: someone may be \
             intercepting the connection, or the host was rebuilt\n  presented: ssh-ed25519 {FP_A}\n  \
             recorded:  ssh-ed25519 {FP_B} at {f}:3\nIf the change is expected, remove the old key \
             with: ssh-keygen -R '[10.231.0.2]:2222' -f {f} (or delete line 3 of that file), then \
             connect again",
            f = file.display()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn several_mismatches_last_one_is_offending_as_in_openssh() {
        let kh = format!("host.example {KEY_B}\nhost.example {KEY_C}\n");
        let HostKeyStatus::Changed(changed) = check(&kh, "host.example", 22, KEY_A) else {
            panic!("expected a change");
        };
        assert_eq!(changed.recorded.line, 2);
        assert_eq!(changed.also_recorded.len(), 1);
        assert_eq!(changed.also_recorded[0].line, 1);
        let text = changed.to_string();
        assert!(text.contains("remove the old keys"), "{text}");
        assert!(text.contains("another type"), "{text}");
    }

    #[test]
    fn other_key_type_is_a_change_as_in_openssh() {
        // OpenSSH 9.2: "Offending ECDSA key ... Host key for ... has changed".
        let kh = format!("host.example {KEY_C}\n");
        let HostKeyStatus::Changed(changed) = check(&kh, "host.example", 22, KEY_A) else {
            panic!("expected a change");
        };
        assert_eq!(changed.recorded.algorithm, "ecdsa-sha2-nistp256");
        assert_eq!(changed.recorded.fingerprint, FP_C);
        let (_dir, known) = fixture(&format!("host.example {KEY_C}\nhost.example {KEY_R}\n"));
        assert_eq!(
            known.recorded_algorithms("host.example", 22).expect("read"),
            vec![key(KEY_C).algorithm(), key(KEY_R).algorithm()]
        );
        assert!(
            known
                .recorded_algorithms("other.example", 22)
                .expect("read")
                .is_empty()
        );
    }

    #[test]
    fn rsa_keys() {
        let kh = format!("rsa.example {KEY_R}\n");
        assert!(matches!(
            check(&kh, "rsa.example", 22, KEY_R),
            HostKeyStatus::Trusted { .. }
        ));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let kh = format!(
            "garbage\n\
             @bogus host.example {KEY_B}\n\
             host.example ssh-ed25519 AAAA!!notbase64\n\
             host.example ssh-rsa {b64a}\n\
             host.example ssh-foo AAAAB3NzaC1yc2EAAAADAQAB\n\
             host.example\n\
             @revoked\n\
             @revoked @cert-authority host.example {KEY_B}\n\
             \u{00ff}\u{00fe} binary\n\
             host.example {KEY_A}\r\n",
            b64a = KEY_A.split(' ').nth(1).unwrap_or_default()
        );
        assert!(matches!(
            check(&kh, "host.example", 22, KEY_A),
            HostKeyStatus::Trusted { line: 10, .. }
        ));
        // None of the broken lines counts as a recorded (changed) key.
        let kh_only_garbage = kh.lines().take(9).collect::<Vec<_>>().join("\n");
        assert_eq!(
            check(&kh_only_garbage, "host.example", 22, KEY_A),
            HostKeyStatus::Unknown
        );
    }

    #[test]
    fn missing_files_are_empty_unreadable_ones_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let known = KnownHosts::new(
            vec![dir.path().join("nope")],
            vec![dir.path().join("nope2")],
        );
        assert_eq!(
            known.check("h", 22, &key(KEY_A)).expect("check"),
            HostKeyStatus::Unknown
        );
        // A directory cannot be read as a file.
        let known = KnownHosts::new(vec![dir.path().to_path_buf()], vec![]);
        let err = known.check("h", 22, &key(KEY_A)).expect_err("unreadable");
        assert!(matches!(&err, KnownHostsError::Read { path, .. } if path == dir.path()));
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn user_files_before_global_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = dir.path().join("user");
        let global = dir.path().join("global");
        fs::write(&user, format!("h.example {KEY_B}\n")).expect("write");
        fs::write(&global, format!("h.example {KEY_A}\nh2.example {KEY_A}\n")).expect("write");
        let known = KnownHosts::new(vec![user.clone()], vec![global.clone()]);
        // A match in any file wins over a mismatch in another.
        assert_eq!(
            known.check("h.example", 22, &key(KEY_A)).expect("check"),
            HostKeyStatus::Trusted {
                file: global.clone(),
                line: 1
            }
        );
        let HostKeyStatus::Changed(changed) =
            known.check("h.example", 22, &key(KEY_C)).expect("check")
        else {
            panic!("expected a change");
        };
        assert_eq!(changed.recorded.file, global);
        assert_eq!(changed.also_recorded[0].file, user);
        assert!(matches!(
            known.check("h2.example", 22, &key(KEY_A)).expect("check"),
            HostKeyStatus::Trusted { line: 2, .. }
        ));
    }

    #[test]
    fn learn_then_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("home/.ssh/known_hosts");
        let known = KnownHosts::new(vec![file.clone()], vec![]);
        let mut with_comment = key(KEY_A);
        with_comment.set_comment("someone@somewhere");
        let written = known
            .learn("Bastion.Example", 22, &with_comment)
            .expect("learn");
        assert_eq!(written, file);
        known.learn("10.0.0.2", 2222, &key(KEY_B)).expect("learn");
        let content = fs::read_to_string(&file).expect("read");
        assert_eq!(
            content,
            format!("bastion.example {KEY_A}\n[10.0.0.2]:2222 {KEY_B}\n")
        );
        assert_eq!(
            known
                .check("bastion.example", 22, &key(KEY_A))
                .expect("check"),
            HostKeyStatus::Trusted {
                file: file.clone(),
                line: 1
            }
        );
        assert_eq!(
            known.check("10.0.0.2", 2222, &key(KEY_B)).expect("check"),
            HostKeyStatus::Trusted {
                file: file.clone(),
                line: 2
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            assert_eq!(mode(&dir.path().join("home/.ssh")), 0o700);
        }
    }

    #[test]
    fn learn_adds_the_missing_newline() {
        let (dir, known) = fixture(&format!("other.example {KEY_B}"));
        known.learn("h.example", 22, &key(KEY_A)).expect("learn");
        let content = fs::read_to_string(dir.path().join("known_hosts")).expect("read");
        assert_eq!(
            content,
            format!("other.example {KEY_B}\nh.example {KEY_A}\n")
        );
        let (dir, known) = fixture("");
        known.learn("h.example", 22, &key(KEY_A)).expect("learn");
        let content = fs::read_to_string(dir.path().join("known_hosts")).expect("read");
        assert_eq!(content, format!("h.example {KEY_A}\n"));
    }

    #[test]
    fn learn_refuses_names_that_would_be_patterns() {
        let (_dir, known) = fixture("");
        for bad in ["", "a b", "a,b", "*.example", "!x", "|1|x", "@revoked"] {
            assert!(
                matches!(
                    known.learn(bad, 22, &key(KEY_A)),
                    Err(KnownHostsError::InvalidHost { .. })
                ),
                "{bad:?}"
            );
        }
        let none = KnownHosts::new(vec![], vec![]);
        assert!(matches!(
            none.learn("h", 22, &key(KEY_A)),
            Err(KnownHostsError::NoUserFile)
        ));
    }

    #[test]
    fn learned_lines_are_found_by_real_ssh_keygen() {
        // OpenSSH is part of the test setup (tests/setup.sh): a missing ssh-keygen fails this
        // test instead of passing it unchecked.
        std::process::Command::new("ssh-keygen")
            .arg("-?")
            .stderr(std::process::Stdio::null())
            .status()
            .expect("ssh-keygen (openssh-client) must be on PATH for this cross-check: run tests/setup.sh");
        let (dir, known) = fixture("# start");
        known.learn("Host.Example", 22, &key(KEY_A)).expect("learn");
        known.learn("10.0.0.2", 2222, &key(KEY_C)).expect("learn");
        let file = dir.path().join("known_hosts");
        for (name, expected_line) in [("host.example", 2), ("[10.0.0.2]:2222", 3)] {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-F", name, "-f"])
                .arg(&file)
                .output()
                .expect("run ssh-keygen");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "ssh-keygen -F {name}: {stdout}");
            assert!(
                stdout.contains(&format!("found: line {expected_line}")),
                "{stdout}"
            );
        }
    }

    #[test]
    fn pattern_matching_edge_cases() {
        assert!(match_pattern("", ""));
        assert!(match_pattern("", "*"));
        assert!(!match_pattern("", "?"));
        assert!(match_pattern("abc", "a*c"));
        assert!(match_pattern("abbbc", "a*b*c"));
        assert!(!match_pattern("abcd", "a*c"));
        assert!(match_pattern("a.b.c", "*.c"));
        assert!(match_pattern("ac", "a**c"));
        assert_eq!(match_pattern_list("x", "a,,b", true), PatternMatch::None);
        assert_eq!(match_pattern_list("", "a,,b", true), PatternMatch::Positive);
        assert_eq!(
            match_pattern_list("Web1", "WEB?,!web2", true),
            PatternMatch::Positive
        );
        assert_eq!(
            match_pattern_list("web2", "WEB?,!web2", true),
            PatternMatch::Negated
        );
    }
}
