//! AWS SDK configuration: profile, region, credentials, and errors that name the fix.
//!
//! [`AwsConfigs`] loads one [`SdkConfig`] per (profile, region) pair the way the AWS CLI
//! does (`aws_config::defaults`: environment, `~/.aws/config` and `~/.aws/credentials`, SSO,
//! `AWS_ENDPOINT_URL_*` overrides) and keeps it for the rest of the run, so a script that opens
//! ten hops loads its profile once. A script's `profile` and `region` options win over the
//! environment; without them `AWS_PROFILE` / `AWS_REGION` and the profile files decide.
//!
//! Loading checks, up front, what every later call needs: a region, and credentials that
//! resolve. Each failure becomes an [`Error::Aws`] saying what to set or run: no region
//! ("set AWS_REGION, or `region: \"...\"`"), no credentials, an SSO token that is missing or
//! expired ("run `aws sso login --profile p`"). [`api_error`] does the same for answers of
//! the AWS APIs themselves (expired or unknown keys, a bad signature, IAM refusals).
//!
//! Nothing here prints or keeps a secret: credentials stay inside the SDK's provider, and
//! messages quote error codes and texts, never keys.

use std::collections::HashMap;
use std::fmt::Display;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use crate::error::{Error, Result};

/// Which configuration to load: `None` fields fall back to the environment and profile files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ConfigKey {
    /// A profile of `~/.aws/config` (script option `profile`; else `AWS_PROFILE`, `default`).
    pub profile: Option<String>,
    /// A region such as `eu-west-1` (script option `region`; else `AWS_REGION`, the profile).
    pub region: Option<String>,
}

impl ConfigKey {
    /// The profile as the user would name it, for messages.
    fn profile_shown(&self) -> String {
        self.profile
            .clone()
            .or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "default".into())
    }
}

/// A loaded configuration and the region it resolved to.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The SDK configuration, for SDK clients and the credentials provider.
    pub sdk: SdkConfig,
    /// The region (always set: loading fails without one).
    pub region: String,
    /// The profile name, for messages (`default` when none was chosen).
    pub profile: String,
}

impl AwsConfig {
    /// Fresh credentials from the configuration's provider (cached and refreshed by the SDK),
    /// for signing requests the SDK does not make itself (the EICE tunnel URL).
    pub async fn credentials(&self) -> Result<Credentials> {
        let provider = self.sdk.credentials_provider().ok_or_else(|| {
            no_credentials(&self.profile, "no credentials provider is configured")
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| credentials_error(&self.profile, &e))
    }

    /// An EC2 client.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk)
    }

    /// An EC2 Instance Connect client (SendSSHPublicKey).
    pub fn instance_connect(&self) -> aws_sdk_ec2instanceconnect::Client {
        aws_sdk_ec2instanceconnect::Client::new(&self.sdk)
    }

    /// True when the configuration asks for FIPS endpoints (`AWS_USE_FIPS_ENDPOINT`).
    pub fn use_fips(&self) -> bool {
        self.sdk.use_fips() == Some(true)
    }
}

/// Signing for the transports (the EICE tunnel URL, the SSM data channel's upgrade).
impl crate::hop::tunnel::Signer for AwsConfig {
    fn region(&self) -> &str {
        &self.region
    }

    fn credentials(&self) -> crate::hop::tunnel::BoxFuture<'_, Result<Credentials>> {
        Box::pin(AwsConfig::credentials(self))
    }
}

/// The configurations loaded so far in this run, one per [`ConfigKey`].
#[derive(Default)]
pub struct AwsConfigs {
    loaded: Mutex<HashMap<ConfigKey, AwsConfig>>,
    /// `--profile` / `--region` of the command line: used where a script names none.
    defaults: ConfigKey,
}

impl AwsConfigs {
    /// Configurations whose profile and region default to `defaults` (the command line's
    /// `--profile` and `--region`) where a script's options name none.
    pub fn with_defaults(defaults: ConfigKey) -> AwsConfigs {
        AwsConfigs {
            loaded: Mutex::default(),
            defaults,
        }
    }

    /// The configuration for `key`, loaded (and checked) on first use.
    pub async fn get(&self, key: &ConfigKey) -> Result<AwsConfig> {
        let key = ConfigKey {
            profile: key
                .profile
                .clone()
                .or_else(|| self.defaults.profile.clone()),
            region: key.region.clone().or_else(|| self.defaults.region.clone()),
        };
        let mut loaded = self.loaded.lock().await;
        if let Some(c) = loaded.get(&key) {
            return Ok(c.clone());
        }
        let config = load(&key).await?;
        loaded.insert(key, config.clone());
        Ok(config)
    }
}

