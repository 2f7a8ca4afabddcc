//! `ssh` destinations and `~/.ssh/config`, read as OpenSSH 9 reads them.
//!
//! Hand-written, not the `ssh2-config` crate: that crate resolves differently from `ssh`
//! where teams' configs depend on it (`Match` blocks, `Include` inside blocks, the second
//! pass for `Match final`/`canonical`, first-value-wins across included files, `%` tokens and
//! `${VAR}` in the right keywords) and does not refuse files others can write. What `ssh -G`
//! prints for the same files is the reference; a test compares the two.
//!
//! # Layout
//!
//! - [`Destination`] and [`parse_destination`]: `host`, `user@host:port`, `[::1]:2222`,
//!   `ssh://user@host:port`, with the syntax of OpenSSH's `ProxyJump` hops.
//! - [`resolve`] reads the config files for one destination and returns a [`ResolvedHost`]: the
//!   values `ssh` would use for the options aws-hop needs, with `~`, `%` tokens and `${VAR}`
//!   expanded where `ssh` expands them.
//! - Below the public API: the reader (`Resolver`: files, lines, keywords, `Host`, `Match`,
//!   `Include`), the tokenizers copied from OpenSSH (`strdelim`, `argv_split`), value parsers
//!   (`parse_port`, `convtime`, ...), expansion (`expand_path`, `percent_expand`) and the glob used
//!   by `Include`.
//! - [`SshConfigError`]: every error names the file and line, or the destination.
//!
//! # The rules, as OpenSSH applies them
//!
//! - Files: with no explicit file, `~/.ssh/config` then `/etc/ssh/ssh_config` (`ssh` without
//!   `-F`); with one, that file alone (`ssh -F`), which must exist. `~/.ssh/config` and included
//!   files writable by group or others are refused, as `ssh` does.
//! - The first value obtained for an option wins; values from the destination (`user@`, `:port`)
//!   come before any file. `IdentityFile` accumulates (duplicates dropped). `UserKnownHostsFile`
//!   and `GlobalKnownHostsFile` take the list of the first line that applies.
//! - Lines: `Keyword value` or `Keyword=value`, keywords case-insensitive, `#` comments, values in
//!   double or single quotes. Unknown keywords are ignored (OpenSSH rejects them; aws-hop reads
//!   configs written for any `ssh` version). A keyword without a value, unbalanced quotes, a bad
//!   value or extra values for a keyword aws-hop reads are errors, even in a block that does not
//!   apply, as in OpenSSH.
//! - `Host` patterns (`*`, `?`, `!negated`, several per line) are matched, case-sensitively,
//!   against the host as written; a negated match disables the block.
//! - `Match`: `all`, `host` (the HostName so far), `originalhost`, `user` (the remote user so far),
//!   `localuser`, `tagged` (with `Tag`), `canonical` and `final`, each negatable with `!`, all
//!   of them required to hold. `exec`, `localnetwork`, `version`, `sessiontype` and `command` are
//!   not evaluated: a block using them is skipped (a debug note says so).
//! - `Match final`/`canonical`, or `CanonicalizeHostname` other than `no`, make a second pass over
//!   the files, where `Host` patterns are matched against the final host name, as `ssh` does.
//! - `Include` takes glob patterns; relative ones are under `~/.ssh` (user files) or `/etc/ssh`
//!   (the system file); an include in a block that does not apply is read but applies nothing; a
//!   `Match` inside an included file does not leak out of it. Nesting stops at 16 levels.
//! - `HostName` expands `%h` and `%%`; the result is lowercased. `IdentityFile` and
//!   `UserKnownHostsFile` expand `~`, `${VAR}` and `%%`, `%d`, `%h`, `%j`, `%k`, `%n`, `%p`, `%r`,
//!   `%u`; `ProxyCommand` expands `%h`, `%k`, `%n`, `%p`, `%r`, `%%`.
//!
//! Not implemented: `Match exec`/`localnetwork`/... (block skipped, see above); DNS hostname
//! canonicalization (`CanonicalizeHostname` only triggers the second pass); `%C`, `%i`, `%l`,
//! `%L`, `%T` tokens and `~otheruser/` paths (an error names them); the owner check on config
//! files (only group/other write bits are checked); service names as ports.

use crate::openssh_match::{PatternMatch, match_pattern, match_pattern_list};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Where to connect: `[user@]host[:port]`, as given by the user or a `ProxyJump` hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The remote user, if given.
    pub user: Option<String>,
    /// The host (an alias from the config, a DNS name, an address, or an instance id), without
    /// brackets.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
}

/// Parses a destination as OpenSSH parses a `ProxyJump` hop.
///
/// Accepted: `host`, `user@host`, `user@host:2222`, `[::1]:2222`, `user@[fe80::1]:22` and
/// `ssh://user@host:port`. The user ends at the **last** `@` (`me@corp@host` is user
/// `me@corp`), except in `ssh://` URIs where it ends at the first one and may be %-encoded.
///
/// # Example
///
/// ```
/// use aws_hop::ssh_config::parse_destination;
///
/// let d = parse_destination("ec2-user@[fe80::1]:2222")?;
/// assert_eq!(d.user.as_deref(), Some("ec2-user"));
/// assert_eq!(d.host, "fe80::1");
/// assert_eq!(d.port, Some(2222));
/// assert_eq!(d.to_string(), "ec2-user@[fe80::1]:2222");
/// # Ok::<(), aws_hop::ssh_config::SshConfigError>(())
/// ```
pub fn parse_destination(s: &str) -> Result<Destination, SshConfigError> {
    let parsed = match s.strip_prefix("ssh://") {
        Some(uri) => parse_ssh_uri(uri),
        None => parse_user_host_port(s),
    };
    parsed.map_err(|reason| SshConfigError::Destination {
        input: s.to_owned(),
        reason,
    })
}

impl FromStr for Destination {
    type Err = SshConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_destination(s)
    }
}

impl fmt::Display for Destination {
    /// `user@host:port`, with brackets around an IPv6 address; parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// What `ssh` would use for one destination, for the options aws-hop needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedHost {
    /// The host as the user wrote it (what `Host` patterns match).
    pub alias: String,
    /// `HostName` with `%h` expanded, or the alias; lowercased, as `ssh` does.
    pub hostname: String,
    /// The destination's port, else `Port`, else 22.
    pub port: u16,
    /// The destination's user, else `User`, else `$USER` (or `root` if unset).
    pub user: String,
    /// Every `IdentityFile`, in order, expanded; empty if none is configured (`ssh` would then try
    /// its default key names).
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`.
    pub identities_only: bool,
    /// `ProxyJump` hops in connection order (each parses with [`parse_destination`]); empty for
    /// none or `none`.
    pub proxy_jump: Vec<String>,
    /// `ProxyCommand` with its tokens expanded (run it with `sh -c`); `None` if unset, `none`, or
    /// overridden by an earlier `ProxyJump`.
    pub proxy_command: Option<String>,
    /// `UserKnownHostsFile` (a list), expanded; empty if not set (use OpenSSH's defaults);
    /// `none` gives `/dev/null`.
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `GlobalKnownHostsFile` (a list), `~`-expanded; empty if not set; `none` gives `/dev/null`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `StrictHostKeyChecking`, normalized to `yes`, `no`, `ask` or `accept-new` (`true` is
    /// `yes`; `false` and `off` are `no`).
    pub strict_host_key_checking: Option<String>,
    /// `HostKeyAlias`, lowercased as `ssh` does: the name to look up in known_hosts instead of
    /// the host, without a port.
    pub host_key_alias: Option<String>,
    /// `ConnectTimeout`; `None` if unset, `none` or 0 (no timeout).
    pub connect_timeout: Option<Duration>,
}

/// Why a destination or a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    /// The destination string is malformed.
    #[error("{reason} in '{input}'")]
    Destination {
        /// The destination as given.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A config file exists but cannot be read, or an explicit one does not exist.
    #[error("cannot read ssh config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line of a config file is wrong.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong, naming the keyword.
        message: String,
    },
    /// A config file is writable by group or others, which `ssh` refuses too.
    #[error(
        "bad permissions on ssh config {}: it is writable by group or others, which ssh refuses \
         too; fix with: chmod go-w {}",
        path.display(),
        path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
    },
}

/// Resolves `dest` as `ssh` would, reading `config` (as `ssh -F config`), or, if `None`,
/// `home/.ssh/config` then `/etc/ssh/ssh_config` where they exist.
///
/// `home` expands `~` and anchors relative `Include`s; the local user is `$USER` (`root` if
/// unset).
///
/// # Example
///
/// ```no_run
/// use std::path::Path;
/// use aws_hop::ssh_config::{parse_destination, resolve};
///
/// let dest = parse_destination("bastion")?;
/// let host = resolve(&dest, None, Path::new("/home/me"))?;
/// println!("{}@{}:{} via {:?}", host.user, host.hostname, host.port, host.proxy_jump);
/// # Ok::<(), aws_hop::ssh_config::SshConfigError>(())
/// ```
pub fn resolve(
    dest: &Destination,
    config: Option<&Path>,
    home: &Path,
) -> Result<ResolvedHost, SshConfigError> {
    let local_user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_owned());
    let sources = match config {
        Some(path) => Sources {
            user: Some((path.to_path_buf(), true)),
            system: None,
        },
        None => Sources {
            user: Some((home.join(".ssh").join("config"), false)),
            system: Some(PathBuf::from(SYSTEM_CONFIG)),
        },
    };
    let env = |name: &str| std::env::var(name).ok();
    resolve_with(dest, &sources, home, &local_user, &env)
}

