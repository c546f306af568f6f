//! Retry classification and backoff (wandb-core `clients/retry_policy.go` and `backoff.go`).

use std::time::{Duration, SystemTime};

use super::config::RetryConfig;

/// Whether a response status should be retried (`clients.RetryMostFailures`). One addition:
/// 416 (range not satisfiable) is final — the same range cannot become satisfiable by asking
/// again, and wandb-core never sends ranges on the paths where it would retry it.
pub fn status_is_retryable(status: u16) -> bool {
    match status {
        400 | 401 | 402 | 403 | 404 | 409 | 410 | 413 | 416 | 422 | 501 => false,
        0 => true,
        s if s >= 600 => true,
        s => (400..=599).contains(&s),
    }
}

/// Parses `Retry-After`: non-negative (float) seconds or an HTTP date (RFC 1123, plus the two
/// obsolete forms RFC 9110 asks clients to accept). Returns the wait from `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads exactly one `Retry-After` header (wandb-core ignores the header when it is repeated).
pub fn retry_after(headers: &reqwest::header::HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut values = headers.get_all(reqwest::header::RETRY_AFTER).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    parse_retry_after(first.to_str().ok()?, now)
}

/// `RateLimit-Remaining` / `RateLimit-Reset` (float seconds): when the quota is used up, how
/// long until it resets.
pub fn rate_limit_pause(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| -> Option<f64> {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let remaining = number("ratelimit-remaining")?;
    if remaining > 0.0 {
        return None;
    }
    number("ratelimit-reset").map(Duration::from_secs_f64)
}

/// The wait before retry number `attempt` (0-based): the server's `Retry-After` capped by
/// `max_retry_after`, else `initial × 2^attempt × U[1, 1.25]` capped by `max_backoff`.
pub fn backoff(config: &RetryConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(wait) = retry_after {
        return wait.min(config.max_retry_after);
    }
    let jitter = 1.0 + 0.25 * rand::random::<f64>();
    let exponent = attempt.min(32) as i32;
    let seconds = config.initial_backoff.as_secs_f64() * 2f64.powi(exponent) * jitter;
    Duration::from_secs_f64(seconds.min(config.max_backoff.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_matches_wandb_core() {
        for s in [400, 401, 402, 403, 404, 409, 410, 413, 416, 422, 501] {
            assert!(!status_is_retryable(s), "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504, 599, 600, 0] {
            assert!(status_is_retryable(s), "{s}");
        }
        assert!(!status_is_retryable(200));
        assert!(!status_is_retryable(302));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.25 ", now),
            Some(Duration::from_millis(250))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let config = RetryConfig {
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(5),
            ..RetryConfig::default()
        };
        for attempt in 0..4 {
            let wait = backoff(&config, attempt, None).as_secs_f64();
            let base = 2.0 * 2f64.powi(attempt as i32);
            assert!(wait >= base && wait <= base * 1.25, "{attempt}: {wait}");
        }
        assert_eq!(backoff(&config, 10, None), Duration::from_secs(30));
        assert_eq!(
            backoff(&config, 0, Some(Duration::from_secs(100))),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn rate_limit_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("RateLimit-Remaining", "0".parse().unwrap());
        h.insert("RateLimit-Reset", "1.5".parse().unwrap());
        assert_eq!(rate_limit_pause(&h), Some(Duration::from_millis(1500)));
        h.insert("RateLimit-Remaining", "10".parse().unwrap());
        assert_eq!(rate_limit_pause(&h), None);
    }
}
