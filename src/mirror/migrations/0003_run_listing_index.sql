-- A project's run listing (the mount's and WandbStore's `ls` of a project, and the version of
-- its `runs.parquet`) reads a few narrow columns of every run. `wandb.runs` rows are wide
-- (config, summary and system metrics, as text and as jsonb: ~2 KB each), so a sequential scan
-- of a 10,000-run project reads ~20 MB (10-40 ms here); this covering index answers both
-- statements with an index-only scan in run-id order (~1.5 ms for 10,000 runs).
CREATE INDEX IF NOT EXISTS runs_listing ON wandb.runs (project_pk, run_id)
    INCLUDE (deleted, state, created_at, updated_at, heartbeat_at, last_synced_at,
             history_line_count);
