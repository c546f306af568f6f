//! The upgrade of a v1 mirror (one tuple per history step, text in lz4 chunks) to v2 blocks:
//! every stream keeps its exact bytes and length, the SQL views give the v1 answers, an upgrade
//! that stops half-way loses nothing and finishes on the next start, and read-only users are
//! refused until it has.

use tokio_postgres::NoTls;
use wandbfs::mirror::testing::empty_database;
use wandbfs::mirror::testing::v1::{self, V1Stream};
use wandbfs::mirror::{ConnectOptions, Mirror, MirrorError, RunPk, SchemaPolicy, Stream};

/// A history row; `odd` rows carry a string and a nested leaf as v1 stored them.
fn history_row(step: i64) -> String {
    if step % 7 == 3 {
        format!(
            "{{\"_step\":{step},\"loss\":{},\"note\":\"step {step} ✓\",\"opt\":{{\"lr\":0.{step}}}}}",
            1.0 / (step as f64 + 2.0)
        )
    } else {
        format!(
            "{{\"_step\":{step},\"loss\":{},\"acc\":NaN}}",
            1.0 / (step as f64 + 2.0)
        )
    }
}

fn system_row(seq: i64) -> String {
    format!(
        "{{\"_timestamp\":1700000000.{seq:03},\"system.cpu\":{}}}",
        seq % 100
    )
}

