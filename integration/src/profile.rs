//! A W&B-like budget on the GraphQL endpoint, so that what a client costs shows as it would
//! against W&B (`../shared/wandb-wire/SAAS-NOTES.md` §3), not as it does on loopback:
//!
//! - **a request budget per API key** over a fixed window (`--rate-limit 200/min`): beyond it,
//!   `429` with `{"error":"rate limit exceeded"}` and `Retry-After` (seconds to the window's
//!   end), as W&B's gateway answers;
//! - **`RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`** on every GraphQL reply
//!   (limit and remaining on W&B's 0–1000 scale, reset in seconds);
//! - **latency** per request (`--latency 150ms`) and **per 1,000 rows** a reply carries
//!   (`--row-cost`: history, events and live rows; W&B users see ~1.4 s per 1,000-row page);
//! - **heavy-query refusal** (`--max-rows`): a reply of more rows fails with 500 "context
//!   deadline exceeded", as heavy queries have at W&B (wandb/wandb#2408).
//!
//! Signed-URL downloads (object storage) and uploads are outside the budget, as at W&B.
//! `--profile wandb` sets the numbers above; each can be changed at runtime
//! ([`crate::Emulator::set_profile`], or `POST /_emulator/profile` for a harness in another
//! process).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// A request budget: `requests` per `window`, per API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window.
    #[serde(with = "millis")]
    pub window: Duration,
}

impl RateLimit {
    /// Parses `200/min`, `5/s`, `1000/h`.
    pub fn parse(text: &str) -> Option<RateLimit> {
        let (n, unit) = text.trim().split_once('/')?;
        let requests: u32 = n.trim().parse().ok()?;
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return None,
        };
        (requests > 0).then_some(RateLimit { requests, window })
    }
}

/// The W&B profile's settings (all off by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WandbProfile {
    /// GraphQL requests per key and window; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    /// Added to every GraphQL request.
    #[serde(with = "millis")]
    pub latency: Duration,
    /// Added per 1,000 rows a GraphQL reply carries.
    #[serde(with = "millis")]
    pub row_cost: Duration,
    /// Replies of more rows fail with 500 "context deadline exceeded".
    pub max_rows: Option<u64>,
}

impl WandbProfile {
    /// W&B as its users meet it: 200 requests a minute per key (the highest published
    /// number), 150 ms a request, ~1.4 s for a 1,000-row history page in all.
    pub fn wandb() -> WandbProfile {
        WandbProfile {
            rate_limit: Some(RateLimit {
                requests: 200,
                window: Duration::from_secs(60),
            }),
            latency: Duration::from_millis(150),
            row_cost: Duration::from_millis(1250),
            max_rows: None,
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// What the budget says about one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Refused: the seconds until the window ends (`Retry-After`).
    pub refused: Option<u64>,
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`.
    pub headers: Option<(u32, u32, u64)>,
}

/// The per-key windows of a [`RateLimit`].
#[derive(Debug, Default)]
pub struct Budgets {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Budgets {
    /// Counts one request of `key` against `limit`.
    pub fn admit(&self, key: &str, limit: Option<RateLimit>) -> Admission {
        let Some(limit) = limit else {
            return Admission {
                refused: None,
                headers: None,
            };
        };
        let now = Instant::now();
        let mut windows = self.windows.lock();
        let (start, used) = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(*start) >= limit.window {
            *start = now;
            *used = 0;
        }
        let reset = limit
            .window
            .saturating_sub(now.duration_since(*start))
            .as_secs_f64()
            .ceil() as u64;
        let scale = |n: u32| (u64::from(n) * 1000 / u64::from(limit.requests)) as u32;
        if *used >= limit.requests {
            return Admission {
                refused: Some(reset.max(1)),
                headers: Some((1000, 0, reset.max(1))),
            };
        }
        *used += 1;
        Admission {
            refused: None,
            headers: Some((1000, scale(limit.requests - *used), reset)),
        }
    }

    /// Forgets every window (a new profile).
    pub fn reset(&self) {
        self.windows.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse() {
        assert_eq!(
            RateLimit::parse("200/min"),
            Some(RateLimit {
                requests: 200,
                window: Duration::from_secs(60)
            })
        );
        assert_eq!(RateLimit::parse("5/s").map(|r| r.requests), Some(5));
        assert_eq!(RateLimit::parse("x/min"), None);
        assert_eq!(RateLimit::parse("0/min"), None);
    }

    #[test]
    fn a_key_gets_its_budget_then_429_with_the_window_left() {
        let budgets = Budgets::default();
        let limit = RateLimit {
            requests: 2,
            window: Duration::from_secs(60),
        };
        let first = budgets.admit("k", Some(limit));
        assert_eq!(first.refused, None);
        assert_eq!(first.headers, Some((1000, 500, 60)));
        assert_eq!(budgets.admit("k", Some(limit)).headers, Some((1000, 0, 60)));
        let third = budgets.admit("k", Some(limit));
        assert_eq!(third.refused, Some(60));
        assert_eq!(budgets.admit("other", Some(limit)).refused, None, "per key");
    }
}
