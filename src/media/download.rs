//! Authenticated, streaming downloads from Zoom's API URLs.
//!
//! Zoom's `download_url` / `transcript_url` need the account's Bearer token.
//! Redirects are followed here (reqwest's own policy is off) so that the token
//! goes only to Zoom hosts: the configured API and OAuth origins, and
//! `https://zoom.us` / `https://*.zoom.us`. A redirect elsewhere (a storage
//! host with a signed URL) is requested without it, and a redirect from
//! `https` down to plain `http` is refused. URLs never appear in errors or
//! logs (signed ones carry credentials); only hosts do.
//!
//! Where a media URL may lead at all: never to a link-local address (cloud
//! metadata services live at 169.254.169.254), whether the URL names the
//! address or a name resolves to it, and to plain `http` only on loopback or
//! with `media.allow_http`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, LOCATION};
use rustls::ClientConfig;
use url::Url;

use crate::failure::Failure;
use crate::zoom::auth::{TokenCache, without_url};

/// Redirect hops followed per download.
pub const MAX_REDIRECTS: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte for this long: the download failed (retried). There is no limit on
/// a whole download: a large recording may take long.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// An origin (scheme, host, port) the Bearer token may be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(url: &Url) -> Option<Origin> {
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        })
    }
}

/// Where the Zoom token may go.
#[derive(Debug, Clone)]
pub struct ZoomHosts {
    configured: Vec<Origin>,
}

impl ZoomHosts {
    /// The configured API base and OAuth URL's origins, plus Zoom's own hosts.
    pub fn new(api_base: &Url, oauth_url: &Url) -> ZoomHosts {
        ZoomHosts {
            configured: [api_base, oauth_url]
                .into_iter()
                .filter_map(Origin::of)
                .collect(),
        }
    }

    pub fn is_zoom(&self, url: &Url) -> bool {
        let Some(origin) = Origin::of(url) else {
            return false;
        };
        if self.configured.contains(&origin) {
            return true;
        }
        origin.scheme == "https"
            && origin.port == Some(443)
            && (origin.host == "zoom.us" || origin.host.ends_with(".zoom.us"))
    }
}

/// Addresses no media URL may reach: link-local (169.254.0.0/16, where cloud
/// metadata services answer, and fe80::/10), AWS's IPv6 metadata address
/// `fd00:ec2::254`, and the unspecified address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_forbidden(IpAddr::V4(v4)))
        }
    }
}

/// The system resolver without the [`is_forbidden`] addresses: a name that
/// resolves only to those fails to resolve.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| !is_forbidden(address.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no address a media download may use (link-local and \
                     metadata addresses are refused)"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Downloads with the shared token cache.
#[derive(Clone)]
pub struct Downloader {
    http: reqwest::Client,
    tokens: TokenCache,
    zoom: ZoomHosts,
    /// `media.allow_http`: plain `http` beyond loopback.
    allow_http: bool,
}

impl Downloader {
    pub fn new(
        tls: &Arc<ClientConfig>,
        tokens: TokenCache,
        zoom: ZoomHosts,
    ) -> reqwest::Result<Downloader> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(ClientConfig::clone(tls))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("zcc-relay/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(GuardedResolver)
            .build()?;
        Ok(Downloader {
            http,
            tokens,
            zoom,
            allow_http: false,
        })
    }

    /// Lets downloads use plain `http` beyond loopback (`media.allow_http`).
    pub fn allow_http(mut self, allow: bool) -> Downloader {
        self.allow_http = allow;
        self
    }

    /// Whether `url` may be requested at all (each redirect hop is checked too).
    fn check_destination(&self, url: &Url) -> Result<(), Failure> {
        let host = url.host_str().unwrap_or_default();
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if ip.is_some_and(is_forbidden) {
            return Err(Failure::permanent(format!(
                "{host} is a link-local or cloud metadata address; refused"
            )));
        }
        let loopback = ip.is_some_and(|ip| ip.is_loopback()) || host == "localhost";
        if url.scheme() == "http" && !loopback && !self.allow_http {
            return Err(Failure::permanent(format!(
                "plain http from {host} refused (media.allow_http is false)"
            )));
        }
        Ok(())
    }

    /// Requests `url` and follows redirects; returns the successful response
    /// with its body still unread.
    pub async fn open(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let mut url = Url::parse(url)
            .map_err(|e| Failure::permanent(format!("the media URL is not a URL: {e}")))?;
        let mut refreshed = false;
        let mut hops = 0;
        loop {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(Failure::permanent(format!(
                    "cannot download a {:?} URL",
                    url.scheme()
                )));
            }
            self.check_destination(&url)?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let mut request = self.http.get(url.clone());
            let token = if self.zoom.is_zoom(&url) {
                let token = self
                    .tokens
                    .token()
                    .await
                    .map_err(|e| Failure::retry(format!("Zoom token: {e}")))?;
                request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
                Some(token)
            } else {
                None
            };
            let response = request.send().await.map_err(|e| {
                Failure::retry(format!("download from {host} failed: {}", without_url(e)))
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(Failure::permanent(format!(
                        "more than {MAX_REDIRECTS} redirects (last from {host})"
                    )));
                }
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok());
                url = redirect_target(&url, status, location)?;
                continue;
            }
            let code = status.as_u16();
            match (code, token) {
                (401, Some(token)) if !refreshed => {
                    // Once per download: the token may have been replaced.
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                (404 | 410, _) => {
                    return Err(Failure::permanent(format!(
                        "HTTP {code} from {host}: the file is deleted or does not exist"
                    )));
                }
                (408 | 425 | 429 | 401 | 403, _) | (500..=599, _) => {
                    return Err(
                        Failure::retry(format!("HTTP {code} from {host}")).with_status(code)
                    );
                }
                _ => {
                    return Err(
                        Failure::permanent(format!("HTTP {code} from {host}")).with_status(code)
                    );
                }
            }
        }
    }
}

