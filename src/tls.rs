//! The one TLS configuration every outbound connection uses: rustls with the
//! ring provider and the operating system's trust store (certificates are
//! always verified). Plain `http://` / `ws://` happen only where a URL says so.

use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_platform_verifier::BuilderVerifierExt;

pub fn client_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTP client on that TLS configuration. `timeout` bounds each whole request.
pub fn http_client(tls: &Arc<ClientConfig>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(ClientConfig::clone(tls))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("zcc-relay/", env!("CARGO_PKG_VERSION")))
        .build()
}
