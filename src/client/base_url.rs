//! The W&B server ("base") URL, validated and normalised exactly as SDK 0.31.0 does.
//!
//! Sources: `wandb/sdk/lib/urls.py` (`validate_url`, `normalize_forge_base_url`,
//! `forge_upstream_url`), `wandb/sdk/lib/wbauth/host_url.py` (`HostUrl`) and the `base_url`
//! validator in `wandb/sdk/wandb_settings.py`:
//!
//! 1. the URL must be `http`/`https` with a host;
//! 2. a CoreWeave Forge proxy URL `https://forge.coreweave.com/api/wandb` becomes
//!    `https://api.forge.coreweave.com` (any other URL on a Forge host is an error);
//! 3. a URL ending in a `wandb.ai` host must contain `api.` and use `https`;
//! 4. trailing `/` are removed.
//!
//! The SDK compares base URLs as *strings* after this normalisation (`HostUrl.is_same_url`) and
//! takes the netrc machine from the raw netloc (`urlsplit(url).netloc`, port included), so
//! [`BaseUrl`] keeps the normalised text next to the parsed URL.

use super::error::{Error, Result};

/// The SDK 0.31.0 default server (`urls.DEFAULT_BASE_URL`).
pub const DEFAULT_BASE_URL: &str = "https://api.forge.coreweave.com";

/// Forge hosts and the W&B API host behind each (`urls.FORGE_HOSTS`).
const FORGE_HOSTS: [(&str, &str); 2] = [
    ("forge.coreweave.com", "api.wandb.ai"),
    ("qa.forge.coreweave.com", "api.qa.wandb.ai"),
];
/// Path under which a Forge host proxies the W&B API (`urls.FORGE_API_PATH`).
const FORGE_API_PATH: &str = "/api/wandb";

/// A validated, normalised W&B base URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    text: String,
    parsed: url::Url,
}