async fn raw(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn full_read(mirror: &Mirror, run: i64, stream: Stream) -> Vec<u8> {
    let len = mirror.stream_len(RunPk(run), stream).await.unwrap();
    mirror
        .read_stream(RunPk(run), stream, 0, len as usize + 100)
        .await
        .unwrap()
        .to_vec()
}

struct Fixture {
    config: tokio_postgres::Config,
    runs: Vec<(i64, V1Stream, V1Stream)>,
}

/// A v1 mirror with three runs: a long one with gaps in its steps, a short one, one without
/// system events.
async fn v1_mirror() -> Fixture {
    let config = empty_database().await.unwrap();
    let mut client = raw(&config).await;
    v1::create_schema(&mut client).await.unwrap();
    let specs: Vec<(&str, Vec<i64>, Vec<i64>)> = vec![
        (
            "long",
            (0..2500).chain(2600..3100).step_by(1).collect(),
            (0..300).collect(),
        ),
        ("short", (0..40).map(|i| i * 5).collect(), (0..7).collect()),
        ("nosys", (0..1500).collect(), Vec::new()),
    ];
    let mut runs = Vec::new();
    for (id, h, s) in specs {
        let history = V1Stream::new(h, history_row);
        let system = V1Stream::new(s, system_row);
        let pk = v1::write_run(&client, id, &history, &system, 16 * 1024)
            .await
            .unwrap();
        runs.push((pk, history, system));
    }
    Fixture { config, runs }
}

async fn count(client: &tokio_postgres::Client, sql: &str, run: i64) -> i64 {
    client.query_one(sql, &[&run]).await.unwrap().get(0)
}

async fn v1_tables(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT to_regclass('wandb.stream_chunks_v1') IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_v1_mirror_is_upgraded_in_place_with_every_byte_kept() {
    let fx = v1_mirror().await;
    let mirror = Mirror::connect_config(fx.config.clone(), &ConnectOptions::default())
        .await
        .expect("the upgrade");
    let client = raw(&fx.config).await;
    assert!(!v1_tables(&client).await, "v1 tables are dropped when done");
    for (run, history, system) in &fx.runs {
        assert_eq!(
            full_read(&mirror, *run, Stream::History).await,
            history.text
        );
        assert_eq!(full_read(&mirror, *run, Stream::System).await, system.text);
        // The views answer from the blocks: one row per step, with the v1 keys.
        let steps: Vec<i64> = client
            .query(
                "SELECT step FROM wandb.history WHERE run_pk = $1 ORDER BY step",
                &[run],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(steps, history.keys);
        let losses = count(
            &client,
            "SELECT count(*) FROM wandb.metrics m JOIN wandb.runs r USING (run_id)
             WHERE r.run_pk = $1 AND m.key = 'loss'",
            *run,
        )
        .await;
        assert_eq!(losses as usize, history.keys.len());
        let nested = count(
            &client,
            "SELECT count(*) FROM wandb.history_rows
             WHERE run_pk = $1 AND row -> 'opt' ? 'lr' AND row ->> 'note' LIKE 'step % ✓'",
            *run,
        )
        .await;
        let expected = history.keys.iter().filter(|k| *k % 7 == 3).count();
        assert_eq!(nested as usize, expected);
        let cpu = count(
            &client,
            "SELECT count(ts) FROM wandb.system_metrics m JOIN wandb.runs r USING (run_id)
             WHERE r.run_pk = $1 AND m.key = 'system.cpu'",
            *run,
        )
        .await;
        assert_eq!(cpu as usize, system.keys.len());
    }
    // Appending after the upgrade continues the same streams.
    let (run, history, _) = &fx.runs[1];
    let next = history.keys.last().unwrap() + 1;
    mirror
        .ingest_batch(RunPk(*run), Stream::History, &[(next, history_row(next))])
        .await
        .unwrap();
    let mut expected = history.text.clone();
    expected.extend_from_slice(history_row(next).as_bytes());
    expected.push(b'\n');
    assert_eq!(full_read(&mirror, *run, Stream::History).await, expected);
}

#[tokio::test]
async fn an_interrupted_upgrade_loses_nothing_and_finishes_on_the_next_start() {
    let fx = v1_mirror().await;
    let client = raw(&fx.config).await;
    // The last run's v1 rows disagree with its sync state: its conversion fails, as a process
    // killed there would stop, after the runs before it were converted and committed.
    let (bad_run, bad_history, _) = &fx.runs[2];
    client
        .execute(
            "DELETE FROM wandb.history WHERE run_pk = $1 AND step = 700",
            &[bad_run],
        )
        .await
        .unwrap();
    let Err(err) = Mirror::connect_config(fx.config.clone(), &ConnectOptions::default()).await
    else {
        panic!("the upgrade must stop at the damaged run");
    };
    assert!(matches!(err, MirrorError::Inconsistent(_)), "{err}");
    assert!(v1_tables(&client).await);
    let converted = count(
        &client,
        "SELECT count(*) FROM wandb.stream_blocks WHERE run_pk = $1",
        fx.runs[0].0,
    )
    .await;
    assert!(converted > 0, "the first run was converted and committed");
    let left = count(
        &client,
        "SELECT count(*) FROM wandb.stream_chunks_v1 WHERE run_pk = $1",
        *bad_run,
    )
    .await;
    assert!(left > 0, "the failed run is untouched");

    // Readers that may not migrate are refused while the upgrade is unfinished.
    let read_only = ConnectOptions {
        schema: SchemaPolicy::RequireCurrent,
        ..ConnectOptions::default()
    };
    let Err(err) = Mirror::connect_config(fx.config.clone(), &read_only).await else {
        panic!("a read-only connection must be refused");
    };
    assert!(matches!(err, MirrorError::UpgradeUnfinished), "{err}");

    // Once the cause is gone, the next start finishes the job; nothing was lost or doubled.
    client
        .execute(
            "INSERT INTO wandb.history_v1 (run_pk, step, key_set_id, vals) VALUES ($1, 700, 0, '{}')",
            &[bad_run],
        )
        .await
        .unwrap();
    let mirror = Mirror::connect_config(fx.config.clone(), &ConnectOptions::default())
        .await
        .expect("the upgrade finishes");
    assert!(!v1_tables(&client).await);
    for (run, history, system) in &fx.runs {
        assert_eq!(
            full_read(&mirror, *run, Stream::History).await,
            history.text
        );
        assert_eq!(full_read(&mirror, *run, Stream::System).await, system.text);
    }
    assert_eq!(
        full_read(&mirror, *bad_run, Stream::History).await,
        bad_history.text
    );
    Mirror::connect_config(fx.config.clone(), &read_only)
        .await
        .expect("readers connect after the upgrade");
}
