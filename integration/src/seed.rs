//! Deterministic fixture generator: projects of many runs with long histories, without the SDK.
//!
//! `--seed "ent/proj:runs=10000,steps=1000,keys=20,files=5"` (or [`SeedSpec`] from Rust) creates
//! runs whose history rows are a pure function of `(seed, run, step)` ([`GeneratedHistory`]):
//! nothing is materialised, so 10,000 runs × 1,000 steps or one 1,000,000-row run seed in well
//! under a second and cost no memory per row. Seeded runs are ordinary runs otherwise (rows can
//! be appended, metadata edited) and persist as their generator spec.
//!
//! What a seeded project contains, deliberately awkward:
//! - a mix of states: `finished`, `running` (every 10th run, index ≡ 7), `crashed` (≡ 8) and
//!   `failed` (≡ 9);
//! - history keys `loss`, `acc`, `epoch` (an integer), `lr`, `métrique/α` (non-ASCII),
//!   `special` (`NaN` at steps ≡ 7 mod 50, `Infinity` at ≡ 19, `-Infinity` at ≡ 33), then
//!   `train/m06`, `train/m07`, …, plus `_step`, `_runtime`, `_timestamp`;
//! - nested config (`optimizer.betas`, `model.layers`, …) including a non-ASCII key (`学习率`);
//! - tags, groups, job types, non-ASCII display names on some runs;
//! - files: `wandb-metadata.json`, `config.yaml`, `output.log`, then `media/images/*.png`
//!   (generated, PNG signature) for the rest of `files`; the first run also gets
//!   `large/blob-1GiB.bin` (size `bigfile`, default 1 GiB, generated lazily; `bigfile=0` drops it).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::blobs::{BlobStore, splitmix64};
use crate::json::{self, write_f64};
use crate::state::history::HistoryLog;
use crate::state::{JsonText, Micros, RunFile, RunKey, RunRecord, World};

/// A generated history prefix: rows `0..rows`, each a pure function of `(run_seed, step)`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GeneratedHistory {
    /// Per-run seed.
    pub run_seed: u64,
    /// Number of rows (steps `0..rows`).
    pub rows: u64,
    /// Number of metric keys per row (besides `_step`, `_runtime`, `_timestamp`).
    pub keys: u32,
    /// `_timestamp` of step 0, in seconds.
    pub t0: f64,
}

/// Seconds between generated steps.
const STEP_SECONDS: f64 = 0.5;

impl GeneratedHistory {
    /// Metric names, in row order.
    pub fn key_names(&self) -> Vec<String> {
        let mut names = vec!["_step".to_string(), "_runtime".into(), "_timestamp".into()];
        names.extend((0..self.keys).map(metric_name));
        names
    }

