//! The EC2 Instance Connect Endpoint (EICE) hop: the tunnel transport of `eic_endpoint("web-1")`.
//!
//! The AWS layer (`aws::eice`) resolves the instance and discovers its endpoint, then builds an
//! [`EiceHop`] from the result. This file only opens tunnels:
//!
//! Each [`EiceHop::open`] signs a fresh `OpenTunnel` URL ([`url`]; a URL is valid 60 s, so one
//! is never reused) with the [`Signer`]'s current credentials and dials it ([`super::ws`]). A
//! tunnel reaches one address: the instance's private IP, on port 22 or 3389. Asking for
//! another host is refused here with the reason, another port by the URL layer.
//!
//! An SSH login over this hop (`eic_endpoint("web-1").ssh("ec2-user")`, see `login`) pushes an
//! in-memory key with [`EiceHop::key_push`] before every dial, because a pushed key is accepted
//! for 60 s only.

pub mod url;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use self::url::TunnelRequest;
use super::Stream;
use super::tunnel::{Instance, KeyPush, Signer};
use crate::error::{Error, Result};

/// Endpoint states in which an endpoint serves tunnels (the AWS CLI's list since 2025-09).
pub const USABLE_STATES: [&str; 4] = [
    "create-complete",
    "update-in-progress",
    "update-failed",
    "update-complete",
];

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
    signer: Arc<dyn Signer>,
    keys: Arc<dyn KeyPush>,
    instance: Instance,
    ip: IpAddr,
    endpoint: Endpoint,
    max_duration_secs: Option<u32>,
    closed: AtomicBool,
}

impl EiceHop {
    /// A hop to `instance` at `ip` through `endpoint`. Nothing is dialed: every stream opens
    /// its own tunnel. `max_duration_secs` must be within 1..=3600.
    pub fn new(
        signer: Arc<dyn Signer>,
        keys: Arc<dyn KeyPush>,
        instance: Instance,
        ip: IpAddr,
        endpoint: Endpoint,
        max_duration_secs: Option<u32>,
    ) -> Result<EiceHop> {
        url::check_max_duration(max_duration_secs)?;
        Ok(EiceHop {
            signer,
            keys,
            instance,
            ip,
            endpoint,
            max_duration_secs,
            closed: AtomicBool::new(false),
        })
    }

    /// What pushes a login key to the instance (SendSSHPublicKey).
    pub fn key_push(&self) -> Arc<dyn KeyPush> {
        self.keys.clone()
    }

    /// The instance this hop reaches.
    pub fn instance(&self) -> &Instance {
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
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip == self.ip) || self.instance.is_named_by(host)
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
                self.instance.short_name(),
            )));
        }
        let started = Instant::now();
        let credentials = self.signer.credentials().await?;
        let url = TunnelRequest {
            endpoint_id: self.endpoint.id.clone(),
            dns_name: self.endpoint.dns_name.clone(),
            remote_port: port,
            private_ip: self.ip,
            max_duration_secs: self.max_duration_secs,
            region: self.signer.region().to_string(),
            credentials,
            time: SystemTime::now(),
        }
        .presign()?;
        timing("presign", started);
        let started = Instant::now();
        let stream = super::ws::connect(url.as_str()).await?;
        timing("WebSocket connect", started);
        Ok(stream)
    }

    /// Marks the hop closed: no new tunnels. Open ones run until they end.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Logs how long one step of setting up a tunnel took (`-vv`; `hop-lab bench` reads these
/// lines for its EICE setup breakdown). The lookups in `aws::eice` log theirs with it too.
pub fn timing(step: &str, started: Instant) {
    tracing::debug!(
        "eice timing: {step} {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
}
