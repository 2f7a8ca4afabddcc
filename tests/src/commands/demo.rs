//! `hop-lab demo`: aws-hop doing its job on a real scenario, in about ten seconds once built.
//!
//! 1. Finds (under `cargo run`: builds) the `aws-hop` binary.
//! 2. Brings up a lab of its own (`LabConfig::unique`, guarded like the tests' labs, so
//!    Ctrl-C or a crash still tears it down) and says what it built.
//! 3. Proves the laptop cannot reach the private databases: a direct TCP connect to
//!    MariaDB fails (the lab routes its range to "unreachable", so nothing leaves the
//!    machine).
//! 4. Runs `aws-hop run scripts/lab-db.rhai ...` with a throw-away `HOME`, and waits for
//!    its `READY mariadb 127.0.0.1:PORT` and `READY postgres 127.0.0.1:PORT` lines.
//! 5. Runs the real `mariadb` and `psql` clients through those ports: each server names
//!    itself (the `whoami` marker table) and the client address it sees, which is the
//!    bastion's private address.
//! 6. Sends SIGINT to aws-hop and shows its clean exit.
//! 7. Brings up the same lab's AWS side (`Lab::up_aws`: moto, and the fakes of EC2 Instance
//!    Connect and SSM, with web-1's SSM agent).
//! 8. Runs `aws-hop run scripts/ssm-db.rhai web-1 POSTGRES_HOST` (wrapped with the lab's
//!    hosts file and client environment, see `AwsLab::wrap`) and waits for its `READY`
//!    line: no bastion, only the instance's SSM agent.
//! 9. Runs `psql` through that forward: the same PostgreSQL, which now sees web-1's private
//!    address as the client. Then SIGINT and a clean exit again.
//! 10. Runs `hostname -I` on web-1 with one `aws-hop -e` line over EC2 Instance Connect,
//!     with a key aws-hop pushes (the throw-away `HOME` has none).
//! 11. Tears the lab down and prints a summary.
//!
//! Any failed step ends the demo with a message that says which, and exit status 1.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aws_hop_lab::fixture::ScratchDir;
use aws_hop_lab::lab::{MARIADB_MARKER, POSTGRES_MARKER, output_with_timeout};
use aws_hop_lab::{Lab, OwnedLab};
use nix::sys::signal::{SigSet, Signal};

use crate::bench::binary::{aws_hop, aws_hop_command, workspace_root};
use crate::bench::child::Spawned;
use crate::bench::interrupt;

/// The script, relative to the workspace root.
const SCRIPT: &str = "scripts/lab-db.rhai";
/// The SSM script, relative to the workspace root.
const SSM_SCRIPT: &str = "scripts/ssm-db.rhai";
/// The instance the AWS part reaches (its SSM agent and its sshd).
const INSTANCE: &str = "web-1";
/// How many steps the demo has.
const STEPS: u32 = 11;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

pub(crate) fn run(_args: Args) -> Result<()> {
    say(
        "aws-hop demo: reach databases in a private subnet through a bastion, then through SSM with no bastion\n",
    );

    say(&format!("[1/{STEPS}] the aws-hop binary"));
    if std::env::var_os("CARGO").is_some() {
        say(
            "      building it with `cargo build --workspace --bin aws-hop` (cargo's progress below). \
             The first build compiles the AWS SDK: about 20 minutes on 2 cores; later runs take \
             seconds.",
        );
    }
    let building = Instant::now();
    let bin = aws_hop()?;
    say(&format!(
        "      {} ({:.1} s)\n",
        bin.display(),
        building.elapsed().as_secs_f64()
    ));

    let began = Instant::now();
    say(&format!(
        "[2/{STEPS}] building a lab: network namespaces, a real OpenSSH bastion, real MariaDB and PostgreSQL"
    ));
    let hop_lab = std::env::current_exe().context("cannot find the hop-lab executable")?;
    let lab = OwnedLab::start(&hop_lab)?;
    // Only now: the lab's daemons must start with Ctrl-C unblocked (see `interrupt`).
    interrupt::install()?;
    say(&describe_lab(&lab, began.elapsed()));

    // From here on the lab goes down whatever happens (and the guard covers a crash).
    let result = show(&lab, &bin).and_then(|facts| Ok((facts, show_aws(&lab, &bin)?)));
    say(&format!("\n[{STEPS}/{STEPS}] tearing the lab down"));
    let down = lab.down();
    let (facts, aws) = result?;
    down?;
    say(&format!(
        "      lab removed\n\ndemo OK in {:.1} s from lab up to lab down: aws-hop reached MariaDB (127.0.0.1:{}) \
         and PostgreSQL (127.0.0.1:{}) in the private subnet through the bastion (both servers saw the \
         bastion's private address {}), then the same PostgreSQL through SSM Session Manager with no \
         bastion (127.0.0.1:{}; it saw {INSTANCE}'s private address {}), and ran `hostname -I` on \
         {INSTANCE} over EC2 Instance Connect with a pushed key; each aws-hop exited 0, on Ctrl-C \
         after closing its forwards.",
        began.elapsed().as_secs_f64(),
        facts.mariadb_port,
        facts.postgres_port,
        facts.seen_as,
        aws.postgres_port,
        aws.seen_as,
    ));
    Ok(())
}

