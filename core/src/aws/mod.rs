//! AWS-specific transports, below the hops that use them.
//!
//! This area owns the wire protocols aws-hop speaks to AWS services itself, as opposed to the
//! AWS APIs reached through an SDK. Each file is one layer, usable and tested on its own:
//!
//! - [`eice_url`]: the EC2 Instance Connect Endpoint (EICE) `OpenTunnel` URL, presigned with
//!   SigV4 query authentication ([`eice_url::TunnelRequest`] → [`eice_url::PresignedUrl`]).
//! - [`ws_stream`]: dials a presigned URL over TLS and turns the WebSocket into a
//!   [`Stream`](crate::hop::Stream) ([`ws_stream::connect`], [`ws_stream::WsStream`]), with the
//!   close, error and half-close rules of the EICE protocol.
//!
//! Where it stops: nothing here looks up instances or endpoints, loads credentials, or pushes
//! SSH keys; the EICE hop (which will do that through the AWS SDK) builds a
//! [`eice_url::TunnelRequest`] for every connection it opens, because a presigned URL is
//! valid for 60 seconds only. The protocol itself is described in
//! `shared/protocols/eice.md`.
//!
//! TLS is rustls with the aws-lc-rs provider, the same provider russh uses;
//! [`ws_stream::install_crypto_provider`] makes it the process default at startup.

pub mod eice_url;
pub mod ws_stream;
