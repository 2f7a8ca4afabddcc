//! AWS bindings: `instance()`, `instances()`, `eic_endpoint()`, `ssm()`, `ssm_status()`.
//!
//! Lookups return plain maps (`#{ id, name, state, private_ip, public_ip, vpc_id, subnet_id,
//! az, platform, tags }`), so scripts can print and test them. `eic_endpoint()` returns a
//! [`Hop`] whose streams are EICE tunnels to one instance; `.ssh("ec2-user")` on it (the
//! `ssh` binding of [`super::hops`]) logs in with an ephemeral key pushed by
//! SendSSHPublicKey. `ssm()` returns a [`Hop`] through SSM Session Manager: forwards over it
//! share one port-forwarding session per target, `.ssh(user)` logs in the same way over
//! `AWS-StartSSHSession`, and `.shell()` opens a Session Manager shell.
//!
//! Every binding takes `profile` and `region` options; without them the environment and the
//! AWS profile files decide, as for the AWS CLI.

use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, Map};

use crate::aws::config::ConfigKey;
use crate::aws::eice::EiceOptions;
use crate::aws::instances::{self, InstanceInfo};
use crate::error::{Error, Result};
use crate::hop::Hop;
use crate::hop::ssm::{CHUNK_SIZES, SsmOptions, WINDOWS};
use crate::script::context::{Context, script_error};
use crate::script::options::Options;

/// Options of `instance()` and `instances()`.
pub const LOOKUP_OPTIONS: &[&str] = &["profile", "region"];

/// Options of `eic_endpoint()`.
pub const EICE_OPTIONS: &[&str] = &["endpoint", "max_duration", "profile", "region"];

/// Options of `ssm()`.
pub const SSM_OPTIONS: &[&str] = &[
    "document",
    "reason",
    "chunk_size",
    "window",
    "timeout",
    "mode",
    "profile",
    "region",
];

pub fn register(engine: &mut Engine) {
    engine.register_global_module(exported_module!(aws_api).into());
}

/// The configuration the `profile` and `region` options choose.
fn config_key(opts: &Options) -> Result<ConfigKey> {
    Ok(ConfigKey {
        profile: opts.string("profile")?,
        region: opts.string("region")?,
    })
}

/// An instance as a script sees it.
pub fn instance_map(i: &InstanceInfo) -> Map {
    let opt = |v: &Option<String>| v.clone().map_or(Dynamic::UNIT, Dynamic::from);
    let mut tags = Map::new();
    for (k, v) in &i.tags {
        tags.insert(k.as_str().into(), v.clone().into());
    }
    let mut m = Map::new();
    m.insert("id".into(), i.id.clone().into());
    m.insert("name".into(), opt(&i.name));
    m.insert("state".into(), i.state.clone().into());
    m.insert("private_ip".into(), opt(&i.private_ip));
    m.insert("ipv6".into(), opt(&i.ipv6));
    m.insert("public_ip".into(), opt(&i.public_ip));
    m.insert("vpc_id".into(), opt(&i.vpc_id));
    m.insert("subnet_id".into(), opt(&i.subnet_id));
    m.insert("az".into(), opt(&i.az));
    m.insert("platform".into(), opt(&i.platform));
    m.insert("tags".into(), tags.into());
    m
}

/// A target given as a string (id, name, IP) or as a map from `instance()` (its `id`).
fn target_of(v: &Dynamic, func: &str) -> Result<String> {
    if let Ok(s) = v.clone().into_string() {
        return Ok(s);
    }
    if let Some(m) = v.clone().try_cast::<Map>()
        && let Some(id) = m.get("id").and_then(|id| id.clone().into_string().ok())
    {
        return Ok(id);
    }
    Err(Error::invalid(format!(
        "{func}() takes an instance id, Name tag or private IP (a string), or a map from \
         instance(), not {} ({v})",
        v.type_name()
    )))
}