    fn noise(&self, step: u64, key: u32) -> f64 {
        let h = splitmix64(
            self.run_seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(key) << 48),
        );
        (h >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Appends row `step`. With `escaped`, the output is the body of a JSON string literal
    /// (quotes escaped), ready for the history fast path.
    pub fn write_row(&self, step: u64, escaped: bool, out: &mut Vec<u8>) {
        let q: &[u8] = if escaped { b"\\\"" } else { b"\"" };
        let key = |out: &mut Vec<u8>, name: &str| {
            out.push(b',');
            out.extend_from_slice(q);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(q);
            out.push(b':');
        };
        let runtime = step as f64 * STEP_SECONDS;
        out.push(b'{');
        out.extend_from_slice(q);
        out.extend_from_slice(b"_step");
        out.extend_from_slice(q);
        out.push(b':');
        out.extend_from_slice(itoa::Buffer::new().format(step).as_bytes());
        key(out, "_runtime");
        write_f64(out, runtime);
        key(out, "_timestamp");
        write_f64(out, self.t0 + runtime);
        let decay = (-(step as f64) / (self.rows as f64 / 3.0).max(1.0)).exp();
        for k in 0..self.keys {
            let noise = self.noise(step, k);
            match k {
                0 => {
                    key(out, "loss");
                    write_f64(out, 2.0 * decay + 0.05 * noise);
                }
                1 => {
                    key(out, "acc");
                    write_f64(out, 1.0 - decay * 0.9 - 0.02 * noise);
                }
                2 => {
                    key(out, "epoch");
                    out.extend_from_slice(itoa::Buffer::new().format(step / 100).as_bytes());
                }
                3 => {
                    key(out, "lr");
                    write_f64(out, 0.001 * 0.5f64.powi((step / 1000).min(1100) as i32));
                }
                4 => {
                    key(out, "métrique/α");
                    write_f64(out, noise);
                }
                5 => {
                    key(out, "special");
                    let v = match step % 50 {
                        7 => f64::NAN,
                        19 => f64::INFINITY,
                        33 => f64::NEG_INFINITY,
                        _ => noise * 10.0 - 5.0,
                    };
                    write_f64(out, v);
                }
                _ => {
                    // `train/mNN` without allocating.
                    out.push(b',');
                    out.extend_from_slice(q);
                    out.extend_from_slice(b"train/m");
                    if k < 10 {
                        out.push(b'0');
                    }
                    out.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
                    out.extend_from_slice(q);
                    out.push(b':');
                    write_f64(out, noise * f64::from(k));
                }
            }
        }
        out.push(b'}');
    }

    /// Row `step` as text.
    pub fn row_text(&self, step: u64) -> String {
        let mut out = Vec::with_capacity(64 + 24 * self.keys as usize);
        self.write_row(step, false, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn metric_name(k: u32) -> String {
    match k {
        0 => "loss".into(),
        1 => "acc".into(),
        2 => "epoch".into(),
        3 => "lr".into(),
        4 => "métrique/α".into(),
        5 => "special".into(),
        _ => format!("train/m{k:02}"),
    }
}

/// What to generate for one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedSpec {
    /// Entity (created as a team when not the viewer's).
    pub entity: String,
    /// Project.
    pub project: String,
    /// Number of runs.
    pub runs: u64,
    /// History rows per run.
    pub steps: u64,
    /// Metric keys per row.
    pub keys: u32,
    /// Files per run (metadata, config, console, then images).
    pub files: u32,
    /// Generator seed.
    pub seed: u64,
    /// Size of the large generated file on the first run (0 = none).
    pub bigfile: u64,
    /// Artifact collections (see [`crate::artifacts::seed`]; 0 = none).
    #[serde(default)]
    pub artifacts: u32,
    /// Size of the lazily generated file in the first artifact collection (0 = none).
    #[serde(default = "default_artifact_bigfile")]
    pub artifact_bigfile: u64,
    /// Every run in this state (`running`, `finished`, …); `None`: the mix (every 10th run
    /// running, crashed, failed; the rest finished).
    #[serde(default)]
    pub state: Option<String>,
}

fn default_artifact_bigfile() -> u64 {
    16 << 20
}

impl SeedSpec {
    /// A spec with defaults (`runs=10,steps=100,keys=20,files=5,seed=0,bigfile=1GiB,artifacts=0,
    /// artifact_bigfile=16MiB`).
    pub fn new(entity: impl Into<String>, project: impl Into<String>) -> Self {
        Self {
            entity: entity.into(),
            project: project.into(),
            runs: 10,
            steps: 100,
            keys: 20,
            files: 5,
            seed: 0,
            bigfile: 1 << 30,
            artifacts: 0,
            artifact_bigfile: default_artifact_bigfile(),
            state: None,
        }
    }

    /// Sets the number of runs.
    pub fn runs(mut self, runs: u64) -> Self {
        self.runs = runs;
        self
    }

    /// Sets the rows per run.
    pub fn steps(mut self, steps: u64) -> Self {
        self.steps = steps;
        self
    }

    /// Sets the metric keys per row.
    pub fn keys(mut self, keys: u32) -> Self {
        self.keys = keys;
        self
    }

    /// Sets the files per run.
    pub fn files(mut self, files: u32) -> Self {
        self.files = files;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the large file's size (0 = none).
    pub fn bigfile(mut self, bytes: u64) -> Self {
        self.bigfile = bytes;
        self
    }

    /// Sets the number of artifact collections.
    pub fn artifacts(mut self, collections: u32) -> Self {
        self.artifacts = collections;
        self
    }

    /// Puts every run in `state` (e.g. `running`: a project of live runs).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Sets the size of the large generated artifact file (0 = none).
    pub fn artifact_bigfile(mut self, bytes: u64) -> Self {
        self.artifact_bigfile = bytes;
        self
    }
}

/// A malformed `--seed` value.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid seed spec {spec:?}: {reason} (expected \"entity/project:runs=N,steps=N,keys=N,files=N[,seed=N][,bigfile=SIZE][,artifacts=N][,artifact_bigfile=SIZE][,state=STATE]\")"
)]
pub struct SeedSpecError {
    spec: String,
    reason: String,
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ]
    .iter()
    .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((t, 1));
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

impl FromStr for SeedSpec {
    type Err = SeedSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| SeedSpecError {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (path, params) = spec.split_once(':').unwrap_or((spec, ""));
        let (entity, project) = path
            .split_once('/')
            .ok_or_else(|| err("missing entity/project"))?;
        if entity.is_empty() || project.is_empty() || project.contains('/') {
            return Err(err("bad entity/project"));
        }
        let mut out = SeedSpec::new(entity, project);
        for pair in params.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| err(&format!("{pair:?} is not key=value")))?;
            let number = || {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| err(&format!("{k}: not a number")))
            };
            match k.trim() {
                "runs" => out.runs = number()?,
                "steps" => out.steps = number()?,
                "keys" => out.keys = u32::try_from(number()?).map_err(|_| err("keys too large"))?,
                "files" => {
                    out.files = u32::try_from(number()?).map_err(|_| err("files too large"))?
                }
                "seed" => out.seed = number()?,
                "bigfile" => {
                    out.bigfile = parse_size(v).ok_or_else(|| err("bigfile: not a size"))?
                }
                "artifacts" => {
                    out.artifacts =
                        u32::try_from(number()?).map_err(|_| err("artifacts too large"))?
                }
                "artifact_bigfile" => {
                    out.artifact_bigfile =
                        parse_size(v).ok_or_else(|| err("artifact_bigfile: not a size"))?
                }
                "state" => match v.trim() {
                    s @ ("running" | "finished" | "crashed" | "failed" | "killed") => {
                        out.state = Some(s.to_owned())
                    }
                    _ => return Err(err("state: running, finished, crashed, failed or killed")),
                },
                other => return Err(err(&format!("unknown key {other:?}"))),
            }
        }
        Ok(out)
    }
}

