//! A run's history: an optional lazily generated prefix plus explicitly written lines.
//!
//! Lines are addressed by their 0-based offset (file_stream's `offset`). Seeded runs have a
//! [`GeneratedHistory`] covering offsets `0..rows` whose rows are a pure function of
//! `(seed, run, step)`; nothing is materialised. Lines written later (by the SDK or the test API)
//! are stored as received — W&B-dialect JSON text, bare `NaN` allowed — after the generated
//! prefix. Derived state (`lastStep`, per-key type counts) is maintained incrementally.

use std::collections::BTreeMap;
use std::ops::Range;

use async_graphql::Value;
use serde::{Deserialize, Serialize};

use crate::json::{self, wandb_type_name};
use crate::seed::GeneratedHistory;

/// One stored history (or events) line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryRow {
    /// The row's `_step` (or, for rows without one, its offset).
    pub step: i64,
    /// The line exactly as written (W&B-dialect JSON object text).
    pub raw: String,
}

/// Where a history line lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRef {
    /// A generated line (its offset, equal to its step).
    Generated(u64),
    /// An override of a generated offset, or an explicitly written line: index into storage.
    Explicit(usize),
    /// An override of a generated offset.
    Override(u64),
}

/// The lines selected by a step range, before sampling.
#[derive(Debug, Clone)]
pub struct Candidates {
    generated: Range<u64>,
    explicit: ExplicitSel,
}

#[derive(Debug, Clone)]
enum ExplicitSel {
    Range(Range<usize>),
    List(Vec<usize>),
}

impl Candidates {
    /// Number of selected lines.
    pub fn len(&self) -> u64 {
        let explicit = match &self.explicit {
            ExplicitSel::Range(r) => r.len(),
            ExplicitSel::List(v) => v.len(),
        };
        (self.generated.end - self.generated.start) + explicit as u64
    }

    /// Whether nothing was selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th selected line, in offset order.
    pub fn get(&self, i: u64) -> (bool, u64) {
        let gen_len = self.generated.end - self.generated.start;
        if i < gen_len {
            (true, self.generated.start + i)
        } else {
            let j = (i - gen_len) as usize;
            let idx = match &self.explicit {
                ExplicitSel::Range(r) => r.start + j,
                ExplicitSel::List(v) => v[j],
            };
            (false, idx as u64)
        }
    }
}

/// Per-key type counts, as `historyKeys.keys.<key>.typeCounts` reports them.
pub type KeyStats = BTreeMap<String, BTreeMap<String, u64>>;

/// A run's history (also used, without a generator, for system-metric events).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HistoryLog {
    generated: Option<GeneratedHistory>,
    #[serde(default)]
    overrides: BTreeMap<u64, HistoryRow>,
    #[serde(default)]
    lines: Vec<HistoryRow>,
    #[serde(default)]
    key_stats: KeyStats,
    #[serde(default)]
    max_explicit_step: Option<i64>,
    #[serde(default = "default_true")]
    monotonic: bool,
}

fn default_true() -> bool {
    true
}

/// Extracts `_step` from a parsed row.
fn step_of(value: &Value) -> Option<i64> {
    match json::lookup_path(value, "_step")? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

fn add_stats(stats: &mut KeyStats, value: &Value, sign: i64) {
    fn walk(stats: &mut KeyStats, prefix: &str, value: &Value, sign: i64) {
        let Value::Object(map) = value else { return };
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) if !inner.contains_key("_type") => walk(stats, &key, v, sign),
                _ => {
                    let counts = stats.entry(key).or_default();
                    let count = counts.entry(wandb_type_name(v)).or_default();
                    *count = count.saturating_add_signed(sign);
                }
            }
        }
    }
    walk(stats, "", value, sign);
    stats.retain(|_, counts| {
        counts.retain(|_, c| *c > 0);
        !counts.is_empty()
    });
}

impl HistoryLog {
    /// A history whose first `generator.rows` lines are generated.
    pub fn generated(generator: GeneratedHistory) -> Self {
        Self {
            generated: Some(generator),
            monotonic: true,
            ..Self::default()
        }
    }

    /// The generator, if this history has a generated prefix.
    pub fn generator(&self) -> Option<&GeneratedHistory> {
        self.generated.as_ref()
    }

    fn gen_rows(&self) -> u64 {
        self.generated.as_ref().map_or(0, |g| g.rows)
    }

    /// Number of lines (`historyLineCount`).
    pub fn line_count(&self) -> u64 {
        self.gen_rows() + self.lines.len() as u64
    }

    /// The largest `_step` written (`historyKeys.lastStep`), if any line exists.
    pub fn last_step(&self) -> Option<i64> {
        let gen_last = self
            .generated
            .as_ref()
            .filter(|g| g.rows > 0)
            .map(|g| g.rows as i64 - 1);
        let override_max = self.overrides.values().map(|r| r.step).max();
        [gen_last, override_max, self.max_explicit_step]
            .into_iter()
            .flatten()
            .max()
    }