/// EC2 filters from a map: `#{ "tag:Role": "web", "instance-state-name": ["running", "stopped"] }`.
fn filters_of(m: &Map) -> Result<Vec<(String, Vec<String>)>> {
    let value = |k: &str, v: &Dynamic| -> Result<String> {
        if v.is_string() {
            Ok(v.clone().into_string().unwrap_or_default())
        } else if v.is_int() || v.is_bool() {
            Ok(v.to_string())
        } else {
            Err(Error::invalid(format!(
                "filter `{k}` of instances() must be a string or an array of strings, not {} ({v})",
                v.type_name()
            )))
        }
    };
    m.iter()
        .map(|(k, v)| {
            let values = match v.clone().try_cast::<Array>() {
                Some(a) => a.iter().map(|x| value(k, x)).collect::<Result<Vec<_>>>()?,
                None => vec![value(k, v)?],
            };
            Ok((k.to_string(), values))
        })
        .collect()
}

fn find_instance(ctx: &Arc<Context>, query: &str, opts: Map) -> Result<Map> {
    let opts = Options::new(opts, "instance", LOOKUP_OPTIONS)?;
    let key = config_key(&opts)?;
    let c = ctx.clone();
    let query = query.to_string();
    ctx.rt.block_on(async move {
        let cfg = c.aws.get(&key).await?;
        let found = instances::find(&cfg, &query).await?;
        Ok(instance_map(&found))
    })
}

fn list_instances(ctx: &Arc<Context>, filters: &Map, opts: Map) -> Result<Array> {
    let opts = Options::new(opts, "instances", LOOKUP_OPTIONS)?;
    let key = config_key(&opts)?;
    let filters = filters_of(filters)?;
    let c = ctx.clone();
    ctx.rt.block_on(async move {
        let cfg = c.aws.get(&key).await?;
        let found = instances::list(&cfg, &filters).await?;
        Ok(found.iter().map(|i| instance_map(i).into()).collect())
    })
}

/// Opens the EICE hop for `target` with `opts`.
pub fn open_eice(ctx: &Arc<Context>, target: &Dynamic, opts: Map) -> Result<Hop> {
    let target = target_of(target, "eic_endpoint")?;
    crate::aws::eice::refuse_managed_node(&target)?;
    let opts = Options::new(opts, "eic_endpoint", EICE_OPTIONS)?;
    let key = config_key(&opts)?;
    let max_duration_secs = match opts.seconds_in("max_duration", 3600.0)? {
        Some(d) if d.subsec_nanos() != 0 => {
            return Err(Error::invalid(
                "option `max_duration` of eic_endpoint() is a whole number of seconds (1-3600)",
            ));
        }
        Some(d) => Some(u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
        None => None,
    };
    let eice_opts = EiceOptions {
        endpoint: opts.string("endpoint")?,
        max_duration_secs,
    };
    let c = ctx.clone();
    let hop = ctx.rt.block_on(async move {
        let cfg = c.aws.get(&key).await?;
        crate::aws::eice::connect(cfg, &target, eice_opts).await
    })?;
    let hop = Hop::Eice(Arc::new(hop));
    ctx.track(&hop);
    Ok(hop)
}

/// Opens the SSM hop for `target` with `opts`.
pub fn open_ssm(ctx: &Arc<Context>, target: &Dynamic, opts: Map) -> Result<Hop> {
    let target = target_of(target, "ssm")?;
    let opts = Options::new(opts, "ssm", SSM_OPTIONS)?;
    let key = config_key(&opts)?;
    let range = |r: &std::ops::RangeInclusive<usize>| {
        i64::try_from(*r.start()).unwrap_or(0)..=i64::try_from(*r.end()).unwrap_or(i64::MAX)
    };
    let defaults = SsmOptions::default();
    let ssm_opts = SsmOptions {
        document: opts.string("document")?,
        reason: opts.string("reason")?,
        chunk_size: opts
            .int_in("chunk_size", range(&CHUNK_SIZES))?
            .map_or(defaults.chunk_size, |n| usize::try_from(n).unwrap_or(0)),
        window: opts
            .int_in("window", range(&WINDOWS))?
            .map_or(defaults.window, |n| usize::try_from(n).unwrap_or(0)),
        timeout: opts.seconds("timeout")?.unwrap_or(defaults.timeout),
    };
    let ssh_sessions = match opts.string("mode")?.as_deref() {
        None | Some("forward") => false,
        Some("ssh") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "option `mode` of ssm() is \"{other}\": use \"forward\" (the default: port \
                 forwarding, many connections per session) or \"ssh\" (one \
                 AWS-StartSSHSession session per connection, to the instance's port 22)"
            )));
        }
    };
    let c = ctx.clone();
    let hop = ctx.rt.block_on(async move {
        let cfg = c.aws.get(&key).await?;
        crate::aws::ssm::connect(cfg, &target, ssm_opts).await
    })?;
    let hop = if ssh_sessions {
        hop.ssh_transport()
    } else {
        hop
    };
    let hop = Hop::Ssm(Arc::new(hop));
    ctx.track(&hop);
    Ok(hop)
}

