//! The AWS side of the lab: fake regional AWS APIs and an EC2 Instance Connect Endpoint,
//! in their own namespace `<prefix>-aws` that reaches both the laptop and the private
//! subnet, as AWS does.
//!
//! ```text
//! root netns ("laptop")  <p8>-a0 N.2.1/24
//!    | veth
//! <prefix>-aws           eth0 N.2.2  front.py: HTTPS API (ec2, ec2-instance-connect, sts,
//!                                    rds, elasticloadbalancing, ssm names, and their
//!                                    `-fips` variants) -> moto
//!                             N.2.3  front.py: the EICE endpoints' WSS (/openTunnel), by
//!                                    DnsName or FipsDnsName
//!                             N.2.4  front.py: SSM MGS WSS (ssmmessages), :8080 its control
//!                                    API (see `aws/ssm.rs`)
//!                        lo   127.0.0.1:5000 moto_server
//!                        eth1 N.1.2/24 (the endpoint's ENI in the private subnet;
//!                                  :8444 the SSM agents' link to the gateway)
//!    | veth
//! <prefix>-priv          eth1 (no address; route N.1.2/32 back to the aws namespace)
//!                        ssm_agent.py: web-1's SSM agent, bound to N.1.20
//! ```
//!
//! The Python fakes (`tests/aws_fakes/`, embedded in this binary and written to
//! `<dir>/aws/fakes/` at `up`) are written independently of aws-hop, so each checks the
//! other. Clients reach them by the real names, with no test switch: a hosts file
//! ([`AwsLab::hosts`]) maps the names to N.2.2/N.2.3, and the server certificate is
//! signed by a lab CA ([`AwsLab::ca`]) that clients trust through `SSL_CERT_FILE` (Rust,
//! OpenSSL) or `AWS_CA_BUNDLE` (botocore). A client on the laptop sees that hosts file
//! through a private mount namespace ([`AwsLab::wrap`]).
//!
//! `up` starts moto and the front as one unit: if either is dead, both are (re)started
//! on empty state and moto is seeded again (`seed.py`: VPC, subnets, bastion, `web-1`,
//! `web-2` stopped, an endpoint, an RDS instance). What seeding created is in
//! `<dir>/aws/seed.env` ([`AwsLab::ids`]).
//!
//! `SendSSHPublicKey` really installs the key: the bastion's and the instance's sshd run
//! `eic-authorized-keys` as their `AuthorizedKeysCommand`, which prints the keys pushed
//! for that instance (by private IP) and user in the last 60 s ([`Lab::set_eic_key_ttl`]
//! changes that, for tests).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use super::exec::{self, ns_command};
use super::progress::Progress;
use super::{Lab, netns, process};

mod ssm;

/// The venv that `tests/setup.sh` creates: moto, boto3/botocore, websockets.
pub(super) const VENV: &str = "/opt/aws-hop-lab/venv";
/// Where `eic-authorized-keys` is installed: sshd runs an `AuthorizedKeysCommand` only
/// from a root-owned path with no group- or world-writable directory above it (so not
/// from the lab directory under /tmp).
pub(super) const AUTHORIZED_KEYS_COMMAND: &str = "/opt/aws-hop-lab/bin/eic-authorized-keys";
/// The lab's region.
pub(super) const REGION: &str = "us-east-1";
/// The lab's fake access key id (the only one the fakes accept).
pub(super) const ACCESS_KEY_ID: &str = "AKIAHOPLABFAKE000001";
/// The lab's fake secret key.
pub(super) const SECRET_ACCESS_KEY: &str = "hoplab/fake/secret+key/000000000000000000";
/// moto's account.
pub(super) const ACCOUNT_ID: &str = "123456789012";
/// moto_server's port on the aws namespace's loopback.
const MOTO_PORT: u16 = 5000;
/// The port of both fakes (the CRT client of the AWS CLI only ever uses 443).
const TLS_PORT: u16 = 443;