/// Where a redirect from `url` leads: `location` resolved against it. A
/// redirect from `https` to anything else is refused (the next request could
/// carry the token, or a signed URL, in the clear).
fn redirect_target(url: &Url, status: StatusCode, location: Option<&str>) -> Result<Url, Failure> {
    let host = url.host_str().unwrap_or_default();
    let next = location
        .and_then(|location| url.join(location).ok())
        .ok_or_else(|| {
            Failure::permanent(format!(
                "HTTP {} from {host} without a usable Location",
                status.as_u16()
            ))
        })?;
    if url.scheme() == "https" && next.scheme() != "https" {
        return Err(Failure::permanent(format!(
            "{host} redirected from https to plain {}; refused",
            next.scheme()
        )));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::Class;

    #[test]
    fn media_urls_never_reach_metadata_and_http_only_when_allowed() {
        let tls = crate::tls::client_config().unwrap();
        let http = crate::tls::http_client(&tls, Duration::from_secs(5)).unwrap();
        let nowhere = Url::parse("https://api.zoom.us/v2").unwrap();
        let tokens = TokenCache::new(
            http,
            crate::zoom::auth::Credentials {
                oauth_url: nowhere.clone(),
                account_id: "a".into(),
                client_id: "c".into(),
                client_secret: crate::config::Secret::new("s".into()),
            },
        );
        let strict = Downloader::new(&tls, tokens, ZoomHosts::new(&nowhere, &nowhere)).unwrap();
        let relaxed = strict.clone().allow_http(true);
        for (url, allowed_strict, allowed_relaxed) in [
            ("https://api.zoom.us/v2/x", true, true),
            ("https://bucket.s3.amazonaws.com/k", true, true),
            ("http://127.0.0.1:8080/x", true, true),
            ("http://[::1]:8080/x", true, true),
            ("http://localhost:8080/x", true, true),
            ("http://files.example.com/x", false, true),
            ("http://169.254.169.254/latest/meta-data/", false, false),
            ("https://169.254.169.254/x", false, false),
            ("http://[fe80::1]/x", false, false),
            ("http://[fd00:ec2::254]/x", false, false),
            ("http://[::ffff:169.254.169.254]/x", false, false),
            ("http://0.0.0.0/x", false, false),
        ] {
            let url = Url::parse(url).unwrap();
            assert_eq!(
                strict.check_destination(&url).is_ok(),
                allowed_strict,
                "{url}"
            );
            assert_eq!(
                relaxed.check_destination(&url).is_ok(),
                allowed_relaxed,
                "{url}"
            );
        }
        assert!(is_forbidden("169.254.0.1".parse().unwrap()));
        assert!(!is_forbidden("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_redirect_never_leaves_https_and_never_names_the_url_in_its_error() {
        let zoom =
            Url::parse("https://api.zoom.us/v2/contact_center/recording/download/1").unwrap();
        let found = StatusCode::FOUND;
        let signed = "https://bucket.s3.amazonaws.com/k.mp3?X-Amz-Signature=abc";
        assert_eq!(
            redirect_target(&zoom, found, Some(signed))
                .unwrap()
                .as_str(),
            signed
        );
        // Relative locations resolve against the current URL.
        assert_eq!(
            redirect_target(&zoom, found, Some("/v2/other"))
                .unwrap()
                .as_str(),
            "https://api.zoom.us/v2/other"
        );
        // http -> https is an upgrade: followed.
        let plain = Url::parse("http://127.0.0.1:8080/v2/file").unwrap();
        assert!(redirect_target(&plain, found, Some("https://zoom.us/file")).is_ok());
        // https -> http is refused, wherever it leads, and the error names the
        // host only, not the (signed) target.
        for target in [
            "http://bucket.s3.amazonaws.com/k.mp3?X-Amz-Signature=abc",
            "http://api.zoom.us/v2/file",
        ] {
            match redirect_target(&zoom, found, Some(target)) {
                Err(Failure {
                    class: Class::Permanent,
                    reason,
                    ..
                }) => {
                    assert!(reason.contains("refused") && reason.contains("api.zoom.us"));
                    assert!(
                        !reason.contains("X-Amz") && !reason.contains("/v2"),
                        "{reason}"
                    );
                }
                other => panic!("{target}: {other:?}"),
            }
        }
        assert!(matches!(
            redirect_target(&zoom, found, None),
            Err(Failure {
                class: Class::Permanent,
                ..
            })
        ));
    }

    #[test]
    fn the_token_goes_only_to_zoom_origins() {
        let zoom = ZoomHosts::new(
            &Url::parse("http://127.0.0.1:8080/v2").unwrap(),
            &Url::parse("https://zoom.us/oauth/token").unwrap(),
        );
        for (url, expected) in [
            ("http://127.0.0.1:8080/v2/contact_center/x", true),
            ("http://127.0.0.1:8081/files/x", false),
            ("https://127.0.0.1:8080/v2/x", false),
            (
                "https://api.zoom.us/v2/contact_center/recording/download/1",
                true,
            ),
            ("https://zoom.us/x", true),
            ("https://eu01.api.zoom.us/x", true),
            ("http://api.zoom.us/x", false),
            ("https://api.zoom.us:8443/x", false),
            ("https://zoom.us.evil.example/x", false),
            ("https://evilzoom.us/x", false),
            ("https://bucket.s3.amazonaws.com/x?X-Amz-Signature=1", false),
        ] {
            assert_eq!(zoom.is_zoom(&Url::parse(url).unwrap()), expected, "{url}");
        }
    }
}