/// The system-wide config `ssh` reads after the user's.
const SYSTEM_CONFIG: &str = "/etc/ssh/ssh_config";
/// Where relative `Include`s of the system config live.
const SYSTEM_DIR: &str = "/etc/ssh";
/// OpenSSH's `READCONF_MAX_DEPTH`.
const MAX_INCLUDE_DEPTH: usize = 16;
/// OpenSSH's `SSH_MAX_IDENTITY_FILES`.
const MAX_IDENTITY_FILES: usize = 100;
/// OpenSSH's `SSH_MAX_HOSTS_FILES`.
const MAX_HOSTS_FILES: usize = 32;

/// The config files to read, in order.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    /// The user's file, and whether it must exist (`-F`).
    pub(crate) user: Option<(PathBuf, bool)>,
    /// The system file, read if it exists.
    pub(crate) system: Option<PathBuf>,
}

/// [`resolve`] with every outside input explicit: the files, the local user and the
/// environment (`${VAR}`).
pub(crate) fn resolve_with(
    dest: &Destination,
    sources: &Sources,
    home: &Path,
    local_user: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ResolvedHost, SshConfigError> {
    let mut resolver = Resolver {
        host_arg: &dest.host,
        match_host: dest.host.clone(),
        home,
        local_user,
        env,
        final_pass: false,
        want_final_pass: false,
        opts: Options {
            user: dest.user.clone(),
            port: dest.port,
            ..Options::default()
        },
    };
    resolver.read_sources(sources)?;

    // ssh.c: take HostName into use, lowercase it, and re-read for `Match final`.
    let hostname = match &resolver.opts.hostname {
        Some(v) => percent_expand(&v.text, &[('h', &dest.host)])
            .map_err(|m| v.origin.error(format!("HostName \"{}\": {m}", v.text)))?,
        None => dest.host.clone(),
    }
    .to_ascii_lowercase();
    if resolver.opts.canonicalize_hostname == Some(true) {
        resolver.want_final_pass = true;
    }
    if resolver.want_final_pass {
        tracing::debug!("ssh config: re-reading for the final pass, host {hostname}");
        resolver.final_pass = true;
        resolver.match_host.clone_from(&hostname);
        resolver.opts.hostname = Some(Value {
            text: hostname.clone(),
            origin: Origin::default(),
        });
        resolver.read_sources(sources)?;
    }
    resolver.finish(hostname)
}

/// Where a value was read, for error messages.
#[derive(Clone, Debug, Default)]
struct Origin {
    path: PathBuf,
    line: usize,
}

impl Origin {
    fn error(&self, message: String) -> SshConfigError {
        SshConfigError::Syntax {
            path: self.path.clone(),
            line: self.line,
            message,
        }
    }
}

/// A value as written, with where it was read.
#[derive(Clone, Debug)]
struct Value {
    text: String,
    origin: Origin,
}

/// The options read so far; `None`/empty means "not set yet" (first value wins).
#[derive(Debug, Default)]
struct Options {
    hostname: Option<Value>,
    port: Option<u16>,
    user: Option<String>,
    /// With whether each came from a user file (OpenSSH's duplicate check compares both).
    identity_files: Vec<(Value, bool)>,
    identities_only: Option<bool>,
    /// As written (comment stripped), or `none`.
    proxy_jump: Option<String>,
    /// As written, or `none` (also set to `none` by an applied `ProxyJump`).
    proxy_command: Option<Value>,
    user_known_hosts: Vec<Value>,
    global_known_hosts: Vec<Value>,
    strict_host_key_checking: Option<&'static str>,
    host_key_alias: Option<String>,
    /// Seconds.
    connect_timeout: Option<u64>,
    /// Whether `CanonicalizeHostname` is other than `no`.
    canonicalize_hostname: Option<bool>,
    tag: Option<String>,
}

/// How a file is read (OpenSSH's `SSHCONF_*` flags).
#[derive(Clone, Copy, Debug)]
struct Flags {
    /// A user file (relative `Include`s under `~/.ssh`, `~` allowed in them).
    user_conf: bool,
    /// Refuse the file if group or others may write it.
    check_perm: bool,
    /// Included from a block that does not apply: nothing in it applies.
    never_match: bool,
}

/// The reading state of one resolution (OpenSSH's `Options` plus the pass).
struct Resolver<'a> {
    /// The host as written (`%n`, `Match originalhost`, `%h` in `HostName`).
    host_arg: &'a str,
    /// What `Host` patterns match: the host as written, then the final host name.
    match_host: String,
    home: &'a Path,
    local_user: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The second pass (`Match final` and `canonical` hold).
    final_pass: bool,
    /// Whether a second pass is needed.
    want_final_pass: bool,
    opts: Options,
}

