//! Finding EC2 instances: `instance("web-1")` and `instances(#{ "tag:Role": "web" })`.
//!
//! [`find`] takes what a person would type and decides how to look it up:
//!
//! - `i-0123abcd…`: by instance id;
//! - an IPv4 or IPv6 address: by private address (`private-ip-address`, or the IPv6 one);
//! - anything else: by `Name` tag, exactly, or as a pattern when it holds `*` or `?`
//!   (matched by EC2 itself, as `aws ec2 describe-instances --filters Name=tag:Name,...`).
//!
//! Name and address lookups skip terminated instances (their names are often reused).
//! Several matches are an error that lists each with its id, state and address, so the
//! user can pick one; none is an error that says which region was searched.
//!
//! [`list`] passes EC2 filters through as given. Both return [`InstanceInfo`], a plain
//! summary (id, name, state, addresses, VPC, subnet, zone, platform, tags) that the bindings
//! turn into a Rhai map. [`InstanceInfo::require_running`] names a stopped instance as
//! stopped, with how to start it, where a running one is needed.

use std::net::IpAddr;

use aws_sdk_ec2::types::{Filter, Instance};

use super::config::{AwsConfig, api_error};
use crate::error::{Error, Result};

/// What aws-hop needs to know about one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `i-…`.
    pub id: String,
    /// The `Name` tag, if any.
    pub name: Option<String>,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down` or `terminated`.
    pub state: String,
    /// The primary private IPv4 address.
    pub private_ip: Option<String>,
    /// The primary IPv6 address.
    pub ipv6: Option<String>,
    /// The public IPv4 address, while running.
    pub public_ip: Option<String>,
    /// The VPC.
    pub vpc_id: Option<String>,
    /// The subnet.
    pub subnet_id: Option<String>,
    /// The availability zone.
    pub az: Option<String>,
    /// `windows`, or the platform details (`Linux/UNIX`, ...).
    pub platform: Option<String>,
    /// All tags, in the order EC2 gives them.
    pub tags: Vec<(String, String)>,
}

impl InstanceInfo {
    /// An instance for unit tests: an id, a Name tag, a state and a private IP, nothing else.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, name: &str, state: &str, private_ip: &str) -> InstanceInfo {
        InstanceInfo {
            id: id.into(),
            name: Some(name.into()),
            state: state.into(),
            private_ip: Some(private_ip.into()),
            ipv6: None,
            public_ip: None,
            vpc_id: None,
            subnet_id: None,
            az: None,
            platform: None,
            tags: vec![],
        }
    }

    fn from_sdk(i: &Instance) -> InstanceInfo {
        let tags: Vec<(String, String)> = i
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let name = tags
            .iter()
            .find(|(k, _)| k == "Name")
            .map(|(_, v)| v.clone());
        InstanceInfo {
            id: i.instance_id().unwrap_or_default().to_string(),
            name,
            state: i
                .state()
                .and_then(|s| s.name())
                .map_or_else(|| "unknown".into(), |n| n.as_str().to_string()),
            private_ip: i.private_ip_address().map(str::to_string),
            ipv6: i.ipv6_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            vpc_id: i.vpc_id().map(str::to_string),
            subnet_id: i.subnet_id().map(str::to_string),
            az: i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string),
            platform: i
                .platform()
                .map(|p| p.as_str().to_string())
                .or_else(|| i.platform_details().map(str::to_string)),
            tags,
        }
    }

    /// `web-1 (i-0abc…)`, or the id alone, for messages.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("{n} ({})", self.id),
            _ => self.id.clone(),
        }
    }

    /// The instance as a transport knows it.
    pub fn to_hop(&self) -> crate::hop::tunnel::Instance {
        crate::hop::tunnel::Instance {
            id: self.id.clone(),
            name: self.name.clone(),
            private_ip: self.private_ip.as_deref().and_then(|p| p.parse().ok()),
            ipv6: self.ipv6.as_deref().and_then(|p| p.parse().ok()),
        }
    }

    /// One line for a list of candidates: `i-0abc  web-1  running  10.0.1.20`.
    fn summary_line(&self) -> String {
        format!(
            "{}  {}  {}  {}",
            self.id,
            self.name.as_deref().unwrap_or("(no Name tag)"),
            self.state,
            self.private_ip.as_deref().unwrap_or("(no private IP)")
        )
    }

    /// The address a tunnel inside the VPC reaches it at: the private IPv4, else the IPv6
    /// address (as the AWS CLI picks it).
    pub fn private_address(&self) -> Result<IpAddr> {
        let text = self
            .private_ip
            .as_deref()
            .or(self.ipv6.as_deref())
            .ok_or_else(|| Error::Aws {
                what: format!("instance {} has no address to connect to", self.label()),
                reason: "it has neither a private IPv4 nor an IPv6 address".into(),
                hint: "check its network interfaces (a stopped instance keeps its private IP)"
                    .into(),
            })?;
        text.parse().map_err(|_| Error::Aws {
            what: format!("instance {} has an unusable address", self.label()),
            reason: format!("'{text}' is not an IP address"),
            hint: String::new(),
        })
    }

    /// Fails unless the instance is running; `why` says what needed it running.
    pub fn require_running(&self, why: &str) -> Result<()> {
        if self.state == "running" {
            return Ok(());
        }
        let hint = match self.state.as_str() {
            "stopped" | "stopping" => format!(
                "start it first (`aws ec2 start-instances --instance-ids {}`), or pick another \
                 instance",
                self.id
            ),
            "pending" => "it is starting: wait a minute and try again".into(),
            _ => "pick another instance".into(),
        };
        Err(Error::Aws {
            what: format!("{why}: instance {} is {}", self.label(), self.state),
            reason: "a tunnel needs a running instance".into(),
            hint,
        })
    }
}

/// True for what looks like an instance id (`^i-[0-9a-zA-Z]+$`, as the AWS CLI checks).
pub fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// True for a managed node's id (`mi-` and 17 hex digits, as SSM gives hybrid nodes; like
/// [`is_instance_id`], any alphanumerics are accepted).
pub fn is_managed_node_id(s: &str) -> bool {
    s.strip_prefix("mi-")
        .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_alphanumeric()))
}

fn filter(name: &str, values: &[&str]) -> Filter {
    let mut b = Filter::builder().name(name);
    for v in values {
        b = b.values(*v);
    }
    b.build()
}

/// The states a name or address lookup considers (terminated instances are left out).
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// Finds the one instance `query` names: an id, a private IP, or a Name tag (with `*`/`?`).
pub async fn find(cfg: &AwsConfig, query: &str) -> Result<InstanceInfo> {
    let query = query.trim();
    if query.is_empty() {
        return Err(Error::invalid(
            "instance(\"\") names no instance: give an id (i-...), a Name tag or a private IP",
        ));
    }
    let (found, how) = if is_instance_id(query) {
        (describe(cfg, Some(query), Vec::new()).await?, "id")
    } else if let Ok(ip) = query.parse::<IpAddr>() {
        let key = if ip.is_ipv6() {
            "network-interface.ipv6-addresses.ipv6-address"
        } else {
            "private-ip-address"
        };
        let filters = vec![
            filter(key, &[query]),
            filter("instance-state-name", &LIVE_STATES),
        ];
        (describe(cfg, None, filters).await?, "private IP")
    } else {
        let filters = vec![
            filter("tag:Name", &[query]),
            filter("instance-state-name", &LIVE_STATES),
        ];
        let how = if query.contains(['*', '?']) {
            "Name pattern"
        } else {
            "Name tag"
        };
        (describe(cfg, None, filters).await?, how)
    };
    match found.len() {
        1 => Ok(found.into_iter().next().expect("one instance")),
        0 => Err(Error::Aws {
            what: format!("no instance matches {how} '{query}'"),
            reason: format!(
                "DescribeInstances in {} (profile {}) found none{}",
                cfg.region,
                cfg.profile,
                if how == "id" {
                    ""
                } else {
                    " that is not terminated"
                }
            ),
            hint: "check the name and the region (`region: \"...\"` or AWS_REGION), or list \
                   candidates with instances(#{ \"tag:Name\": \"web*\" })"
                .into(),
        }),
        n => Err(Error::Aws {
            what: format!("{how} '{query}' matches {n} instances"),
            reason: found
                .iter()
                .map(InstanceInfo::summary_line)
                .collect::<Vec<_>>()
                .join("; "),
            hint: "name one by its id (instance(\"i-...\")), or make the pattern narrower".into(),
        }),
    }
}

