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

/// The same rustls set-up with the roots and client certificate a sink names
/// (PEM text): `ca` replaces the operating system's trust store, `client` is
/// the certificate chain and private key presented when a server asks.
/// Certificates are still always verified.
pub fn client_config_with(
    ca: Option<&[u8]>,
    client: Option<(&[u8], &[u8])>,
) -> anyhow::Result<Arc<ClientConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.context("the CA file is not PEM certificates")?;
                roots
                    .add(cert)
                    .context("the CA file holds a certificate rustls cannot use")?;
            }
            if roots.is_empty() {
                anyhow::bail!("the CA file holds no certificate");
            }
            builder.with_root_certificates(roots)
        }
        None => builder.with_platform_verifier()?,
    };
    let config = match client {
        Some((chain, key)) => {
            let chain = CertificateDer::pem_slice_iter(chain)
                .collect::<Result<Vec<_>, _>>()
                .context("the client certificate file is not PEM certificates")?;
            if chain.is_empty() {
                anyhow::bail!("the client certificate file holds no certificate");
            }
            // The key's own error could quote it: say only what is wrong.
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| anyhow::anyhow!("the client key file holds no PEM private key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| anyhow::anyhow!("the client key does not fit the certificate"))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::client_config_with;

    #[test]
    fn unusable_tls_files_are_refused_without_quoting_them() {
        let error = |ca: Option<&[u8]>, client: Option<(&[u8], &[u8])>| {
            client_config_with(ca, client)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(error(Some(b"not pem"), None).contains("holds no certificate"));
        let key =
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        let refused = error(None, Some((b"", key)));
        assert!(refused.contains("holds no certificate"), "{refused}");
        assert!(!refused.contains("c2VjcmV0"), "{refused}");
        // The platform roots with no client certificate: the daemon's own set-up.
        assert!(client_config_with(None, None).is_ok());
    }
}