/// `ssm_status(target)`: what Systems Manager says about the instance's agent.
fn ssm_status_map(ctx: &Arc<Context>, target: &Dynamic, opts: Map) -> Result<Map> {
    let target = target_of(target, "ssm_status")?;
    let opts = Options::new(opts, "ssm_status", LOOKUP_OPTIONS)?;
    let key = config_key(&opts)?;
    let c = ctx.clone();
    ctx.rt.block_on(async move {
        let cfg = c.aws.get(&key).await?;
        let found = crate::aws::ssm::status(&cfg, &target).await?;
        let (instance, status) = (&found.instance, &found.agent);
        let opt = |v: &Option<String>| v.clone().map_or(Dynamic::UNIT, Dynamic::from);
        // A managed node (mi-…) has no EC2 state: its agent's status is all there is.
        let state = found.state.clone().unwrap_or_else(|| "managed".into());
        let running = found.state.as_deref().is_none_or(|s| s == "running");
        let online = status.online() && running;
        let reason = if running {
            status
                .problem(&instance.label())
                .map(|e| e.to_string())
                .unwrap_or_default()
        } else {
            format!("instance {} is {state}", instance.label())
        };
        let mut m = Map::new();
        m.insert("id".into(), instance.id.clone().into());
        m.insert("name".into(), opt(&instance.name));
        m.insert("state".into(), state.into());
        m.insert("managed".into(), status.ping_status.is_some().into());
        m.insert("ping_status".into(), opt(&status.ping_status));
        m.insert("agent_version".into(), opt(&status.agent_version));
        m.insert("platform".into(), opt(&status.platform));
        m.insert("online".into(), online.into());
        m.insert("reason".into(), reason.into());
        Ok(m)
    })
}

#[export_module]
#[allow(unreachable_pub)]
mod aws_api {
    use super::*;

