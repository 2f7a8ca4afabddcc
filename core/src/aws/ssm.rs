//! Session Manager's API: what `ssm("web-1")` asks AWS, and the [`SessionApi`] its transport
//! ([`crate::hop::ssm`]) is built with. Failures are said in words that name the fix.
//!
//! - [`connect`]: resolves the target (an EC2 instance by id, Name tag or IP, or a managed
//!   node `mi-…` by id), checks its agent and builds the [`SsmHop`].
//! - [`status`]: what Systems Manager says about a target's agent (`ssm_status()`).
//! - [`SsmApi::agent_status`]: `DescribeInstanceInformation` for one instance: is its agent
//!   registered, and `Online`? [`AgentStatus::require_online`] turns "no" into
//!   [`Error::SsmAgent`] with what to check on the instance.
//! - [`SsmApi::start`]: `StartSession` with a document and its parameters. `AccessDenied`
//!   names the IAM action (`ssm:StartSession`) and the two resources it must cover;
//!   `TargetNotConnected` is the agent's problem, said as such.
//! - [`SsmApi::resume`]: `ResumeSession`; an empty token means the session timed out.
//! - [`SsmApi::terminate`]: `TerminateSession`, best effort.
//!
//! The session token ([`Started`]) never appears in a message or a log line.

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::InstanceInformationStringFilter;

use std::net::IpAddr;
use std::sync::Arc;

use super::config::{AwsConfig, api_error};
use super::instance_connect::InstanceConnect;
use super::instances;
use crate::error::{Error, Result};
use crate::hop::ssm::api::{Document, ResumeError, SessionApi, Started};
use crate::hop::ssm::{SsmHop, SsmOptions};
use crate::hop::tunnel::{BoxFuture, Instance, KeyPush, Signer};

/// What to check when an instance's agent does not take sessions.
pub const AGENT_FIX: &str = "check on the instance that the agent runs (`sudo systemctl status \
    amazon-ssm-agent`), that its instance profile has the AmazonSSMManagedInstanceCore policy, \
    and that it reaches the ssm, ssmmessages and ec2messages endpoints (a NAT gateway or VPC \
    interface endpoints); `aws ssm describe-instance-information` shows what Systems Manager \
    sees";

/// The SSM client of one AWS configuration.
#[derive(Clone)]
pub struct SsmApi {
    client: aws_sdk_ssm::Client,
    config: AwsConfig,
}

/// What Systems Manager knows about an instance's agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// `Online`, `ConnectionLost`, `Inactive`; `None` when the instance is not a managed node.
    pub ping_status: Option<String>,
    /// The agent's version, when registered.
    pub agent_version: Option<String>,
    /// When the agent last checked in, as the API gives it.
    pub last_ping: Option<String>,
    /// The platform (`Linux`, `Windows`, ...).
    pub platform: Option<String>,
    /// The node's name as the agent reports it (`ComputerName`; managed nodes have no Name
    /// tag).
    pub computer_name: Option<String>,
    /// The node's address as the agent reports it (`IPAddress`).
    pub ip_address: Option<String>,
}

impl AgentStatus {
    /// The status of a node Systems Manager does not know.
    pub fn unknown(ping_status: Option<&str>) -> AgentStatus {
        AgentStatus {
            ping_status: ping_status.map(str::to_string),
            agent_version: None,
            last_ping: None,
            platform: None,
            computer_name: None,
            ip_address: None,
        }
    }
}

impl AgentStatus {
    /// True when sessions can start: registered and `Online`.
    pub fn online(&self) -> bool {
        self.ping_status.as_deref() == Some("Online")
    }

    /// Why sessions cannot start on `instance` (a label), or `None` when they can.
    pub fn problem(&self, instance: &str) -> Option<Error> {
        match self.ping_status.as_deref() {
            Some("Online") => None,
            None => Some(Error::SsmAgent {
                instance: instance.to_string(),
                status: "not registered".into(),
                reason: "DescribeInstanceInformation does not list it as a managed node".into(),
                hint: AGENT_FIX.into(),
            }),
            Some(status) => Some(Error::SsmAgent {
                instance: instance.to_string(),
                status: status.to_string(),
                reason: match &self.last_ping {
                    Some(t) => format!("the agent last checked in at {t}"),
                    None => "the agent is registered but not connected".into(),
                },
                hint: AGENT_FIX.into(),
            }),
        }
    }
}