impl Resolver<'_> {
    /// Reads the user file (if any) then the system file (if any), each starting active.
    fn read_sources(&mut self, sources: &Sources) -> Result<(), SshConfigError> {
        if let Some((path, required)) = &sources.user {
            let flags = Flags {
                user_conf: true,
                check_perm: !required,
                never_match: false,
            };
            let found = self.read_file(path, flags, &mut true, 0)?;
            if !found && *required {
                return Err(SshConfigError::Read {
                    path: path.clone(),
                    source: io::Error::from(io::ErrorKind::NotFound),
                });
            }
        }
        if let Some(path) = &sources.system {
            let flags = Flags {
                user_conf: false,
                check_perm: false,
                never_match: false,
            };
            self.read_file(path, flags, &mut true, 0)?;
        }
        Ok(())
    }

    /// Reads one file; `Ok(false)` if it does not exist.
    fn read_file(
        &mut self,
        path: &Path,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<bool, SshConfigError> {
        let read_err = |source| SshConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(read_err(e)),
        };
        if meta.is_dir() {
            // fopen() succeeds on a directory and reading it yields no line.
            tracing::debug!(
                "ssh config: {} is a directory, nothing read",
                path.display()
            );
            return Ok(true);
        }
        #[cfg(unix)]
        if flags.check_perm
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o022 != 0
        {
            return Err(SshConfigError::Permissions {
                path: path.to_path_buf(),
            });
        }
        let bytes = fs::read(path).map_err(read_err)?;
        tracing::debug!("ssh config: reading {}", path.display());
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let origin = Origin {
                path: path.to_path_buf(),
                line: index + 1,
            };
            self.process_line(&String::from_utf8_lossy(raw), &origin, flags, active, depth)?;
        }
        Ok(true)
    }

    /// One line (OpenSSH's `process_config_line_depth`).
    fn process_line(
        &mut self,
        line: &str,
        origin: &Origin,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<(), SshConfigError> {
        let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
        if line.is_empty() {
            return Ok(());
        }
        let Some((mut keyword, mut rest)) = strdelim(line) else {
            return Ok(());
        };
        if keyword.is_empty() {
            let Some(next) = rest.and_then(strdelim) else {
                return Ok(());
            };
            (keyword, rest) = next;
        }
        if keyword.is_empty() || keyword.starts_with('#') {
            return Ok(());
        }
        let keyword = keyword.to_ascii_lowercase();
        let rest = rest.map_or("", |r| r.trim_start_matches(WHITESPACE));
        if rest.is_empty() {
            return Err(origin.error(format!("no argument after keyword \"{keyword}\"")));
        }
        let args = argv_split(rest).ok_or_else(|| origin.error("invalid quotes".to_owned()))?;
        let mut args = Args {
            keyword: &keyword,
            words: &args,
            next: 0,
            origin,
        };
        let act = *active;
        match keyword.as_str() {
            "host" => {
                self.host_line(&mut args, flags, active)?;
                return Ok(());
            }
            "match" => {
                let matched = self.match_line(&mut args)?;
                *active = !flags.never_match && matched;
                return Ok(());
            }
            "include" => {
                self.include_line(&mut args, flags, active, depth)?;
                return Ok(());
            }
            "hostname" => {
                let text = args.string()?;
                if act && self.opts.hostname.is_none() {
                    self.opts.hostname = Some(Value {
                        text,
                        origin: origin.clone(),
                    });
                }
            }
            "port" => {
                let arg = args.string()?;
                let port =
                    parse_port(&arg).map_err(|_| origin.error(format!("bad port '{arg}'")))?;
                set_first(act, &mut self.opts.port, port);
            }
            "user" => {
                let user = args.string()?;
                set_first(act, &mut self.opts.user, user);
            }
            "hostkeyalias" => {
                let alias = args.string()?.to_ascii_lowercase();
                set_first(act, &mut self.opts.host_key_alias, alias);
            }
            "tag" => {
                let tag = args.string()?;
                set_first(act, &mut self.opts.tag, tag);
            }
            "identityfile" => {
                let text = args.string()?;
                if act {
                    if self.opts.identity_files.len() >= MAX_IDENTITY_FILES {
                        return Err(origin.error(format!(
                            "too many identity files (max {MAX_IDENTITY_FILES})"
                        )));
                    }
                    let duplicate = self
                        .opts
                        .identity_files
                        .iter()
                        .any(|(v, user)| *user == flags.user_conf && v.text == text);
                    if !duplicate {
                        self.opts.identity_files.push((
                            Value {
                                text,
                                origin: origin.clone(),
                            },
                            flags.user_conf,
                        ));
                    }
                }
            }
            "identitiesonly" => {
                let value = args.flag()?;
                set_first(act, &mut self.opts.identities_only, value);
            }
            "stricthostkeychecking" => {
                let arg = args.string()?;
                let value = match arg.to_ascii_lowercase().as_str() {
                    "yes" | "true" => "yes",
                    "no" | "false" | "off" => "no",
                    "ask" => "ask",
                    "accept-new" => "accept-new",
                    _ => {
                        return Err(origin.error(format!(
                            "unsupported value \"{arg}\" for StrictHostKeyChecking (yes, no, ask, \
                             accept-new)"
                        )));
                    }
                };
                set_first(act, &mut self.opts.strict_host_key_checking, value);
            }
            "canonicalizehostname" => {
                let arg = args.string()?;
                let value = match arg.to_ascii_lowercase().as_str() {
                    "yes" | "true" | "always" => true,
                    "no" | "false" => false,
                    _ => {
                        return Err(origin.error(format!(
                            "unsupported value \"{arg}\" for CanonicalizeHostname"
                        )));
                    }
                };
                set_first(act, &mut self.opts.canonicalize_hostname, value);
            }
            "connecttimeout" => {
                let arg = args.string()?;
                if arg != "none" {
                    let secs = convtime(&arg)
                        .ok_or_else(|| origin.error(format!("invalid time value '{arg}'")))?;
                    set_first(act, &mut self.opts.connect_timeout, secs);
                }
            }
            "userknownhostsfile" | "globalknownhostsfile" => {
                let list = if keyword == "userknownhostsfile" {
                    &mut self.opts.user_known_hosts
                } else {
                    &mut self.opts.global_known_hosts
                };
                let was_empty = list.is_empty();
                let values = args.rest();
                for (i, text) in values.iter().enumerate() {
                    if text.is_empty() {
                        return Err(
                            origin.error(format!("keyword {keyword} has an empty argument"))
                        );
                    }
                    if text.eq_ignore_ascii_case("none") && (i > 0 || values.len() > 1) {
                        return Err(
                            origin.error(format!("keyword {keyword}: \"none\" must appear alone"))
                        );
                    }
                    if act && was_empty {
                        if list.len() >= MAX_HOSTS_FILES {
                            return Err(origin.error(format!("too many {keyword} entries")));
                        }
                        list.push(Value {
                            text: text.clone(),
                            origin: origin.clone(),
                        });
                    }
                }
            }
            "proxycommand" => {
                let command = raw_value(rest);
                args.consume();
                if act && self.opts.proxy_jump.is_none() && self.opts.proxy_command.is_none() {
                    self.opts.proxy_command = Some(Value {
                        text: command.to_owned(),
                        origin: origin.clone(),
                    });
                }
            }
            "proxyjump" => {
                self.proxy_jump_line(raw_value(rest), origin, act)?;
                args.consume();
            }
            _ => return Ok(()),
        }
        args.no_more()
    }

    /// `Host pattern...`: active if one pattern matches and no negated one does.
    fn host_line(
        &self,
        args: &mut Args<'_>,
        flags: Flags,
        active: &mut bool,
    ) -> Result<(), SshConfigError> {
        *active = false;
        let mut matched = None;
        while let Some(arg) = args.next() {
            if arg.is_empty() {
                return Err(args
                    .origin
                    .error("keyword host has an empty argument".to_owned()));
            }
            if flags.never_match {
                break;
            }
            let (negated, pattern) = match arg.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, arg),
            };
            if match_pattern(&self.match_host, pattern) {
                if negated {
                    tracing::debug!(
                        "{}:{}: Host block skipped: negated match for {pattern}",
                        args.origin.path.display(),
                        args.origin.line
                    );
                    *active = false;
                    break;
                }
                *active = true;
                matched.get_or_insert(pattern);
            }
        }
        if let Some(pattern) = matched.filter(|_| *active) {
            tracing::debug!(
                "{}:{}: applying options for {pattern}",
                args.origin.path.display(),
                args.origin.line
            );
        }
        Ok(())
    }

    /// `Match criteria...` (OpenSSH's `match_cfg_line`): whether the block applies.
    fn match_line(&mut self, args: &mut Args<'_>) -> Result<bool, SshConfigError> {
        let origin = args.origin;
        let host = if self.final_pass {
            self.opts
                .hostname
                .as_ref()
                .map_or_else(|| self.host_arg.to_owned(), |v| v.text.clone())
        } else if let Some(v) = &self.opts.hostname {
            percent_expand(&v.text, &[('h', self.host_arg)])
                .map_err(|m| v.origin.error(format!("HostName \"{}\": {m}", v.text)))?
        } else {
            self.host_arg.to_owned()
        };
        let remote_user = self
            .opts
            .user
            .as_deref()
            .unwrap_or(self.local_user)
            .to_owned();
        let mut result = true;
        let mut attributes = 0;
        while let Some(attribute) = args.next() {
            if attribute.starts_with('#') {
                args.consume();
                break;
            }
            let (negate, name) = match attribute.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, attribute),
            };
            let name = name.to_ascii_lowercase();
            if name == "all" {
                if attributes > 1
                    || args
                        .peek()
                        .is_some_and(|a| !a.is_empty() && !a.starts_with('#'))
                {
                    return Err(origin.error(format!(
                        "Match '{attribute}' cannot be combined with other Match criteria"
                    )));
                }
                args.consume();
                return Ok(result && !negate);
            }
            attributes += 1;
            if name == "canonical" || name == "final" {
                if name == "final" {
                    // OpenSSH 9.2 asks for the final pass even for "!final".
                    self.want_final_pass = true;
                }
                if self.final_pass == negate {
                    result = false;
                }
                continue;
            }
            let Some(arg) = args.next().filter(|a| !a.is_empty() && !a.starts_with('#')) else {
                return Err(origin.error(format!("missing argument for Match {attribute}")));
            };
            let matched = match name.as_str() {
                "host" => match_pattern_list(&host, arg, true) == PatternMatch::Positive,
                "originalhost" => {
                    match_pattern_list(self.host_arg, arg, true) == PatternMatch::Positive
                }
                "user" => match_pattern_list(&remote_user, arg, false) == PatternMatch::Positive,
                "localuser" => {
                    match_pattern_list(self.local_user, arg, false) == PatternMatch::Positive
                }
                "tagged" => {
                    let tag = self.opts.tag.as_deref().unwrap_or("");
                    match_pattern_list(tag, arg, false) == PatternMatch::Positive
                }
                "exec" | "localnetwork" | "version" | "sessiontype" | "command" => {
                    tracing::debug!(
                        "{}:{}: Match {name} is not evaluated by aws-hop: block skipped",
                        origin.path.display(),
                        origin.line
                    );
                    result = false;
                    continue;
                }
                _ => {
                    return Err(origin.error(format!("unsupported Match criterion '{attribute}'")));
                }
            };
            if matched == negate {
                result = false;
            }
        }
        if attributes == 0 {
            return Err(origin.error("Match needs at least one criterion".to_owned()));
        }
        Ok(result)
    }

    /// `Include glob...`: reads each matching file, sorted, sharing the active state.
    fn include_line(
        &mut self,
        args: &mut Args<'_>,
        flags: Flags,
        active: &mut bool,
        depth: usize,
    ) -> Result<(), SshConfigError> {
        let origin = args.origin;
        while let Some(arg) = args.next() {
            if arg.is_empty() {
                return Err(origin.error("keyword include has an empty argument".to_owned()));
            }
            if arg.starts_with('~') && !flags.user_conf {
                return Err(origin.error(format!(
                    "bad include path {arg}: '~' is not allowed in the system config"
                )));
            }
            let pattern = if arg.starts_with('/') || arg.starts_with('~') {
                arg.to_owned()
            } else if flags.user_conf {
                format!("~/.ssh/{arg}")
            } else {
                format!("{SYSTEM_DIR}/{arg}")
            };
            let pattern = match pattern.strip_prefix('~') {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    format!("{}{rest}", self.home.display())
                }
                _ => pattern,
            };
            let files = glob(&pattern);
            if files.is_empty() {
                tracing::debug!(
                    "{}:{}: include {pattern} matched no files",
                    origin.path.display(),
                    origin.line
                );
                continue;
            }
            if depth + 1 > MAX_INCLUDE_DEPTH {
                return Err(origin.error(format!(
                    "too many nested Includes (more than {MAX_INCLUDE_DEPTH}): does a file include \
                     itself?"
                )));
            }
            let outer = *active;
            for file in files {
                let inner = Flags {
                    user_conf: flags.user_conf,
                    check_perm: true,
                    never_match: flags.never_match || !outer,
                };
                self.read_file(&file, inner, active, depth + 1)?;
                // A Match in an included file does not change the including file's state.
                *active = outer;
            }
        }
        Ok(())
    }

    /// `ProxyJump hop[,hop...]` or `none`, checking every hop's syntax.
    fn proxy_jump_line(
        &mut self,
        value: &str,
        origin: &Origin,
        act: bool,
    ) -> Result<(), SshConfigError> {
        let active = act && self.opts.proxy_command.is_none() && self.opts.proxy_jump.is_none();
        let stripped = value.split('#').next().unwrap_or("").trim_end();
        if !value.eq_ignore_ascii_case("none") {
            for hop in stripped.split(',') {
                parse_destination(hop.trim())
                    .map_err(|e| origin.error(format!("invalid ProxyJump \"{value}\": {e}")))?;
            }
        }
        if active {
            if value.eq_ignore_ascii_case("none") {
                self.opts.proxy_jump = Some("none".to_owned());
            } else {
                self.opts.proxy_jump = Some(stripped.to_owned());
                self.opts.proxy_command = Some(Value {
                    text: "none".to_owned(),
                    origin: origin.clone(),
                });
            }
        }
        Ok(())
    }

    /// Fills defaults and expands paths and commands (what `ssh.c` does after reading).
    fn finish(self, hostname: String) -> Result<ResolvedHost, SshConfigError> {
        let opts = self.opts;
        let port = opts.port.unwrap_or(22);
        let user = opts.user.unwrap_or_else(|| self.local_user.to_owned());
        let proxy_jump: Vec<String> = match opts.proxy_jump.as_deref() {
            None => Vec::new(),
            Some(s) if s.eq_ignore_ascii_case("none") => Vec::new(),
            Some(s) => s.split(',').map(|h| h.trim().to_owned()).collect(),
        };
        let port_text = port.to_string();
        let jump_text = proxy_jump.join(",");
        let key_alias = opts.host_key_alias.as_deref().unwrap_or(self.host_arg);
        let home = self.home.display().to_string();
        let tokens: [(char, &str); 8] = [
            ('d', &home),
            ('h', &hostname),
            ('j', &jump_text),
            ('k', key_alias),
            ('n', self.host_arg),
            ('p', &port_text),
            ('r', &user),
            ('u', self.local_user),
        ];
        let expand = |keyword: &str, v: &Value| -> Result<PathBuf, SshConfigError> {
            expand_path(&v.text, self.home, &tokens, self.env)
                .map_err(|m| v.origin.error(format!("{keyword} \"{}\": {m}", v.text)))
        };
        let identity_files = opts
            .identity_files
            .iter()
            .map(|(v, _)| expand("IdentityFile", v))
            .collect::<Result<Vec<_>, _>>()?;
        let known_hosts = |keyword: &str, list: &[Value], full: bool| {
            list.iter()
                .map(|v| {
                    if v.text.eq_ignore_ascii_case("none") {
                        Ok(PathBuf::from("/dev/null"))
                    } else if full {
                        expand(keyword, v)
                    } else {
                        tilde_expand(&v.text, self.home)
                            .map_err(|m| v.origin.error(format!("{keyword} \"{}\": {m}", v.text)))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let user_known_hosts_files =
            known_hosts("UserKnownHostsFile", &opts.user_known_hosts, true)?;
        let global_known_hosts_files =
            known_hosts("GlobalKnownHostsFile", &opts.global_known_hosts, false)?;
        let proxy_command = match &opts.proxy_command {
            Some(v) if !v.text.eq_ignore_ascii_case("none") => {
                let command_alias = opts.host_key_alias.as_deref().unwrap_or(self.host_arg);
                Some(
                    percent_expand(
                        &v.text,
                        &[
                            ('h', &hostname),
                            ('k', command_alias),
                            ('n', self.host_arg),
                            ('p', &port_text),
                            ('r', &user),
                        ],
                    )
                    .map_err(|m| v.origin.error(format!("ProxyCommand \"{}\": {m}", v.text)))?,
                )
            }
            _ => None,
        };
        Ok(ResolvedHost {
            alias: self.host_arg.to_owned(),
            hostname,
            port,
            user,
            identity_files,
            identities_only: opts.identities_only.unwrap_or(false),
            proxy_jump,
            proxy_command,
            user_known_hosts_files,
            global_known_hosts_files,
            strict_host_key_checking: opts.strict_host_key_checking.map(str::to_owned),
            host_key_alias: opts.host_key_alias,
            connect_timeout: opts
                .connect_timeout
                .filter(|&s| s > 0)
                .map(Duration::from_secs),
        })
    }
}

/// Sets `slot` to `value` if the line applies and nothing was set before (first value wins).
fn set_first<T>(active: bool, slot: &mut Option<T>, value: T) {
    if active && slot.is_none() {
        *slot = Some(value);
    }
}

/// The arguments of one line, consumed by the keyword's handler.
struct Args<'a> {
    keyword: &'a str,
    words: &'a [String],
    next: usize,
    origin: &'a Origin,
}

impl<'a> Args<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let arg = self.words.get(self.next)?;
        self.next += 1;
        Some(arg)
    }

    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.next).map(String::as_str)
    }

    /// The remaining arguments, consumed.
    fn rest(&mut self) -> &'a [String] {
        let rest = &self.words[self.next.min(self.words.len())..];
        self.consume();
        rest
    }

    fn consume(&mut self) {
        self.next = self.words.len();
    }

    /// One non-empty argument.
    fn string(&mut self) -> Result<String, SshConfigError> {
        match self.next() {
            Some(arg) if !arg.is_empty() => Ok(arg.to_owned()),
            _ => Err(self
                .origin
                .error(format!("missing argument for keyword {}", self.keyword))),
        }
    }

    /// `yes`/`true` or `no`/`false`.
    fn flag(&mut self) -> Result<bool, SshConfigError> {
        let arg = self.string()?;
        match arg.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(true),
            "no" | "false" => Ok(false),
            _ => Err(self.origin.error(format!(
                "unsupported value \"{arg}\" for keyword {} (yes or no)",
                self.keyword
            ))),
        }
    }

    /// OpenSSH's "garbage at end of line" check.
    fn no_more(&self) -> Result<(), SshConfigError> {
        if self.next < self.words.len() {
            return Err(self.origin.error(format!(
                "keyword {} has extra arguments at end of line",
                self.keyword
            )));
        }
        Ok(())
    }
}

