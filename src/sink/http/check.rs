//! The http kind's `zcc-relay check`: the receiver's host resolves, its port
//! accepts a TCP connection and, for `https`, it completes a TLS handshake with
//! the daemon's own TLS configuration (certificates verified against the
//! system trust store), within the sink's `timeout`.
//!
//! No HTTP request is sent, not even `HEAD` or `OPTIONS`: a receiver may route
//! those to its webhook handler, log them or count them, and only a handshake
//! is sure to have no effect. So `check` does not prove the path, the
//! receiver's answer or its view of the signing secret. Deliberately not here:
//! the proxy environment (`HTTPS_PROXY`), which reqwest honours and this
//! direct connection does not.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::sink::{BuildContext, Finding};

/// Proves the way to `url`'s host, step by step, stopping at the first step
/// that fails.
pub async fn check(url: &Url, context: &BuildContext<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let (Some(host), Some(port)) = (url.host(), url.port_or_known_default()) else {
        findings.push(Finding::problem(
            "the url has no host",
            "set `url` to the receiver's full address, e.g. https://crm.example.com/zoom",
        ));
        return findings;
    };
    let timeout = context.timeout;
    // Shown instead of the URL, which may carry a password.
    let shown = match &host {
        Host::Ipv6(ip) => format!("[{ip}]:{port}"),
        host => format!("{host}:{port}"),
    };
    let addresses: Vec<SocketAddr> = match &host {
        Host::Ipv4(ip) => vec![SocketAddr::from((*ip, port))],
        Host::Ipv6(ip) => vec![SocketAddr::from((*ip, port))],
        Host::Domain(name) => {
            match tokio::time::timeout(timeout, tokio::net::lookup_host((*name, port))).await {
                Ok(Ok(found)) => {
                    let found: Vec<SocketAddr> = found.collect();
                    findings.push(Finding::proved(format!(
                        "{name} resolves ({} address(es))",
                        found.len()
                    )));
                    found
                }
                Ok(Err(error)) => {
                    findings.push(Finding::problem(
                        format!("{name} does not resolve: {error}"),
                        "correct the host in `url`, or make it resolvable from this machine (DNS, /etc/hosts)",
                    ));
                    return findings;
                }
                Err(_) => {
                    findings.push(Finding::problem(
                        format!(
                            "resolving {name} took longer than the sink's timeout ({timeout:?})"
                        ),
                        "check this machine's DNS servers (resolvectl status)",
                    ));
                    return findings;
                }
            }
        }
    };
    let Some(stream) = connect(&addresses, &shown, context, &mut findings).await else {
        return findings;
    };
    if url.scheme() == "https" {
        handshake(stream, &host, &shown, context, &mut findings).await;
    } else {
        findings.push(Finding::proved(
            "plain http: records travel unencrypted (use https:// outside a trusted network)",
        ));
    }
    findings
}

/// A TCP connection to the first of `addresses` that takes one.
async fn connect(
    addresses: &[SocketAddr],
    shown: &str,
    context: &BuildContext<'_>,
    findings: &mut Vec<Finding>,
) -> Option<TcpStream> {
    let mut failures = Vec::new();
    // With one address, the address is what `shown` already says.
    let named = |address: &SocketAddr, what: String| match addresses.len() {
        1 => what,
        _ => format!("{address}: {what}"),
    };
    for address in addresses {
        match tokio::time::timeout(context.timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                findings.push(Finding::proved(format!("connected to {shown} ({address})")));
                return Some(stream);
            }
            Ok(Err(error)) => failures.push(named(address, error.to_string())),
            Err(_) => failures.push(named(
                address,
                format!(
                    "no answer within the sink's timeout ({:?})",
                    context.timeout
                ),
            )),
        }
    }
    let fix = if failures.is_empty() {
        "make the host resolve to an address this machine can reach".to_owned()
    } else {
        "start the receiver, or correct the port in `url`; a firewall between this machine and \
         the receiver must let the connection through"
            .to_owned()
    };
    findings.push(Finding::problem(
        format!("cannot connect to {shown}: {}", failures.join("; ")),
        fix,
    ));
    None
}

/// A TLS handshake on `stream` with the daemon's TLS configuration.
async fn handshake(
    stream: TcpStream,
    host: &Host<&str>,
    shown: &str,
    context: &BuildContext<'_>,
    findings: &mut Vec<Finding>,
) {
    let name = match host {
        Host::Domain(name) => ServerName::try_from((*name).to_owned()),
        Host::Ipv4(ip) => Ok(ServerName::from(std::net::IpAddr::V4(*ip))),
        Host::Ipv6(ip) => Ok(ServerName::from(std::net::IpAddr::V6(*ip))),
    };
    let Ok(name) = name else {
        findings.push(Finding::problem(
            format!("{shown} is not a name TLS can verify"),
            "set `url` to the host name on the receiver's certificate",
        ));
        return;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(context.tls));
    match tokio::time::timeout(context.timeout, connector.connect(name, stream)).await {
        Ok(Ok(mut tls)) => {
            findings.push(Finding::proved(format!(
                "TLS handshake with {shown}, certificate verified"
            )));
            // A clean close_notify; the receiver sees a connection that said nothing.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        }
        Ok(Err(error)) => findings.push(tls_problem(shown, &error)),
        Err(_) => findings.push(Finding::problem(
            format!(
                "{shown} did not finish a TLS handshake within the sink's timeout ({:?})",
                context.timeout
            ),
            "check that the receiver serves HTTPS on that port (or raise the sink's `timeout`)",
        )),
    }
}

/// What a failed handshake means for the operator.
fn tls_problem(shown: &str, error: &std::io::Error) -> Finding {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    if certificate {
        Finding::problem(
            format!("the certificate of {shown} is not trusted: {error}"),
            "give the receiver a certificate for this host name from a CA in the system trust \
             store, or add its CA to this machine's trust store (certificates are always verified)",
        )
    } else {
        Finding::problem(
            format!("TLS handshake with {shown} failed: {error}"),
            "check that the receiver serves HTTPS on that port; if it speaks plain HTTP, use an \
             http:// url only on a trusted network",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: rustls::Error, expected: &str) {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        match tls_problem("crm.example.com:443", &io) {
            Finding::Problem { problem, .. } => {
                assert!(problem.starts_with(expected), "{problem}")
            }
            other => panic!("not a problem: {other:?}"),
        }
    }

    #[test]
    fn an_untrusted_certificate_is_told_apart_from_a_failed_handshake() {
        check(
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "the certificate of crm.example.com:443 is not trusted",
        );
        check(
            rustls::Error::NoCertificatesPresented,
            "the certificate of crm.example.com:443 is not trusted",
        );
        check(
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            "TLS handshake with crm.example.com:443 failed",
        );
    }
}