/// The Python fakes, embedded so a `hop-lab` binary runs the fakes it was built with.
const FAKES: &[(&str, &str)] = &[
    ("front.py", include_str!("../../aws_fakes/front.py")),
    ("eice.py", include_str!("../../aws_fakes/eice.py")),
    ("sigv4.py", include_str!("../../aws_fakes/sigv4.py")),
    ("seed.py", include_str!("../../aws_fakes/seed.py")),
    ("labclient.py", include_str!("../../aws_fakes/labclient.py")),
    ("ssm_wire.py", include_str!("../../aws_fakes/ssm_wire.py")),
    (
        "ssm_gateway.py",
        include_str!("../../aws_fakes/ssm_gateway.py"),
    ),
    ("ssm_agent.py", include_str!("../../aws_fakes/ssm_agent.py")),
    ("ssm_probe.py", include_str!("../../aws_fakes/ssm_probe.py")),
];
const AUTHORIZED_KEYS_SCRIPT: &str = include_str!("../../aws_fakes/eic-authorized-keys");

/// Everything about the AWS side of one lab: names, addresses, credentials, files.
#[derive(Debug)]
pub struct AwsLab {
    /// The namespace of the fakes, `<prefix>-aws`.
    pub ns: String,
    /// The root namespace's address on the aws link (`N.2.1`).
    pub laptop_ip: Ipv4Addr,
    /// The API front (`N.2.2`): every regional API name resolves here.
    pub api_ip: Ipv4Addr,
    /// The EICE endpoints (`N.2.3`): every endpoint's `DnsName` resolves here.
    pub eice_ip: Ipv4Addr,
    /// The SSM Message Gateway Service (`N.2.4`): `ssmmessages.<region>.amazonaws.com`
    /// resolves here; its control API is on port [`AwsLab::SSM_CONTROL_PORT`].
    pub ssm_ip: Ipv4Addr,
    /// The aws namespace's address in the private subnet (`N.1.2`), the source address
    /// targets see for tunnelled connections (the endpoint's ENI).
    pub subnet_ip: Ipv4Addr,
    /// `us-east-1`.
    pub region: &'static str,
    /// The fake access key id.
    pub access_key_id: &'static str,
    /// The fake secret key.
    pub secret_access_key: &'static str,
    /// `<dir>/aws`.
    pub dir: PathBuf,
    /// The lab CA certificate (PEM): `SSL_CERT_FILE` / `AWS_CA_BUNDLE` for clients.
    pub ca: PathBuf,
    /// The laptop's hosts file: the root's `/etc/hosts` plus the AWS names.
    pub hosts: PathBuf,
    /// The middle label of endpoint DNS names (`eice-ID.<label>.ec2-instance-connect-
    /// endpoint...`), fixed per lab so the certificate can name them ahead.
    pub eice_dns_label: String,
    veth_root: String,
    veth_aws_tmp: String,
    veth_priv_tmp: String,
    veth_priv2_tmp: String,
}

/// What seeding created (from `<dir>/aws/seed.env`).
#[derive(Clone, Debug, Default)]
pub struct AwsIds {
    /// Every KEY=VALUE of the seed file: `VPC_ID`, `PUBLIC_SUBNET_ID`,
    /// `PRIVATE_SUBNET_ID`, `BASTION_ID`, `BASTION_PUBLIC_IP`, `WEB1_ID`, `WEB2_ID`,
    /// `EICE_ID`, `EICE_DNS`, `RDS_ID`, `RDS_ENDPOINT`, `RDS_PORT`.
    pub values: BTreeMap<String, String>,
}

impl AwsIds {
    /// The value of `key`; panics naming the key if seeding did not record it.
    pub fn get(&self, key: &str) -> &str {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("the AWS seed has no {key}"))
    }
}