/// OpenSSH's `WHITESPACE`.
const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// The raw value of `ProxyCommand`/`ProxyJump`: the rest of the line after blanks and `=`.
fn raw_value(rest: &str) -> &str {
    rest.trim_start_matches([' ', '\t', '\r', '\n', '='])
}

/// OpenSSH's `strdelim`: the next word, ended by whitespace, one `=`, or a double-quoted part.
///
/// Returns the word and what follows (leading blanks, and one `=` after them, skipped), `None` as
/// the rest if the line ended, or `None` overall for an unterminated quote.
fn strdelim(s: &str) -> Option<(String, Option<&str>)> {
    let Some(i) = s.find([' ', '\t', '\r', '\n', '"', '=']) else {
        return Some((s.to_owned(), None));
    };
    if s[i..].starts_with('"') {
        let after = &s[i + 1..];
        let close = after.find('"')?;
        let word = format!("{}{}", &s[..i], &after[..close]);
        let rest = after[close + 1..].trim_start_matches(WHITESPACE);
        return Some((word, Some(rest)));
    }
    let was_equals = s[i..].starts_with('=');
    let mut rest = s[i + 1..].trim_start_matches(WHITESPACE);
    if !was_equals && let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start_matches(WHITESPACE);
    }
    Some((s[..i].to_owned(), Some(rest)))
}

/// OpenSSH's `argv_split` (with comments): blank-separated words, `"` and `'` quoting, `\`
/// escaping a quote, a backslash or (outside quotes) a space; a word starting with `#` ends the
/// line. `None` for an unterminated quote.
fn argv_split(s: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == ' ' || chars[i] == '\t' {
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            if c == '\\' {
                match chars.get(i + 1) {
                    Some(&n)
                        if n == '\'' || n == '"' || n == '\\' || (quote.is_none() && n == ' ') =>
                    {
                        word.push(n);
                        i += 1;
                    }
                    _ => word.push(c),
                }
            } else if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            } else if quote.is_none() && (c == '"' || c == '\'') {
                quote = Some(c);
            } else if quote == Some(c) {
                quote = None;
            } else {
                word.push(c);
            }
            i += 1;
        }
        if quote.is_some() {
            return None;
        }
        words.push(word);
    }
    Some(words)
}

/// OpenSSH's `a2port` (numbers only): 1 to 65535.
fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{s}' is not a number"));
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {s} is out of range (1-65535)")),
        Ok(port) => Ok(port),
    }
}

/// OpenSSH's `convtime`: `90`, `90s`, `1m30s`, `2h`, `1d`, `1w`... in seconds.
fn convtime(s: &str) -> Option<u64> {
    const MAX: u64 = i32::MAX as u64;
    if s.is_empty() {
        return None;
    }
    let bytes = s.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let number: u64 = s[start..i].parse().ok()?;
        let multiplier = match bytes.get(i) {
            None => 1,
            Some(unit) => {
                i += 1;
                match unit.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86_400,
                    b'w' => 604_800,
                    _ => return None,
                }
            }
        };
        let secs = number.checked_mul(multiplier).filter(|&v| v <= MAX)?;
        total = total.checked_add(secs).filter(|&v| v <= MAX)?;
    }
    Some(total)
}

/// `user@host:port` as OpenSSH's `parse_user_host_port` (user ends at the last `@`).
fn parse_user_host_port(s: &str) -> Result<Destination, String> {
    let (user, rest) = match s.rsplit_once('@') {
        Some(("", _)) => return Err("empty user".to_owned()),
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, s),
    };
    let (host, port, _) = split_host_port(rest)?;
    let port = port.filter(|p| !p.is_empty()).map(parse_port).transpose()?;
    check_name("user", user.as_deref())?;
    Ok(Destination { user, host, port })
}

/// `ssh://[user[;params]@]host[:port][/]` as OpenSSH's `parse_ssh_uri`.
fn parse_ssh_uri(uri: &str) -> Result<Destination, String> {
    let (user, rest) = match uri.split_once('@') {
        Some((userinfo, rest)) => {
            let user = userinfo.split(';').next().unwrap_or("");
            if user.is_empty() {
                return Err("empty user".to_owned());
            }
            (Some(url_decode(user)?), rest)
        }
        None => (None, uri),
    };
    let (host, tail, delimiter) = split_host_port(rest)?;
    let mut port = None;
    if let Some(tail) = tail.filter(|t| !t.is_empty()) {
        if delimiter == Some('/') {
            return Err("a path is not allowed in an ssh:// destination".to_owned());
        }
        let (port_text, path) = match tail.split_once('/') {
            Some((p, path)) => (p, Some(path)),
            None => (tail, None),
        };
        port = Some(parse_port(port_text)?);
        if path.is_some() {
            return Err("a path is not allowed in an ssh:// destination".to_owned());
        }
    }
    check_name("user", user.as_deref())?;
    Ok(Destination { user, host, port })
}

/// OpenSSH's `hpdelim2` + `cleanhostname`: the host (brackets removed), what follows the `:` or
/// `/` after it, and which delimiter that was.
fn split_host_port(s: &str) -> Result<(String, Option<&str>, Option<char>), String> {
    let (host, tail, delimiter) = if let Some(inner) = s.strip_prefix('[') {
        let close = inner.find(']').ok_or("unclosed '[' around the host")?;
        let after = &inner[close + 1..];
        let delimiter = after.chars().next();
        match delimiter {
            None => (&inner[..close], None, None),
            Some(d @ (':' | '/')) => (&inner[..close], Some(&after[1..]), Some(d)),
            Some(_) => return Err(format!("unexpected '{after}' after ']'")),
        }
    } else {
        match s.find([':', '/']) {
            None => (s, None, None),
            Some(i) => (&s[..i], Some(&s[i + 1..]), s[i..].chars().next()),
        }
    };
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    if !s.starts_with('[') && delimiter == Some(':') && tail.is_some_and(|t| t.contains(':')) {
        return Err(format!(
            "an IPv6 address needs brackets, e.g. '[{s}]' or '[{s}]:22'"
        ));
    }
    check_name("host", Some(host))?;
    Ok((host.to_owned(), tail, delimiter))
}

