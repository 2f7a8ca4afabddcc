//! `SendSSHPublicKey`: the ephemeral key of an SSH login, pushed with EC2 Instance Connect.
//!
//! `SendSerialConsoleSSHPublicKey` (the EC2 serial console) will live beside it.
//!
//! Shared by the hops that log in to an instance without a key of the user's:
//! `eic_endpoint(x).ssh(user)` and `ssm(x).ssh(user)`. Both make an ed25519 key in memory and
//! call [`send_ssh_public_key`] before every dial, because the instance accepts a pushed key
//! for 60 s only.

use super::config::{AwsConfig, api_error};
use super::instances::InstanceInfo;
use crate::error::{Error, Result};
use crate::hop::tunnel::{BoxFuture, KeyPush};

/// The key push of one instance, handed to its tunnel hop as a [`KeyPush`].
pub struct InstanceConnect {
    config: AwsConfig,
    instance: InstanceInfo,
}

impl InstanceConnect {
    /// Pushes keys to `instance` with `config`'s credentials.
    pub fn new(config: AwsConfig, instance: InstanceInfo) -> InstanceConnect {
        InstanceConnect { config, instance }
    }
}

impl KeyPush for InstanceConnect {
    fn push<'a>(&'a self, user: &'a str, public_key: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(send_ssh_public_key(
            &self.config,
            &self.instance,
            user,
            public_key,
        ))
    }
}

/// Pushes `public_key` (OpenSSH form, `ssh-ed25519 AAAA…`) for `user` on `instance` with
/// `SendSSHPublicKey`; the instance accepts it for 60 s.
pub async fn send_ssh_public_key(
    config: &AwsConfig,
    instance: &InstanceInfo,
    user: &str,
    public_key: &str,
) -> Result<()> {
    let client = config.instance_connect();
    let mut req = client
        .send_ssh_public_key()
        .instance_id(&instance.id)
        .instance_os_user(user)
        .ssh_public_key(public_key);
    if let Some(az) = &instance.az {
        req = req.availability_zone(az);
    }
    match req.send().await {
        Ok(out) if out.success() => Ok(()),
        Ok(_) => Err(Error::Aws {
            what: format!("SendSSHPublicKey to {} for {user}", instance.label()),
            reason: "the service answered Success: false".into(),
            hint: "try again; if it persists, give a key with `key: \"~/.ssh/...\"`".into(),
        }),
        Err(e) => {
            let mut err = api_error("SendSSHPublicKey", &config.profile, e);
            if let Error::Aws { hint, .. } = &mut err
                && hint.is_empty()
            {
                *hint = format!(
                    "check the user name ({user}: ec2-user, ubuntu, admin ... depend on the \
                     AMI) and that the instance runs the ec2-instance-connect package; or \
                     give a key that is already installed with `key: \"~/.ssh/...\"`"
                );
            }
            Err(err)
        }
    }
}
