//! The SSM API calls of a session's life, and their failures in words that name the fix.
//!
//! - [`SsmApi::agent_status`]: `DescribeInstanceInformation` for one instance: is its agent
//!   registered, and `Online`? [`AgentStatus::require_online`] turns "no" into
//!   [`Error::SsmAgent`] with what to check on the instance.
//! - [`SsmApi::start`]: `StartSession` with a document and its parameters. `AccessDenied`
//!   names the IAM action (`ssm:StartSession`) and the two resources it must cover;
//!   `TargetNotConnected` is the agent's problem, said as such.
//! - [`SsmApi::resume`]: `ResumeSession`; an empty token means the session timed out.
//! - [`SsmApi::terminate`]: `TerminateSession`, best effort.
//!
//! [`Started`] holds the session token. It never appears in a message or a log line
//! (its `Debug` is redacted); it lives only until the data channel's first frame is sent.

use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::InstanceInformationStringFilter;

use crate::aws::config::{AwsConfig, api_error};
use crate::aws::instances::InstanceInfo;
use crate::error::{Error, Result};

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

/// A started (or resumed) session: its id, the data channel's URL, and the token that opens it.
pub struct Started {
    /// `SessionId`.
    pub session_id: String,
    /// `StreamUrl` (`wss://ssmmessages.<region>.amazonaws.com/v1/data-channel/<id>?...`).
    pub stream_url: String,
    /// `TokenValue`: a credential; never shown.
    pub token: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
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
}

impl AgentStatus {
    /// True when sessions can start: registered and `Online`.
    pub fn online(&self) -> bool {
        self.ping_status.as_deref() == Some("Online")
    }

    /// Why sessions cannot start, or `None` when they can.
    pub fn problem(&self, instance: &InstanceInfo) -> Option<Error> {
        match self.ping_status.as_deref() {
            Some("Online") => None,
            None => Some(Error::SsmAgent {
                instance: instance.label(),
                status: "not registered".into(),
                reason: "DescribeInstanceInformation does not list it as a managed node".into(),
                hint: AGENT_FIX.into(),
            }),
            Some(status) => Some(Error::SsmAgent {
                instance: instance.label(),
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

/// The SSM session parameters of `StartSession`: document name (none: the default shell)
/// and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// `AWS-StartPortForwardingSession`, ...; `None` for `SSM-SessionManagerRunShell`.
    pub name: Option<String>,
    /// Parameter name → value (each sent as a one-element list).
    pub parameters: Vec<(String, String)>,
}

impl Document {
    /// The name, for messages.
    pub fn shown(&self) -> &str {
        self.name.as_deref().unwrap_or("SSM-SessionManagerRunShell")
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
            None => AgentStatus {
                ping_status: None,
                agent_version: None,
                last_ping: None,
                platform: None,
            },
            Some(i) => AgentStatus {
                ping_status: i.ping_status().map(|p| p.as_str().to_string()),
                agent_version: i.agent_version().map(str::to_string),
                last_ping: i.last_ping_date_time().map(ToString::to_string),
                platform: i.platform_type().map(|p| p.as_str().to_string()),
            },
        }))
    }

    /// `StartSession` on `instance` with `document`; `reason` is recorded in CloudTrail.
    pub async fn start(
        &self,
        instance: &InstanceInfo,
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
        instance: &InstanceInfo,
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

/// A failed `ResumeSession`, and whether trying again may help.
#[derive(Debug)]
pub struct ResumeError {
    /// True for throttling and network failures.
    pub retry: bool,
    /// The error, with its fix.
    pub error: Error,
}

fn is_access_denied(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web1() -> InstanceInfo {
        InstanceInfo::for_test("i-0abc", "web-1", "running", "10.0.1.20")
    }

    #[test]
    fn an_offline_agent_is_named_with_its_status_and_the_fix() {
        let status = AgentStatus {
            ping_status: Some("ConnectionLost".into()),
            agent_version: Some("3.3.0".into()),
            last_ping: Some("2026-01-01T00:00:00Z".into()),
            platform: Some("Linux".into()),
        };
        assert!(!status.online());
        let msg = status.problem(&web1()).unwrap().to_string();
        assert!(
            msg.starts_with("the SSM agent on web-1 (i-0abc) is ConnectionLost"),
            "{msg}"
        );
        assert!(msg.contains("amazon-ssm-agent"), "{msg}");
        assert!(msg.contains("AmazonSSMManagedInstanceCore"), "{msg}");

        let missing = AgentStatus {
            ping_status: None,
            agent_version: None,
            last_ping: None,
            platform: None,
        };
        let msg = missing.problem(&web1()).unwrap().to_string();
        assert!(msg.contains("is not registered"), "{msg}");
    }

    #[test]
    fn the_token_is_never_shown() {
        let s = Started {
            session_id: "s-1".into(),
            stream_url: "wss://x".into(),
            token: "SECRET".into(),
        };
        assert!(!format!("{s:?}").contains("SECRET"));
    }
}
