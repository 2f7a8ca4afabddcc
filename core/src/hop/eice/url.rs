//! The EICE `OpenTunnel` URL, presigned with SigV4 query authentication.
//!
//! An EC2 Instance Connect Endpoint opens a tunnel when a client upgrades
//! `GET wss://<endpoint DNS name>/openTunnel?<query>` to a WebSocket. The query names the
//! target (endpoint id, remote port, private IP, optional maximum duration) and carries a
//! SigV4 signature for the service `ec2-instance-connect`, valid for 60 seconds. This file
//! builds that URL exactly as AWS CLI v2 does (`shared/protocols/eice.md` §1.3–1.4):
//!
//! - the operation parameters come first, in the CLI's order: `instanceConnectEndpointId`,
//!   `remotePort`, `privateIpAddress`, then `maxTunnelDuration` only when one is given;
//! - values are RFC 3986 encoded (only `A-Z a-z 0-9 - . _ ~` stay as they are), so an IPv6
//!   address is sent with `%3A` for every `:`;
//! - the signature covers the `host` header only and the SHA-256 of an empty payload (not
//!   `UNSIGNED-PAYLOAD`); a session token is part of the signed query;
//! - the signing parameters follow in botocore's order, with `X-Amz-Signature` last.
//!
//! The main types are [`TunnelRequest`] (what to open, and the credentials to sign with) and
//! [`PresignedUrl`] (the result, handed untouched to [`super::ws_stream::connect`]). Neither
//! type shows a secret in its `Debug` output: the secret key, the session token and the
//! signature are redacted.
//!
//! Signing itself is `aws-sigv4`'s; this file only fixes the inputs and lays out the query.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::error::{Error, Result};

/// The SigV4 signing name of EC2 Instance Connect (its endpoint prefix; the model has no
/// separate signing name).
pub const SIGNING_NAME: &str = "ec2-instance-connect";

/// How long a presigned URL is valid (`X-Amz-Expires`): sign just before connecting.
pub const EXPIRES: Duration = Duration::from_mins(1);

/// The only remote ports an EICE tunnel carries (SSH and RDP).
pub const ALLOWED_PORTS: [u16; 2] = [22, 3389];

/// The range of `maxTunnelDuration`, in seconds. Without one, the service uses 3600.
pub const MAX_DURATION_SECS: std::ops::RangeInclusive<u32> = 1..=3600;

/// Refuses a `max_duration` outside [`MAX_DURATION_SECS`], naming the option.
pub fn check_max_duration(secs: Option<u32>) -> Result<()> {
    match secs {
        Some(d) if !MAX_DURATION_SECS.contains(&d) => Err(Error::invalid(format!(
            "option `max_duration` is {d}: an EICE tunnel lasts 1 to 3600 seconds; leave it out \
             for the service default (3600)"
        ))),
        _ => Ok(()),
    }
}

/// The URL path of the tunnel operation (capital T).
const PATH: &str = "/openTunnel";

/// The signing parameters, in the order botocore appends them (the signature goes last).
const SIGNING_PARAMS: [&str; 7] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
];

/// Query parameters whose value is a secret (or a bearer credential for 60 s).
const SECRET_PARAMS: [&str; 2] = ["X-Amz-Security-Token", "X-Amz-Signature"];

/// What is shown instead of a secret.
const REDACTED: &str = "** redacted **";

