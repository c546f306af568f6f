//! Ground truth: the mirror compared with what the emulator serves. Shared with the CLI tests
//! (`wandbfs-mount/tests/`), so it depends only on `wandbfs` and `wandb_emulator`.

#![allow(dead_code)]

use wandb_emulator::{Emulator, RunKey};
use wandbfs::mirror::testing::TestDatabase;
use wandbfs::mirror::{Document, Mirror, Stream};

/// `history.jsonl` as the emulator would have it: its rows, one per line.
pub fn expected_jsonl(rows: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(row.as_bytes());
        out.push(b'\n');
    }
    out
}

/// A whole stream of a mirrored run.
pub async fn mirror_stream(mirror: &Mirror, key: &RunKey, stream: Stream) -> Vec<u8> {
    let run = mirror
        .resolve_run(&key.entity, &key.project, &key.name)
        .await
        .expect("resolve")
        .unwrap_or_else(|| panic!("{key} is not in the mirror"));
    let len = mirror.stream_len(run, stream).await.expect("length");
    mirror
        .read_stream(run, stream, 0, usize::try_from(len).expect("fits"))
        .await
        .expect("read")
        .to_vec()
}

/// Asserts that the mirror holds exactly what the emulator serves for every run of the
/// project: run fields, config and summary text, every history row (as SQL rows and as
/// `history.jsonl` bytes, no duplicates), system events and file listings. Returns the number
/// of history rows compared.
pub async fn assert_mirror_matches(
    emu: &Emulator,
    db: &TestDatabase,
    entity: &str,
    project: &str,
) -> u64 {
    assert_mirror_matches_except(emu, db, entity, project, &[]).await
}

/// [`assert_mirror_matches`] for every run but those named in `except` (they must still be in
/// the mirror, not deleted).
pub async fn assert_mirror_matches_except(
    emu: &Emulator,
    db: &TestDatabase,
    entity: &str,
    project: &str,
    except: &[&str],
) -> u64 {
    let mirror = &db.mirror;
    let sql = db.raw_client().await.expect("sql client");
    let keys = emu.runs(entity, project);
    let mut rows_compared = 0u64;
    for key in &keys {
        if except.contains(&key.name.as_str()) {
            continue;
        }
        let info = emu.run_info(key).expect("run info");
        let run = mirror
            .resolve_run(entity, project, &key.name)
            .await
            .expect("resolve")
            .unwrap_or_else(|| panic!("{key} missing from the mirror"));
        let meta = mirror.run_metadata(run).await.expect("metadata");
        assert!(!meta.deleted, "{key} marked deleted");
        assert_eq!(
            meta.state.as_deref(),
            Some(info.state.as_str()),
            "{key} state"
        );
        assert_eq!(meta.tags, info.tags, "{key} tags");
        assert_eq!(meta.notes, info.notes, "{key} notes");
        assert_eq!(meta.display_name, info.display_name, "{key} display name");
        assert_eq!(
            meta.history_line_count,
            Some(info.history_line_count as i64),
            "{key} lines"
        );
        assert_eq!(meta.last_step, info.last_step, "{key} last step");
        let config = mirror
            .read_document(run, Document::Config)
            .await
            .expect("config");
        assert_eq!(
            config.as_deref(),
            Some(info.config.as_bytes()),
            "{key} config text"
        );
        let summary = mirror
            .read_document(run, Document::Summary)
            .await
            .expect("summary");
        assert_eq!(
            summary.as_deref(),
            Some(info.summary.as_bytes()),
            "{key} summary text"
        );

        let rows = emu.history_rows(key).expect("rows");
        let jsonl = mirror_stream(mirror, key, Stream::History).await;
        assert!(
            jsonl == expected_jsonl(&rows),
            "{key}: history.jsonl differs ({} bytes mirrored, {} expected)",
            jsonl.len(),
            expected_jsonl(&rows).len()
        );
        let steps: Vec<i64> = sql
            .query(
                "SELECT step FROM wandb.history WHERE run_pk = $1 ORDER BY step",
                &[&run.0],
            )
            .await
            .expect("history rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected_steps: Vec<i64> = rows
            .iter()
            .map(|r| wandbfs::sync::history::step_of(r).expect("step"))
            .collect();
        assert_eq!(steps, expected_steps, "{key}: SQL history steps");
        let state = mirror.run_sync_state(run).await.expect("sync state");
        assert_eq!(state.history_rows, rows.len() as u64, "{key}: row count");
        assert_eq!(state.history_bytes, jsonl.len() as u64, "{key}: byte count");
        rows_compared += rows.len() as u64;

        let events = emu.events_rows(key).expect("events");
        let system = mirror_stream(mirror, key, Stream::System).await;
        assert!(
            system == expected_jsonl(&events),
            "{key}: system.jsonl differs"
        );

        let mut files: Vec<(String, u64)> =
            info.files.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
        files.sort();
        let mirrored: Vec<(String, u64)> = mirror
            .list_run_files(run)
            .await
            .expect("files")
            .into_iter()
            .map(|f| (f.name, f.size_bytes.unwrap_or(-1) as u64))
            .collect();
        assert_eq!(mirrored, files, "{key}: file listing");
    }
    let live: i64 = sql
        .query_one(
            "SELECT count(*) FROM wandb.runs r JOIN wandb.projects p USING (project_pk)
             WHERE p.entity = $1 AND p.name = $2 AND NOT r.deleted",
            &[&entity, &project],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(live, keys.len() as i64, "live runs in the mirror");
    rows_compared
}
