//! `aws-hop proxy TARGET [PORT]` (an OpenSSH `ProxyCommand`) and `aws-hop ssh-config`.
//!
//! [`proxy`] finds a route to TARGET the way `connect()` would, asking each strategy plugin
//! for its `route(target, opts)` ([`crate::strategy::attempt`]), or only the ones `--via`
//! names; then it opens one stream to TARGET:PORT through that route and joins it to stdin
//! and stdout. OpenSSH does the SSH (its keys, its known_hosts), so `ssh`, `scp`, `sftp`,
//! `rsync` and editors' remote modes all work:
//!
//! ```text
//! Host i-* mi-*
//!     ProxyCommand aws-hop proxy %h %p
//! ```
//!
//! [`ssh_config`] prints such a block, with a `Host` entry for every named instance it can
//! list, so `ssh web-1` works too.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use rhai::{Dynamic, Engine, Map};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::aws::config::ConfigKey;
use crate::aws::instances;
use crate::hop::Stream;
use crate::script::Context;
use crate::strategy::attempt::{self, Goal};

/// Largest read from either side in one go.
const PIPE_BUFFER: usize = 64 * 1024;

/// `-o key=value` options as a plugin option map: integers and booleans keep their type.
pub fn options_map(pairs: &[String]) -> Result<Map, String> {
    let mut map = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!(
                "-o {pair}: an option is key=value, for example -o user=ubuntu or -o bastion=ec2-user@bastion.example.com"
            ));
        };
        let value = if let Ok(i) = v.parse::<i64>() {
            Dynamic::from(i)
        } else if let Ok(b) = v.parse::<bool>() {
            Dynamic::from(b)
        } else {
            Dynamic::from(v.to_string())
        };
        map.insert(k.trim().into(), value);
    }
    Ok(map)
}