impl AwsLab {
    pub(super) fn new(prefix: &str, net: &str, dir: &Path) -> Result<AwsLab> {
        let ip = |tail: &str| -> Result<Ipv4Addr> {
            format!("{net}.{tail}")
                .parse()
                .with_context(|| format!("bad lab net {net}"))
        };
        let short: String = prefix.chars().take(8).collect();
        let digest = Sha256::digest(prefix.as_bytes());
        let aws_dir = dir.join("aws");
        Ok(AwsLab {
            ns: format!("{prefix}-aws"),
            laptop_ip: ip("2.1")?,
            api_ip: ip("2.2")?,
            eice_ip: ip("2.3")?,
            ssm_ip: ip("2.4")?,
            subnet_ip: ip("1.2")?,
            region: REGION,
            access_key_id: ACCESS_KEY_ID,
            secret_access_key: SECRET_ACCESS_KEY,
            ca: aws_dir.join("ca.pem"),
            hosts: aws_dir.join("hosts"),
            eice_dns_label: digest[..4].iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            }),
            dir: aws_dir,
            veth_root: format!("{short}-a0"),
            veth_aws_tmp: format!("{short}-a1"),
            veth_priv_tmp: format!("{short}-a2"),
            veth_priv2_tmp: format!("{short}-a3"),
        })
    }

    /// The root-side interface of the aws link (`<p8>-a0`).
    pub(super) fn veth_root(&self) -> &str {
        &self.veth_root
    }

    /// The services whose regional API names the front answers for.
    const API_SERVICES: [&'static str; 7] = [
        "ec2",
        "ec2-instance-connect",
        "ssm",
        "ssmmessages",
        "sts",
        "rds",
        "elasticloadbalancing",
    ];

    /// The regional API names the front answers for: `<service>.<region>.amazonaws.com`,
    /// then the FIPS ones (see [`AwsLab::api_fips_names`]).
    pub fn api_names(&self) -> Vec<String> {
        Self::API_SERVICES
            .iter()
            .map(|service| format!("{service}.{}.amazonaws.com", self.region))
            .chain(self.api_fips_names())
            .collect()
    }

    /// The FIPS API names, `<service>-fips.<region>.amazonaws.com`: what the AWS SDKs dial
    /// instead of the regional names when `AWS_USE_FIPS_ENDPOINT=true` (or
    /// `use_fips_endpoint = true` in the profile). The front serves them as the regional
    /// ones and logs the Host of every call, so a test can see which names were used.
    pub fn api_fips_names(&self) -> Vec<String> {
        Self::API_SERVICES
            .iter()
            .map(|service| format!("{service}-fips.{}.amazonaws.com", self.region))
            .collect()
    }

    /// The domain of endpoint DNS names: `ec2-instance-connect-endpoint.<region>.amazonaws.com`.
    pub fn eice_domain(&self) -> String {
        format!(
            "ec2-instance-connect-endpoint.{}.amazonaws.com",
            self.region
        )
    }

    /// `unshare --mount --propagation private -- sh -c 'mount --bind HOSTS /etc/hosts &&
    /// exec "$@"' sh PROGRAM`: a command that runs `program` in the root network
    /// namespace (the laptop) but in a private mount namespace where the lab's hosts file
    /// is `/etc/hosts`, so the real AWS names resolve to the fakes. Nothing else changes
    /// (no environment is set here).
    pub fn wrap(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        with_hosts_file(&self.hosts, program)
    }

    /// The environment a client on the laptop needs besides [`AwsLab::wrap`]: region,
    /// the fake keys, the CA (both `SSL_CERT_FILE` and `AWS_CA_BUNDLE`), and no instance
    /// metadata lookups.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", self.region.to_owned()),
            ("AWS_ACCESS_KEY_ID", self.access_key_id.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.to_owned()),
            ("SSL_CERT_FILE", self.ca.display().to_string()),
            ("AWS_CA_BUNDLE", self.ca.display().to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// The Python of the venv.
    pub fn python() -> PathBuf {
        Path::new(VENV).join("bin/python")
    }

    /// Where the fakes' Python files are written (`<dir>/aws/fakes`).
    pub fn fakes_dir(&self) -> PathBuf {
        self.dir.join("fakes")
    }

    /// The fakes' log (moto's and the front's are separate files in the lab's logs).
    fn config_file(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    fn seed_file(&self) -> PathBuf {
        self.dir.join("seed.env")
    }

    /// The directory of pushed keys: `<dir>/aws/eic-keys/<private IP>/<user>`.
    fn keys_dir(&self) -> PathBuf {
        self.dir.join("eic-keys")
    }

    fn key_ttl_file(&self) -> PathBuf {
        self.dir.join("key-ttl")
    }

    fn moto_pid_file(&self) -> PathBuf {
        self.dir.join("moto.pid")
    }

    fn front_pid_file(&self) -> PathBuf {
        self.dir.join("front.pid")
    }

    /// What seeding created; an error if the AWS side is not up.
    pub fn ids(&self) -> Result<AwsIds> {
        let file = self.seed_file();
        let text = fs::read_to_string(&file).with_context(|| {
            format!(
                "cannot read {} (is the AWS side of the lab up?)",
                file.display()
            )
        })?;
        Ok(AwsIds {
            values: parse_env(&text),
        })
    }
}

/// `program` in a private mount namespace where `hosts` is bind-mounted over
/// `/etc/hosts` (see [`AwsLab::wrap`]). `unshare` execs `sh`, which execs `program`, so
/// the child's PID is the program's. Needs root.
pub fn with_hosts_file(hosts: &Path, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
        .arg(hosts)
        .arg(program);
    cmd
}

fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The `AuthorizedKeysCommand` lines of the sshd that serves the instance at `ip`.
pub(super) fn sshd_config_lines(lab: &Lab, ip: Ipv4Addr) -> String {
    format!(
        "# EC2 Instance Connect: keys pushed by SendSSHPublicKey (tests/aws_fakes).\n\
         AuthorizedKeysCommand {AUTHORIZED_KEYS_COMMAND} {} %u\n\
         AuthorizedKeysCommandUser root\n",
        lab.aws.keys_dir().join(ip.to_string()).display()
    )
}

/// Installs `eic-authorized-keys` (if missing or different). Shared by all labs; the
/// content is fixed, and the file is replaced atomically.
pub(super) fn install_authorized_keys_command() -> Result<()> {
    let path = Path::new(AUTHORIZED_KEYS_COMMAND);
    if fs::read_to_string(path).is_ok_and(|text| text == AUTHORIZED_KEYS_SCRIPT) {
        return Ok(());
    }
    let dir = path.parent().context("no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for d in [dir, dir.parent().context("no parent")?] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
    }
    let tmp = dir.join(format!(".eic-authorized-keys.{}", std::process::id()));
    fs::write(&tmp, AUTHORIZED_KEYS_SCRIPT)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot install {}", path.display()))?;
    Ok(())
}

/// Fails, naming `tests/setup.sh`, unless the venv and openssl are there.
pub(super) fn preflight() -> Result<()> {
    let ok = exec::succeeds(
        Command::new(AwsLab::python()).args(["-c", "import moto, boto3, botocore, websockets"]),
    );
    if !ok {
        bail!(
            "the AWS side of the lab needs the venv {VENV} (moto, boto3, websockets): \
             run `sudo tests/setup.sh`, or bring the lab up without it (LAB_AWS=0)"
        );
    }
    if !super::preflight::have("openssl") {
        bail!("the AWS side of the lab needs openssl: run `sudo tests/setup.sh`");
    }
    Ok(())
}

/// The network of the aws namespace (see the module docs). Idempotent.
pub(super) fn net_up(lab: &Lab) -> Result<()> {
    let aws = &lab.aws;
    let ns = aws.ns.as_str();
    super::net::ensure_ns(ns)?;
    let has = |ns: &str, link: &str| {
        exec::succeeds(Command::new("ip").args(["-n", ns, "link", "show", link]))
    };
    let ip = |args: &[&str]| exec::run(Command::new("ip").args(args));
    let ip_in = |ns: &str, args: &[&str]| exec::run(Command::new("ip").args(["-n", ns]).args(args));
    // Laptop <-> aws ("the internet").
    if !has(ns, "eth0") {
        let _ = ip(&["link", "del", &aws.veth_root]);
        ip(&[
            "link",
            "add",
            &aws.veth_root,
            "type",
            "veth",
            "peer",
            "name",
            &aws.veth_aws_tmp,
        ])?;
        ip(&["link", "set", &aws.veth_aws_tmp, "netns", ns])?;
        ip_in(ns, &["link", "set", &aws.veth_aws_tmp, "name", "eth0"])?;
    }
    ip(&[
        "addr",
        "replace",
        &format!("{}/24", aws.laptop_ip),
        "dev",
        &aws.veth_root,
    ])?;
    ip(&["link", "set", &aws.veth_root, "up"])?;
    for addr in [aws.api_ip, aws.eice_ip, aws.ssm_ip] {
        ip_in(
            ns,
            &["addr", "replace", &format!("{addr}/24"), "dev", "eth0"],
        )?;
    }
    ip_in(ns, &["link", "set", "eth0", "up"])?;

    // aws <-> private subnet (the endpoint's ENI). The private side has no address on
    // this link: its hosts answer ARP for their own addresses on any interface, and a
    // /32 route sends replies to the ENI back this way rather than to the bastion.
    if !has(ns, "eth1") {
        let _ = ip_in(&lab.ns_priv, &["link", "del", "eth1"]);
        ip(&[
            "link",
            "add",
            &aws.veth_priv_tmp,
            "type",
            "veth",
            "peer",
            "name",
            &aws.veth_priv2_tmp,
        ])?;
        ip(&["link", "set", &aws.veth_priv_tmp, "netns", ns])?;
        ip(&["link", "set", &aws.veth_priv2_tmp, "netns", &lab.ns_priv])?;
        ip_in(ns, &["link", "set", &aws.veth_priv_tmp, "name", "eth1"])?;
        ip_in(
            &lab.ns_priv,
            &["link", "set", &aws.veth_priv2_tmp, "name", "eth1"],
        )?;
    }
    ip_in(
        ns,
        &[
            "addr",
            "replace",
            &format!("{}/24", aws.subnet_ip),
            "dev",
            "eth1",
        ],
    )?;
    ip_in(ns, &["link", "set", "eth1", "up"])?;
    ip_in(&lab.ns_priv, &["link", "set", "eth1", "up"])?;
    ip_in(
        &lab.ns_priv,
        &[
            "route",
            "replace",
            &format!("{}/32", aws.subnet_ip),
            "dev",
            "eth1",
        ],
    )?;
    Ok(())
}

/// Stops moto and the front (by pid file). For `down` and for a restart.
pub(super) fn stop_targets(lab: &Lab) -> Vec<(u32, Signal, String)> {
    [
        (lab.aws.ssm_agent_pid_file(), "ssm agent"),
        (lab.aws.front_pid_file(), "aws front"),
        (lab.aws.moto_pid_file(), "moto_server"),
    ]
    .into_iter()
    .filter_map(|(file, what)| {
        process::live_pid(&file).map(|pid| (pid, Signal::SIGTERM, what.to_owned()))
    })
    .collect()
}

/// Brings the AWS side up (see the module docs). Idempotent: when moto and the front
/// both run and seeding finished, nothing happens.
pub(super) fn up(lab: &Lab, progress: &Progress) -> Result<()> {
    let aws = &lab.aws;
    let running = process::live_pid(&aws.moto_pid_file()).is_some()
        && process::live_pid(&aws.front_pid_file()).is_some();
    if running && aws.seed_file().exists() {
        return ssm::agent_up(lab, progress);
    }
    process::stop(&stop_targets(lab), progress);
    fs::create_dir_all(aws.fakes_dir())?;
    for state in [
        aws.seed_file(),
        aws.dir.join("endpoints.json"),
        aws.key_ttl_file(),
    ] {
        let _ = fs::remove_file(state);
    }
    let _ = fs::remove_dir_all(aws.keys_dir());
    fs::create_dir_all(aws.keys_dir())?;
    for (name, text) in FAKES {
        fs::write(aws.fakes_dir().join(name), text)?;
    }
    progress.step("aws: CA and certificate");
    tls(lab)?;
    write_hosts(lab)?;
    fs::write(aws.config_file(), config_json(lab))?;

    progress.step(&format!(
        "aws: moto_server on 127.0.0.1:{MOTO_PORT} in {}",
        aws.ns
    ));
    let moto = lab.spawn_in(
        &aws.ns,
        Path::new(VENV).join("bin/moto_server"),
        ["-H", "127.0.0.1", "-p", &MOTO_PORT.to_string()],
        "moto.log",
    )?;
    fs::write(aws.moto_pid_file(), format!("{}\n", moto.id()))?;
    progress.step(&format!(
        "aws: front on {}:443 and {}:443",
        aws.api_ip, aws.eice_ip
    ));
    let mut front_cmd = ns_command(&aws.ns, AwsLab::python());
    front_cmd
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .arg(aws.fakes_dir().join("front.py"))
        .arg(aws.config_file());
    let front = exec::spawn_logged(&mut front_cmd, &lab.log_dir().join("aws-front.log"))?;
    fs::write(aws.front_pid_file(), format!("{}\n", front.id()))?;
    for (addr, pid_file, log) in [
        (
            SocketAddr::from((Ipv4Addr::LOCALHOST, MOTO_PORT)),
            aws.moto_pid_file(),
            "moto.log",
        ),
        (
            SocketAddr::from((aws.api_ip, TLS_PORT)),
            aws.front_pid_file(),
            "aws-front.log",
        ),
        (
            SocketAddr::from((aws.eice_ip, TLS_PORT)),
            aws.front_pid_file(),
            "aws-front.log",
        ),
        (
            SocketAddr::from((aws.ssm_ip, TLS_PORT)),
            aws.front_pid_file(),
            "aws-front.log",
        ),
        (
            SocketAddr::from((aws.ssm_ip, AwsLab::SSM_CONTROL_PORT)),
            aws.front_pid_file(),
            "aws-front.log",
        ),
    ] {
        let log = lab.log_dir().join(log);
        netns::wait_tcp(&aws.ns, addr, Duration::from_secs(20), || {
            process::live_pid(&pid_file)
                .is_none()
                .then(|| format!("it exited (see {})", log.display()))
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "aws fake on {addr} did not come up: {e} (see {})",
                log.display()
            )
        })?;
    }

    progress.step("aws: seeding moto");
    let mut seed = ns_command(&aws.ns, AwsLab::python());
    seed.env("PYTHONDONTWRITEBYTECODE", "1")
        .env("AWS_CA_BUNDLE", &aws.ca)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .arg(aws.fakes_dir().join("seed.py"))
        .arg(aws.config_file())
        .arg(aws.seed_file());
    exec::run(&mut seed).with_context(|| {
        format!(
            "seeding moto failed (see {})",
            lab.log_dir().join("aws-front.log").display()
        )
    })?;
    // The RDS endpoint's name now exists: make it resolve inside the VPC.
    super::net::write_hosts(lab)?;
    ssm::agent_up(lab, progress)
}

