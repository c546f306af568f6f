//! Client records → mirror records, run signatures (what decides whether a run needs work) and
//! timestamp watermarks.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};

use crate::client::{Run, RunFile, parse_timestamp};
use crate::mirror::{RunFileRecord, RunRecord};

/// States after which W&B no longer writes to a run by itself. Everything else (`running`,
/// `pending`, `preempting`, `preempted`, unknown states) is refreshed on every sync.
pub const TERMINAL_STATES: &[&str] = &["finished", "failed", "crashed", "killed"];

/// Whether `state` is terminal.
pub fn is_terminal(state: Option<&str>) -> bool {
    state.is_some_and(|s| TERMINAL_STATES.contains(&s))
}

/// A run as seen by a listing, reduced to what decides the work it needs. Stored in the mirror
/// (`run_sync_state.engine_state`) twice: `listed` (last seen) and `synced` (last fully synced).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSig {
    /// `state`.
    pub state: Option<String>,
    /// `heartbeatAt`, server text.
    pub heartbeat: Option<String>,
    /// `updatedAt`, server text (absent when not selected).
    pub updated: Option<String>,
    /// `historyLineCount`.
    pub lines: Option<i64>,
    /// Hex MD5 of the remaining lightweight fields (name, tags, notes, group, …).
    pub lite: String,
    /// `createdAt`, server text. It never changes for a run, so another value under the same
    /// id means the run was deleted and created again (absent in signatures stored before it
    /// was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

impl RunSig {
    /// The signature of a listed or fetched run.
    pub fn of(run: &Run) -> RunSig {
        use md5::{Digest as _, Md5};
        let lite = serde_json::json!([
            run.id,
            run.display_name,
            run.tags,
            run.sweep_name,
            run.group,
            run.job_type,
            run.commit,
            run.read_only,
            run.created_at,
            run.description,
            run.notes,
            run.user.as_ref().map(|u| (&u.name, &u.username)),
        ]);
        let digest = Md5::digest(lite.to_string().as_bytes());
        RunSig {
            state: run.state.clone(),
            heartbeat: run.heartbeat_at.clone(),
            updated: run.updated_at.clone(),
            lines: run.history_line_count,
            lite: digest.iter().map(|b| format!("{b:02x}")).collect(),
            created: run.created_at.clone(),
        }
    }

    /// True when `self` is another run than the one `synced` describes, under the same id:
    /// both carry a creation time and the times differ. Its mirrored history and events belong
    /// to the old run (a longer new history would otherwise be appended after the old rows).
    pub fn recreated_since(&self, synced: &RunSig) -> bool {
        let (Some(now), Some(then)) = (self.created.as_deref(), synced.created.as_deref()) else {
            return false;
        };
        match (parse_timestamp(now), parse_timestamp(then)) {
            (Some(now), Some(then)) => now != then,
            _ => now != then,
        }
    }
}

/// The work a run needs, from its listed signature against the last synced one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plan {
    /// Nothing changed.
    Nothing,
    /// Only lightweight fields (tags, notes, name, …) changed: the listing already stored them.
    Lite,
    /// `updatedAt` moved (summary/config edits, uploads): refetch the full run and its files.
    Meta,
    /// State, heartbeat or history changed, the run was created again under its id, or it was
    /// never fully synced: full run, history tail, events and files.
    Full,
}

impl Plan {
    /// Decides the plan. `full` forces [`Plan::Full`].
    pub fn decide(listed: &RunSig, synced: Option<&RunSig>, full: bool) -> Plan {
        let Some(synced) = synced else {
            return Plan::Full;
        };
        if full
            || listed.recreated_since(synced)
            || listed.state != synced.state
            || listed.heartbeat != synced.heartbeat
            || listed.lines != synced.lines
        {
            Plan::Full
        } else if listed.updated != synced.updated {
            Plan::Meta
        } else if listed.lite != synced.lite {
            Plan::Lite
        } else {
            Plan::Nothing
        }
    }
}

