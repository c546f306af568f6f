//! The process-wide request budget towards the W&B API host.
//!
//! Two mechanisms, both shared by all clones of a client:
//! - a GCRA token bucket (`governor`) with a sustained rate and a burst;
//! - a *pause gate*: when the server says the quota is gone (`RateLimit-Remaining: 0` with
//!   `RateLimit-Reset`, or a 429 with `Retry-After`), every request waits until that moment
//!   instead of each one discovering the 429 for itself.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::config::RateLimitConfig;

/// Shared limiter state.
pub struct RateBudget {
    bucket: Option<DefaultDirectRateLimiter>,
    paused_until: Mutex<Option<Instant>>,
    max_pause: Duration,
    honour_server_headers: bool,
    admitted: AtomicU64,
}

impl std::fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudget")
            .field("limited", &self.bucket.is_some())
            .field("admitted", &self.admitted.load(Ordering::Relaxed))
            .finish()
    }
}

impl RateBudget {
    /// Builds the budget; `max_pause` caps how long a server header can pause everyone.
    pub fn new(config: &RateLimitConfig, max_pause: Duration) -> Self {
        let bucket = (config.requests_per_second.is_finite() && config.requests_per_second > 0.0)
            .then(|| {
                let period = Duration::from_secs_f64(1.0 / config.requests_per_second)
                    .max(Duration::from_nanos(1));
                let burst = NonZeroU32::new(config.burst.max(1)).unwrap_or(NonZeroU32::MIN);
                Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst)))
            })
            .flatten();
        RateBudget {
            bucket,
            paused_until: Mutex::new(None),
            max_pause,
            honour_server_headers: config.honour_server_headers,
            admitted: AtomicU64::new(0),
        }
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        loop {
            let pause = {
                let guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
                guard.and_then(|until| until.checked_duration_since(Instant::now()))
            };
            match pause {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => break,
            }
        }
        if let Some(bucket) = &self.bucket {
            bucket.until_ready().await;
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Pauses every request for `wait` (capped), extending an existing pause, never shortening.
    pub fn pause_all(&self, wait: Duration) {
        if !self.honour_server_headers || wait.is_zero() {
            return;
        }
        let until = Instant::now() + wait.min(self.max_pause);
        let mut guard = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|current| current < until) {
            *guard = Some(until);
        }
    }

    /// Requests admitted so far (for tests).
    #[cfg(test)]
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bucket_enforces_rate_after_burst() {
        let budget = RateBudget::new(
            &RateLimitConfig {
                requests_per_second: 20.0,
                burst: 5,
                honour_server_headers: true,
            },
            Duration::from_secs(1),
        );
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(40));
        for _ in 0..10 {
            budget.acquire().await;
        }
        // 10 more at 20/s need ≈ 0.5 s.
        assert!(
            start.elapsed() >= Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(budget.admitted(), 15);
    }

    #[tokio::test]
    async fn pause_gate_holds_everyone_and_is_capped() {
        let budget = RateBudget::new(
            &RateLimitConfig {
                requests_per_second: 0.0,
                burst: 1,
                honour_server_headers: true,
            },
            Duration::from_millis(200),
        );
        budget.pause_all(Duration::from_secs(3600));
        let start = Instant::now();
        budget.acquire().await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(2));
    }
}