/// Extra `IP NAME` lines for the VPC's hosts files: the RDS endpoint, once seeded.
pub(super) fn vpc_hosts(lab: &Lab) -> String {
    lab.aws
        .ids()
        .ok()
        .and_then(|ids| ids.values.get("RDS_ENDPOINT").cloned())
        .map(|name| format!("{} {name}\n", lab.postgres_ip))
        .unwrap_or_default()
}

/// The laptop's hosts file (root's /etc/hosts plus the AWS names) and the aws
/// namespace's (`/etc/netns/<prefix>-aws/hosts`, for the seeding client there).
fn write_hosts(lab: &Lab) -> Result<()> {
    let aws = &lab.aws;
    let (ssm_names, api_names): (Vec<String>, Vec<String>) =
        aws.api_names().into_iter().partition(|name| {
            name.starts_with("ssmmessages.") || name.starts_with("ssmmessages-fips.")
        });
    let names = format!(
        "{} {}\n{} {}\n",
        aws.api_ip,
        api_names.join(" "),
        aws.ssm_ip,
        ssm_names.join(" ")
    );
    let root = fs::read_to_string("/etc/hosts").unwrap_or_default();
    let laptop = format!(
        "{root}\n# aws-hop lab {}: AWS fakes\n{names}",
        lab.config.prefix
    );
    fs::write(&aws.hosts, laptop)?;
    fs::set_permissions(&aws.hosts, fs::Permissions::from_mode(0o644))?;
    let dir = Path::new("/etc/netns").join(&aws.ns);
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("hosts"),
        format!("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{names}"),
    )?;
    Ok(())
}

