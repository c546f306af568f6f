//! Emulator CPU per `RunFiles` listing of a seeded run that holds the 1 GiB generated file,
//! against the same listing of a run without it (the baseline, same run of the bench).
//!
//! `cargo bench -p wandb-emulator --bench run_files_listing`
//!
//! Listings ask every file's `md5`, as the SDK's `run.files()` does. A generated blob's digest
//! is fixed when it is registered (`blobs.rs`), so the listing must not cost more because a
//! file is large. Also printed: what the first listing used to pay before digests were fixed at
//! registration — hashing the generated 1 GiB (measured here by hashing it once).

use std::time::Instant;

use md5::{Digest as _, Md5};
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

const RUN_FILES: &str = "query RunFiles($entity: String!, $project: String!, $run: String!) {
    project(name: $project, entityName: $entity) { run(name: $run) {
        files(first: 100) { edges { node { name sizeBytes md5 directUrl } } }
    } }
}";

/// CPU time of this process (every thread: the emulator runs in-process).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

async fn list(http: &reqwest::Client, emu: &Emulator, run: &RunKey) -> usize {
    let body = serde_json::json!({"query": RUN_FILES, "operationName": "RunFiles",
        "variables": {"entity": run.entity, "project": run.project, "run": run.name}});
    let reply: serde_json::Value = http
        .post(format!("{}/graphql", emu.base_url()))
        .basic_auth("api", Some(emu.api_key()))
        .json(&body)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let edges = reply["data"]["project"]["run"]["files"]["edges"]
        .as_array()
        .expect("files");
    assert!(edges.iter().all(|e| e["node"]["md5"].is_string()));
    edges.len()
}

/// CPU seconds of the first listing and the mean of `n` more.
async fn listing_cpu(http: &reqwest::Client, emu: &Emulator, run: &RunKey, n: u32) -> (f64, f64) {
    let before = cpu_seconds();
    list(http, emu, run).await;
    let first = cpu_seconds() - before;
    let before = cpu_seconds();
    for _ in 0..n {
        list(http, emu, run).await;
    }
    (first, (cpu_seconds() - before) / f64::from(n))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let spec = |project: &str, bigfile: u64| {
        SeedSpec::new("emulator", project)
            .runs(3)
            .steps(10)
            .keys(3)
            .files(8)
            .bigfile(bigfile)
    };
    let emu = Emulator::start_with(EmulatorConfig::default()).expect("emulator");
    for (project, bigfile) in [("small", 0), ("big", BIG)] {
        let cpu = cpu_seconds();
        emu.seed(&spec(project, bigfile)).expect("seed");
        println!(
            "seeding {project} (bigfile = {bigfile} B): {:.3} s CPU",
            cpu_seconds() - cpu
        );
    }
    let big = emu.runs("emulator", "big")[0].clone();
    let small = emu.runs("emulator", "small")[0].clone();
    let http = reqwest::Client::new();
    let (big_first, big_next, small_first, small_next) = rt.block_on(async {
        let (sf, sn) = listing_cpu(&http, &emu, &small, 50).await;
        let (bf, bn) = listing_cpu(&http, &emu, &big, 50).await;
        assert_eq!(
            list(&http, &emu, &big).await,
            list(&http, &emu, &small).await + 1,
            "the same files but the big one"
        );
        (bf, bn, sf, sn)
    });
    println!(
        "RunFiles CPU, run with the 1 GiB file: first {:.2} ms, then {:.2} ms per listing",
        big_first * 1e3,
        big_next * 1e3
    );
    println!(
        "RunFiles CPU, run without it (baseline): first {:.2} ms, then {:.2} ms per listing",
        small_first * 1e3,
        small_next * 1e3
    );
    println!(
        "ratio with/without: first listing {:.2}x, later listings {:.2}x",
        big_first / small_first,
        big_next / small_next
    );

    // What the first listing paid when digests were computed on first use: hashing 1 GiB.
    let wall = Instant::now();
    let cpu = cpu_seconds();
    let mut hasher = Md5::new();
    let mut offset = 0;
    while offset < BIG {
        let end = (offset + (1 << 20)).min(BIG);
        let chunk = emu
            .run_file_range(&big, "large/blob-1GiB.bin", offset, end)
            .expect("bytes");
        hasher.update(&chunk);
        offset = end;
    }
    let _ = hasher.finalize();
    let hashing = cpu_seconds() - cpu;
    println!(
        "before (digest computed on first use): the first listing also generated and hashed \
         1 GiB = {hashing:.2} s CPU ({:.2} s wall), {:.0}x the first listing now",
        wall.elapsed().as_secs_f64(),
        (hashing + big_first) / big_first
    );
}

const BIG: u64 = 1 << 30;