    /// Writes (or overwrites) the line at `offset`. Lines past the end are appended at the end.
    pub fn write_line(&mut self, offset: u64, raw: String) {
        let value = json::parse_lenient_or_null(&raw);
        let step = step_of(&value).unwrap_or(offset as i64);
        let row = HistoryRow { step, raw };
        let gen_rows = self.gen_rows();
        if offset < gen_rows {
            add_stats(&mut self.key_stats, &value, 1);
            if let Some(old) = self.overrides.insert(offset, row) {
                add_stats(
                    &mut self.key_stats,
                    &json::parse_lenient_or_null(&old.raw),
                    -1,
                );
            }
            return;
        }
        let idx = (offset - gen_rows) as usize;
        add_stats(&mut self.key_stats, &value, 1);
        if idx < self.lines.len() {
            let old = std::mem::replace(&mut self.lines[idx], row);
            add_stats(
                &mut self.key_stats,
                &json::parse_lenient_or_null(&old.raw),
                -1,
            );
            self.recompute_order();
        } else {
            let prev = self
                .lines
                .last()
                .map(|r| r.step)
                .or_else(|| (gen_rows > 0).then(|| gen_rows as i64 - 1));
            if prev.is_some_and(|p| step < p) {
                self.monotonic = false;
            }
            self.max_explicit_step = Some(self.max_explicit_step.map_or(step, |m| m.max(step)));
            self.lines.push(row);
        }
    }

    fn recompute_order(&mut self) {
        let mut prev = (self.gen_rows() > 0).then(|| self.gen_rows() as i64 - 1);
        self.monotonic = true;
        self.max_explicit_step = None;
        for row in &self.lines {
            if prev.is_some_and(|p| row.step < p) {
                self.monotonic = false;
            }
            prev = Some(row.step);
            self.max_explicit_step =
                Some(self.max_explicit_step.map_or(row.step, |m| m.max(row.step)));
        }
    }

    /// Lines whose step lies in `[min_step, max_step)` (either bound optional), in offset order.
    pub fn select(&self, min_step: Option<i64>, max_step: Option<i64>) -> Candidates {
        let lo = min_step.unwrap_or(i64::MIN);
        let hi = max_step.unwrap_or(i64::MAX);
        let gen_rows = self.gen_rows() as i64;
        let generated = if lo < hi && gen_rows > 0 {
            let start = lo.clamp(0, gen_rows) as u64;
            let end = hi.clamp(0, gen_rows) as u64;
            start..end.max(start)
        } else {
            0..0
        };
        let explicit = if self.monotonic {
            let start = self.lines.partition_point(|r| r.step < lo);
            let end = self.lines.partition_point(|r| r.step < hi).max(start);
            ExplicitSel::Range(start..end)
        } else {
            ExplicitSel::List(
                self.lines
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.step >= lo && r.step < hi)
                    .map(|(i, _)| i)
                    .collect(),
            )
        };
        Candidates {
            generated,
            explicit,
        }
    }

    /// Resolves the `i`-th candidate to a line reference (honouring overrides).
    pub fn line_ref(&self, candidates: &Candidates, i: u64) -> LineRef {
        match candidates.get(i) {
            (true, offset) if self.overrides.contains_key(&offset) => LineRef::Override(offset),
            (true, offset) => LineRef::Generated(offset),
            (false, idx) => LineRef::Explicit(idx as usize),
        }
    }

    /// The line at `offset`, if present.
    pub fn line_at(&self, offset: u64) -> Option<LineRef> {
        let gen_rows = self.gen_rows();
        if offset < gen_rows {
            Some(if self.overrides.contains_key(&offset) {
                LineRef::Override(offset)
            } else {
                LineRef::Generated(offset)
            })
        } else {
            let idx = (offset - gen_rows) as usize;
            (idx < self.lines.len()).then_some(LineRef::Explicit(idx))
        }
    }

    /// Appends the line as the *body* of a JSON string literal (escaped, no quotes).
    pub fn write_escaped(&self, line: LineRef, out: &mut Vec<u8>) {
        match line {
            LineRef::Generated(step) => {
                if let Some(g) = &self.generated {
                    g.write_row(step, true, out);
                }
            }
            LineRef::Override(offset) => {
                if let Some(r) = self.overrides.get(&offset) {
                    json::escape_into(out, &r.raw);
                }
            }
            LineRef::Explicit(idx) => {
                if let Some(r) = self.lines.get(idx) {
                    json::escape_into(out, &r.raw);
                }
            }
        }
    }

    /// The `_step` of a line.
    pub fn step_of(&self, line: LineRef) -> i64 {
        match line {
            LineRef::Generated(step) => step as i64,
            LineRef::Override(offset) => self
                .overrides
                .get(&offset)
                .map_or(offset as i64, |r| r.step),
            LineRef::Explicit(idx) => self.lines.get(idx).map_or(0, |r| r.step),
        }
    }

    /// The line's text (W&B-dialect JSON, exactly what `history` returns for it).
    pub fn raw(&self, line: LineRef) -> String {
        match line {
            LineRef::Generated(step) => {
                let mut out = Vec::new();
                if let Some(g) = &self.generated {
                    g.write_row(step, false, &mut out);
                }
                String::from_utf8(out).unwrap_or_default()
            }
            LineRef::Override(offset) => self
                .overrides
                .get(&offset)
                .map(|r| r.raw.clone())
                .unwrap_or_default(),
            LineRef::Explicit(idx) => self
                .lines
                .get(idx)
                .map(|r| r.raw.clone())
                .unwrap_or_default(),
        }
    }

    /// Every line's text, in offset order (ground truth for tests; materialises the history).
    pub fn all_raw(&self) -> Vec<String> {
        (0..self.line_count())
            .filter_map(|offset| self.line_at(offset).map(|l| self.raw(l)))
            .collect()
    }

    /// The last `n` lines' texts.
    pub fn tail_raw(&self, n: u64) -> Vec<String> {
        let count = self.line_count();
        (count.saturating_sub(n)..count)
            .filter_map(|offset| self.line_at(offset).map(|l| self.raw(l)))
            .collect()
    }

    /// Per-key type counts over all lines.
    pub fn key_stats(&self) -> KeyStats {
        let mut stats = self.key_stats.clone();
        if let Some(g) = &self.generated {
            // Generated rows carry every key as a number; overrides were added to `key_stats`
            // and replace generated rows, so those rows are not counted twice.
            let rows = g.rows - self.overrides.len() as u64;
            for key in g.key_names() {
                *stats
                    .entry(key)
                    .or_default()
                    .entry("number".into())
                    .or_default() += rows;
            }
        }
        stats
    }

    /// Drops every line and derived statistic (keeps nothing generated).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Chooses `samples` of `n` positions, evenly spaced, always keeping the first and the last.