/// What the bastion part proved, for the summary line.
struct Facts {
    mariadb_port: u16,
    postgres_port: u16,
    seen_as: String,
}

/// What the AWS part proved, for the summary line.
struct AwsFacts {
    postgres_port: u16,
    seen_as: String,
}

fn say(text: &str) {
    println!("{text}");
}

fn describe_lab(lab: &Lab, elapsed: Duration) -> String {
    let mut text = format!(
        "      lab {} up after {:.1} s (state in {}):\n",
        lab.config.prefix,
        elapsed.as_secs_f64(),
        lab.dir().display()
    );
    let rows = [
        (
            "laptop (this machine)",
            lab.laptop_ip.to_string(),
            String::new(),
        ),
        (
            "bastion (public subnet)",
            format!("{}:{}", lab.bastion_ip, lab.ssh_port),
            format!(
                "OpenSSH sshd, login {} with key {}",
                lab.user,
                lab.ssh_key.display()
            ),
        ),
        (
            "  its private side",
            lab.bastion_priv_ip.to_string(),
            String::new(),
        ),
        (
            "MariaDB (private subnet)",
            format!("{}:{}", lab.mariadb_ip, lab.mariadb_port),
            lab.mariadb_host.clone(),
        ),
        (
            "PostgreSQL (private subnet)",
            format!("{}:{}", lab.postgres_ip, lab.postgres_port),
            lab.postgres_host.clone(),
        ),
    ];
    for (what, addr, note) in rows {
        let row = format!("        {what:<28} {addr:<18} {note}");
        let _ = writeln!(text, "{}", row.trim_end());
    }
    let _ = write!(
        text,
        "      The *.{} names resolve only inside the VPC, like an RDS endpoint.",
        lab.domain
    );
    text
}

/// Steps 3 to 6; the caller tears the lab down.
fn show(lab: &Lab, bin: &Path) -> Result<Facts> {
    say(&format!(
        "\n[3/{STEPS}] the laptop cannot reach the databases directly"
    ));
    let target = SocketAddr::from((lab.mariadb_ip, lab.mariadb_port));
    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
        Ok(_) => bail!(
            "a direct connection to {target} succeeded: the lab's isolation is broken \
             (check `ip route get {}`)",
            lab.mariadb_ip
        ),
        Err(e) => say(&format!(
            "      connect {target} from the laptop: {e}  (as expected)"
        )),
    }

    say(&format!(
        "\n[4/{STEPS}] aws-hop opens one SSH session to the bastion and two forwards"
    ));
    let home = ScratchDir::new("demo-home")?;
    let args = [
        format!("{}@{}", lab.user, lab.bastion_ip),
        lab.ssh_key.display().to_string(),
        lab.known_hosts.display().to_string(),
        lab.mariadb_host.clone(),
        lab.postgres_host.clone(),
    ];
    let mut cmd = aws_hop_command(bin, home.path());
    cmd.arg("run")
        .arg(SCRIPT)
        .args(&args)
        .current_dir(workspace_root());
    say(&format!(
        "      $ cd {}\n      $ HOME={} aws-hop run {SCRIPT} {}",
        workspace_root().display(),
        home.path().display(),
        args.join(" ")
    ));
    let started = Instant::now();
    let mut hop = Spawned::start(cmd)?;
    let ready = |name: &str| -> Result<u16> {
        let prefix = format!("READY {name} 127.0.0.1:");
        let line = hop.wait_line(
            &format!("aws-hop's `{prefix}PORT` line"),
            |l| l.starts_with(&prefix),
            Duration::from_secs(30),
        )?;
        line[prefix.len()..]
            .trim()
            .parse()
            .with_context(|| format!("bad READY line {line:?}"))
    };
    let mariadb_port = ready("mariadb")?;
    let postgres_port = ready("postgres")?;
    let printed = show_ready(&mut hop, started.elapsed())?;

    say(&format!(
        "\n[5/{STEPS}] the real database clients, through the forwards"
    ));
    let seen_as = lab.bastion_priv_ip.to_string();
    let mut mariadb = Command::new("mariadb");
    mariadb
        .args([
            "--no-defaults",
            "-h",
            "127.0.0.1",
            "-P",
            &mariadb_port.to_string(),
        ])
        .args([
            "-u",
            lab.db_user,
            &format!("-p{}", lab.db_password),
            lab.db_name,
        ])
        .args([
            "--connect-timeout=5",
            "--table",
            "-e",
            "select name as server, user() as connected_as from whoami",
        ]);
    query(&mut mariadb, &[MARIADB_MARKER, &seen_as])?;
    query(&mut psql(lab, postgres_port), &[POSTGRES_MARKER, &seen_as])?;
    say(&format!(
        "      Both servers see the client at {seen_as}: the bastion's private address, not the laptop."
    ));

    say(&format!("\n[6/{STEPS}] Ctrl-C (SIGINT) to aws-hop"));
    interrupt_and_expect_clean_exit(&mut hop, printed)?;
    Ok(Facts {
        mariadb_port,
        postgres_port,
        seen_as,
    })
}