/// Every instance matching EC2 `filters` (name → values), all states included unless an
/// `instance-state-name` filter says otherwise.
pub async fn list(cfg: &AwsConfig, filters: &[(String, Vec<String>)]) -> Result<Vec<InstanceInfo>> {
    let filters = filters
        .iter()
        .map(|(k, vs)| {
            let refs: Vec<&str> = vs.iter().map(String::as_str).collect();
            filter(k, &refs)
        })
        .collect();
    describe(cfg, None, filters).await
}

/// Name tags and ids of every instance a lookup has returned in this process, for the REPL's
/// completion inside `instance("…`, `ssm("…` and the like.
static SEEN: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The Name tags and ids seen so far (see [`SEEN`]), sorted.
pub fn seen() -> Vec<String> {
    SEEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .cloned()
        .collect()
}

fn remember(found: &[InstanceInfo]) {
    let mut seen = SEEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for i in found {
        seen.insert(i.id.clone());
        if let Some(n) = i.name.as_deref().filter(|n| !n.is_empty()) {
            seen.insert(n.to_string());
        }
    }
}

/// DescribeInstances, all pages, flattened.
async fn describe(
    cfg: &AwsConfig,
    id: Option<&str>,
    filters: Vec<Filter>,
) -> Result<Vec<InstanceInfo>> {
    let ec2 = cfg.ec2();
    let mut req = ec2.describe_instances();
    if let Some(id) = id {
        req = req.instance_ids(id);
    }
    if !filters.is_empty() {
        req = req.set_filters(Some(filters));
    }
    let mut pages = req.into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                let code = e.as_service_error().and_then(|se| {
                    aws_sdk_ec2::error::ProvideErrorMetadata::code(se).map(str::to_string)
                });
                if let (
                    Some(id),
                    Some("InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed"),
                ) = (id, code.as_deref())
                {
                    return Err(Error::Aws {
                        what: format!("no instance {id}"),
                        reason: format!(
                            "EC2 in {} (profile {}) does not know it ({})",
                            cfg.region,
                            cfg.profile,
                            code.unwrap_or_default()
                        ),
                        hint: "check the id and the region (`region: \"...\"` or AWS_REGION)"
                            .into(),
                    });
                }
                return Err(api_error("DescribeInstances", &cfg.profile, e));
            }
        };
        for r in page.reservations() {
            out.extend(r.instances().iter().map(InstanceInfo::from_sdk));
        }
    }
    remember(&out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_node_ids_are_told_from_instance_ids_and_names() {
        assert!(is_managed_node_id("mi-0123456789abcdef0"));
        assert!(!is_managed_node_id("mi-"));
        assert!(!is_managed_node_id("mi-web 1"));
        assert!(!is_managed_node_id("i-0123456789abcdef0"));
        assert!(!is_managed_node_id("mini-web"));
        assert!(!is_instance_id("mi-0123456789abcdef0"));
    }

    #[test]
    fn instance_ids_are_recognised() {
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_instance_id("i-abc"));
        assert!(!is_instance_id("i-"));
        assert!(!is_instance_id("web-1"));
        assert!(!is_instance_id("i-web*"));
    }

    #[test]
    fn stopped_instances_are_named_as_stopped() {
        let i = InstanceInfo::for_test("i-0abc", "web-2", "stopped", "10.0.1.21");
        let msg = i.require_running("eic_endpoint").unwrap_err().to_string();
        assert!(msg.contains("web-2 (i-0abc) is stopped"), "{msg}");
        assert!(
            msg.contains("start-instances --instance-ids i-0abc"),
            "{msg}"
        );
        assert_eq!(i.private_address().unwrap().to_string(), "10.0.1.21");
    }
}
