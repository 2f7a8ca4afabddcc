//! Dialing a data channel: the stream URL is checked to be a Session Manager endpoint (the
//! token goes nowhere else), the upgrade is SigV4-signed as plugin 1.2.764.0 signs it, and the
//! first text frame carries the token.

use super::*;

/// A failed dial: the error, and the close code if the gateway refused the token.
pub(super) struct DialError {
    pub(super) error: Error,
    pub(super) refused: Option<(u16, String)>,
}

impl From<Error> for DialError {
    fn from(error: Error) -> Self {
        DialError {
            error,
            refused: None,
        }
    }
}

/// True for the stream URLs of Session Manager: `wss://` to an `ssmmessages` host of AWS
/// (regional, FIPS, VPC endpoint; the rule of aws-ssm-bridge's `EndpointPolicy::AwsOnly`),
/// so a tampered answer cannot send the token elsewhere.
fn allowed_stream_host(url: &tungstenite::http::Uri) -> bool {
    let Some(host) = url.host() else {
        return false;
    };
    let in_aws = host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn");
    let is_ssm = host
        .split('.')
        .any(|l| l == "ssmmessages" || l.starts_with("ssmmessages-"));
    url.scheme_str() == Some("wss") && in_aws && is_ssm
}

/// Dials the stream URL (SigV4-signed upgrade, as plugin 1.2.764.0 does) and sends the
/// `OpenDataChannelInput` with the token.
pub(super) async fn dial(
    api: &dyn SessionApi,
    started: &Started,
    label: &str,
) -> std::result::Result<Ws, DialError> {
    let mut request = started
        .stream_url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Ssm {
            what: format!("{label}: cannot open the data channel"),
            reason: format!("the stream URL is malformed: {e}"),
            hint: "this is unexpected from Session Manager: check any AWS_ENDPOINT_URL setting"
                .into(),
        })?;
    let uri = request.uri().clone();
    if !allowed_stream_host(&uri) {
        return Err(Error::Ssm {
            what: format!("{label}: refusing to open the data channel"),
            reason: format!(
                "the stream URL points to {}, which is not a Session Manager (ssmmessages) \
                 endpoint of AWS",
                uri.host().unwrap_or("no host")
            ),
            hint: "check AWS_ENDPOINT_URL_SSM and any proxy between this machine and AWS".into(),
        }
        .into());
    }
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = uri
        .authority()
        .map_or_else(|| host.clone(), |a| a.as_str().to_string());
    let credentials = api.credentials().await?;
    sign_upgrade(&mut request, &authority, api.region(), credentials)?;
    request.headers_mut().insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("aws-hop/", env!("CARGO_PKG_VERSION"))),
    );
    let connect_err = |reason: String, hint: &str| Error::Ssm {
        what: format!("{label}: cannot open the data channel to {host}"),
        reason,
        hint: hint.to_string(),
    };
    let handshake =
        async {
            let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| {
            connect_err(
                format!("TCP connect to port {port} failed: {e}"),
                "check that this machine reaches ssmmessages.<region>.amazonaws.com on TCP 443 \
                 (a firewall or a proxy may be in the way)",
            )
        })?;
            let _ = tcp.set_nodelay(true);
            let tls = crate::tls::client_config().map_err(|e| connect_err(e.reason, &e.hint))?;
            let (ws, _) = tokio_tungstenite::client_async_tls_with_config(
                request,
                tcp,
                None,
                Some(Connector::Rustls(tls)),
            )
            .await
            .map_err(|e| match e {
                tungstenite::Error::Http(r) => connect_err(
                    format!("the gateway answered HTTP {}", r.status().as_u16()),
                    "check this machine's clock, and that IAM allows ssmmessages:OpenDataChannel \
                 for these credentials",
                ),
                other => connect_err(
                    other.to_string(),
                    "check the trust store (SSL_CERT_FILE) and any proxy",
                ),
            })?;
            Ok::<_, Error>(ws)
        };
    let mut ws = tokio::time::timeout(DIAL_TIMEOUT, Box::pin(handshake))
        .await
        .map_err(|_| Error::Timeout {
            what: format!("{label}: opening the data channel to {host}"),
            secs: DIAL_TIMEOUT.as_secs_f64(),
            hint: "check that this machine reaches it on TCP 443".into(),
        })??;
    let open = serde_json::json!({
        "MessageSchemaVersion": "1.0",
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "TokenValue": started.token,
        "ClientId": uuid::Uuid::new_v4().to_string(),
        "ClientVersion": CLIENT_VERSION,
    })
    .to_string();
    ws.send(Message::Text(open.into())).await.map_err(|e| {
        connect_err(
            format!("sending the first frame failed: {e}"),
            "try again; check the network",
        )
    })?;
    Ok(ws)
}

/// SigV4 headers for the upgrade: `GET <url>`, only `host` signed, empty body, service
/// `ssmmessages` (what the plugin signs since 1.2.764.0).
fn sign_upgrade(
    request: &mut tungstenite::handshake::client::Request,
    host: &str,
    region: &str,
    credentials: aws_credential_types::Credentials,
) -> Result<()> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::invalid(format!("cannot sign the SSM data channel request: {e}"))
    };
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("ssmmessages")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let url = request.uri().to_string();
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        [("host", host)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| failed(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| failed(&e))?
        .into_parts();
    let (headers, _) = instructions.into_parts();
    for h in headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|e| failed(&e))?;
        let value = HeaderValue::from_str(h.value()).map_err(|e| failed(&e))?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_manager_hosts_get_the_token() {
        let ok = |u: &str| allowed_stream_host(&u.parse().unwrap());
        assert!(ok(
            "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/s-1?role=publish_subscribe"
        ));
        assert!(ok(
            "wss://vpce-0a-1b.ssmmessages.eu-west-1.vpce.amazonaws.com/v1/x"
        ));
        assert!(ok(
            "wss://ssmmessages-fips.us-gov-west-1.amazonaws.com/v1/x"
        ));
        assert!(!ok("ws://ssmmessages.us-east-1.amazonaws.com/v1/x"));
        assert!(!ok("wss://ssmmessages.evil.com/v1/x"));
        assert!(!ok("wss://evil-ssmmessages.us-east-1.amazonaws.com/v1/x"));
    }
}
