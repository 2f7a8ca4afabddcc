//! The EC2 Instance Connect Endpoint (EICE) hop: `eic_endpoint("web-1")`.
//!
//! [`EiceHop::connect`] resolves the instance ([`super::instances::find`]; it must be
//! running), then finds the endpoint as the AWS CLI does (`shared/protocols/eice.md` §1.2):
//! `DescribeInstanceConnectEndpoints` in the states that serve tunnels (`create-complete` and
//! the `update-*` states), preferring the one in the instance's subnet, else the first in its
//! VPC. An `endpoint: "eice-…"` option names one instead. No endpoint is an error that names
//! the VPC and how to create one.
//!
//! Each [`EiceHop::open`] signs a fresh `OpenTunnel` URL ([`super::eice_url`]; a URL is valid
//! 60 s, so one is never reused) with the configuration's current credentials and dials it
//! ([`super::ws_stream::connect`]). A tunnel reaches one address: the instance's private IP,
//! on port 22 or 3389. Asking for another host is refused here with the reason, another port
//! by the URL layer.
//!
//! [`EiceHop::push_key`] is `SendSSHPublicKey`: an SSH session over this hop
//! (`eic_endpoint("web-1").ssh("ec2-user")`) pushes an in-memory ed25519 key before every dial,
//! because a pushed key is accepted for 60 s only.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use aws_sdk_ec2::types::Filter;

use super::config::{AwsConfig, api_error};
use super::eice_url::{MAX_DURATION_SECS, TunnelRequest};
use super::instances::{self, InstanceInfo};
use super::ws_stream;
use crate::error::{Error, Result};
use crate::hop::Stream;

/// Endpoint states in which an endpoint serves tunnels (the AWS CLI's list since 2025-09).
pub const USABLE_STATES: [&str; 4] = [
    "create-complete",
    "update-in-progress",
    "update-failed",
    "update-complete",
];

/// Options of `eic_endpoint()` beyond the AWS profile and region.
#[derive(Debug, Clone, Default)]
pub struct EiceOptions {
    /// Use this endpoint (`eice-…`) instead of discovering one.
    pub endpoint: Option<String>,
    /// `maxTunnelDuration` in seconds (1–3600); needed when an IAM policy limits it.
    pub max_duration_secs: Option<u32>,
}

/// An Instance Connect Endpoint, as discovery found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `eice-…`.
    pub id: String,
    /// The host to dial: `DnsName`, or `FipsDnsName` in FIPS mode.
    pub dns_name: String,
    /// Its subnet.
    pub subnet_id: Option<String>,
    /// Its VPC.
    pub vpc_id: Option<String>,
    /// Its state (one of [`USABLE_STATES`]).
    pub state: String,
}

/// A tunnel route to one instance through an Instance Connect Endpoint.
pub struct EiceHop {
    config: AwsConfig,
    instance: InstanceInfo,
    ip: IpAddr,
    endpoint: Endpoint,
    max_duration_secs: Option<u32>,
    closed: AtomicBool,
}

impl EiceHop {
    /// Resolves `target` (id, Name tag or private IP) and its endpoint. Nothing is dialed:
    /// every stream opens its own tunnel.
    pub async fn connect(config: AwsConfig, target: &str, opts: EiceOptions) -> Result<EiceHop> {
        if let Some(d) = opts.max_duration_secs
            && !MAX_DURATION_SECS.contains(&d)
        {
            return Err(Error::invalid(format!(
                "option `max_duration` is {d}: an EICE tunnel lasts 1 to 3600 seconds"
            )));
        }
        let started = Instant::now();
        let instance = instances::find(&config, target).await?;
        timing("instance lookup", started);
        instance.require_running("eic_endpoint")?;
        let ip = instance.private_address()?;
        let started = Instant::now();
        let endpoint = discover(&config, &instance, opts.endpoint.as_deref()).await?;
        timing("endpoint discovery", started);
        tracing::debug!(
            "eice: {} at {ip} through {} ({})",
            instance.label(),
            endpoint.id,
            endpoint.dns_name
        );
        Ok(EiceHop {
            config,
            instance,
            ip,
            endpoint,
            max_duration_secs: opts.max_duration_secs,
            closed: AtomicBool::new(false),
        })
    }

    /// The configuration (for SendSSHPublicKey).
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// The instance this hop reaches.
    pub fn instance(&self) -> &InstanceInfo {
        &self.instance
    }

    /// The endpoint it goes through.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The instance's private address (the only host a tunnel reaches).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// `eice web-1 (i-0abc…) 10.0.1.20 via eice-0def…`.
    pub fn describe(&self) -> String {
        format!(
            "eice {} {} via {}",
            self.instance.label(),
            self.ip,
            self.endpoint.id
        )
    }

    /// True when `host` names this hop's instance: its private IP, its id or its Name tag.
    pub fn is_instance(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<IpAddr>().is_ok_and(|ip| ip == self.ip)
            || host == self.instance.id
            || self.instance.name.as_deref() == Some(host)
    }

