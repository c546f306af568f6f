//! Fault injection: rate limits, 5xx bursts, latency, connection resets, truncated bodies and
//! poisoned runs, each scoped to GraphQL, downloads or every route, changeable at runtime.

use std::collections::BTreeSet;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::reqlog::RouteKind;
use crate::state::RunKey;

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultScope {
    /// `POST /graphql` only.
    #[default]
    Graphql,
    /// Run-file downloads (authenticated `url`) and signed direct downloads.
    Downloads,
    /// Every route except OpenTelemetry posts.
    All,
}

impl FaultScope {
    /// Whether a request of `kind` is in scope.
    pub fn covers(self, kind: RouteKind) -> bool {
        match self {
            FaultScope::Graphql => kind == RouteKind::Graphql,
            FaultScope::Downloads => {
                matches!(kind, RouteKind::Download | RouteKind::SignedDownload)
            }
            FaultScope::All => kind != RouteKind::Otel,
        }
    }
}

impl std::str::FromStr for FaultScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "graphql" => Ok(FaultScope::Graphql),
            "downloads" => Ok(FaultScope::Downloads),
            "all" => Ok(FaultScope::All),
            other => Err(format!(
                "unknown fault scope {other:?} (graphql, downloads, all)"
            )),
        }
    }
}

/// A fraction of requests answered `429` with a `Retry-After` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitFault {
    /// Probability per in-scope request (0..=1).
    pub fraction: f64,
    /// `Retry-After` header value (seconds, fractions allowed: wandb-core accepts `0.2`).
    pub retry_after: String,
    /// Scope.
    pub scope: FaultScope,
}

/// The next `remaining` in-scope requests fail with `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBurst {
    /// Requests still to fail.
    pub remaining: u32,
    /// Status code (e.g. 500, 502, 503).
    pub status: u16,
    /// Scope.
    pub scope: FaultScope,
}

/// Extra latency before handling in-scope requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyFault {
    /// Delay.
    pub delay: Duration,
    /// Scope.
    pub scope: FaultScope,
}

/// A fault hitting a fraction of requests and/or the next `count` ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestFault {
    /// Probability per in-scope request.
    pub fraction: f64,
    /// Additionally, the next `count` in-scope requests are hit.
    pub count: u32,
    /// Scope.
    pub scope: FaultScope,
}

impl RequestFault {
    /// The next `count` in-scope requests.
    pub fn next(count: u32, scope: FaultScope) -> Self {
        Self {
            fraction: 0.0,
            count,
            scope,
        }
    }

    /// A fraction of in-scope requests.
    pub fn fraction(fraction: f64, scope: FaultScope) -> Self {
        Self {
            fraction,
            count: 0,
            scope,
        }
    }
}

/// All fault settings. `Default` = no faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSettings {
    /// 429 + `Retry-After`.
    pub rate_limit: Option<RateLimitFault>,
    /// 5xx burst.
    pub error_burst: Option<ErrorBurst>,
    /// Added latency.
    pub latency: Option<LatencyFault>,
    /// Connection resets: the connection is closed (RST) before any response byte is sent.
    pub reset: Option<RequestFault>,
    /// Truncated bodies: `Content-Length` is promised, half the body is sent, then the
    /// connection is closed.
    pub truncate: Option<RequestFault>,
    /// Runs whose history fields always answer 502.
    pub poisoned_runs: BTreeSet<RunKey>,
}

/// What to do with one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultDecision {
    /// Sleep first.
    pub delay: Option<Duration>,
    /// Then do this instead of handling (or, for `Truncate`, after handling).
    pub action: Option<FaultAction>,
}

/// A fault applied to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer 429 with this `Retry-After`.
    RateLimit(String),
    /// Answer with this status.
    Status(u16),
    /// Close the connection without a response.
    Reset,
    /// Send half the body, then close.
    Truncate,
}

impl FaultAction {
    /// Short label for the request log.
    pub fn label(&self) -> &'static str {
        match self {
            FaultAction::RateLimit(_) => "rate_limit",
            FaultAction::Status(_) => "error_burst",
            FaultAction::Reset => "reset",
            FaultAction::Truncate => "truncate",
        }
    }
}