/// Maps a client run onto the mirror's record. Fields the fragment did not select stay `None`
/// (the mirror keeps what it has for the partial ones).
pub fn run_record(run: &Run) -> RunRecord {
    RunRecord {
        run_id: run.name.clone(),
        storage_id: Some(run.id.clone()),
        display_name: run.display_name.clone(),
        state: run.state.clone(),
        username: run.user.as_ref().and_then(|u| u.username.clone()),
        user_full_name: run.user.as_ref().and_then(|u| u.name.clone()),
        group: run.group.clone(),
        job_type: run.job_type.clone(),
        sweep: run.sweep_name.clone(),
        tags: run.tags.clone(),
        notes: run.notes.clone(),
        description: run.description.clone(),
        commit: run.commit.clone(),
        read_only: run.read_only,
        created_at: run.created_at.as_deref().and_then(parse_timestamp),
        heartbeat_at: run.heartbeat_at.as_deref().and_then(parse_timestamp),
        updated_at: run.updated_at.as_deref().and_then(parse_timestamp),
        history_line_count: run.history_line_count,
        config: run.config.clone(),
        summary: run.summary_metrics.clone(),
        system_metrics: run.system_metrics.clone(),
        history_keys: run.history_keys.as_deref().and_then(history_keys_value),
    }
}

/// `historyKeys` is a JSON-typed field (strict JSON); should a server ever put a bare `NaN` in
/// it, the W&B-dialect parser is used and non-finite values become strings, as everywhere in
/// the SQL form.
fn history_keys_value(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let sql = crate::values::to_sql_json_text(text).ok()?;
        serde_json::from_str(&sql).ok()
    })
}

/// Maps a client run file onto the mirror's record. The signed `directUrl` expires and is not
/// kept; the authenticated `url` is.
pub fn file_record(file: RunFile) -> RunFileRecord {
    RunFileRecord {
        name: file.name,
        size_bytes: file.size_bytes.and_then(|s| i64::try_from(s).ok()),
        md5: file.md5,
        updated_at: file.updated_at.as_deref().and_then(parse_timestamp),
        mimetype: file.mimetype,
        url: file.url,
        storage_id: Some(file.id),
    }
}

/// Keeps the latest of several server timestamps, as the server spelled it (re-spelling a
/// timestamp, e.g. dropping its `Z`, can make a filter silently match nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    text: Option<String>,
    micros: Option<i64>,
}

impl Watermark {
    /// Starts from a stored watermark.
    pub fn from_stored(text: Option<String>) -> Self {
        let micros = text
            .as_deref()
            .and_then(parse_timestamp)
            .map(|t| t.timestamp_micros());
        Watermark { text, micros }
    }

    /// Offers a timestamp seen in a listing.
    pub fn offer(&mut self, text: Option<&str>) {
        let Some(text) = text else { return };
        let Some(micros) = parse_timestamp(text).map(|t| t.timestamp_micros()) else {
            return;
        };
        if self.micros.is_none_or(|m| micros > m) {
            self.micros = Some(micros);
            self.text = Some(text.to_owned());
        }
    }

    /// The watermark as the server spelled it.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The filter bound: the watermark moved back by `overlap`, spelled like the server's text.
    pub fn bound(&self, overlap: Duration) -> Option<String> {
        self.text.as_deref().map(|t| shift_back(t, overlap))
    }
}