/// `aws-hop proxy`: the route, one stream, and stdin/stdout joined to it until the far side
/// ends. Messages go to stderr, where ssh shows them.
pub fn proxy(
    ctx: &Arc<Context>,
    engine: &Engine,
    target: &str,
    port: u16,
    via: Option<&str>,
    opts: &Map,
) -> ExitCode {
    tracing::debug!("proxy {target}:{port}: finding a route");
    let chosen = {
        let plugins = ctx.plugins.read().expect("plugins lock");
        let checked = attempt::choose(&plugins, via).and_then(|chosen| {
            attempt::check_options(
                &plugins,
                &chosen,
                opts.keys().map(rhai::Identifier::as_str),
                "aws-hop proxy -o",
            )
            .map(|()| chosen)
        });
        match checked {
            Ok(c) => c,
            Err(e) => {
                eprintln!("aws-hop proxy: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let interrupted = || ctx.rt.interrupted();
    let hop = match attempt::try_in_order(
        engine,
        &chosen,
        &Dynamic::from(target.to_string()),
        opts,
        Goal::Route,
        &interrupted,
    ) {
        Ok((hop, report)) => {
            tracing::info!("proxy {target}:{port}: {}", report.summary());
            hop
        }
        Err(report) => {
            eprintln!("aws-hop proxy: {report}");
            return ExitCode::FAILURE;
        }
    };
    let target_owned = target.to_string();
    let opened = {
        let hop = hop.clone();
        ctx.rt
            .block_on(async move { hop.open(&target_owned, port, None).await })
    };
    let stream = match opened {
        Ok(s) => {
            tracing::debug!("proxy {target}:{port}: stream open through {hop}");
            s
        }
        Err(e) => {
            eprintln!("aws-hop proxy: cannot open {target}:{port} through {hop}: {e}");
            ctx.shutdown();
            return ExitCode::FAILURE;
        }
    };
    // ssh sends SIGHUP to its ProxyCommand as it exits: stop piping then, and close the
    // route below (TerminateSession for SSM) instead of dying with a session left Connected.
    let terminated = ctx.rt.terminated();
    let result = ctx.rt.block_on(async move {
        tokio::select! {
            r = pipe(stream) => r.map_err(|e| crate::Error::io("the connection", e)),
            () = terminated.cancelled() => Ok(()),
        }
    });
    ctx.shutdown();
    let code = match result {
        Ok(()) => 0,
        // ssh hung up on us: that is how a ProxyCommand's life ends, not a failure.
        Err(_) if ctx.rt.terminating() => 0,
        Err(e) => {
            eprintln!("aws-hop proxy: {target}:{port} through {hop}: {e}");
            1
        }
    };
    // tokio reads stdin on a blocking thread that a runtime cannot cancel, and ssh keeps our
    // stdin open until we exit: returning would wait for that read forever. Exit now; every
    // byte has been written and stdout flushed.
    std::process::exit(code)
}

/// Joins stdin/stdout to `stream`. stdin's end is passed on as a half-close; the far side's
/// end (or error) ends the proxy, as ssh expects of a ProxyCommand.
async fn pipe(stream: Stream) -> std::io::Result<()> {
    let (mut from_far, mut to_far) = tokio::io::split(stream);
    let up = async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; PIPE_BUFFER];
        loop {
            let n = stdin.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            // Streams may hold a write back (a WebSocket frame, an SSH packet): flush, or ssh
            // waits for a reply to bytes that never left.
            to_far.write_all(&buf[..n]).await?;
            to_far.flush().await?;
        }
        to_far.shutdown().await
    };
    let down = async move {
        let mut stdout = tokio::io::stdout();
        let mut buf = vec![0u8; PIPE_BUFFER];
        loop {
            let n = from_far.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stdout.write_all(&buf[..n]).await?;
            stdout.flush().await?;
        }
        stdout.flush().await
    };
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut down => r,
        r = &mut up => {
            // stdin ended (or failed): keep delivering what the far side still sends.
            r?;
            down.await
        }
    }
}

/// Checks `ssh-config`'s `--via` and `-o` before a ProxyCommand is written with them: the
/// strategies exist, the options are theirs, and `--via bastion` names its bastion (without
/// one, every `ssh` through the block would fail).
pub fn ssh_config_options(
    ctx: &Arc<Context>,
    via: Option<&str>,
    options: &[String],
) -> Result<(), String> {
    let opts = options_map(options)?;
    let plugins = ctx.plugins.read().expect("plugins lock");
    let chosen = attempt::choose(&plugins, via)?;
    attempt::check_options(
        &plugins,
        &chosen,
        opts.keys().map(rhai::Identifier::as_str),
        "aws-hop ssh-config -o",
    )?;
    if chosen.len() == 1 && chosen[0].0 == "bastion" && !opts.contains_key("bastion") {
        return Err(
            "--via bastion needs the bastion: add -o bastion=USER@HOST (or a Host alias from \
             ~/.ssh/config), or the ProxyCommand it writes fails for every host"
                .into(),
        );
    }
    Ok(())
}

/// `aws-hop ssh-config`: a `~/.ssh/config` block for reaching instances with `ssh i-…` and,
/// when the instances can be listed, `ssh <Name tag>`. `options` (`-o KEY=VALUE`) go into
/// the ProxyCommand as they are.
pub fn ssh_config(
    ctx: &Arc<Context>,
    defaults: &ConfigKey,
    via: Option<&str>,
    options: &[String],
    user: Option<&str>,
    lookup: bool,
) -> String {
    let exe =
        std::env::current_exe().map_or_else(|_| "aws-hop".to_string(), |p| p.display().to_string());
    let mut command = quote(&exe);
    if let Some(p) = &defaults.profile {
        let _ = write!(command, " --profile {}", quote(p));
    }
    if let Some(r) = &defaults.region {
        let _ = write!(command, " --region {}", quote(r));
    }
    command.push_str(" proxy");
    if let Some(v) = via {
        let _ = write!(command, " --via {}", quote(v));
    }
    for o in options {
        let _ = write!(command, " -o {}", quote(o));
    }
    command.push_str(" %h %p");

    let mut out = String::new();
    out.push_str(
        "# Written by `aws-hop ssh-config`. Paste into ~/.ssh/config (above any `Host *`).\n\
         # `ssh i-0123456789abcdef0`, and `ssh <Name tag>` for the instances listed below, reach\n\
         # private instances through aws-hop's strategies; scp, sftp and rsync work too.\n",
    );
    let mut names = Vec::new();
    if lookup {
        let c = ctx.clone();
        let key = ConfigKey::default();
        let listed = ctx.rt.block_on(async move {
            let cfg = c.aws.get(&key).await?;
            instances::list(&cfg, &[]).await
        });
        match listed {
            Ok(list) => {
                let mut seen = std::collections::HashMap::<String, usize>::new();
                for i in &list {
                    if let Some(n) = i.name.as_deref().filter(|n| is_plain_name(n)) {
                        *seen.entry(n.to_string()).or_default() += 1;
                    }
                }
                for i in &list {
                    let Some(n) = i.name.as_deref().filter(|n| is_plain_name(n)) else {
                        continue;
                    };
                    if i.state == "terminated" {
                        continue;
                    }
                    if seen[n] > 1 {
                        let _ = writeln!(
                            out,
                            "# {n}: {} instances have this Name tag; use the id ({})",
                            seen[n], i.id
                        );
                        continue;
                    }
                    let _ = writeln!(out, "\nHost {n}\n    HostName {}", i.id);
                    names.push(n.to_string());
                }
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "# (instances could not be listed, so only ids work: {})",
                    e.to_string().replace('\n', " ")
                );
            }
        }
    }
    let mut patterns = names;
    patterns.push("i-*".into());
    patterns.push("mi-*".into());
    let _ = writeln!(
        out,
        "\nHost {}\n    ProxyCommand {command}",
        patterns.join(" ")
    );
    match user {
        Some(u) => {
            let _ = writeln!(out, "    User {u}");
        }
        None => out.push_str("    # User ec2-user   (ubuntu, admin ... depending on the AMI)\n"),
    }
    out
}

/// Names that can stand as an ssh `Host` pattern unchanged.
fn is_plain_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Quotes a word for ssh_config's ProxyCommand (run by `sh -c`) when it needs it.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_types() {
        let m = options_map(&[
            "user=ubuntu".into(),
            "timeout=5".into(),
            "agent=false".into(),
        ])
        .unwrap();
        assert_eq!(m["user"].clone().into_string().unwrap(), "ubuntu");
        assert_eq!(m["timeout"].as_int().unwrap(), 5);
        assert!(!m["agent"].as_bool().unwrap());
        assert!(
            options_map(&["user".into()])
                .unwrap_err()
                .contains("key=value")
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("/usr/bin/aws-hop"), "/usr/bin/aws-hop");
        assert_eq!(quote("/opt/my tools/aws-hop"), "'/opt/my tools/aws-hop'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert!(is_plain_name("web-1"));
        assert!(!is_plain_name("web 1"));
        assert!(!is_plain_name("web*"));
    }
}