/// Refuses blanks and control characters in a user or host name, as `ssh` does.
fn check_name(what: &str, name: Option<&str>) -> Result<(), String> {
    if name.is_some_and(|n| n.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(format!("{what} contains blanks or control characters"));
    }
    Ok(())
}

/// OpenSSH's `urldecode`: `%XX` and `+` (a space).
fn url_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|&b| b != 0)
                    .ok_or_else(|| format!("bad %-escape in user '{s}'"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("user '{s}' does not decode to UTF-8"))
}

/// `%` tokens with a value here, and ones OpenSSH knows that aws-hop does not compute.
const UNSUPPORTED_TOKENS: &[char] = &['C', 'L', 'l', 'i', 'T'];

/// Looks an environment variable up (`${VAR}`); injectable for tests.
type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// OpenSSH's `percent_expand`: `%%` and the given tokens; any other `%x` is an error.
fn percent_expand(s: &str, tokens: &[(char, &str)]) -> Result<String, String> {
    expand(s, tokens, None)
}

/// `percent_expand` and, with `env`, `${VAR}` (OpenSSH's `percent_dollar_expand`).
fn expand(s: &str, tokens: &[(char, &str)], env: Option<EnvLookup<'_>>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => out.push('%'),
                Some(t) => match tokens.iter().find(|(k, _)| *k == t) {
                    Some((_, value)) => out.push_str(value),
                    None if UNSUPPORTED_TOKENS.contains(&t) => {
                        return Err(format!("the %{t} token is not supported by aws-hop"));
                    }
                    None => return Err(format!("unknown token %{t}")),
                },
                None => return Err("'%' at the end".to_owned()),
            },
            '$' if env.is_some() && chars.peek() == Some(&'{') => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(n) if n.is_ascii_alphanumeric() || n == '_' => name.push(n),
                        _ => return Err("unterminated or invalid ${...}".to_owned()),
                    }
                }
                let lookup = env.ok_or("no environment")?;
                let value = lookup(&name)
                    .ok_or_else(|| format!("environment variable {name} is not set"))?;
                out.push_str(&value);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// OpenSSH's `tilde_expand_filename` for the user's own home: `~` and `~/x`.
pub(crate) fn tilde_expand(s: &str, home: &Path) -> Result<PathBuf, String> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(PathBuf::from(s));
    };
    match rest.split_once('/') {
        Some((user, _)) if !user.is_empty() => Err(format!(
            "'~{user}/' (another user's home) is not supported by aws-hop"
        )),
        Some((_, path)) => Ok(home.join(path)),
        // OpenSSH reads "~name" without a slash as "~/name".
        None => Ok(home.join(rest)),
    }
}