impl std::fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BaseUrl({:?})", self.text)
    }
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl BaseUrl {
    /// Validates and normalises a base URL like the SDK's `HostUrl(url)`.
    pub fn parse(raw: &str) -> Result<Self> {
        let parsed = url::Url::parse(raw)
            .map_err(|e| Error::config(format!("invalid W&B base URL {raw:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(Error::config(format!(
                "invalid W&B base URL {raw:?}: it must be an http:// or https:// URL with a host"
            )));
        }
        if parsed.username() != "" || parsed.password().is_some() {
            return Err(Error::config(format!(
                "invalid W&B base URL {}: credentials do not belong in the URL",
                super::error::redact_url(&parsed)
            )));
        }
        let text = normalize_forge_base_url(raw, &parsed)?;
        check_wandb_ai(&text)?;
        let text = text.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&text)
            .map_err(|e| Error::config(format!("invalid W&B base URL {text:?}: {e}")))?;
        Ok(BaseUrl { text, parsed })
    }

    /// The normalised URL text (what the SDK compares and caches credentials under).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The parsed URL.
    pub fn url(&self) -> &url::Url {
        &self.parsed
    }

    /// True when the server is on this machine (`localhost`, `127.0.0.0/8`, `::1`): a local
    /// W&B server or the emulator, which have none of W&B's cloud rate limits.
    pub fn is_loopback(&self) -> bool {
        match self.parsed.host() {
            Some(url::Host::Domain(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }

    /// The netloc as Python's `urlsplit(url).netloc` gives it: `host[:port]`, as written.
    /// This is the netrc machine name (`wandb login` writes exactly this).
    pub fn netloc(&self) -> &str {
        netloc_of(&self.text)
    }

    /// The netloc of the W&B API host behind a Forge URL (`urls.forge_upstream_url`), used as
    /// the SDK's fallback netrc machine; `None` when it is the same URL.
    pub fn forge_upstream_netloc(&self) -> Option<&'static str> {
        let host = self.parsed.host_str()?;
        let upstream = FORGE_HOSTS.iter().find_map(|(forge, api)| {
            let api_form = format!("api.{forge}");
            (host == *forge || host == api_form || host == *api).then_some(*api)
        })?;
        (self.text != format!("https://{upstream}")).then_some(upstream)
    }

    /// SDK string comparison (`HostUrl.is_same_url`): equal after trailing `/` removal.
    pub fn is_same_url(&self, other: &str) -> bool {
        self.text == other.trim_end_matches('/')
    }

    /// Joins a path below the base URL, keeping the base path (`{base}/graphql`).
    pub fn join(&self, path: &str) -> Result<url::Url> {
        let joined = format!("{}/{}", self.text, path.trim_start_matches('/'));
        url::Url::parse(&joined).map_err(|e| Error::config(format!("bad URL {joined:?}: {e}")))
    }

    /// The credential scope check: same scheme, host and port as the base URL and a path at or
    /// below the base path (on a `/` boundary). This mirrors wandb-core's `LimitTo` layer.
    pub fn in_scope(&self, target: &url::Url) -> bool {
        let base = &self.parsed;
        if target.scheme() != base.scheme()
            || target.host_str().map(str::to_ascii_lowercase)
                != base.host_str().map(str::to_ascii_lowercase)
            || target.port_or_known_default() != base.port_or_known_default()
        {
            return false;
        }
        let base_path = base.path().trim_end_matches('/');
        if base_path.is_empty() {
            return true;
        }
        let path = target.path();
        path == base_path
            || path
                .strip_prefix(base_path)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `urlsplit(url).netloc`: between `//` and the next `/`, `?` or `#`.
fn netloc_of(text: &str) -> &str {
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

/// `urls.normalize_forge_base_url`.
fn normalize_forge_base_url(raw: &str, parsed: &url::Url) -> Result<String> {
    let Some(host) = parsed.host_str() else {
        return Ok(raw.to_owned());
    };
    if !FORGE_HOSTS.iter().any(|(forge, _)| *forge == host) {
        return Ok(raw.to_owned());
    }
    // `parsed.port()` is None for an explicit default port too; Python's `.port` is not, so
    // look at the written netloc.
    let explicit_port = netloc_of(raw).contains(':');
    if parsed.scheme() == "https"
        && !explicit_port
        && parsed.path().trim_end_matches('/') == FORGE_API_PATH
        && parsed.query().is_none()
    {
        return Ok(format!("https://api.{host}"));
    }
    Err(Error::config(format!(
        "invalid Forge server address; use https://api.{host}"
    )))
}

/// The `wandb.ai` checks: `re.match(r".*wandb\.ai[^\.]*$", url)`.
fn check_wandb_ai(text: &str) -> Result<()> {
    let ends_in_wandb_ai = text
        .rfind("wandb.ai")
        .is_some_and(|i| !text[i + "wandb.ai".len()..].contains('.'));
    if !ends_in_wandb_ai {
        return Ok(());
    }
    if !text.contains("api.") {
        return Err(Error::config(format!(
            "{text} is not a valid server address, did you mean {DEFAULT_BASE_URL}?"
        )));
    }
    if !text.starts_with("https") {
        return Err(Error::config(format!(
            "http is not secure, please use {DEFAULT_BASE_URL}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers() {
        for local in [
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://wandb.localhost",
            "http://127.0.0.1:41234",
            "http://127.9.9.9",
            "http://[::1]:8080",
        ] {
            assert!(BaseUrl::parse(local).unwrap().is_loopback(), "{local}");
        }
        for remote in [
            "https://api.wandb.ai",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "http://[::2]",
        ] {
            assert!(!BaseUrl::parse(remote).unwrap().is_loopback(), "{remote}");
        }
    }

    #[test]
    fn normalises_like_the_sdk() {
        let b = BaseUrl::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(b.as_str(), "http://127.0.0.1:8080");
        assert_eq!(b.netloc(), "127.0.0.1:8080");
        let b = BaseUrl::parse("https://forge.coreweave.com/api/wandb/").unwrap();
        assert_eq!(b.as_str(), "https://api.forge.coreweave.com");
        assert!(BaseUrl::parse("https://forge.coreweave.com/other").is_err());
        assert!(BaseUrl::parse("https://forge.coreweave.com:443/api/wandb").is_err());
        assert!(BaseUrl::parse("https://wandb.ai").is_err());
        assert!(BaseUrl::parse("http://api.wandb.ai").is_err());
        assert!(BaseUrl::parse("https://api.wandb.ai").is_ok());
        // Not a wandb.ai host: anything goes.
        assert!(BaseUrl::parse("http://wandb.ai.example.com").is_ok());
        assert!(BaseUrl::parse("ftp://example.com").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
        assert!(BaseUrl::parse("http://user:pw@example.com").is_err());
        let b = BaseUrl::parse("https://host.example/api/wandb").unwrap();
        assert_eq!(
            b.join("graphql").unwrap().as_str(),
            "https://host.example/api/wandb/graphql"
        );
    }

    #[test]
    fn forge_fallback_netrc_machine() {
        let forge = BaseUrl::parse(DEFAULT_BASE_URL).unwrap();
        assert_eq!(forge.forge_upstream_netloc(), Some("api.wandb.ai"));
        let saas = BaseUrl::parse("https://api.wandb.ai").unwrap();
        assert_eq!(saas.forge_upstream_netloc(), None);
        let local = BaseUrl::parse("http://localhost:8080").unwrap();
        assert_eq!(local.forge_upstream_netloc(), None);
    }

    #[test]
    fn scope_requires_scheme_host_port_and_path_prefix() {
        let b = BaseUrl::parse("http://127.0.0.1:8080/api/wandb").unwrap();
        let ok = |u: &str| b.in_scope(&url::Url::parse(u).unwrap());
        assert!(ok("http://127.0.0.1:8080/api/wandb/graphql"));
        assert!(ok("http://127.0.0.1:8080/api/wandb"));
        assert!(!ok("http://127.0.0.1:8080/api/wandbx/graphql"));
        assert!(!ok("http://127.0.0.1:8080/other"));
        assert!(!ok("http://127.0.0.1:8081/api/wandb/graphql"));
        assert!(!ok("https://127.0.0.1:8080/api/wandb/graphql"));
        assert!(!ok("http://localhost:8080/api/wandb/graphql"));
        let root = BaseUrl::parse("https://api.wandb.ai").unwrap();
        assert!(root.in_scope(&url::Url::parse("https://api.wandb.ai:443/files/x").unwrap()));
        assert!(!root.in_scope(&url::Url::parse("https://storage.googleapis.com/x").unwrap()));
    }
}