/// Prints what aws-hop has said once it holds its forwards, then how long after its start
/// the forwards were ready. Returns how many lines it printed. The `holding` line comes
/// after every `forwarding` line on stderr, which is read apart from stdout: waiting for it
/// makes the listing complete.
fn show_ready(hop: &mut Spawned, ready_after: Duration) -> Result<usize> {
    hop.wait_line(
        "aws-hop's `holding` line",
        |l| l.contains("holding"),
        Duration::from_secs(5),
    )?;
    let lines = hop.lines();
    for line in &lines {
        say(&format!("        {line}"));
    }
    say(&format!(
        "      ready {:.2} s after start",
        ready_after.as_secs_f64()
    ));
    Ok(lines.len())
}

/// Sends SIGINT to `hop`, prints what it said after its first `printed` lines, and
/// checks that it closed its forwards and exited 0.
fn interrupt_and_expect_clean_exit(hop: &mut Spawned, printed: usize) -> Result<()> {
    let status = hop.stop(Signal::SIGINT, Duration::from_secs(15))?;
    for line in hop.lines().into_iter().skip(printed) {
        say(&format!("        {line}"));
    }
    if !status.success() || !hop.output_contains("forwards closed") {
        bail!(
            "aws-hop did not exit cleanly after SIGINT ({status})\n{}",
            hop.report()
        );
    }
    say(&format!("      aws-hop exited: {status}"));
    Ok(())
}