impl SsmApi {
    /// A client for `config`.
    pub fn new(config: &AwsConfig) -> SsmApi {
        SsmApi {
            client: aws_sdk_ssm::Client::new(&config.sdk),
            config: config.clone(),
        }
    }

    /// The configuration (credentials for signing the data channel, region, profile).
    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// `DescribeInstanceInformation` for `instance_id`. `Ok(None)` when IAM does not allow
    /// the call: StartSession then gives its own answer.
    pub async fn agent_status(&self, instance_id: &str) -> Result<Option<AgentStatus>> {
        let filter = InstanceInformationStringFilter::builder()
            .key("InstanceIds")
            .values(instance_id)
            .build()
            .map_err(|e| Error::invalid(format!("bad DescribeInstanceInformation filter: {e}")))?;
        let answer = self
            .client
            .describe_instance_information()
            .filters(filter)
            .send()
            .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) if is_access_denied(e.code()) => {
                tracing::warn!(
                    "ssm:DescribeInstanceInformation is not allowed for profile {}; going on \
                     without checking the agent",
                    self.config.profile
                );
                return Ok(None);
            }
            Err(e) => {
                return Err(api_error(
                    "DescribeInstanceInformation",
                    &self.config.profile,
                    e,
                ));
            }
        };
        let info = out
            .instance_information_list()
            .iter()
            .find(|i| i.instance_id() == Some(instance_id));
        Ok(Some(match info {
            None => AgentStatus::unknown(None),
            Some(i) => AgentStatus {
                ping_status: i.ping_status().map(|p| p.as_str().to_string()),
                agent_version: i.agent_version().map(str::to_string),
                last_ping: i.last_ping_date_time().map(ToString::to_string),
                platform: i.platform_type().map(|p| p.as_str().to_string()),
                computer_name: i.computer_name().map(str::to_string),
                ip_address: i.ip_address().map(str::to_string),
            },
        }))
    }

    /// `StartSession` on `instance` with `document`; `reason` is recorded in CloudTrail.
    pub async fn start(
        &self,
        instance: &Instance,
        document: &Document,
        reason: Option<&str>,
    ) -> Result<Started> {
        let mut req = self.client.start_session().target(&instance.id);
        if let Some(name) = &document.name {
            req = req.document_name(name);
        }
        for (k, v) in &document.parameters {
            req = req.parameters(k, vec![v.clone()]);
        }
        if let Some(r) = reason {
            req = req.reason(r);
        }
        let out = req
            .send()
            .await
            .map_err(|e| self.start_error(instance, document, e))?;
        match (out.session_id(), out.stream_url(), out.token_value()) {
            (Some(id), Some(url), Some(token)) if !token.is_empty() => Ok(Started {
                session_id: id.to_string(),
                stream_url: url.to_string(),
                token: token.to_string(),
            }),
            _ => Err(Error::Ssm {
                what: format!("StartSession on {}", instance.label()),
                reason: "the answer lacks the session id, stream URL or token".into(),
                hint: "this is unexpected from Session Manager: try again, and check any \
                       AWS_ENDPOINT_URL setting"
                    .into(),
            }),
        }
    }

    /// `ResumeSession`: a new token (and stream URL) for the same session. `Ok(None)` when the
    /// service gives no token: the session timed out and cannot be resumed.
    pub async fn resume(&self, session_id: &str) -> Result<Option<Started>, ResumeError> {
        let out = match self
            .client
            .resume_session()
            .session_id(session_id)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let retry = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
                    || matches!(
                        e.code(),
                        Some(
                            "ThrottlingException"
                                | "Throttling"
                                | "InternalServerError"
                                | "ServiceUnavailable"
                        )
                    );
                return Err(ResumeError {
                    retry,
                    error: api_error("ResumeSession", &self.config.profile, e),
                });
            }
        };
        match (out.stream_url(), out.token_value()) {
            (Some(url), Some(token)) if !token.is_empty() => Ok(Some(Started {
                session_id: out.session_id().unwrap_or(session_id).to_string(),
                stream_url: url.to_string(),
                token: token.to_string(),
            })),
            _ => Ok(None),
        }
    }

    /// `TerminateSession`, best effort: a failure is logged (the service ends the session
    /// on its idle timeout anyway).
    pub async fn terminate(&self, session_id: &str) {
        if let Err(e) = self
            .client
            .terminate_session()
            .session_id(session_id)
            .send()
            .await
        {
            tracing::debug!(
                "TerminateSession {session_id}: {}",
                api_error("TerminateSession", &self.config.profile, e)
            );
        }
    }

    /// StartSession's errors, with the cause and the fix.
    fn start_error<R>(
        &self,
        instance: &Instance,
        document: &Document,
        e: SdkError<aws_sdk_ssm::operation::start_session::StartSessionError, R>,
    ) -> Error
    where
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e.code().map(str::to_string);
        let message = e.message().unwrap_or_default().to_string();
        let doc = document.shown();
        let region = &self.config.region;
        let reason = match &code {
            Some(c) if message.is_empty() => c.clone(),
            Some(c) => format!("{c}: {message}"),
            None => message.clone(),
        };
        match code.as_deref() {
            Some(c) if is_access_denied(Some(c)) => Error::Ssm {
                what: format!(
                    "Session Manager refused to start a session on {} ({doc})",
                    instance.label()
                ),
                reason,
                hint: format!(
                    "IAM must allow ssm:StartSession for profile {} on the instance \
                     (arn:aws:ec2:{region}:<account>:instance/{}) and on the document \
                     (arn:aws:ssm:{region}::document/{doc}); ask for that permission (and \
                     ssm:TerminateSession, ssm:ResumeSession on your own sessions), or use \
                     another profile",
                    self.config.profile, instance.id
                ),
            },
            Some("TargetNotConnected") => Error::SsmAgent {
                instance: instance.label(),
                status: "not connected (TargetNotConnected)".into(),
                reason,
                hint: AGENT_FIX.into(),
            },
            Some("InvalidDocument" | "InvalidDocumentVersion" | "InvalidDocumentOperation") => {
                Error::Ssm {
                    what: format!("cannot start a session with document {doc}"),
                    reason,
                    hint: format!(
                        "the document does not exist in {region}, is not a Session document, \
                         or is not shared with this account: check the `document` option \
                         (`aws ssm describe-document --name {doc}`)"
                    ),
                }
            }
            Some("InvalidParameters") => Error::Ssm {
                what: format!("document {doc} refused its parameters"),
                reason,
                hint: "a custom `document` must take the parameters of the AWS document it \
                       replaces (portNumber, localPortNumber, and host for remote hosts)"
                    .into(),
            },
            _ => api_error("StartSession", &self.config.profile, e),
        }
    }
}