    /// Finds one EC2 instance by id (`i-...`), Name tag (`*` and `?` match any text / one
    /// character) or private IP; several matches are an error that lists them.
    ///
    /// Returns `#{ id, name, state, private_ip, public_ip, vpc_id, subnet_id, az, platform, tags }`.
    ///
    /// ```rhai
    /// let web = instance("web-1");
    /// print(`${web.id} ${web.state} ${web.private_ip}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance(ctx: NativeCallContext, query: &str) -> Result<Map, Box<EvalAltResult>> {
        find_instance(&Context::of(&ctx), query, Map::new()).map_err(|e| script_error(&ctx, e))
    }

    /// `instance(query, opts)`: options `profile`, `region`.
    #[rhai_fn(name = "instance", return_raw)]
    pub fn instance_with(
        ctx: NativeCallContext,
        query: &str,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        find_instance(&Context::of(&ctx), query, opts).map_err(|e| script_error(&ctx, e))
    }

    /// Every instance matching EC2 filters (names as in `aws ec2 describe-instances
    /// --filters`); a value may be a string or an array of strings.
    ///
    /// ```rhai
    /// for i in instances(#{ "tag:Role": "web", "instance-state-name": "running" }) { print(i.name); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instances(ctx: NativeCallContext, filters: Map) -> Result<Array, Box<EvalAltResult>> {
        list_instances(&Context::of(&ctx), &filters, Map::new()).map_err(|e| script_error(&ctx, e))
    }

    /// `instances(filters, opts)`: options `profile`, `region`.
    #[rhai_fn(name = "instances", return_raw)]
    pub fn instances_with(
        ctx: NativeCallContext,
        filters: Map,
        opts: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        list_instances(&Context::of(&ctx), &filters, opts).map_err(|e| script_error(&ctx, e))
    }

    /// A hop through the EC2 Instance Connect Endpoint of an instance's VPC, to that
    /// instance's private IP (ports 22 and 3389). The instance is an id, Name tag, private IP
    /// or a map from instance(). Log in over it with `.ssh("ec2-user")`.
    ///
    /// ```rhai
    /// let h = eic_endpoint("web-1").ssh("ec2-user");
    /// print(h.exec("hostname").stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn eic_endpoint(
        ctx: NativeCallContext,
        target: Dynamic,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_eice(&Context::of(&ctx), &target, Map::new()).map_err(|e| script_error(&ctx, e))
    }

    /// `eic_endpoint(target, opts)`: options `endpoint` (an `eice-...` id instead of
    /// discovery), `max_duration` (seconds, 1-3600), `profile`, `region`.
    ///
    /// ```rhai
    /// let e = eic_endpoint("web-1", #{ endpoint: "eice-0abc", max_duration: 1800 });
    /// ```
    #[rhai_fn(name = "eic_endpoint", return_raw)]
    pub fn eic_endpoint_with(
        ctx: NativeCallContext,
        target: Dynamic,
        opts: Map,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_eice(&Context::of(&ctx), &target, opts).map_err(|e| script_error(&ctx, e))
    }

    /// A hop through AWS Systems Manager Session Manager to an instance (id, Name tag, private
    /// IP, or a map from instance()), with no inbound port and no bastion. Its agent must be
    /// Online. Forwards through it share one port-forwarding session per target; `.ssh(user)`
    /// logs in over `AWS-StartSSHSession` with a pushed key; `.shell()` opens a shell.
    ///
    /// ```rhai
    /// let s = ssm("web-1");
    /// let db = s.forward(5432, "mydb.abc.eu-west-1.rds.amazonaws.com:5432");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssm(ctx: NativeCallContext, target: Dynamic) -> Result<Hop, Box<EvalAltResult>> {
        open_ssm(&Context::of(&ctx), &target, Map::new()).map_err(|e| script_error(&ctx, e))
    }

    /// `ssm(target, opts)`: options `document` (a port-forwarding document to use instead of
    /// AWS-StartPortForwardingSession[ToRemoteHost]), `reason` (recorded in CloudTrail),
    /// `chunk_size` (bytes per message, 256-65536, default 8192), `window` (unacknowledged
    /// messages, default 512), `timeout` (seconds for a session to become ready, default 30),
    /// `profile`, `region`.
    ///
    /// ```rhai
    /// let s = ssm("i-0123456789abcdef0", #{ reason: "ticket 4711", chunk_size: 32768 });
    /// ```
    #[rhai_fn(name = "ssm", return_raw)]
    pub fn ssm_with(
        ctx: NativeCallContext,
        target: Dynamic,
        opts: Map,
    ) -> Result<Hop, Box<EvalAltResult>> {
        open_ssm(&Context::of(&ctx), &target, opts).map_err(|e| script_error(&ctx, e))
    }

    /// What Systems Manager says about an instance's agent, without starting a session:
    /// `#{ id, name, state, managed, ping_status, agent_version, platform, online, reason }`
    /// (`reason` says why sessions cannot start, and what to fix; empty when `online`).
    ///
    /// ```rhai
    /// let st = ssm_status("web-1");
    /// if !st.online { print(st.reason); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssm_status(ctx: NativeCallContext, target: Dynamic) -> Result<Map, Box<EvalAltResult>> {
        ssm_status_map(&Context::of(&ctx), &target, Map::new()).map_err(|e| script_error(&ctx, e))
    }

    /// `ssm_status(target, opts)`: options `profile`, `region`.
    #[rhai_fn(name = "ssm_status", return_raw)]
    pub fn ssm_status_with(
        ctx: NativeCallContext,
        target: Dynamic,
        opts: Map,
    ) -> Result<Map, Box<EvalAltResult>> {
        ssm_status_map(&Context::of(&ctx), &target, opts).map_err(|e| script_error(&ctx, e))
    }
}