/// Runtime fault state.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<(FaultSettings, StdRng)>,
}

impl Faults {
    /// Faults with initial settings and an RNG seed (for repeatable fractions).
    pub fn new(settings: FaultSettings, seed: u64) -> Self {
        Self {
            inner: Mutex::new((settings, StdRng::seed_from_u64(seed))),
        }
    }

    /// Current settings.
    pub fn settings(&self) -> FaultSettings {
        self.inner.lock().0.clone()
    }

    /// Replaces all settings.
    pub fn set(&self, settings: FaultSettings) {
        self.inner.lock().0 = settings;
    }

    /// Edits the settings in place.
    pub fn update(&self, f: impl FnOnce(&mut FaultSettings)) {
        f(&mut self.inner.lock().0);
    }

    /// Whether the run's history is poisoned.
    pub fn is_poisoned(&self, run: &RunKey) -> bool {
        self.inner.lock().0.poisoned_runs.contains(run)
    }

    /// Decides the faults for one request of `kind` (consumes burst/count budgets).
    pub fn decide(&self, kind: RouteKind) -> FaultDecision {
        let mut guard = self.inner.lock();
        let (settings, rng) = &mut *guard;
        let mut decision = FaultDecision {
            delay: settings
                .latency
                .as_ref()
                .filter(|l| l.scope.covers(kind))
                .map(|l| l.delay),
            action: None,
        };
        let hit = |fault: &mut Option<RequestFault>, rng: &mut StdRng| -> bool {
            let Some(f) = fault.as_mut().filter(|f| f.scope.covers(kind)) else {
                return false;
            };
            if f.count > 0 {
                f.count -= 1;
                return true;
            }
            f.fraction > 0.0 && rng.random_bool(f.fraction.clamp(0.0, 1.0))
        };
        if hit(&mut settings.reset, rng) {
            decision.action = Some(FaultAction::Reset);
            return decision;
        }
        if let Some(burst) = settings
            .error_burst
            .as_mut()
            .filter(|b| b.scope.covers(kind) && b.remaining > 0)
        {
            burst.remaining -= 1;
            decision.action = Some(FaultAction::Status(burst.status));
            return decision;
        }
        if let Some(rl) = settings
            .rate_limit
            .as_ref()
            .filter(|r| r.scope.covers(kind))
            && rl.fraction > 0.0
            && rng.random_bool(rl.fraction.clamp(0.0, 1.0))
        {
            decision.action = Some(FaultAction::RateLimit(rl.retry_after.clone()));
            return decision;
        }
        if hit(&mut settings.truncate, rng) {
            decision.action = Some(FaultAction::Truncate);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_budgets() {
        let faults = Faults::new(
            FaultSettings {
                error_burst: Some(ErrorBurst {
                    remaining: 2,
                    status: 503,
                    scope: FaultScope::Graphql,
                }),
                truncate: Some(RequestFault::next(1, FaultScope::Downloads)),
                ..FaultSettings::default()
            },
            1,
        );
        assert_eq!(
            faults.decide(RouteKind::Download).action,
            Some(FaultAction::Truncate)
        );
        assert_eq!(faults.decide(RouteKind::Download).action, None);
        assert_eq!(faults.decide(RouteKind::FileStream).action, None);
        assert_eq!(
            faults.decide(RouteKind::Graphql).action,
            Some(FaultAction::Status(503))
        );
        assert_eq!(
            faults.decide(RouteKind::Graphql).action,
            Some(FaultAction::Status(503))
        );
        assert_eq!(faults.decide(RouteKind::Graphql).action, None);
    }

    #[test]
    fn rate_limit_fraction_is_roughly_respected() {
        let faults = Faults::new(
            FaultSettings {
                rate_limit: Some(RateLimitFault {
                    fraction: 0.3,
                    retry_after: "0.2".into(),
                    scope: FaultScope::All,
                }),
                ..FaultSettings::default()
            },
            42,
        );
        let hits = (0..10_000)
            .filter(|_| faults.decide(RouteKind::Graphql).action.is_some())
            .count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert_eq!(
            faults.decide(RouteKind::Otel).action,
            None,
            "telemetry is never faulted"
        );
    }
}