fn is_access_denied(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
    )
}

/// The Session Manager API bound to one target: what its [`SsmHop`] starts sessions with.
struct Sessions {
    api: SsmApi,
    instance: Instance,
}

impl Signer for Sessions {
    fn region(&self) -> &str {
        &self.api.config.region
    }

    fn credentials(&self) -> BoxFuture<'_, Result<aws_credential_types::Credentials>> {
        Box::pin(self.api.config.credentials())
    }
}

impl SessionApi for Sessions {
    fn start<'a>(
        &'a self,
        document: &'a Document,
        reason: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Started>> {
        Box::pin(self.api.start(&self.instance, document, reason))
    }

    fn resume<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, std::result::Result<Option<Started>, ResumeError>> {
        Box::pin(self.api.resume(session_id))
    }

    fn terminate<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(self.api.terminate(session_id))
    }
}

/// Managed nodes (`mi-…`) are not EC2 instances: EC2 Instance Connect cannot push a key to
/// them, so an SSH login over SSM needs a key of the user's.
struct NoKeyPush {
    node: String,
}

impl KeyPush for NoKeyPush {
    fn push<'a>(&'a self, user: &'a str, _public_key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            Err(Error::invalid(format!(
                "{} is a managed node (hybrid, not EC2): EC2 Instance Connect cannot push a key \
                 to it, so .ssh(\"{user}\") needs a key that is installed there: \
                 .ssh(\"{user}\", #{{ key: \"~/.ssh/...\" }})",
                self.node
            )))
        })
    }
}

