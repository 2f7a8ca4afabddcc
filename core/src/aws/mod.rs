//! AWS: SDK configuration, lookups, and the transports below the hops that use them.
//!
//! Each file is one layer, usable and tested on its own:
//!
//! - [`config`]: one SDK configuration per (profile, region), checked when loaded (region,
//!   credentials), and AWS errors turned into messages that name the fix.
//! - [`instances`]: `instance("web-1")` (id, Name tag or pattern, private IP) and
//!   `instances(filters)`.
//! - [`eice`]: the EICE hop: endpoint discovery, a freshly presigned tunnel per stream.
//! - [`instance_connect`]: `SendSSHPublicKey` for the ephemeral keys of SSH sessions over
//!   EICE and SSM.
//! - [`ssm`]: the SSM Session Manager hop: port forwarding multiplexed with smux, SSH over
//!   `AWS-StartSSHSession`, interactive shells; its own data-channel client (see its docs).
//!
//! The wire protocols aws-hop speaks to AWS itself, without the SDK:
//!
//! - [`eice_url`]: the EC2 Instance Connect Endpoint (EICE) `OpenTunnel` URL, presigned with
//!   SigV4 query authentication ([`eice_url::TunnelRequest`] → [`eice_url::PresignedUrl`]).
//! - [`ws_stream`]: dials a presigned URL over TLS and turns the WebSocket into a
//!   [`Stream`](crate::hop::Stream) ([`ws_stream::connect`], [`ws_stream::WsStream`]), with the
//!   close, error and half-close rules of the EICE protocol.
//!
//! The EICE hop builds a [`eice_url::TunnelRequest`] for every connection it opens, because a
//! presigned URL is valid for 60 seconds only. The protocol itself is described in
//! `shared/protocols/eice.md`.
//!
//! TLS is rustls with the aws-lc-rs provider, the same provider russh uses;
//! [`ws_stream::install_crypto_provider`] makes it the process default at startup.

pub mod config;
pub mod eice;
pub mod eice_url;
pub mod instance_connect;
pub mod instances;
pub mod ssm;
pub mod ws_stream;