/// `config.json` for front.py and seed.py.
fn config_json(lab: &Lab) -> String {
    let aws = &lab.aws;
    let s = |p: &Path| json_str(&p.display().to_string());
    let octet = lab.config.net.rsplit('.').next().unwrap_or("0");
    format!(
        "{{\n  \"region\": {region},\n  \"access_key\": {ak},\n  \"secret_key\": {sk},\n  \
         \"account_id\": {acct},\n  \"api_ip\": {api},\n  \"eice_ip\": {eice},\n  \"port\": {TLS_PORT},\n  \
         \"moto\": \"127.0.0.1:{MOTO_PORT}\",\n  \"moto_seed\": {octet},\n  \"cert\": {cert},\n  \"key\": {key},\n  \
         \"users\": [{user}],\n  \"keys_dir\": {keys},\n  \"key_ttl_file\": {ttl},\n  \
         \"hosts_files\": [{hosts}, {ns_hosts}],\n  \"eice_dns_label\": {label},\n  \
         \"state_file\": {state},\n  \"net\": {net},\n  \"prefix\": {prefix},\n  \
         \"db_user\": {db_user},\n  \"db_password\": {db_password},\n  \"db_name\": {db_name}\n}}\n",
        region = json_str(aws.region),
        ak = json_str(aws.access_key_id),
        sk = json_str(aws.secret_access_key),
        acct = json_str(ACCOUNT_ID),
        api = json_str(&aws.api_ip.to_string()),
        eice = json_str(&aws.eice_ip.to_string()),
        cert = s(&aws.dir.join("server.pem")),
        key = s(&aws.dir.join("server.key")),
        user = json_str(&lab.user),
        keys = s(&aws.keys_dir()),
        ttl = s(&aws.key_ttl_file()),
        hosts = s(&aws.hosts),
        ns_hosts = s(&Path::new("/etc/netns").join(&aws.ns).join("hosts")),
        label = json_str(&aws.eice_dns_label),
        state = s(&aws.dir.join("endpoints.json")),
        net = json_str(&lab.config.net),
        prefix = json_str(&lab.config.prefix),
        db_user = json_str(lab.db_user),
        db_password = json_str(lab.db_password),
        db_name = json_str(lab.db_name),
    )
}

