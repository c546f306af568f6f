//! Request log and counters: per GraphQL operation and per route kind, with bytes sent, status
//! and whether an `Authorization` header was present (never its value).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

/// Which listener served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listener {
    /// The API listener (`base_url`).
    Main,
    /// The signed-URL listener (`direct_url`).
    Direct,
}

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `POST /graphql`.
    Graphql,
    /// `POST /files/<e>/<p>/<r>/file_stream`.
    FileStream,
    /// Authenticated run-file download (`File.url`).
    Download,
    /// Unauthenticated signed download (`directUrl`, second listener).
    SignedDownload,
    /// Unauthenticated signed upload (`PUT` of an `uploadUrl`).
    Upload,
    /// SDK telemetry (`/sdk/otel/...`).
    Otel,
    /// Anything else (404s).
    Other,
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Sequence number (0-based since the last reset).
    pub seq: u64,
    /// Listener.
    pub listener: Listener,
    /// Route kind.
    pub kind: RouteKind,
    /// HTTP method.
    pub method: String,
    /// Path (without query string, which may carry signatures).
    pub path: String,
    /// GraphQL operation name (from `operationName`, else parsed from the document).
    pub operation: Option<String>,
    /// Response status (0 when the connection was reset before a response).
    pub status: u16,
    /// Body bytes actually sent.
    pub bytes_sent: u64,
    /// Whether the request carried an `Authorization` header.
    pub authorization_present: bool,
    /// Fault applied, if any (`rate_limit`, `error_burst`, `reset`, `truncate`, `poisoned`).
    pub fault: Option<String>,
}

/// A record being filled in while the request is served.
#[derive(Debug)]
pub struct LiveRecord {
    seq: u64,
    listener: Listener,
    kind: RouteKind,
    method: String,
    path: String,
    authorization_present: bool,
    operation: RwLock<Option<String>>,
    status: AtomicU16,
    bytes_sent: AtomicU64,
    fault: RwLock<Option<String>>,
}

impl LiveRecord {
    /// Sets the operation name.
    pub fn set_operation(&self, name: Option<String>) {
        *self.operation.write() = name;
    }

    /// Sets the status.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Adds sent body bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Records an applied fault.
    pub fn set_fault(&self, label: &str) {
        *self.fault.write() = Some(label.to_string());
    }

    fn snapshot(&self) -> RequestRecord {
        RequestRecord {
            seq: self.seq,
            listener: self.listener,
            kind: self.kind,
            method: self.method.clone(),
            path: self.path.clone(),
            operation: self.operation.read().clone(),
            status: self.status.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            authorization_present: self.authorization_present,
            fault: self.fault.read().clone(),
        }
    }
}

/// Totals for one operation or route kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Requests.
    pub requests: u64,
    /// Body bytes sent.
    pub bytes_sent: u64,
    /// Requests answered with a status ≥ 400 (or reset).
    pub errors: u64,
}

/// Aggregated counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// By GraphQL operation name (`""` when the document names none).
    pub by_operation: BTreeMap<String, Tally>,
    /// By route kind.
    pub by_route: BTreeMap<RouteKind, Tally>,
    /// Everything.
    pub total: Tally,
}

impl Counters {
    /// Requests of one GraphQL operation.
    pub fn operation(&self, name: &str) -> u64 {
        self.by_operation.get(name).map_or(0, |t| t.requests)
    }

    /// Requests of one route kind.
    pub fn route(&self, kind: RouteKind) -> u64 {
        self.by_route.get(&kind).map_or(0, |t| t.requests)
    }
}

/// Maximum records kept (older ones are dropped from the log, counters stay exact).
const MAX_RECORDS: usize = 200_000;

/// The request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<LogInner>,
}

#[derive(Debug, Default)]
struct LogInner {
    next_seq: u64,
    records: VecDeque<Arc<LiveRecord>>,
    dropped: Counters,
}

impl RequestLog {
    /// Starts a record.
    pub fn start(
        &self,
        listener: Listener,
        kind: RouteKind,
        method: &str,
        path: &str,
        authorization_present: bool,
    ) -> Arc<LiveRecord> {
        let mut inner = self.inner.lock();
        let rec = Arc::new(LiveRecord {
            seq: inner.next_seq,
            listener,
            kind,
            method: method.to_string(),
            path: path.to_string(),
            authorization_present,
            operation: RwLock::new(None),
            status: AtomicU16::new(0),
            bytes_sent: AtomicU64::new(0),
            fault: RwLock::new(None),
        });
        inner.next_seq += 1;
        inner.records.push_back(Arc::clone(&rec));
        if inner.records.len() > MAX_RECORDS
            && let Some(old) = inner.records.pop_front()
        {
            let snap = old.snapshot();
            add(&mut inner.dropped, &snap);
        }
        rec
    }

    /// Every kept record, oldest first.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.inner
            .lock()
            .records
            .iter()
            .map(|r| r.snapshot())
            .collect()
    }

    /// Aggregated counters since the last reset.
    pub fn counters(&self) -> Counters {
        let inner = self.inner.lock();
        let mut c = inner.dropped.clone();
        for r in &inner.records {
            add(&mut c, &r.snapshot());
        }
        c
    }

    /// Clears the log and counters.
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.records.clear();
        inner.dropped = Counters::default();
        inner.next_seq = 0;
    }
}

fn add(c: &mut Counters, r: &RequestRecord) {
    let bump = |t: &mut Tally| {
        t.requests += 1;
        t.bytes_sent += r.bytes_sent;
        if r.status >= 400 || r.status == 0 {
            t.errors += 1;
        }
    };
    bump(&mut c.total);
    bump(c.by_route.entry(r.kind).or_default());
    if r.kind == RouteKind::Graphql {
        bump(
            c.by_operation
                .entry(r.operation.clone().unwrap_or_default())
                .or_default(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_aggregate_records() {
        let log = RequestLog::default();
        let a = log.start(Listener::Main, RouteKind::Graphql, "POST", "/graphql", true);
        a.set_operation(Some("Runs".into()));
        a.set_status(200);
        a.add_bytes(100);
        let b = log.start(
            Listener::Direct,
            RouteKind::SignedDownload,
            "GET",
            "/blob/x",
            false,
        );
        b.set_status(403);
        let c = log.counters();
        assert_eq!(c.operation("Runs"), 1);
        assert_eq!(c.route(RouteKind::SignedDownload), 1);
        assert_eq!(c.by_route[&RouteKind::SignedDownload].errors, 1);
        assert_eq!(c.total.bytes_sent, 100);
        assert!(!log.records()[1].authorization_present);
        log.reset();
        assert_eq!(log.counters(), Counters::default());
    }
}