/// Steps 7 to 10: the same lab's AWS side, PostgreSQL through SSM, a command over EC2
/// Instance Connect. The caller tears the lab down.
fn show_aws(lab: &Lab, bin: &Path) -> Result<AwsFacts> {
    say(&format!(
        "\n[7/{STEPS}] the same lab's AWS side: moto, fakes of EC2 Instance Connect and SSM, {INSTANCE}'s SSM agent"
    ));
    let began = Instant::now();
    // Its daemons must not inherit the signal mask of `interrupt::install`.
    with_signals_unblocked(|| lab.up_aws())?;
    let ids = lab.aws.ids()?;
    say(&format!(
        "      up after {:.1} s: {INSTANCE} is {} at {} (private subnet), endpoint {}; the AWS API \
         names resolve to the fakes ({}) only for aws-hop, through the hosts file {}",
        began.elapsed().as_secs_f64(),
        ids.get("WEB1_ID"),
        lab.instance_ip,
        ids.get("EICE_ID"),
        lab.aws.api_ip,
        lab.aws.hosts.display()
    ));

    say(&format!(
        "\n[8/{STEPS}] aws-hop forwards to the same PostgreSQL through SSM Session Manager: no bastion"
    ));
    let home = ScratchDir::new("demo-aws-home")?;
    let args = [INSTANCE.to_owned(), lab.postgres_host.clone()];
    let mut cmd = aws_command(lab, bin, home.path());
    cmd.arg("run")
        .arg(SSM_SCRIPT)
        .args(&args)
        .current_dir(workspace_root());
    say(&format!(
        "      (with /etc/hosts = {}, AWS_REGION={}, the lab's fake keys and SSL_CERT_FILE={})\n      \
         $ HOME={} aws-hop run {SSM_SCRIPT} {}",
        lab.aws.hosts.display(),
        lab.aws.region,
        lab.aws.ca.display(),
        home.path().display(),
        args.join(" ")
    ));
    let started = Instant::now();
    let mut hop = Spawned::start(cmd)?;
    let prefix = "READY postgres 127.0.0.1:";
    let line = hop.wait_line(
        &format!("aws-hop's `{prefix}PORT` line"),
        |l| l.starts_with(prefix),
        Duration::from_secs(30),
    )?;
    let postgres_port: u16 = line[prefix.len()..]
        .trim()
        .parse()
        .with_context(|| format!("bad READY line {line:?}"))?;
    let printed = show_ready(&mut hop, started.elapsed())?;

    say(&format!("\n[9/{STEPS}] psql through the SSM forward"));
    let seen_as = lab.instance_ip.to_string();
    query(&mut psql(lab, postgres_port), &[POSTGRES_MARKER, &seen_as])?;
    say(&format!(
        "      PostgreSQL sees the client at {seen_as}: {INSTANCE}'s private address, where its SSM agent dials from."
    ));
    say("\n      Ctrl-C (SIGINT) to aws-hop:");
    interrupt_and_expect_clean_exit(&mut hop, printed)?;

    say(&format!(
        "\n[10/{STEPS}] one line over EC2 Instance Connect, with a key aws-hop pushes (this HOME has none)"
    ));
    let code = format!(
        r#"eic_endpoint("{INSTANCE}").ssh("{}", #{{ known_hosts: "accept-new" }}).exec("hostname -I").stdout"#,
        lab.user
    );
    let mut cmd = aws_command(lab, bin, home.path());
    cmd.arg("-e").arg(&code).current_dir(workspace_root());
    say(&format!(
        "      $ HOME={} aws-hop -e {}",
        home.path().display(),
        shell_quote(&code)
    ));
    let out = output_with_timeout(&mut cmd, Duration::from_mins(1))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in String::from_utf8_lossy(&out.stderr)
        .lines()
        .chain(stdout.lines())
    {
        say(&format!("        {l}"));
    }
    if !out.status.success() || !stdout.contains(&seen_as) {
        bail!(
            "`aws-hop -e` over EC2 Instance Connect did not print {seen_as} ({})",
            out.status
        );
    }
    say(&format!(
        "      the answer includes {INSTANCE}'s private address {seen_as} (the lab's private hosts share one \
         network namespace); aws-hop exited: {}",
        out.status
    ));
    Ok(AwsFacts {
        postgres_port,
        seen_as,
    })
}

/// aws-hop as a user on the laptop runs it against the lab's AWS side: in a private mount
/// namespace whose `/etc/hosts` maps the AWS API names to the fakes (see `AwsLab::wrap`;
/// the PID is still aws-hop's), with the lab's region, keys and CA, and HOME = `home`.
fn aws_command(lab: &Lab, bin: &Path, home: &Path) -> Command {
    let mut cmd = lab.aws.wrap(bin);
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("AWS_") || name == "SSH_AUTH_SOCK" || name == "SSL_CERT_DIR" {
            cmd.env_remove(&key);
        }
    }
    cmd.envs(lab.aws.client_env())
        .env("HOME", home)
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `f` with SIGINT, SIGTERM and SIGHUP unblocked in this thread, as before
/// `interrupt::install`: daemons started in `f` inherit a clean mask (`down` stops them
/// with SIGTERM). A Ctrl-C meanwhile ends hop-lab the default way; no aws-hop runs then,
/// and the lab's guard tears the lab down.
fn with_signals_unblocked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_unblock()
        .context("cannot unblock SIGINT, SIGTERM and SIGHUP")?;
    let result = f();
    set.thread_block()
        .context("cannot block SIGINT, SIGTERM and SIGHUP again")?;
    result
}

/// `psql` with the lab's credentials on 127.0.0.1:`port`, asking who answered and whom
/// it sees as the client.
fn psql(lab: &Lab, port: u16) -> Command {
    let mut psql = Command::new("psql");
    psql.env("PGPASSWORD", lab.db_password)
        .env("PGCONNECT_TIMEOUT", "5")
        .args(["-X", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", lab.db_user, lab.db_name])
        .args([
            "-c",
            "select name as server, inet_client_addr() as client_address from whoami",
        ]);
    psql
}

/// Runs a database client, prints its command line (copy-pasteable) and answer, and
/// checks that the answer contains every one of `expect`.
fn query(cmd: &mut Command, expect: &[&str]) -> Result<()> {
    let env: String = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={} ", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    say(&format!("      $ {env}{line}"));
    let out = output_with_timeout(cmd, Duration::from_secs(30))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    for l in stdout.trim_end().lines() {
        say(&format!("        {l}"));
    }
    for wanted in expect {
        if !stdout.contains(wanted) {
            bail!("the answer of `{line}` does not contain {wanted:?}: {stdout:?}");
        }
    }
    Ok(())
}

/// `word`, single-quoted for a POSIX shell if it needs to be.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