/// One tunnel to open through an EICE endpoint, and what to sign the request with.
///
/// Build one for every connection: the URL it gives is valid for [`EXPIRES`] only.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use aws_credential_types::Credentials;
/// use aws_hop::hop::eice::url::TunnelRequest;
///
/// let request = TunnelRequest {
///     endpoint_id: "eice-0123456789abcdef0".into(),
///     dns_name: "eice-0123456789abcdef0.0123abcd.ec2-instance-connect-endpoint.eu-west-1.amazonaws.com".into(),
///     remote_port: 22,
///     private_ip: "10.0.1.17".parse().unwrap(),
///     max_duration_secs: None,
///     region: "eu-west-1".into(),
///     credentials: Credentials::new("AKIDEXAMPLE", "secret", None, None, "example"),
///     time: SystemTime::now(),
/// };
/// let url = request.presign()?;
/// assert!(url.as_str().starts_with("wss://eice-0123456789abcdef0.0123abcd."));
/// assert!(!format!("{url:?}").contains("X-Amz-Signature=0"));
/// # Ok::<(), aws_hop::Error>(())
/// ```
#[derive(Clone)]
pub struct TunnelRequest {
    /// The endpoint id, `eice-…`.
    pub endpoint_id: String,
    /// The endpoint's DNS name (`DnsName`, or `FipsDnsName` in FIPS mode). A `:port` suffix is
    /// accepted for test servers; it is then part of the URL and of the signed `host`.
    pub dns_name: String,
    /// The port on the instance: 22 or 3389 ([`ALLOWED_PORTS`]).
    pub remote_port: u16,
    /// The instance's private address in the endpoint's VPC, IPv4 or IPv6.
    pub private_ip: IpAddr,
    /// `maxTunnelDuration` in seconds (1–3600); `None` leaves it out, and the service then
    /// allows 3600. An IAM policy that limits the duration needs it sent.
    pub max_duration_secs: Option<u32>,
    /// The region to sign for: the configured region, not one parsed from the DNS name.
    pub region: String,
    /// The credentials to sign with; a session token, when present, is signed into the query.
    pub credentials: Credentials,
    /// The signing time (`SystemTime::now()` except in tests).
    pub time: SystemTime,
}

impl fmt::Debug for TunnelRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelRequest")
            .field("endpoint_id", &self.endpoint_id)
            .field("dns_name", &self.dns_name)
            .field("remote_port", &self.remote_port)
            .field("private_ip", &self.private_ip)
            .field("max_duration_secs", &self.max_duration_secs)
            .field("region", &self.region)
            .field("access_key_id", &self.credentials.access_key_id())
            .field("secret_access_key", &REDACTED)
            .field(
                "session_token",
                &self.credentials.session_token().map(|_| REDACTED),
            )
            .field("time", &self.time)
            .finish()
    }
}

impl TunnelRequest {
    /// Checks the request and signs it, giving the `wss://` URL to dial.
    ///
    /// Refused before signing: a port other than 22 or 3389, a duration outside 1–3600 s,
    /// a malformed endpoint id, DNS name or region.
    pub fn presign(&self) -> Result<PresignedUrl> {
        self.check()?;
        let host = self.dns_name.as_str();
        let ip = self.private_ip.to_string();
        let port = self.remote_port.to_string();
        let duration = self.max_duration_secs.map(|d| d.to_string());
        let mut operation: Vec<(&str, &str)> = vec![
            ("instanceConnectEndpointId", &self.endpoint_id),
            ("remotePort", &port),
            ("privateIpAddress", &ip),
        ];
        if let Some(d) = &duration {
            operation.push(("maxTunnelDuration", d));
        }
        let mut query = String::new();
        append_params(&mut query, operation.iter().copied());

        let unsigned = format!("wss://{host}{PATH}?{query}");
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(EXPIRES);
        let identity: Identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(self.time)
            .settings(settings)
            .build()
            .map_err(|e| sign_failed(&e))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            unsigned.as_str(),
            [("host", host)].into_iter(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| sign_failed(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| sign_failed(&e))?
            .into_parts();

        let signed = instructions.params();
        let value = |name: &str| -> Option<&Cow<'static, str>> {
            signed.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
        };
        let mut ordered = Vec::with_capacity(SIGNING_PARAMS.len());
        for name in SIGNING_PARAMS {
            match value(name) {
                Some(v) => ordered.push((name, v.as_ref())),
                None if name == "X-Amz-Security-Token" => {}
                None => {
                    return Err(Error::invalid(format!(
                        "cannot presign the EICE URL: the signer gave no {name}; \
                         this is a bug in aws-hop, please report it"
                    )));
                }
            }
        }
        append_params(&mut query, ordered.into_iter());
        Ok(PresignedUrl {
            url: format!("wss://{host}{PATH}?{query}"),
            host: host.to_owned(),
        })
    }