/// Loads and checks one configuration: a region must be set and credentials must resolve.
pub async fn load(key: &ConfigKey) -> Result<AwsConfig> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(p) = &key.profile {
        loader = loader.profile_name(p);
    }
    if let Some(r) = &key.region {
        loader = loader.region(Region::new(r.clone()));
    }
    let sdk = loader.load().await;
    let profile = key.profile_shown();
    let Some(region) = sdk.region().map(ToString::to_string) else {
        return Err(Error::Aws {
            what: "cannot choose an AWS region".into(),
            reason: format!("neither the script, the environment nor profile {profile} names one"),
            hint: "set AWS_REGION (for example `export AWS_REGION=eu-west-1`), `region = ...` in \
                   the profile, or pass `region: \"eu-west-1\"` in the options"
                .into(),
        });
    };
    let config = AwsConfig {
        sdk,
        region,
        profile,
    };
    // Resolve credentials now, so a missing key or an expired SSO login shows at the call
    // that needs AWS, with its fix, rather than as a failed API request later.
    config.credentials().await?;
    Ok(config)
}

/// The error for "no credentials", with the ways to provide them.
fn no_credentials(profile: &str, reason: impl Display) -> Error {
    Error::Aws {
        what: "no AWS credentials".into(),
        reason: reason.to_string(),
        hint: format!(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE or \
             `profile: \"name\"` (now: {profile}), or log in with `aws sso login --profile {profile}` \
             or `aws configure`"
        ),
    }
}

/// Turns a credentials-provider failure into a message that says what to do.
fn credentials_error(profile: &str, e: &CredentialsError) -> Error {
    let detail = DisplayErrorContext(e).to_string();
    let lower = detail.to_ascii_lowercase();
    if lower.contains("sso") || lower.contains("token has expired") || lower.contains("expired") {
        return Error::Aws {
            what: format!("the AWS login of profile {profile} is missing or expired"),
            reason: detail,
            hint: format!("run `aws sso login --profile {profile}`, then try again"),
        };
    }
    match e {
        CredentialsError::CredentialsNotLoaded(_) => no_credentials(profile, detail),
        CredentialsError::InvalidConfiguration(_) => Error::Aws {
            what: format!("profile {profile} is not usable"),
            reason: detail,
            hint: "check ~/.aws/config and ~/.aws/credentials (`aws configure list --profile` \
                   shows what is found)"
                .into(),
        },
        CredentialsError::ProviderTimedOut(_) => Error::Aws {
            what: "loading AWS credentials timed out".into(),
            reason: detail,
            hint: "on a laptop, set AWS_EC2_METADATA_DISABLED=true and give credentials through \
                   the environment or a profile"
                .into(),
        },
        _ => Error::Aws {
            what: "cannot load AWS credentials".into(),
            reason: detail,
            hint: format!("check profile {profile} (`aws sts get-caller-identity` tests it)"),
        },
    }
}

/// Turns a failed AWS API call (`what`: "DescribeInstances", ...) into a message that names
/// the cause and the fix. `profile` is named in the fixes.
pub fn api_error<E, R>(what: &str, profile: &str, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = format!("AWS {what} failed");
    let (code, message) = match &e {
        SdkError::ServiceError(se) => (
            se.err().code().map(str::to_string),
            se.err().message().map(str::to_string),
        ),
        _ => (None, None),
    };
    let reason = match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        _ => DisplayErrorContext(&e).to_string(),
    };
    let hint = match code.as_deref() {
        Some(
            "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" | "TokenRefreshRequired",
        ) => {
            format!(
                "the credentials have expired: log in again (`aws sso login --profile {profile}`) \
                 or get new keys; RequestExpired can also mean this machine's clock is off"
            )
        }
        Some("InvalidClientTokenId" | "UnrecognizedClientException" | "AuthFailure") => format!(
            "AWS does not know this access key: check AWS_ACCESS_KEY_ID (or profile {profile}), \
             and that the key is active and belongs to this partition and region"
        ),
        Some("SignatureDoesNotMatch" | "InvalidSignatureException") => format!(
            "the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY, or the \
             keys of profile {profile} (`aws configure list --profile {profile}`); or this \
             machine's clock is off"
        ),
        Some(
            "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" | "AuthException",
        ) => format!(
            "IAM does not allow this call for these credentials: ask for the permission it \
             names, or use another profile than {profile}"
        ),
        Some("ThrottlingException" | "Throttling" | "RequestLimitExceeded") => {
            "AWS is throttling requests: wait a moment and try again".into()
        }
        Some(_) => String::new(),
        None => match &e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                "cannot reach the AWS API: check the network, a proxy, the region, and any \
                 AWS_ENDPOINT_URL setting"
                    .into()
            }
            _ => String::new(),
        },
    };
    Error::Aws { what, reason, hint }
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::error::CredentialsError;

    use super::*;

    #[test]
    fn sso_failures_say_to_log_in() {
        let e = CredentialsError::provider_error("the SSO session has expired or is invalid");
        let msg = credentials_error("dev", &e).to_string();
        assert!(msg.contains("aws sso login --profile dev"), "{msg}");
    }

    #[test]
    fn missing_credentials_name_the_ways_to_give_them() {
        let e = CredentialsError::not_loaded("no providers in chain provided credentials");
        let msg = credentials_error("default", &e).to_string();
        assert!(msg.contains("AWS_ACCESS_KEY_ID"), "{msg}");
        assert!(msg.contains("AWS_PROFILE"), "{msg}");
    }
}