/// What seeding created.
#[derive(Debug, Clone)]
pub struct SeedReport {
    /// The runs, in creation order.
    pub runs: Vec<RunKey>,
}

fn run_name(seed: u64, taken: &mut std::collections::HashSet<String>) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut h = seed;
    loop {
        let mut x = h;
        let name: String = (0..8)
            .map(|_| {
                let c = ALPHABET[(x % 36) as usize] as char;
                x /= 36;
                c
            })
            .collect();
        if taken.insert(name.clone()) {
            return name;
        }
        h = splitmix64(h);
    }
}

fn state_for(i: u64) -> &'static str {
    match i % 10 {
        7 => "running",
        8 => "crashed",
        9 => "failed",
        _ => "finished",
    }
}

fn config_text(i: u64, run_seed: u64) -> String {
    let lr = [0.1, 0.01, 0.001, 0.0003][(i % 4) as usize];
    let batch = [16, 32, 64, 128][((run_seed >> 8) % 4) as usize];
    let opt = ["adam", "sgd", "adamw"][(i % 3) as usize];
    serde_json::json!({
        "lr": {"value": lr},
        "batch_size": {"value": batch},
        "seed": {"value": i},
        "optimizer": {"value": {"name": opt, "betas": [0.9, 0.999], "eps": 1e-8}},
        "model": {"value": {"layers": 4 + (i % 8), "hidden": 256 * (1 + i % 4), "activation": "gelu"}},
        "dataset": {"value": if i.is_multiple_of(2) { "imagenet-α" } else { "cifar10" }},
        "学习率": {"value": lr * 10.0},
        "_wandb": {"value": {"cli_version": "0.31.0", "python_version": "3.11.7", "t": {"1": [1], "2": [1]}, "m": []}},
    })
    .to_string()
}

fn config_yaml(config: &serde_json::Value) -> String {
    let mut out = String::new();
    if let Some(map) = config.as_object() {
        for (k, v) in map {
            let value = v.get("value").cloned().unwrap_or(serde_json::Value::Null);
            out.push_str(&format!("{k}:\n  value: {value}\n"));
        }
    }
    out
}