    /// Refuses what the service would refuse, with the fix, before anything is signed.
    fn check(&self) -> Result<()> {
        if !ALLOWED_PORTS.contains(&self.remote_port) {
            return Err(Error::invalid(format!(
                "EICE carries only ports 22 and 3389 (not {}); reach other ports with SSH over \
                 EICE and a forward",
                self.remote_port
            )));
        }
        check_max_duration(self.max_duration_secs)?;
        let id_ok = self.endpoint_id.strip_prefix("eice-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !id_ok {
            return Err(Error::invalid(format!(
                "'{}' is not an EC2 Instance Connect Endpoint id (eice- then letters and digits, \
                 e.g. eice-0123456789abcdef0); `aws ec2 describe-instance-connect-endpoints` \
                 lists them",
                self.endpoint_id
            )));
        }
        if !valid_host(&self.dns_name) {
            return Err(Error::invalid(format!(
                "'{}' is not an EICE DNS name (it looks like \
                 eice-0123456789abcdef0.0123abcd.ec2-instance-connect-endpoint.<region>.amazonaws.com; \
                 `aws ec2 describe-instance-connect-endpoints` shows it as DnsName)",
                self.dns_name
            )));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !region_ok {
            return Err(Error::invalid(format!(
                "'{}' is not an AWS region name (e.g. eu-west-1); set the region of the \
                 endpoint's VPC",
                self.region
            )));
        }
        Ok(())
    }
}

/// A presigned `wss://…/openTunnel?…` URL, to dial within [`EXPIRES`] and pass on untouched.
///
/// Its `Debug` output hides the signature and the session token; there is deliberately no
/// `Display`: the URL is a credential for its 60 seconds, so it is never logged or shown.
#[derive(Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    url: String,
    /// The endpoint's DNS name (with the port, if one was given), for messages.
    host: String,
}

impl PresignedUrl {
    /// The full URL, exactly as signed. Re-encoding it would break the signature.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The endpoint's DNS name, as signed (`host[:port]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL with the secret parameters replaced by `** redacted **`.
    pub fn redacted(&self) -> String {
        let Some((base, query)) = self.url.split_once('?') else {
            return self.url.clone();
        };
        let mut out = format!("{base}?");
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k) => {
                    let _ = write!(out, "{k}={REDACTED}");
                }
                _ => out.push_str(pair),
            }
        }
        out
    }
}

impl fmt::Debug for PresignedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PresignedUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Appends `k=v` pairs to a query string, both sides RFC 3986 encoded.
fn append_params<'a>(query: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (k, v) in pairs {
        if !query.is_empty() {
            query.push('&');
        }
        encode_into(query, k);
        query.push('=');
        encode_into(query, v);
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (botocore
/// `percent_encode_sequence`).
fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// A DNS name (letters, digits, `.` and `-`, as the CLI accepts), with an optional `:port`.
fn valid_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (s, None),
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    name_ok && port_ok
}

