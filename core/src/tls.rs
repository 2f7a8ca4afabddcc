//! TLS for the WebSockets aws-hop dials itself (EICE tunnels, SSM data channels).
//!
//! rustls with the aws-lc-rs provider only, the provider russh uses too: rustls panics when it
//! has to pick a default and finds two compiled in. [`install_crypto_provider`] makes it the
//! process default (the binary calls it first thing), and [`client_config`] is the one client
//! configuration every dial shares: the OS trust store (or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
//!
//! This module knows nothing of EICE or SSM; a failure is a [`TlsSetupError`] that each caller
//! turns into its own error, naming the host it was dialing.

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;

/// Why no TLS client configuration could be built, and what to do.
#[derive(Debug, Clone)]
pub struct TlsSetupError {
    /// What went wrong.
    pub reason: String,
    /// What to try.
    pub hint: String,
}

/// Makes aws-lc-rs the process-wide rustls crypto provider.
///
/// Installing it removes the guesswork for every library that builds a `ClientConfig` later.
/// Calling it again, or after another library installed the same provider, does nothing.
///
/// # Example
///
/// ```
/// aws_hop::tls::install_crypto_provider();
/// aws_hop::tls::install_crypto_provider(); // harmless
/// assert!(rustls::crypto::CryptoProvider::get_default().is_some());
/// ```
pub fn install_crypto_provider() {
    // Err means a provider is already installed: that is the state we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The TLS client configuration, built once so later dials share it.
pub fn client_config() -> Result<Arc<ClientConfig>, TlsSetupError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    install_crypto_provider();
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        return Err(TlsSetupError {
            reason: format!("no trusted CA certificates were found{why}"),
            hint: "install the system's CA bundle (ca-certificates), or point SSL_CERT_FILE at \
                   a PEM file of trusted CAs"
                .into(),
        });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError {
            reason: format!("TLS setup failed: {e}"),
            hint: "this is a bug in aws-hop, please report it".into(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installing_the_provider_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