/// Creates the runs described by `spec`. Fast: no history rows are produced.
pub fn seed_project(
    world: &mut World,
    blobs: &BlobStore,
    spec: &SeedSpec,
    now: Micros,
) -> std::io::Result<SeedReport> {
    let base_seed = splitmix64(spec.seed ^ fnv1a(&format!("{}/{}", spec.entity, spec.project)));
    let mut taken: std::collections::HashSet<String> = world
        .project(&spec.entity, &spec.project)
        .map(|p| p.runs.keys().cloned().collect())
        .unwrap_or_default();
    let tags_pool = ["baseline", "sweep-a", "gpu", "ablation", "ñandú"];
    let mut report = SeedReport {
        runs: Vec::with_capacity(spec.runs as usize),
    };
    let run_span = (spec.steps as f64 * STEP_SECONDS * 1e6) as i64;
    for i in 0..spec.runs {
        let run_seed = splitmix64(base_seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
        let name = run_name(run_seed, &mut taken);
        // Runs are created one minute apart, ending now, so `createdAt` order = index order.
        let created = now - (spec.runs - i) as i64 * 60_000_000 - run_span;
        let state = spec.state.as_deref().unwrap_or_else(|| state_for(i));
        let generator = GeneratedHistory {
            run_seed,
            rows: spec.steps,
            keys: spec.keys,
            t0: created as f64 / 1e6,
        };
        let mut record = RunRecord::new(&world.viewer.username, created);
        record.state = state.into();
        record.display_name = Some(if i % 7 == 3 {
            format!("实验-{i}")
        } else {
            format!("seeded-run-{i}")
        });
        let config = config_text(i, run_seed);
        let config_value: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
        record.config = JsonText::new(config);
        let summary = if spec.steps > 0 {
            let last = generator.row_text(spec.steps - 1);
            let runtime = ((spec.steps - 1) as f64 * STEP_SECONDS) as u64;
            format!(
                "{},\"_wandb\":{{\"runtime\":{runtime}}}}}",
                &last[..last.len() - 1]
            )
        } else {
            "{}".into()
        };
        record.summary = JsonText::new(summary);
        record.system_metrics = JsonText::new(format!(
            "{{\"system.cpu\":{},\"system.memory\":{},\"system.gpu.0.gpu\":{}}}",
            (run_seed % 1000) as f64 / 10.0,
            ((run_seed >> 10) % 1000) as f64 / 10.0,
            ((run_seed >> 20) % 1000) as f64 / 10.0
        ));
        record.tags = tags_pool
            .iter()
            .enumerate()
            .filter(|(b, _)| run_seed >> (40 + b) & 1 == 1)
            .map(|(_, t)| t.to_string())
            .collect();
        record.group = (i % 5 != 4).then(|| format!("group-{}", i % 4));
        record.job_type = Some(if i % 3 == 2 { "eval" } else { "train" }.into());
        record.host = Some(format!("node-{:02}", i % 16));
        record.program = Some("train.py".into());
        record.notes = (i % 6 == 1).then(|| format!("notes for run {i} — ünïcode"));
        let ended = created + run_span;
        record.heartbeat_at = if state == "running" { now } else { ended };
        record.updated_at = record.heartbeat_at;
        record.console = vec![
            format!("{} starting run {i}", json_ts(created)),
            format!(
                "{} step {} loss ok",
                json_ts(created + run_span / 2),
                spec.steps / 2
            ),
            format!("ERROR {} warning: something odd", json_ts(ended)),
        ];
        record.history = HistoryLog::generated(generator);
        add_seed_files(&mut record, blobs, spec, i, run_seed, &config_value, ended)?;
        let key = RunKey::new(&spec.entity, &spec.project, name);
        world.insert_run(key.clone(), record, now);
        report.runs.push(key);
    }
    Ok(report)
}

fn json_ts(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn add_seed_files(
    record: &mut RunRecord,
    blobs: &BlobStore,
    spec: &SeedSpec,
    i: u64,
    run_seed: u64,
    config: &serde_json::Value,
    at: Micros,
) -> std::io::Result<()> {
    let mut add = |name: String, blob: std::sync::Arc<crate::blobs::Blob>| {
        let mimetype = mime_guess::from_path(&name)
            .first_or_octet_stream()
            .to_string();
        record.files.insert(
            name.clone(),
            RunFile {
                name,
                blob: blob.key().to_string(),
                size: blob.len(),
                mimetype,
                updated_at: at,
            },
        );
    };
    for f in 0..spec.files {
        match f {
            0 => {
                let meta = serde_json::json!({
                    "os": "Linux-6.1", "python": "CPython 3.11.7", "program": "train.py",
                    "host": format!("node-{:02}", i % 16), "startedAt": json_ts(record.created_at),
                    "args": ["--seed", i.to_string()], "gpu": "emulated", "email": "seed@example.com",
                });
                add(
                    "wandb-metadata.json".into(),
                    blobs.put_bytes(meta.to_string().into())?,
                );
            }
            1 => add(
                "config.yaml".into(),
                blobs.put_bytes(config_yaml(config).into())?,
            ),
            2 => {
                let mut log = record.console.join("\n");
                log.push('\n');
                add("output.log".into(), blobs.put_bytes(log.into())?);
            }
            k => {
                let len = 512 + (splitmix64(run_seed ^ u64::from(k)) % 8192);
                let blob = blobs.put_generated(
                    splitmix64(run_seed ^ (u64::from(k) << 32)),
                    len,
                    b"\x89PNG\r\n\x1a\n".to_vec(),
                );
                let hash = &blob.key()[4..14];
                add(format!("media/images/sample_{}_{hash}.png", k - 3), blob);
            }
        }
    }
    if i == 0 && spec.bigfile > 0 {
        let blob = blobs.put_generated(splitmix64(run_seed ^ 0xB16), spec.bigfile, Vec::new());
        add("large/blob-1GiB.bin".into(), blob);
    }
    Ok(())
}

/// Checks a generated row parses as the JSON the emulator will serve (used by tests).
pub fn row_is_valid(text: &str) -> bool {
    json::parse_lenient(text).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Viewer;

    #[test]
    fn spec_parses_and_rejects() {
        let s: SeedSpec = "ent/proj:runs=10000,steps=1000,keys=20,files=5"
            .parse()
            .expect("parses");
        assert_eq!(
            (s.runs, s.steps, s.keys, s.files, s.bigfile),
            (10000, 1000, 20, 5, 1 << 30)
        );
        let s: SeedSpec = "e/p:bigfile=2MiB,seed=9".parse().expect("parses");
        assert_eq!((s.bigfile, s.seed), (2 << 20, 9));
        assert!("nope".parse::<SeedSpec>().is_err());
        assert!("e/p:runs=x".parse::<SeedSpec>().is_err());
        assert!("e/p:colour=red".parse::<SeedSpec>().is_err());
        let s: SeedSpec = "e/p:runs=3,state=running".parse().expect("parses");
        assert_eq!(s.state.as_deref(), Some("running"));
        assert!("e/p:state=dancing".parse::<SeedSpec>().is_err());
        let mut world = World::new(Viewer::for_entity("e"), 1_700_000_000_000_000);
        let blobs = BlobStore::new(None).expect("store");
        let report = seed_project(&mut world, &blobs, &s, 1_700_000_000_000_000).expect("seeds");
        let states: Vec<String> = report
            .runs
            .iter()
            .map(|k| {
                let run = world.run(&k.entity, &k.project, &k.name).expect("exists");
                run.record.read().state.clone()
            })
            .collect();
        assert_eq!(states, ["running"; 3]);
    }

    #[test]
    fn seeding_is_deterministic() {
        let spec = SeedSpec::new("e", "p")
            .runs(20)
            .steps(60)
            .keys(8)
            .files(5)
            .bigfile(1 << 20);
        let snapshot = |spec: &SeedSpec| {
            let mut world = World::new(Viewer::for_entity("e"), 1_700_000_000_000_000);
            let blobs = BlobStore::new(None).expect("store");
            let report =
                seed_project(&mut world, &blobs, spec, 1_700_000_000_000_000).expect("seeds");
            report
                .runs
                .iter()
                .map(|k| {
                    let run = world.run(&k.entity, &k.project, &k.name).expect("exists");
                    let rec = run.record.read();
                    let files: Vec<(String, String)> = rec
                        .files
                        .values()
                        .map(|f| (f.name.clone(), blobs.get(&f.blob).expect("blob").md5_hex()))
                        .collect();
                    (
                        k.name.clone(),
                        rec.history.all_raw(),
                        rec.config.raw().to_string(),
                        files,
                    )
                })
                .collect::<Vec<_>>()
        };
        let a = snapshot(&spec);
        assert_eq!(a, snapshot(&spec));
        assert_ne!(a, snapshot(&spec.clone().seed(1)));
        // Rows parse, carry NaN/Infinity where promised, and steps are consecutive.
        let rows = &a[0].1;
        assert_eq!(rows.len(), 60);
        assert!(rows.iter().all(|r| row_is_valid(r)));
        assert!(rows[7].contains("\"special\":NaN"));
        assert!(rows[19].contains("\"special\":Infinity"));
        assert!(rows[33].contains("\"special\":-Infinity"));
        assert!(rows[5].contains("\"métrique/α\":"));
        assert!(rows[5].starts_with("{\"_step\":5,"));
        assert_eq!(a[0].3.len(), 6, "5 files plus the big file on run 0");
        assert_eq!(a[1].3.len(), 5);
    }

    #[test]
    fn escaped_rows_are_json_string_bodies() {
        let generator = GeneratedHistory {
            run_seed: 3,
            rows: 100,
            keys: 20,
            t0: 1.7e9,
        };
        for step in [0, 7, 19, 33, 99] {
            let mut escaped = b"\"".to_vec();
            generator.write_row(step, true, &mut escaped);
            escaped.push(b'"');
            let unescaped: String = serde_json::from_slice(&escaped).expect("valid string literal");
            assert_eq!(unescaped, generator.row_text(step));
        }
    }
}