    /// Opens a tunnel to the instance's `port` (22 or 3389), signed now.
    pub async fn open(&self, host: &str, port: u16) -> Result<Stream> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed {
                what: self.describe(),
                why: "the hop was closed with close()".into(),
            });
        }
        if !self.is_instance(host) {
            return Err(Error::invalid(format!(
                "{} reaches only its instance ({}, port 22 or 3389), not {host}: an EICE tunnel \
                 is addressed to one private IP; to reach other hosts, SSH to the instance first \
                 (eic_endpoint(\"{}\").ssh(\"ec2-user\")) and forward through that session",
                self.describe(),
                self.ip,
                self.instance.name.as_deref().unwrap_or(&self.instance.id),
            )));
        }
        let started = Instant::now();
        let credentials = self.config.credentials().await?;
        let url = TunnelRequest {
            endpoint_id: self.endpoint.id.clone(),
            dns_name: self.endpoint.dns_name.clone(),
            remote_port: port,
            private_ip: self.ip,
            max_duration_secs: self.max_duration_secs,
            region: self.config.region.clone(),
            credentials,
            time: SystemTime::now(),
        }
        .presign()?;
        timing("presign", started);
        let started = Instant::now();
        let stream = ws_stream::connect(url.as_str()).await?;
        timing("WebSocket connect", started);
        Ok(stream)
    }

    /// Pushes `public_key` (OpenSSH form, `ssh-ed25519 AAAA…`) for `user` with
    /// `SendSSHPublicKey`; the instance accepts it for 60 s.
    pub async fn push_key(&self, user: &str, public_key: &str) -> Result<()> {
        super::instance_connect::send_ssh_public_key(&self.config, &self.instance, user, public_key)
            .await
    }

    /// Marks the hop closed: no new tunnels. Open ones run until they end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Logs how long one step of setting up a tunnel took (`-vv`; `hop-lab bench` reads these
/// lines for its EICE setup breakdown).
fn timing(step: &str, started: Instant) {
    tracing::debug!(
        "eice timing: {step} {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// Finds the endpoint for `instance`: `wanted` by id, else the one in its subnet, else the
/// first usable one in its VPC.
pub async fn discover(
    config: &AwsConfig,
    instance: &InstanceInfo,
    wanted: Option<&str>,
) -> Result<Endpoint> {
    let ec2 = config.ec2();
    let states = Filter::builder()
        .name("state")
        .set_values(Some(
            USABLE_STATES.iter().map(ToString::to_string).collect(),
        ))
        .build();
    let vpc = instance.vpc_id.clone();
    let mut found: Vec<Endpoint> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = ec2
            .describe_instance_connect_endpoints()
            .filters(states.clone())
            .set_next_token(token.take());
        match (wanted, &vpc) {
            (Some(id), _) => req = req.instance_connect_endpoint_ids(id),
            (None, Some(v)) => {
                req = req.filters(Filter::builder().name("vpc-id").values(v).build());
            }
            (None, None) => {
                return Err(Error::Aws {
                    what: format!("instance {} is in no VPC", instance.label()),
                    reason: "EC2 Instance Connect Endpoints serve instances in a VPC".into(),
                    hint: "pass #{ endpoint: \"eice-...\" }, or use another strategy".into(),
                });
            }
        }
        let page = match req.send().await {
            Ok(p) => p,
            Err(e) => {
                let code = e.as_service_error().and_then(|se| {
                    aws_sdk_ec2::error::ProvideErrorMetadata::code(se).map(str::to_string)
                });
                if let (Some(id), Some(code)) = (wanted, code.as_deref())
                    && code.starts_with("InvalidInstanceConnectEndpointId")
                {
                    return Err(Error::Aws {
                        what: format!("no Instance Connect Endpoint {id}"),
                        reason: format!("EC2 in {} answered {code}", config.region),
                        hint: "check the id and the region; or leave `endpoint` out to use the \
                               instance's VPC's endpoint"
                            .into(),
                    });
                }
                return Err(api_error(
                    "DescribeInstanceConnectEndpoints",
                    &config.profile,
                    e,
                ));
            }
        };
        for ep in page.instance_connect_endpoints() {
            let dns = if config.use_fips() {
                ep.fips_dns_name()
            } else {
                ep.dns_name()
            };
            let (Some(id), Some(dns)) = (ep.instance_connect_endpoint_id(), dns) else {
                continue;
            };
            found.push(Endpoint {
                id: id.to_string(),
                dns_name: dns.to_string(),
                subnet_id: ep.subnet_id().map(str::to_string),
                vpc_id: ep.vpc_id().map(str::to_string),
                state: ep
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    if let Some(id) = wanted {
        return found.into_iter().next().ok_or_else(|| Error::Aws {
            what: format!("Instance Connect Endpoint {id} is not usable"),
            reason: format!(
                "it is not in a state that serves tunnels ({}){}",
                USABLE_STATES.join(", "),
                if config.use_fips() {
                    ", or has no FIPS DNS name"
                } else {
                    ""
                }
            ),
            hint: "wait for it to finish creating (`aws ec2 describe-instance-connect-endpoints`)"
                .into(),
        });
    }
    let same_subnet = found
        .iter()
        .position(|e| e.subnet_id.is_some() && e.subnet_id == instance.subnet_id);
    match same_subnet {
        Some(i) => Ok(found.swap_remove(i)),
        None if !found.is_empty() => Ok(found.swap_remove(0)),
        None => {
            let vpc = vpc.unwrap_or_default();
            Err(Error::Aws {
                what: format!(
                    "no EC2 Instance Connect Endpoint in {vpc} for instance {}",
                    instance.label()
                ),
                reason: format!(
                    "DescribeInstanceConnectEndpoints in {} found none in a usable state ({})",
                    config.region,
                    USABLE_STATES.join(", ")
                ),
                hint: format!(
                    "create one (one per VPC): `aws ec2 create-instance-connect-endpoint \
                     --subnet-id {}` and allow port 22 from its security group to the \
                     instance; or pass #{{ endpoint: \"eice-...\" }}; or reach the instance \
                     another way (ssm, a bastion)",
                    instance.subnet_id.as_deref().unwrap_or("subnet-...")
                ),
            })
        }
    }
}