/// Deterministic (real W&B samples at random; tests need repeatability). Returns every
/// position when `samples >= n`.
pub fn sample_positions(n: u64, samples: u64) -> impl Iterator<Item = u64> {
    let (count, n_minus_1, s_minus_1) = if samples >= n {
        (n, 0, 0)
    } else {
        (samples, n - 1, samples.saturating_sub(1))
    };
    (0..count).map(move |k| {
        if samples >= n {
            k
        } else if s_minus_1 == 0 {
            0
        } else {
            // round(k * (n-1) / (samples-1)) in integers.
            let num = k as u128 * n_minus_1 as u128 * 2 + s_minus_1 as u128;
            (num / (2 * s_minus_1 as u128)) as u64
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(lines: &[&str]) -> HistoryLog {
        let mut log = HistoryLog::default();
        for (i, l) in lines.iter().enumerate() {
            log.write_line(i as u64, l.to_string());
        }
        log
    }

    #[test]
    fn sampling_is_even_and_keeps_ends() {
        let picks: Vec<u64> = sample_positions(10, 4).collect();
        assert_eq!(picks, [0, 3, 6, 9]);
        let picks: Vec<u64> = sample_positions(1000, 100).collect();
        assert_eq!(picks.len(), 100);
        assert_eq!((picks[0], picks[99]), (0, 999));
        assert!(picks.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_positions(5, 10).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        assert_eq!(sample_positions(5, 1).collect::<Vec<_>>(), [0]);
        assert_eq!(sample_positions(5, 0).count(), 0);
        // Huge counts do not overflow.
        let picks: Vec<u64> = sample_positions(u64::MAX / 2, 3).collect();
        assert_eq!(picks, [0, u64::MAX / 4, u64::MAX / 2 - 1]);
    }

    #[test]
    fn select_is_min_inclusive_max_exclusive() {
        let log = log_with(&[
            r#"{"_step":0,"a":1}"#,
            r#"{"_step":2,"a":NaN}"#,
            r#"{"_step":5,"a":3}"#,
        ]);
        let c = log.select(Some(2), Some(5));
        assert_eq!(c.len(), 1);
        assert_eq!(log.raw(log.line_ref(&c, 0)), r#"{"_step":2,"a":NaN}"#);
        assert_eq!(log.select(None, None).len(), 3);
        assert_eq!(log.select(Some(6), None).len(), 0);
        assert_eq!(log.last_step(), Some(5));
        assert_eq!(log.line_count(), 3);
    }

    #[test]
    fn overwrite_replaces_line_and_stats() {
        let mut log = log_with(&[r#"{"_step":0,"a":1}"#, r#"{"_step":1,"a":"x"}"#]);
        log.write_line(1, r#"{"_step":1,"a":2,"b":{"c":true}}"#.into());
        assert_eq!(log.line_count(), 2);
        let stats = log.key_stats();
        assert_eq!(stats["a"]["number"], 2);
        assert!(!stats["a"].contains_key("string"));
        assert_eq!(stats["b.c"]["bool"], 1);
        assert_eq!(stats["_step"]["number"], 2);
    }

    #[test]
    fn non_monotonic_steps_still_select_correctly() {
        let log = log_with(&[r#"{"_step":5}"#, r#"{"_step":1}"#, r#"{"_step":3}"#]);
        let c = log.select(Some(2), Some(6));
        let got: Vec<String> = (0..c.len()).map(|i| log.raw(log.line_ref(&c, i))).collect();
        assert_eq!(got, [r#"{"_step":5}"#, r#"{"_step":3}"#]);
    }
}
