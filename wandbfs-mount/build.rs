//! Records the git commit the binary is built from, for `wandbfs --version`.

use std::process::Command;

/// What the binary is built from, relative to this crate (a build script runs in the crate's
/// directory): git's pathspecs for `-dirty`, and what reruns this script when edited. A change
/// to anything else (docs, benchmarks' output) does not make a build `-dirty`.
const SOURCES: [&str; 5] = [
    ".",
    "../src",
    "../integration/src",
    "../Cargo.toml",
    "../Cargo.lock",
];

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "commit unknown".to_owned());
    // Built from a tree with uncommitted changes: say so, or a benchmark or bug report names
    // a commit whose code it did not run.
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--"])
        .args(SOURCES)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .is_some_and(|out| !out.stdout.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=WANDBFS_GIT_COMMIT={commit}{suffix}");
    // An edit of a source reruns this script, so `-dirty` comes and goes with it.
    for path in SOURCES {
        println!("cargo:rerun-if-changed={path}");
    }
    // A new commit (HEAD or the branch it points to moving) rebuilds with the new id.
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && out.status.success()
    {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // Only those that exist: cargo takes a missing one as changed at every build, which
        // rebuilt this crate every time in a repository without packed refs. (Packing refs
        // later changes `refs/heads`, which reruns this script and picks the new file up.)
        for file in ["HEAD", "refs/heads", "packed-refs", "index"] {
            let path = std::path::Path::new(&dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
