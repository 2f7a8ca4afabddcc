//! AWS: what talks to AWS APIs through the SDK. No byte of a tunnel passes here.
//!
//! Each file is one concern, usable and tested on its own:
//!
//! - [`config`]: one SDK configuration per (profile, region), checked when loaded (region,
//!   credentials), and AWS errors turned into messages that name the fix. An [`AwsConfig`]
//!   is the [`Signer`](crate::hop::tunnel::Signer) the transports sign with.
//! - [`instances`]: `instance("web-1")` (id, Name tag or pattern, private IP) and
//!   `instances(filters)`; managed-node ids (`mi-…`).
//! - [`eice`]: EC2 Instance Connect Endpoint discovery, then the EICE transport
//!   ([`crate::hop::eice`]) built from what it found.
//! - [`instance_connect`]: key pushes: `SendSSHPublicKey` for the ephemeral keys of SSH
//!   logins over EICE and SSM (the [`KeyPush`](crate::hop::tunnel::KeyPush) of a tunnel hop);
//!   the serial console's `SendSerialConsoleSSHPublicKey` belongs beside it.
//! - [`ssm`]: the Session Manager API (StartSession, ResumeSession, TerminateSession,
//!   DescribeInstanceInformation), the agent check, and the SSM transport
//!   ([`crate::hop::ssm`]) built on them.
//!
//! Data flows down: `aws` builds transports from `hop` and hands them plain data and the
//! `Signer`/`KeyPush`/`SessionApi` objects they need; `hop` never imports `aws`.

pub mod config;
pub mod eice;
pub mod instance_connect;
pub mod instances;
pub mod ssm;

pub use config::AwsConfig;