/// The error for a failure inside the signer (it does not fail on valid input).
fn sign_failed(e: &dyn std::error::Error) -> Error {
    Error::invalid(format!("cannot presign the EICE URL: {e}"))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    use super::*;

    /// 2020-01-01T01:01:01Z, the time of the CLI's test vector.
    fn vector_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_577_840_461)
    }

    /// The verified test vector of eice.md §1.4 (aws-cli `test_single_connection_mode`).
    fn vector() -> TunnelRequest {
        TunnelRequest {
            endpoint_id: "eice-123".into(),
            dns_name: "eice-123.ec2-instance-connect-endpoint.us-west-2.amazonaws.com".into(),
            remote_port: 22,
            private_ip: "10.0.0.0".parse().unwrap(),
            max_duration_secs: Some(1),
            region: "us-west-2".into(),
            credentials: Credentials::new("access_key", "secret_key", None, None, "test"),
            time: vector_time(),
        }
    }

    const VECTOR_SIGNATURE: &str =
        "3a56740422a5b9aebd22d860b7a30c729e459a6f71a83bc0de3a2b44b7353f28";

    fn query_of(url: &PresignedUrl) -> &str {
        url.as_str().split_once('?').unwrap().1
    }

    fn param<'a>(url: &'a PresignedUrl, name: &str) -> Option<&'a str> {
        query_of(url)
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// An independent SigV4 query signer (no aws-sigv4), to check what aws-sigv4 signed.
    /// `query` is the final query without `X-Amz-Signature`.
    fn independent_signature(host: &str, query: &str, secret: &str, region: &str) -> String {
        let mut pairs: Vec<&str> = query.split('&').collect();
        pairs.sort_unstable();
        let canonical = format!(
            "GET\n{PATH}\n{}\nhost:{host}\n\nhost\n{}",
            pairs.join("&"),
            hex(&Sha256::digest(b""))
        );
        let date = "20200101";
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20200101T010101Z\n{date}/{region}/{SIGNING_NAME}/aws4_request\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = format!("AWS4{secret}").into_bytes();
        for part in [date, region, SIGNING_NAME, "aws4_request", &string_to_sign] {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(part.as_bytes());
            key = mac.finalize().into_bytes().to_vec();
        }
        hex(&key)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    #[test]
    fn reproduces_the_cli_test_vector_exactly() {
        let url = vector().presign().unwrap();
        assert_eq!(param(&url, "X-Amz-Signature"), Some(VECTOR_SIGNATURE));
        let expected = format!(
            "wss://eice-123.ec2-instance-connect-endpoint.us-west-2.amazonaws.com/openTunnel?\
             instanceConnectEndpointId=eice-123&remotePort=22&privateIpAddress=10.0.0.0&\
             maxTunnelDuration=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&\
             X-Amz-Credential=access_key%2F20200101%2Fus-west-2%2Fec2-instance-connect%2Faws4_request&\
             X-Amz-Date=20200101T010101Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&\
             X-Amz-Signature={VECTOR_SIGNATURE}"
        );
        assert_eq!(url.as_str(), expected);
        assert_eq!(
            url.host(),
            "eice-123.ec2-instance-connect-endpoint.us-west-2.amazonaws.com"
        );
    }

    #[test]
    fn the_independent_signer_agrees_on_the_vector() {
        // Checks the checker: it must reproduce the published signature.
        let url = vector().presign().unwrap();
        let unsigned = query_of(&url).split("&X-Amz-Signature=").next().unwrap();
        assert_eq!(
            independent_signature(url.host(), unsigned, "secret_key", "us-west-2"),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn no_max_duration_leaves_the_parameter_out() {
        let mut r = vector();
        r.max_duration_secs = None;
        let url = r.presign().unwrap();
        assert!(
            query_of(&url)
                .starts_with("instanceConnectEndpointId=eice-123&remotePort=22&privateIpAddress=10.0.0.0&X-Amz-Algorithm=")
        );
        assert_eq!(param(&url, "maxTunnelDuration"), None);
    }

    #[test]
    fn a_session_token_is_sent_before_the_signature_and_signed() {
        let mut r = vector();
        r.credentials = Credentials::new(
            "ASIAEXAMPLE",
            "secret_key",
            Some("tok/en+=".into()),
            None,
            "test",
        );
        let url = r.presign().unwrap();
        let q = query_of(&url);
        assert!(
            q.contains(
                "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=tok%2Fen%2B%3D&X-Amz-Signature="
            ),
            "{q}"
        );
        assert!(
            q.rsplit('&')
                .next()
                .unwrap()
                .starts_with("X-Amz-Signature=")
        );
        // Signed: the signature is the one over a canonical query that includes the token.
        let unsigned = q.split("&X-Amz-Signature=").next().unwrap();
        let sig = param(&url, "X-Amz-Signature").unwrap();
        assert_eq!(
            independent_signature(url.host(), unsigned, "secret_key", "us-west-2"),
            sig
        );
        let without_token = unsigned.replace("&X-Amz-Security-Token=tok%2Fen%2B%3D", "");
        assert_ne!(
            independent_signature(url.host(), &without_token, "secret_key", "us-west-2"),
            sig
        );
    }

    #[test]
    fn ipv6_colons_are_percent_encoded() {
        let mut r = vector();
        r.private_ip = "fd00:ec2::23".parse().unwrap();
        let url = r.presign().unwrap();
        assert_eq!(param(&url, "privateIpAddress"), Some("fd00%3Aec2%3A%3A23"));
        let unsigned = query_of(&url).split("&X-Amz-Signature=").next().unwrap();
        assert_eq!(
            independent_signature(url.host(), unsigned, "secret_key", "us-west-2"),
            param(&url, "X-Amz-Signature").unwrap()
        );
    }

    #[test]
    fn a_host_with_a_port_is_signed_with_it() {
        let mut r = vector();
        r.dns_name = "eice.lab.test:8443".into();
        let url = r.presign().unwrap();
        assert!(
            url.as_str()
                .starts_with("wss://eice.lab.test:8443/openTunnel?")
        );
        let unsigned = query_of(&url).split("&X-Amz-Signature=").next().unwrap();
        assert_eq!(
            independent_signature("eice.lab.test:8443", unsigned, "secret_key", "us-west-2"),
            param(&url, "X-Amz-Signature").unwrap()
        );
    }

    #[test]
    fn other_ports_are_refused_before_signing() {
        for port in [0, 21, 23, 443, 5432, 3390] {
            let mut r = vector();
            r.remote_port = port;
            let msg = r.presign().unwrap_err().to_string();
            assert!(
                msg.starts_with("EICE carries only ports 22 and 3389"),
                "{msg}"
            );
            assert!(
                msg.contains("reach other ports with SSH over EICE and a forward"),
                "{msg}"
            );
        }
        let mut r = vector();
        r.remote_port = 3389;
        assert!(r.presign().is_ok());
    }

    #[test]
    fn max_duration_must_be_1_to_3600() {
        for d in [0, 3601, u32::MAX] {
            let mut r = vector();
            r.max_duration_secs = Some(d);
            let msg = r.presign().unwrap_err().to_string();
            assert!(msg.contains("1 to 3600 seconds"), "{msg}");
        }
        for d in [1, 3600] {
            let mut r = vector();
            r.max_duration_secs = Some(d);
            assert!(r.presign().is_ok());
        }
    }

    #[test]
    fn malformed_id_host_or_region_is_refused() {
        let mut r = vector();
        r.endpoint_id = "i-0123".into();
        assert!(r.presign().unwrap_err().to_string().contains("eice-"));
        let mut r = vector();
        r.dns_name = "eice.example.com/evil?x=".into();
        assert!(r.presign().unwrap_err().to_string().contains("DNS name"));
        let mut r = vector();
        r.dns_name = "eice.example.com:0".into();
        assert!(r.presign().is_err());
        let mut r = vector();
        r.region = String::new();
        assert!(r.presign().unwrap_err().to_string().contains("region"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut r = vector();
        r.credentials = Credentials::new(
            "ASIAEXAMPLE",
            "sekrit-key",
            Some("sekrit-token".into()),
            None,
            "test",
        );
        let url = r.presign().unwrap();
        let sig = param(&url, "X-Amz-Signature").unwrap().to_owned();
        let shown = format!("{r:?} {r:#?} {url:?} {url:#?} {}", url.redacted());
        for secret in ["sekrit-key", "sekrit-token", sig.as_str()] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("ASIAEXAMPLE"));
        assert!(shown.contains("X-Amz-Signature=** redacted **"));
        assert!(shown.contains("X-Amz-Security-Token=** redacted **"));
    }
}