/// `~` then `${VAR}` and `%` tokens, as `ssh` expands `IdentityFile` and `UserKnownHostsFile`.
fn expand_path(
    s: &str,
    home: &Path,
    tokens: &[(char, &str)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, String> {
    let tilde = tilde_expand(s, home)?;
    let text = tilde.to_str().ok_or("the path is not UTF-8")?;
    expand(text, tokens, Some(env)).map(PathBuf::from)
}

/// glob(3) as `Include` uses it: `*`, `?`, `[...]` and `\` escapes per path component, no match
/// for a leading `.` unless written, results sorted; existing paths only.
fn glob(pattern: &str) -> Vec<PathBuf> {
    let absolute = pattern.starts_with('/');
    let mut paths = vec![if absolute {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    let components: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    for component in components {
        let mut next = Vec::new();
        for base in &paths {
            if has_magic(component) {
                let Ok(entries) = fs::read_dir(base) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| fnmatch(component, name))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|name| base.join(name)));
            } else {
                next.push(base.join(unescape(component)));
            }
        }
        paths = next;
    }
    paths.retain(|p| fs::symlink_metadata(p).is_ok());
    if !absolute {
        paths = paths
            .into_iter()
            .map(|p| p.strip_prefix(".").map(Path::to_path_buf).unwrap_or(p))
            .collect();
    }
    paths
}

/// Whether a glob component has wildcards.
fn has_magic(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// A glob component without wildcards, its `\` escapes removed.
fn unescape(component: &str) -> String {
    let mut out = String::new();
    let mut chars = component.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// fnmatch(3) with `FNM_PERIOD` semantics for one file name.
fn fnmatch(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fnmatch_at(&p, &n)
}

fn fnmatch_at(p: &[char], n: &[char]) -> bool {
    let Some((&first, rest)) = p.split_first() else {
        return n.is_empty();
    };
    match first {
        '*' => (0..=n.len()).any(|skip| fnmatch_at(rest, &n[skip..])),
        '?' => !n.is_empty() && fnmatch_at(rest, &n[1..]),
        '[' => {
            let Some((&c, n_rest)) = n.split_first() else {
                return false;
            };
            match bracket(rest, c) {
                Some((true, after)) => fnmatch_at(after, n_rest),
                Some((false, _)) => false,
                // No closing ']': the '[' is literal.
                None => c == '[' && fnmatch_at(rest, n_rest),
            }
        }
        '\\' if !rest.is_empty() => {
            !n.is_empty() && n[0] == rest[0] && fnmatch_at(&rest[1..], &n[1..])
        }
        c => !n.is_empty() && n[0] == c && fnmatch_at(rest, &n[1..]),
    }
}

/// A `[...]` class (after the `[`): whether `c` is in it, and the pattern after the `]`.
fn bracket(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('!' | '^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if lo <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if lo == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A temp home with `.ssh/`, where tests write config files.
    struct Home {
        dir: tempfile::TempDir,
    }

    impl Home {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            fs::create_dir_all(dir.path().join(".ssh")).expect("mkdir .ssh");
            Self { dir }
        }

        fn path(&self) -> &Path {
            self.dir.path()
        }

        /// Writes `content` at `rel` (under the home), mode 0600, returning the path.
        fn write(&self, rel: &str, content: &str) -> PathBuf {
            let path = self.dir.path().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("mkdir");
            }
            fs::write(&path, content).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
            }
            path
        }

        /// Resolves `dest` with `config` as the only file (like `ssh -F`), local user `me`.
        fn resolve(&self, dest: &str, config: &str) -> Result<ResolvedHost, SshConfigError> {
            let path = self.write("cfg", config);
            self.resolve_file(dest, &path)
        }

        fn resolve_file(&self, dest: &str, path: &Path) -> Result<ResolvedHost, SshConfigError> {
            let env: HashMap<&str, &str> = HashMap::from([("PROJECT", "proj")]);
            let lookup = move |name: &str| env.get(name).map(|v| (*v).to_owned());
            let sources = Sources {
                user: Some((path.to_path_buf(), true)),
                system: None,
            };
            resolve_with(
                &parse_destination(dest).expect("destination"),
                &sources,
                self.path(),
                "me",
                &lookup,
            )
        }

        fn ok(&self, dest: &str, config: &str) -> ResolvedHost {
            self.resolve(dest, config).expect("resolve")
        }
    }

    fn dest(user: Option<&str>, host: &str, port: Option<u16>) -> Destination {
        Destination {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        }
    }

    fn syntax_line(err: &SshConfigError) -> usize {
        match err {
            SshConfigError::Syntax { line, .. } => *line,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    // ---- destinations

    #[test]
    fn destinations() {
        let cases = [
            ("host", dest(None, "host", None)),
            ("user@host", dest(Some("user"), "host", None)),
            ("user@host:2222", dest(Some("user"), "host", Some(2222))),
            ("[::1]:2222", dest(None, "::1", Some(2222))),
            ("[::1]", dest(None, "::1", None)),
            ("user@[fe80::1]:22", dest(Some("user"), "fe80::1", Some(22))),
            ("me@corp@host:1", dest(Some("me@corp"), "host", Some(1))),
            ("host:", dest(None, "host", None)),
            (
                "i-0123456789abcdef0",
                dest(None, "i-0123456789abcdef0", None),
            ),
            ("ssh://host", dest(None, "host", None)),
            (
                "ssh://user@host:2200",
                dest(Some("user"), "host", Some(2200)),
            ),
            ("ssh://user;fp=x@host/", dest(Some("user"), "host", None)),
            (
                "ssh://me%40corp@[::1]:22",
                dest(Some("me@corp"), "::1", Some(22)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_destination(input).expect(input), expected, "{input}");
        }
    }

    #[test]
    fn destination_errors_name_the_problem() {
        let cases = [
            ("ec2-user@", "empty host in 'ec2-user@'"),
            ("", "empty host in ''"),
            ("@host", "empty user in '@host'"),
            ("host:abc", "port 'abc' is not a number in 'host:abc'"),
            ("host:0", "port 0 is out of range (1-65535) in 'host:0'"),
            (
                "host:70000",
                "port 70000 is out of range (1-65535) in 'host:70000'",
            ),
            ("[::1", "unclosed '[' around the host in '[::1'"),
            ("[::1]x", "unexpected 'x' after ']' in '[::1]x'"),
            (
                "fe80::1",
                "an IPv6 address needs brackets, e.g. '[fe80::1]' or '[fe80::1]:22' in 'fe80::1'",
            ),
            (
                "ssh://host/path",
                "a path is not allowed in an ssh:// destination in 'ssh://host/path'",
            ),
            (
                "ssh://host:22/x",
                "a path is not allowed in an ssh:// destination in 'ssh://host:22/x'",
            ),
            ("ssh://@host", "empty user in 'ssh://@host'"),
            (
                "a b@host",
                "user contains blanks or control characters in 'a b@host'",
            ),
        ];
        for (input, message) in cases {
            let err = parse_destination(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input}");
        }
    }

    #[test]
    fn destination_display_round_trips() {
        for input in [
            "host",
            "u@host:2222",
            "[::1]:22",
            "u@[fe80::1]",
            "me@corp@h",
        ] {
            let d = parse_destination(input).expect(input);
            assert_eq!(d.to_string(), input);
            assert_eq!(d.to_string().parse::<Destination>().expect("reparse"), d);
        }
    }

    // ---- resolution basics

    #[test]
    fn defaults_without_config() {
        let home = Home::new();
        let sources = Sources {
            user: Some((home.path().join(".ssh/config"), false)),
            system: None,
        };
        let r = resolve_with(
            &dest(None, "Box", None),
            &sources,
            home.path(),
            "me",
            &|_| None,
        )
        .expect("resolve");
        assert_eq!(
            r,
            ResolvedHost {
                alias: "Box".into(),
                hostname: "box".into(),
                port: 22,
                user: "me".into(),
                identity_files: vec![],
                identities_only: false,
                proxy_jump: vec![],
                proxy_command: None,
                user_known_hosts_files: vec![],
                global_known_hosts_files: vec![],
                strict_host_key_checking: None,
                host_key_alias: None,
                connect_timeout: None,
            }
        );
    }

    #[test]
    fn explicit_config_must_exist() {
        let home = Home::new();
        let err = home
            .resolve_file("h", &home.path().join("missing"))
            .expect_err("missing -F file");
        assert!(matches!(err, SshConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn first_value_wins() {
        let home = Home::new();
        let r = home.ok(
            "bastion",
            "Host bastion\n  HostName 10.0.0.1\n  User ec2-user\n  Port 2222\nHost *\n  User root\n  Port 22\n  HostName nope\n",
        );
        assert_eq!(
            (r.hostname.as_str(), r.user.as_str(), r.port),
            ("10.0.0.1", "ec2-user", 2222)
        );
        // Options before any Host line apply to every host, and win.
        let r = home.ok("bastion", "User first\nHost bastion\n  User second\n");
        assert_eq!(r.user, "first");
    }

    #[test]
    fn destination_values_beat_the_config() {
        let home = Home::new();
        let r = home.ok(
            "admin@bastion:2200",
            "Host bastion\n  User ec2-user\n  Port 2222\n",
        );
        assert_eq!((r.user.as_str(), r.port), ("admin", 2200));
    }

    #[test]
    fn hostname_expands_h_and_is_lowercased() {
        let home = Home::new();
        let r = home.ok("Web1", "Host Web1\n  HostName %h.Internal.Example\n");
        assert_eq!(r.hostname, "web1.internal.example");
        assert_eq!(r.alias, "Web1");
        let err = home
            .resolve("web1", "HostName %x.example\n")
            .expect_err("bad token");
        assert_eq!(syntax_line(&err), 1);
        assert!(err.to_string().contains("unknown token %x"), "{err}");
    }

    // ---- Host patterns

    #[test]
    fn host_patterns_wildcards_negation_and_lists() {
        let home = Home::new();
        let config = "Host *.prod !bastion.prod\n  User produser\nHost web?? db-*\n  Port 2022\nHost *\n  User other\n";
        assert_eq!(home.ok("api.prod", config).user, "produser");
        assert_eq!(home.ok("bastion.prod", config).user, "other");
        assert_eq!(home.ok("web01", config).port, 2022);
        assert_eq!(home.ok("web1", config).port, 22);
        assert_eq!(home.ok("db-main", config).port, 2022);
        // Negation wins wherever it stands in the list.
        let config = "Host !bastion.prod *.prod\n  User produser\n";
        assert_eq!(home.ok("bastion.prod", config).user, "me");
        // A block with only negated patterns never applies.
        assert_eq!(home.ok("x", "Host !y\n  User u\n").user, "me");
    }

    #[test]
    fn host_patterns_are_case_sensitive_against_the_alias() {
        // As `ssh -G`: "Host Foo" matches "Foo", not "foo".
        let home = Home::new();
        let config = "Host Foo\n  Port 1111\n";
        assert_eq!(home.ok("Foo", config).port, 1111);
        assert_eq!(home.ok("foo", config).port, 22);
    }

    #[test]
    fn host_patterns_match_the_alias_not_the_hostname() {
        let home = Home::new();
        let config = "Host alias\n  HostName real.example\nHost real.example\n  Port 2222\n";
        assert_eq!(home.ok("alias", config).port, 22);
    }

    // ---- Match

    #[test]
    fn match_all_host_originalhost_user_localuser() {
        let home = Home::new();
        let config = "\
Host alias
  HostName Real.Example
Match host real.example
  Port 1001
Match originalhost ALIAS user ec2-user
  IdentityFile ~/.ssh/ec2
Match localuser me,!root
  IdentitiesOnly yes
Match user admin
  Port 1002
Match all
  User ec2-user
";
        let r = home.ok("alias", config);
        assert_eq!(r.port, 1001);
        // "Match user" saw no user yet (the local one): the ec2 key is not added.
        assert!(r.identity_files.is_empty());
        assert!(r.identities_only);
        assert_eq!(r.user, "ec2-user");
        let r = home.ok("ec2-user@alias", config);
        assert_eq!(r.identity_files, vec![home.path().join(".ssh/ec2")]);
        let r = home.ok("admin@other", config);
        assert_eq!((r.port, r.user.as_str()), (1002, "admin"));
    }

    #[test]
    fn match_negation_and_conjunction() {
        let home = Home::new();
        let config = "Match !host *.internal user deploy\n  Port 2000\n";
        assert_eq!(home.ok("deploy@web.public", config).port, 2000);
        assert_eq!(home.ok("deploy@web.internal", config).port, 22);
        assert_eq!(home.ok("other@web.public", config).port, 22);
        assert_eq!(home.ok("x", "Match !all\n  Port 3\n").port, 22);
    }

    #[test]
    fn match_tagged() {
        let home = Home::new();
        let config = "Host x\n  Tag prod\nMatch tagged prod\n  Port 3000\nMatch !tagged prod\n  User untagged\n";
        assert_eq!(home.ok("x", config).port, 3000);
        assert_eq!(home.ok("x", config).user, "me");
        assert_eq!(home.ok("y", config).user, "untagged");
    }

    #[test]
    fn unevaluated_match_criteria_skip_the_block() {
        let home = Home::new();
        let config = "Match exec \"test -e /nonexistent\"\n  Port 1\nMatch !exec \"false\" host x\n  Port 2\nMatch localnetwork 10.0.0.0/8\n  Port 3\nHost *\n  Port 4\n";
        assert_eq!(home.ok("x", config).port, 4);
    }

    #[test]
    fn match_errors() {
        let home = Home::new();
        for (config, needle) in [
            ("Match\n", "no argument after keyword"),
            ("Match host\n", "missing argument for Match host"),
            ("Match bogus x\n", "unsupported Match criterion 'bogus'"),
            ("Match all host x\n", "cannot be combined"),
            ("\n\nMatch host x y\n", "missing argument for Match y"),
        ] {
            let err = home.resolve("x", config).expect_err(config);
            assert!(err.to_string().contains(needle), "{config:?}: {err}");
        }
        let err = home.resolve("x", "\n\nMatch host x y\n").expect_err("line");
        assert_eq!(syntax_line(&err), 3);
    }

    #[test]
    fn match_final_rereads_with_the_final_hostname() {
        // As `ssh -G` 9.2: the second pass matches Host patterns against the final name.
        let home = Home::new();
        let config = "\
Host alias
  HostName Real.Example
Match final
  User finaluser
Host real.example
  Port 2222
Match canonical
  IdentityFile ~/canon
";
        let r = home.ok("alias", config);
        assert_eq!((r.user.as_str(), r.port), ("finaluser", 2222));
        assert_eq!(r.identity_files, vec![home.path().join("canon")]);
        // Without "Match final" there is no second pass.
        let r = home.ok(
            "alias",
            "Host alias\n  HostName Real.Example\nHost real.example\n  Port 2222\n",
        );
        assert_eq!(r.port, 22);
        // CanonicalizeHostname asks for it too.
        let r = home.ok(
            "alias",
            "CanonicalizeHostname yes\nHost alias\n  HostName Real.Example\nHost real.example\n  Port 2222\n",
        );
        assert_eq!(r.port, 2222);
    }

    // ---- Include

    #[test]
    fn include_relative_to_dot_ssh_with_globs_in_order() {
        let home = Home::new();
        home.write(".ssh/conf.d/20-b.conf", "Host b\n  User from-b\n");
        home.write(
            ".ssh/conf.d/10-a.conf",
            "Host a b\n  User from-a\n  Port 1010\n",
        );
        home.write(".ssh/conf.d/.hidden.conf", "Host *\n  User hidden\n");
        home.write(".ssh/conf.d/notes.txt", "Host *\n  User txt\n");
        let config = "Include conf.d/*.conf\nHost *\n  User fallback\n";
        assert_eq!(home.ok("a", config).user, "from-a");
        assert_eq!(home.ok("b", config).user, "from-a");
        assert_eq!(home.ok("b", config).port, 1010);
        assert_eq!(home.ok("c", config).user, "fallback");
        // Absolute and ~ paths, and a pattern matching nothing.
        let abs = home.write("elsewhere/x.conf", "Host x\n  Port 7\n");
        let config = format!(
            "Include {} ~/.ssh/conf.d/20-b.conf nothing-*.conf\n",
            abs.display()
        );
        assert_eq!(home.ok("x", &config).port, 7);
        assert_eq!(home.ok("b", &config).user, "from-b");
    }

    #[test]
    fn include_in_an_inactive_block_applies_nothing() {
        let home = Home::new();
        home.write(".ssh/inc.conf", "User included\nHost *\n  Port 9\n");
        let config = "Host other\n  Include inc.conf\nHost *\n  User outer\n";
        let r = home.ok("x", config);
        assert_eq!((r.user.as_str(), r.port), ("outer", 22));
        // In an active block it applies, and its Host lines do not leak out.
        home.write(".ssh/inc2.conf", "User included\nHost nomatch\n");
        let config = "Host x\n  Include inc2.conf\n  Port 5\n";
        let r = home.ok("x", config);
        assert_eq!((r.user.as_str(), r.port), ("included", 5));
    }

    #[test]
    fn include_errors_carry_the_included_file_and_line() {
        let home = Home::new();
        let inc = home.write(".ssh/bad.conf", "# fine\nPort nope\n");
        let err = home
            .resolve("x", "Include bad.conf\n")
            .expect_err("bad include");
        match &err {
            SshConfigError::Syntax {
                path,
                line,
                message,
            } => {
                assert_eq!((path, *line), (&inc, 2));
                assert_eq!(message, "bad port 'nope'");
            }
            other => panic!("{other:?}"),
        }
        // An include loop stops with an error instead of recursing forever.
        home.write(".ssh/loop.conf", "Include loop.conf\n");
        let err = home.resolve("x", "Include loop.conf\n").expect_err("loop");
        assert!(
            err.to_string().contains("too many nested Includes"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn group_writable_included_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let home = Home::new();
        let inc = home.write(".ssh/open.conf", "Port 1\n");
        fs::set_permissions(&inc, fs::Permissions::from_mode(0o664)).expect("chmod");
        let err = home.resolve("x", "Include open.conf\n").expect_err("perms");
        assert!(
            matches!(&err, SshConfigError::Permissions { path } if *path == inc),
            "{err:?}"
        );
    }

    // ---- line syntax

    #[test]
    fn keyword_forms_quotes_and_comments() {
        let home = Home::new();
        let config = "\
# comment
   # indented comment
HOSTNAME=h1.example
port = 2201
  User\t\"ec2 user\"   # trailing comment
IdentityFile \"~/.ssh/my key\"
IdentityFile '~/.ssh/single quoted'
IdentityFile ~/.ssh/escaped\\ space
Identityfile=~/.ssh/eq
";
        let r = home.ok("x", config);
        assert_eq!(r.hostname, "h1.example");
        assert_eq!(r.port, 2201);
        assert_eq!(r.user, "ec2 user");
        assert_eq!(
            r.identity_files,
            vec![
                home.path().join(".ssh/my key"),
                home.path().join(".ssh/single quoted"),
                home.path().join(".ssh/escaped space"),
                home.path().join(".ssh/eq"),
            ]
        );
    }

    #[test]
    fn syntax_errors_carry_file_and_line() {
        let home = Home::new();
        for (config, line, needle) in [
            ("Port 22\nPort abc\n", 2, "bad port 'abc'"),
            (
                "Host x\n  Port 22 23\n",
                2,
                "keyword port has extra arguments",
            ),
            ("\n\nUser\n", 3, "no argument after keyword \"user\""),
            ("IdentityFile \"unterminated\n", 1, "invalid quotes"),
            ("StrictHostKeyChecking maybe\n", 1, "StrictHostKeyChecking"),
            ("IdentitiesOnly perhaps\n", 1, "yes or no"),
            ("ConnectTimeout 10x\n", 1, "invalid time value"),
            ("UserKnownHostsFile a none\n", 1, "must appear alone"),
            ("ProxyJump bad:host:x\n", 1, "invalid ProxyJump"),
            ("Host \"\"\n", 1, "empty argument"),
        ] {
            let err = home.resolve("x", config).expect_err(config);
            assert_eq!(syntax_line(&err), line, "{config:?}");
            assert!(err.to_string().contains(needle), "{config:?}: {err}");
            assert!(err.to_string().contains("cfg:"), "{err}");
        }
        // Checked even in a block that does not apply, as OpenSSH does.
        let err = home
            .resolve("x", "Host other\n  Port 0\n")
            .expect_err("inactive");
        assert_eq!(syntax_line(&err), 2);
    }

    #[test]
    fn unknown_keywords_are_ignored() {
        let home = Home::new();
        let r = home.ok(
            "x",
            "FutureOption whatever\nForwardAgent yes\nSendEnv LANG LC_*\nPort 23\n",
        );
        assert_eq!(r.port, 23);
    }

    // ---- option values

    #[test]
    fn identity_files_accumulate_expand_and_dedupe() {
        let home = Home::new();
        let config = "\
Host bastion
  HostName 10.1.2.3
  User ec2-user
  IdentityFile ~/.ssh/%h_%r_%u_%p_%n_%%
  IdentityFile %d/keys/${PROJECT}.pem
Host *
  IdentityFile ~/.ssh/%h_%r_%u_%p_%n_%%
  IdentityFile /abs/key
  IdentityFile ~
";
        let r = home.ok("bastion", config);
        let h = home.path();
        assert_eq!(
            r.identity_files,
            vec![
                h.join(".ssh/10.1.2.3_ec2-user_me_22_bastion_%"),
                h.join("keys/proj.pem"),
                PathBuf::from("/abs/key"),
                h.to_path_buf(),
            ]
        );
        let err = home.resolve("x", "IdentityFile ~/%C\n").expect_err("%C");
        assert!(
            err.to_string().contains("%C token is not supported"),
            "{err}"
        );
        let err = home
            .resolve("x", "IdentityFile ${NOPE}/k\n")
            .expect_err("env");
        assert!(err.to_string().contains("NOPE is not set"), "{err}");
        let err = home
            .resolve("x", "IdentityFile ~bob/k\n")
            .expect_err("~bob");
        assert!(err.to_string().contains("another user's home"), "{err}");
    }

    #[test]
    fn proxy_jump_and_proxy_command() {
        let home = Home::new();
        let r = home.ok("x", "ProxyJump jump1,ec2-user@jump2:2222 # two hops\n");
        assert_eq!(r.proxy_jump, vec!["jump1", "ec2-user@jump2:2222"]);
        assert_eq!(r.proxy_command, None);
        let r = home.ok("x", "Host x\n  ProxyJump none\nHost *\n  ProxyJump b\n");
        assert!(r.proxy_jump.is_empty());
        // ProxyJump then ProxyCommand: the jump wins; and the other way round.
        let r = home.ok("x", "ProxyJump j\nProxyCommand nc %h %p\n");
        assert_eq!((r.proxy_jump.len(), r.proxy_command), (1, None));
        let r = home.ok(
            "ec2-user@i-0abc",
            "Host i-*\n  ProxyCommand=sh -c \"aws ssm start-session --target %h --document-name AWS-StartSSHSession --parameters 'portNumber=%p'\" # %r\nProxyJump j\n",
        );
        assert!(r.proxy_jump.is_empty());
        assert_eq!(
            r.proxy_command.as_deref(),
            Some(
                "sh -c \"aws ssm start-session --target i-0abc --document-name AWS-StartSSHSession \
                 --parameters 'portNumber=22'\" # ec2-user"
            )
        );
        let r = home.ok("x", "ProxyCommand none\nProxyJump j\n");
        assert!(r.proxy_jump.is_empty() && r.proxy_command.is_none());
        // The syntax of every hop is checked, even in an inactive block.
        let err = home
            .resolve("x", "Host y\n  ProxyJump a,@b\n")
            .expect_err("bad hop");
        assert_eq!(syntax_line(&err), 2);
    }

    #[test]
    fn known_hosts_files_and_host_key_options() {
        let home = Home::new();
        let config = "\
Host x
  HostName 10.9.9.9
  HostKeyAlias MyBox
  UserKnownHostsFile ~/.ssh/kh_%k %d/kh2_%h
  GlobalKnownHostsFile /etc/kh ~/gkh
  StrictHostKeyChecking accept-new
  ConnectTimeout 1m30s
Host *
  UserKnownHostsFile /ignored
  StrictHostKeyChecking yes
  ConnectTimeout 5
";
        let r = home.ok("x", config);
        let h = home.path();
        assert_eq!(
            r.user_known_hosts_files,
            vec![h.join(".ssh/kh_mybox"), h.join("kh2_10.9.9.9")]
        );
        assert_eq!(
            r.global_known_hosts_files,
            vec![PathBuf::from("/etc/kh"), h.join("gkh")]
        );
        assert_eq!(r.strict_host_key_checking.as_deref(), Some("accept-new"));
        assert_eq!(r.host_key_alias.as_deref(), Some("mybox"));
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(90)));
        let r = home.ok("y", config);
        assert_eq!(r.user_known_hosts_files, vec![PathBuf::from("/ignored")]);
        assert_eq!(r.strict_host_key_checking.as_deref(), Some("yes"));
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(5)));
        let r = home.ok(
            "z",
            "UserKnownHostsFile none\nStrictHostKeyChecking off\nConnectTimeout 0\n",
        );
        assert_eq!(r.user_known_hosts_files, vec![PathBuf::from("/dev/null")]);
        assert_eq!(r.strict_host_key_checking.as_deref(), Some("no"));
        assert_eq!(r.connect_timeout, None);
        // "ConnectTimeout none" sets nothing: a later value still applies.
        assert_eq!(
            home.ok("z", "ConnectTimeout none\nConnectTimeout 7\n")
                .connect_timeout,
            Some(Duration::from_secs(7))
        );
    }

    #[test]
    fn public_resolve_reads_this_machines_files() {
        // No ~/.ssh/config in a fresh home; /etc/ssh/ssh_config (if any) is read as ssh does.
        let home = Home::new();
        let r =
            resolve(&dest(Some("u"), "Some.Host", Some(2)), None, home.path()).expect("resolve");
        assert_eq!(
            (r.hostname.as_str(), r.user.as_str(), r.port),
            ("some.host", "u", 2)
        );
        // A user config there is read first.
        home.write(
            ".ssh/config",
            "Host some.host\n  User ignored\nHost Some.Host\n  Port 1\n",
        );
        let r = resolve(&dest(None, "Some.Host", None), None, home.path()).expect("resolve");
        assert_eq!(r.port, 1);
    }

    // ---- helpers

    #[test]
    fn tokenizers_match_openssh() {
        assert_eq!(strdelim("Host foo"), Some(("Host".into(), Some("foo"))));
        assert_eq!(strdelim("Host = foo"), Some(("Host".into(), Some("foo"))));
        assert_eq!(strdelim("Host==foo"), Some(("Host".into(), Some("=foo"))));
        assert_eq!(strdelim("\"Host\" foo"), Some(("Host".into(), Some("foo"))));
        assert_eq!(strdelim("\"Host foo"), None);
        assert_eq!(strdelim("Host"), Some(("Host".into(), None)));
        let words = |s: &str| argv_split(s).expect(s);
        assert_eq!(words("a  b\tc"), vec!["a", "b", "c"]);
        assert_eq!(words("a\"b c\"d 'e f'"), vec!["ab cd", "e f"]);
        assert_eq!(words(r"a\ b c\\d \'q"), vec!["a b", r"c\d", "'q"]);
        assert_eq!(words("a b#c # rest"), vec!["a", "b#c"]);
        assert_eq!(argv_split("\"open"), None);
    }

    #[test]
    fn convtime_matches_openssh() {
        assert_eq!(convtime("90"), Some(90));
        assert_eq!(convtime("90s"), Some(90));
        assert_eq!(convtime("1h30M"), Some(5400));
        assert_eq!(convtime("1w1d"), Some(691_200));
        assert_eq!(convtime(""), None);
        assert_eq!(convtime("x"), None);
        assert_eq!(convtime("5y"), None);
        assert_eq!(convtime("99999999999"), None);
    }

    #[test]
    fn glob_and_fnmatch() {
        assert!(fnmatch("*.conf", "a.conf"));
        assert!(!fnmatch("*.conf", ".a.conf"));
        assert!(fnmatch(".*", ".a"));
        assert!(fnmatch("[0-9]*", "10-a"));
        assert!(!fnmatch("[!0-9]*", "10-a"));
        assert!(fnmatch("a?c", "abc"));
        assert!(fnmatch(r"a\*", "a*"));
        assert!(!fnmatch(r"a\*", "ab"));
        let home = Home::new();
        home.write("g/b.conf", "");
        home.write("g/a.conf", "");
        home.write("g/sub/c.conf", "");
        let root = home.path().join("g");
        let found = glob(&format!("{}/*.conf", root.display()));
        assert_eq!(found, vec![root.join("a.conf"), root.join("b.conf")]);
        let found = glob(&format!("{}/*/*.conf", root.display()));
        assert_eq!(found, vec![root.join("sub/c.conf")]);
        assert!(glob(&format!("{}/none", root.display())).is_empty());
    }

    /// Compares `resolve` with the real `ssh -G` for the options both print, when `ssh` is
    /// installed: several configs, several destinations each.
    #[test]
    fn agrees_with_real_ssh_dash_g() {
        // OpenSSH is part of the test setup (tests/setup.sh): a missing ssh fails this test
        // instead of passing it unchecked.
        let probe = std::process::Command::new("ssh")
            .args(["-G", "-F", "/dev/null", "probe"])
            .output()
            .expect(
                "ssh (openssh-client) must be on PATH for this cross-check: run tests/setup.sh",
            );
        let probe = String::from_utf8_lossy(&probe.stdout).to_string();
        let local_user = probe
            .lines()
            .find_map(|l| l.strip_prefix("user "))
            .unwrap_or_else(|| panic!("ssh -G printed no user line:\n{probe}"));
        // The home ssh uses for `~` and `%d` (its passwd entry, not necessarily $HOME).
        let probe = std::process::Command::new("ssh")
            .args([
                "-G",
                "-F",
                "/dev/null",
                "-o",
                "UserKnownHostsFile=~/probe",
                "probe",
            ])
            .output()
            .expect("run ssh -G");
        let probe = String::from_utf8_lossy(&probe.stdout).to_string();
        let ssh_home = probe
            .lines()
            .find_map(|l| l.strip_prefix("userknownhostsfile "))
            .and_then(|f| f.strip_suffix("/probe"))
            .map_or_else(
                || panic!("ssh -G printed no userknownhostsfile line:\n{probe}"),
                PathBuf::from,
            );
        let home = Home::new();
        home.write(
            "inc/extra.conf",
            "Host *.inc\n  User incuser\n  Port 4000\n",
        );
        let inc = home.path().join("inc");
        let configs: Vec<(String, &[&str])> = vec![
            (
                format!(
                    "\
Host alias
  HostName Real.%h.Example
  HostKeyAlias KeyAlias
Host web?? !web99
  User webuser
  ProxyJump jump1,ec2-user@jump2:2222
Host *.prod
  ProxyCommand nc %h %p
  StrictHostKeyChecking accept-new
Match host real.* user bob
  Port 2201
Match originalhost x.inc
  Include {inc}/*.conf
Match final
  ConnectTimeout 1m30s
Host real.alias.example
  IdentitiesOnly yes
  UserKnownHostsFile ~/kh_%k %d/kh2_%h_%n_%p_%r
  IdentityFile ~/.ssh/a
  IdentityFile ~/.ssh/b
Host *
  StrictHostKeyChecking no
  User = \"default user\"
  IdentityFile ~/.ssh/a
",
                    inc = inc.display()
                ),
                &[
                    "alias",
                    "bob@alias",
                    "web01",
                    "web99",
                    "x.prod",
                    "x.inc",
                    "y.inc",
                    "ssh://carol@alias:2",
                ],
            ),
            (
                "\
# quotes, '=' forms, negation
Host = \"quoted\" other
  Port=2001
Host !neg* *
  User \"spaced user\"
Host neg*
  User neguser
  ProxyJump none
Host *
  ProxyJump fallbackjump
  UserKnownHostsFile none
  ConnectTimeout none
  IdentitiesOnly=no
  StrictHostKeyChecking=off
"
                .to_owned(),
                &["quoted", "other", "negx", "plain", "ssh://u@127.0.0.1:7"],
            ),
            (
                "\
Match originalhost ORIG*
  HostName %h.Lower
Match host *.lower !user root
  Port 3001
Match localuser nobody-here
  Port 3002
Match user alice,bob
  IdentitiesOnly yes
Match !final
  ConnectTimeout 12
Host *
  ProxyCommand ssh -W %h:%p gateway
  ProxyJump ignored
  StrictHostKeyChecking true
"
                .to_owned(),
                &["ORIGx", "alice@ORIGy", "root@ORIGz", "nomatch"],
            ),
        ];
        for (index, (config, targets)) in configs.iter().enumerate() {
            let path = home.write(&format!("ssh_config_{index}"), config);
            for target in *targets {
                compare_with_ssh_dash_g(&path, target, &ssh_home, local_user);
            }
        }
    }

    /// One `ssh -G -F path target` against `resolve_with` on the same file.
    fn compare_with_ssh_dash_g(path: &Path, target: &str, ssh_home: &Path, local_user: &str) {
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(path)
            .arg(target)
            .output()
            .expect("ssh -G");
        assert!(
            out.status.success(),
            "ssh -G {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} ")))
                .unwrap_or("")
                .to_owned()
        };
        let sources = Sources {
            user: Some((path.to_path_buf(), true)),
            system: None,
        };
        let ours = resolve_with(
            &parse_destination(target).expect("destination"),
            &sources,
            ssh_home,
            local_user,
            &|name| std::env::var(name).ok(),
        )
        .expect("resolve");
        let at = format!("{} for {target}", path.display());
        assert_eq!(ours.hostname, get("hostname"), "{at}: hostname");
        assert_eq!(ours.user, get("user"), "{at}: user");
        assert_eq!(ours.port.to_string(), get("port"), "{at}: port");
        let only = if ours.identities_only { "yes" } else { "no" };
        assert_eq!(only, get("identitiesonly"), "{at}: identitiesonly");
        let strict = match ours.strict_host_key_checking.as_deref() {
            None | Some("ask") => "ask",
            Some("yes") => "true",
            Some("no") => "false",
            Some(other) => other,
        };
        assert_eq!(strict, get("stricthostkeychecking"), "{at}: strict");
        let alias = ours.host_key_alias.clone().unwrap_or_default();
        assert_eq!(alias, get("hostkeyalias"), "{at}: hostkeyalias");
        let timeout = ours
            .connect_timeout
            .map_or_else(|| "none".to_owned(), |d| d.as_secs().to_string());
        assert_eq!(timeout, get("connecttimeout"), "{at}: connecttimeout");
        assert_eq!(
            ours.proxy_jump.join(","),
            get("proxyjump"),
            "{at}: proxyjump"
        );
        // ssh -G prints ProxyCommand unexpanded; ours is expanded.
        assert_eq!(
            ours.proxy_command.is_some(),
            !get("proxycommand").is_empty(),
            "{at}: proxycommand"
        );
        let known: Vec<String> = ours
            .user_known_hosts_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        match get("userknownhostsfile").as_str() {
            "none" => assert_eq!(known, vec!["/dev/null"], "{at}: userknownhostsfile"),
            printed if !known.is_empty() => {
                assert_eq!(known.join(" "), printed, "{at}: userknownhostsfile");
            }
            _ => {}
        }
        // ssh -G prints IdentityFile unexpanded, and its defaults when none is configured.
        if !ours.identity_files.is_empty() {
            let printed = text
                .lines()
                .filter(|l| l.starts_with("identityfile "))
                .count();
            assert_eq!(ours.identity_files.len(), printed, "{at}: identityfile");
        }
    }
}