/// A JSON string literal (the values here are plain ASCII; quotes and backslashes are
/// escaped anyway).
fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The lab CA and the fakes' certificate (EC P-256, 30 days), unless they exist. The
/// certificate is issued again (by the same CA) when its names changed, e.g. a lab state
/// directory from before the FIPS names were served.
fn tls(lab: &Lab) -> Result<()> {
    let aws = &lab.aws;
    let (ca_key, cert, key, ext) = (
        aws.dir.join("ca.key"),
        aws.dir.join("server.pem"),
        aws.dir.join("server.key"),
        aws.dir.join("server.ext"),
    );
    let domain = aws.eice_domain();
    let mut sans: Vec<String> = aws.api_names();
    sans.extend([
        format!("*.{domain}"),
        format!("*.{}.{domain}", aws.eice_dns_label),
        format!("*.{}.fips.{domain}", aws.eice_dns_label),
    ]);
    let ext_text = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName={}\n",
        sans.iter()
            .map(|n| format!("DNS:{n}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let have_ca = aws.ca.exists() && ca_key.exists();
    if have_ca
        && cert.exists()
        && key.exists()
        && fs::read_to_string(&ext).is_ok_and(|old| old == ext_text)
    {
        return Ok(());
    }
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    if !have_ca {
        exec::run(
            Command::new("openssl")
                .args(["req", "-x509"])
                .args(ec)
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&aws.ca)
                .args(["-days", "30", "-subj"])
                .arg(format!("/CN=aws-hop lab {} CA", lab.config.prefix))
                .args([
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ]),
        )?;
    }
    let csr = aws.dir.join("server.csr");
    exec::run(
        Command::new("openssl")
            .arg("req")
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", "/CN=aws-hop lab AWS fakes"]),
    )?;
    fs::write(&ext, &ext_text)?;
    exec::run(
        Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&aws.ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .args(["-CAcreateserial", "-days", "30", "-out"])
            .arg(&cert)
            .arg("-extfile")
            .arg(&ext),
    )?;
    fs::set_permissions(&aws.ca, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// One tunnel the fake EICE opened, as the front logged it (see [`Lab::eice_tunnels`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EiceTunnel {
    /// The endpoint's id (`eice-...`).
    pub endpoint_id: String,
    /// `IP:PORT` the endpoint connected to.
    pub target: String,
    /// True when the client dialed the endpoint's `FipsDnsName`, false for its `DnsName`.
    pub fips: bool,
    /// The name dialed (the WebSocket's `Host`).
    pub host: String,
}

impl Lab {
    /// The front's log (`aws-front.log`): API calls, EICE tunnels, the SSM gateway.
    fn aws_front_log(&self) -> Result<String> {
        let path = self.log_dir().join("aws-front.log");
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Every tunnel the fake EICE opened since the AWS side came up, in order, with the
    /// name it was dialed by (`DnsName` or `FipsDnsName`). The log is the lab's, shared by
    /// the tests of one process: compare counts before and after, or filter.
    pub fn eice_tunnels(&self) -> Result<Vec<EiceTunnel>> {
        // `HH:MM:SS.mmm eice ID: tunnel to IP:PORT via DnsName|FipsDnsName HOST (max N s)`
        Ok(self
            .aws_front_log()?
            .lines()
            .filter_map(|line| {
                let rest = line.split_once(" eice ")?.1;
                let (id, rest) = rest.split_once(": tunnel to ")?;
                let mut words = rest.split(' ');
                let target = words.next()?;
                if words.next()? != "via" {
                    return None;
                }
                let fips = match words.next()? {
                    "FipsDnsName" => true,
                    "DnsName" => false,
                    _ => return None,
                };
                Some(EiceTunnel {
                    endpoint_id: id.to_owned(),
                    target: target.to_owned(),
                    fips,
                    host: words.next()?.to_owned(),
                })
            })
            .collect())
    }

    /// The `Host` of every API call the front served (`ec2.us-east-1.amazonaws.com`, or
    /// `ec2-fips.us-east-1.amazonaws.com` from a client in FIPS mode, ...), in order. Like
    /// [`Lab::eice_tunnels`], shared by the tests of one process.
    pub fn aws_api_hosts(&self) -> Result<Vec<String>> {
        // `HH:MM:SS.mmm api IP host=NAME "POST / HTTP/1.1" 200 -`
        Ok(self
            .aws_front_log()?
            .lines()
            .filter_map(|line| {
                let rest = line.split_once(" api ")?.1;
                let host = rest.split(' ').nth(1)?.strip_prefix("host=")?;
                Some(host.to_owned())
            })
            .collect())
    }
}

impl Lab {
    /// How long a key pushed by SendSSHPublicKey stays valid (60 s, as on AWS, until
    /// this is called). Applies to keys pushed afterwards; for tests of expiry.
    pub fn set_eic_key_ttl(&self, ttl: Duration) -> Result<()> {
        let file = self.aws.key_ttl_file();
        fs::write(&file, format!("{}\n", ttl.as_secs_f64()))
            .with_context(|| format!("cannot write {}", file.display()))
    }

    /// Runs `labclient.py ARGS...` (the venv's boto3 and websockets) as a client on the
    /// laptop: in the root network namespace, with the lab hosts file and CA. Returns
    /// its output whatever the exit status.
    pub fn aws_client<I, S>(&self, args: I) -> Result<std::process::Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.python_client("labclient.py", args)
    }

    /// Runs one of the fakes' Python clients (`script` in the fakes directory) as a laptop
    /// client: the lab hosts file and CA, the lab's fake keys, no inherited `AWS_*`.
    pub(crate) fn python_client<I, S>(&self, script: &str, args: I) -> Result<std::process::Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.aws.wrap(AwsLab::python());
        cmd.arg(self.aws.fakes_dir().join(script)).args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.aws.client_env())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        exec::output_with_timeout(&mut cmd, Duration::from_mins(1))
    }
}