/// Moves a timestamp back by `by`, keeping its spelling (date/time separator, fractional
/// digits, `Z` or offset). Text that is not a timestamp is returned unchanged.
pub fn shift_back(text: &str, by: Duration) -> String {
    // `YYYY-MM-DDTHH:MM:SS` is 19 bytes; what follows is an optional fraction, then an
    // optional zone.
    if text.len() < 19 || !text.is_char_boundary(19) {
        return text.to_owned();
    }
    let (base, rest) = text.split_at(19);
    let separator = base.as_bytes()[10] as char;
    let digits = rest
        .strip_prefix('.')
        .map_or(0, |f| f.bytes().take_while(u8::is_ascii_digit).count());
    let fraction = if digits > 0 { &rest[..digits + 1] } else { "" };
    let zone = &rest[fraction.len()..];
    let pattern = format!("%Y-%m-%d{separator}%H:%M:%S%.f");
    let Ok(parsed) = NaiveDateTime::parse_from_str(&format!("{base}{fraction}"), &pattern) else {
        return text.to_owned();
    };
    let Ok(delta) = TimeDelta::from_std(by) else {
        return text.to_owned();
    };
    let Some(shifted) = parsed.checked_sub_signed(delta) else {
        return text.to_owned();
    };
    let mut out = shifted
        .format(&format!("%Y-%m-%d{separator}%H:%M:%S"))
        .to_string();
    if digits > 0 {
        let nanos = format!("{:09}", shifted.and_utc().timestamp_subsec_nanos());
        out.push('.');
        out.push_str(&nanos[..digits.min(9)]);
        out.extend(std::iter::repeat_n('0', digits.saturating_sub(9)));
    }
    out.push_str(zone);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_back_keeps_the_spelling() {
        let m = Duration::from_secs(300);
        assert_eq!(shift_back("2024-01-02T03:04:05", m), "2024-01-02T02:59:05");
        assert_eq!(
            shift_back("2024-01-02T00:01:05Z", m),
            "2024-01-01T23:56:05Z"
        );
        assert_eq!(
            shift_back("2024-01-02 03:04:05.250+02:00", m),
            "2024-01-02 02:59:05.250+02:00"
        );
        assert_eq!(shift_back("not a time", m), "not a time");
        assert_eq!(
            shift_back("2024-01-02T03:04:05", Duration::ZERO),
            "2024-01-02T03:04:05"
        );
    }

    #[test]
    fn watermark_keeps_the_latest_text() {
        let mut w = Watermark::from_stored(Some("2024-01-02T03:04:05".into()));
        w.offer(Some("2024-01-02T03:04:04Z"));
        w.offer(None);
        w.offer(Some("garbage"));
        assert_eq!(w.text(), Some("2024-01-02T03:04:05"));
        w.offer(Some("2024-01-02T03:04:06Z"));
        assert_eq!(w.text(), Some("2024-01-02T03:04:06Z"));
        assert_eq!(
            w.bound(Duration::from_secs(6)).as_deref(),
            Some("2024-01-02T03:04:00Z")
        );
        assert_eq!(Watermark::default().bound(Duration::ZERO), None);
    }

    fn sig(state: &str, hb: &str, up: Option<&str>, lines: i64, lite: &str) -> RunSig {
        RunSig {
            state: Some(state.into()),
            heartbeat: Some(hb.into()),
            updated: up.map(Into::into),
            lines: Some(lines),
            lite: lite.into(),
            created: Some("2024-01-02T03:04:05Z".into()),
        }
    }

    #[test]
    fn plans() {
        let a = sig("finished", "t1", Some("u1"), 10, "x");
        assert_eq!(Plan::decide(&a, None, false), Plan::Full);
        assert_eq!(Plan::decide(&a, Some(&a), false), Plan::Nothing);
        assert_eq!(Plan::decide(&a, Some(&a), true), Plan::Full);
        let tags = sig("finished", "t1", Some("u1"), 10, "y");
        assert_eq!(Plan::decide(&tags, Some(&a), false), Plan::Lite);
        let edited = sig("finished", "t1", Some("u2"), 10, "y");
        assert_eq!(Plan::decide(&edited, Some(&a), false), Plan::Meta);
        let grew = sig("running", "t2", Some("u2"), 11, "x");
        assert_eq!(Plan::decide(&grew, Some(&a), false), Plan::Full);
        assert!(is_terminal(Some("crashed")) && !is_terminal(Some("running")));
        // Created again under the same id: everything is fetched again, whatever else says.
        let reborn = RunSig {
            created: Some("2024-03-04T05:06:07Z".into()),
            ..a.clone()
        };
        assert!(reborn.recreated_since(&a));
        assert_eq!(Plan::decide(&reborn, Some(&a), false), Plan::Full);
        // The same time spelled otherwise, or a signature stored without it, is the same run.
        let respelled = RunSig {
            created: Some("2024-01-02T03:04:05.000Z".into()),
            ..a.clone()
        };
        assert!(!respelled.recreated_since(&a));
        let legacy = RunSig {
            created: None,
            ..a.clone()
        };
        assert!(!a.recreated_since(&legacy) && !legacy.recreated_since(&a));
        assert!(!is_terminal(None));
    }
}