/// Resolves `target`, checks its agent and builds the hop. `target` is an EC2 instance (id,
/// Name tag or private IP; it must be running) or a managed node's id (`mi-…`). No session
/// starts until a stream is opened.
pub async fn connect(config: AwsConfig, target: &str, opts: SsmOptions) -> Result<SsmHop> {
    opts.check()?;
    let api = SsmApi::new(&config);
    let target = target.trim();
    let (instance, keys, agent): (Instance, Arc<dyn KeyPush>, _) =
        if instances::is_managed_node_id(target) {
            let agent = api.agent_status(target).await?;
            let node = managed_node(target, agent.as_ref());
            let keys = Arc::new(NoKeyPush { node: node.label() });
            (node, keys, agent)
        } else {
            let info = instances::find(&config, target).await?;
            info.require_running("ssm")?;
            let agent = api.agent_status(&info.id).await?;
            let keys = Arc::new(InstanceConnect::new(config.clone(), info.clone()));
            (info.to_hop(), keys, agent)
        };
    if let Some(problem) = agent.as_ref().and_then(|a| a.problem(&instance.label())) {
        return Err(problem);
    }
    let agent_version = agent.and_then(|a| a.agent_version);
    tracing::debug!("ssm: {} agent {agent_version:?}", instance.label());
    let sessions = Arc::new(Sessions {
        api,
        instance: instance.clone(),
    });
    SsmHop::new(sessions, keys, instance, agent_version, opts)
}

/// A managed node as a transport knows it, from what its agent reports.
fn managed_node(id: &str, agent: Option<&AgentStatus>) -> Instance {
    let ip: Option<IpAddr> = agent
        .and_then(|a| a.ip_address.as_deref())
        .and_then(|a| a.parse().ok());
    Instance {
        id: id.to_string(),
        name: agent.and_then(|a| a.computer_name.clone()),
        private_ip: ip.filter(IpAddr::is_ipv4),
        ipv6: ip.filter(IpAddr::is_ipv6),
    }
}

/// A target and what Systems Manager says about its agent.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The instance or managed node.
    pub instance: Instance,
    /// The EC2 state (`running`, ...); `None` for a managed node, which has none.
    pub state: Option<String>,
    /// Its agent.
    pub agent: AgentStatus,
}

/// What Systems Manager says about `target`'s agent, without starting anything.
pub async fn status(config: &AwsConfig, target: &str) -> Result<NodeStatus> {
    let api = SsmApi::new(config);
    let target = target.trim();
    if instances::is_managed_node_id(target) {
        let agent = api
            .agent_status(target)
            .await?
            .unwrap_or_else(|| AgentStatus::unknown(Some("Unknown")));
        return Ok(NodeStatus {
            instance: managed_node(target, Some(&agent)),
            state: None,
            agent,
        });
    }
    let info = instances::find(config, target).await?;
    let agent = api
        .agent_status(&info.id)
        .await?
        .unwrap_or_else(|| AgentStatus::unknown(Some("Unknown")));
    Ok(NodeStatus {
        instance: info.to_hop(),
        state: Some(info.state),
        agent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB1: &str = "web-1 (i-0abc)";

    #[test]
    fn an_offline_agent_is_named_with_its_status_and_the_fix() {
        let status = AgentStatus {
            ping_status: Some("ConnectionLost".into()),
            agent_version: Some("3.3.0".into()),
            last_ping: Some("2026-01-01T00:00:00Z".into()),
            platform: Some("Linux".into()),
            computer_name: None,
            ip_address: None,
        };
        assert!(!status.online());
        let msg = status.problem(WEB1).unwrap().to_string();
        assert!(
            msg.starts_with("the SSM agent on web-1 (i-0abc) is ConnectionLost"),
            "{msg}"
        );
        assert!(msg.contains("amazon-ssm-agent"), "{msg}");
        assert!(msg.contains("AmazonSSMManagedInstanceCore"), "{msg}");

        let missing = AgentStatus::unknown(None);
        let msg = missing.problem(WEB1).unwrap().to_string();
        assert!(msg.contains("is not registered"), "{msg}");
    }
}
