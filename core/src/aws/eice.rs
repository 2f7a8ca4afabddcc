//! EC2 Instance Connect Endpoint discovery: what `eic_endpoint("web-1")` asks AWS before the
//! tunnel transport ([`crate::hop::eice`]) can dial.
//!
//! [`connect`] resolves the instance ([`super::instances::find`]; it must be running), then
//! finds the endpoint as the AWS CLI does (`shared/protocols/eice.md` §1.2):
//! `DescribeInstanceConnectEndpoints` in the states that serve tunnels (`create-complete` and
//! the `update-*` states), preferring the one in the instance's subnet, else the first in its
//! VPC. An `endpoint: "eice-…"` option names one instead. No endpoint is an error that names
//! the VPC and how to create one.

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_ec2::types::Filter;

use super::config::{AwsConfig, api_error};
use super::instance_connect::InstanceConnect;
use super::instances::{self, InstanceInfo};
use crate::error::{Error, Result};
use crate::hop::eice::{EiceHop, Endpoint, USABLE_STATES, timing};

/// Options of `eic_endpoint()` beyond the AWS profile and region.
#[derive(Debug, Clone, Default)]
pub struct EiceOptions {
    /// Use this endpoint (`eice-…`) instead of discovering one.
    pub endpoint: Option<String>,
    /// `maxTunnelDuration` in seconds (1–3600); needed when an IAM policy limits it.
    pub max_duration_secs: Option<u32>,
}

/// Resolves `target` (id, Name tag or private IP) and its endpoint, and builds the hop.
/// Nothing is dialed: every stream opens its own tunnel.
pub async fn connect(config: AwsConfig, target: &str, opts: EiceOptions) -> Result<EiceHop> {
    crate::hop::eice::url::check_max_duration(opts.max_duration_secs)?;
    refuse_managed_node(target)?;
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
    let keys = Arc::new(InstanceConnect::new(config.clone(), instance.clone()));
    EiceHop::new(
        Arc::new(config),
        keys,
        instance.to_hop(),
        ip,
        endpoint,
        opts.max_duration_secs,
    )
}

/// Refuses a managed node's id (`mi-…`): EICE reaches EC2 instances in a VPC only. Checked
/// before any AWS call, so the error names the cause rather than a failed lookup.
pub fn refuse_managed_node(target: &str) -> Result<()> {
    let target = target.trim();
    if instances::is_managed_node_id(target) {
        return Err(Error::invalid(format!(
            "{target} is a managed node (hybrid, registered with SSM), not an EC2 instance: EC2 \
             Instance Connect Endpoints reach EC2 instances in a VPC only; use ssm(\"{target}\")"
        )));
    }
    Ok(())
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
