"""Artifacts with the real SDK: log two versions of a dataset (and a model), use one in a third
run, then read everything back in a new process.

Usage:
  artifacts.py log MANIFEST_PATH    (env: SCENARIO_PROJECT, WANDB_BASE_URL, WANDB_API_KEY)
  artifacts.py read MANIFEST_PATH

`log` writes `scenario-data` v0 (`a.txt`, `sub/b.txt`, alias `candidate`), then v1 with only
`sub/b.txt` changed (alias `newest`) plus `scenario-model` v0, then a run that uses
`scenario-data:v0`. `read` checks downloads (latest, v0, the custom alias), listings of types,
collections and versions, the runs' logged/used artifacts, `artifact.files()` and the manifest,
and prints a JSON summary the Rust test checks against the emulator's own state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import check, env, load_manifest, save_manifest  # noqa: E402

NAME = "scenario-data"
MODEL = "scenario-model"
A0 = "alpha — the unchanged file\n".encode() * 3
B0 = b"beta version zero\n"
B1 = b"beta version one, longer than before\n" * 5
WEIGHTS = bytes(range(256)) * 64


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def log(manifest_path: str) -> None:
    project = env("SCENARIO_PROJECT")
    work = tempfile.mkdtemp(prefix="artifacts-")

    run = wandb.init(project=project, name="artifact-writer-0", job_type="produce")
    art = wandb.Artifact(NAME, type="dataset", description="two files", metadata={"rows": 3})
    art.add_file(write(os.path.join(work, "v0", "a.txt"), A0), name="a.txt")
    art.add_file(write(os.path.join(work, "v0", "sub", "b.txt"), B0), name="sub/b.txt")
    run.log_artifact(art, aliases=["candidate"])
    entity, writer0 = run.entity, run.id
    run.finish()

    run = wandb.init(project=project, name="artifact-writer-1", job_type="produce")
    art = wandb.Artifact(NAME, type="dataset")
    art.add_file(write(os.path.join(work, "v1", "a.txt"), A0), name="a.txt")
    art.add_file(write(os.path.join(work, "v1", "sub", "b.txt"), B1), name="sub/b.txt")
    run.log_artifact(art, aliases=["newest"])
    model = wandb.Artifact(MODEL, type="model")
    model.add_file(write(os.path.join(work, "model", "weights.bin"), WEIGHTS), name="weights.bin")
    # wait() fetches the committed version back by id (ArtifactByID).
    logged = run.log_artifact(model).wait()
    check(logged.version == "v0" and logged.state == "COMMITTED", f"model {logged.version} {logged.state}")
    writer1 = run.id
    run.finish()

    run = wandb.init(project=project, name="artifact-reader", job_type="consume")
    used = run.use_artifact(f"{entity}/{project}/{NAME}:v0")
    check(used.version == "v0", f"use_artifact resolved {used.version}")
    reader = run.id
    run.finish()

    save_manifest(
        manifest_path,
        {"entity": entity, "project": project, "writer0": writer0, "writer1": writer1, "reader": reader},
    )
    print("log scenario passed")


def read_dir(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            full = os.path.join(dirpath, n)
            with open(full, "rb") as f:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = f.read()
    return out


def read(manifest_path: str) -> None:
    m = load_manifest(manifest_path)
    path = f"{m['entity']}/{m['project']}"
    api = wandb.Api(timeout=60)
    work = tempfile.mkdtemp(prefix="artifacts-read-")

    latest = api.artifact(f"{path}/{NAME}:latest")
    check(latest.version == "v1" and latest.type == "dataset", f"latest is {latest.version}/{latest.type}")
    got = read_dir(latest.download(root=os.path.join(work, "latest")))
    check(got == {"a.txt": A0, "sub/b.txt": B1}, f"latest download: {sorted(got)}")

    v0 = api.artifact(f"{path}/{NAME}:v0")
    got = read_dir(v0.download(root=os.path.join(work, "v0")))
    check(got == {"a.txt": A0, "sub/b.txt": B0}, f"v0 download: {sorted(got)}")
    check(v0.description == "two files" and v0.metadata == {"rows": 3}, f"v0 attrs {v0.description} {v0.metadata}")

    cand = api.artifact(f"{path}/{NAME}:candidate")
    check(cand.version == "v0" and cand.id == v0.id, f"alias candidate -> {cand.version}")
    check(set(cand.aliases) == {"candidate"}, f"v0 aliases {cand.aliases}")
    check({"latest", "newest"} <= set(latest.aliases), f"latest aliases {latest.aliases}")
    check(api.artifact_exists(f"{path}/{NAME}:newest"), "newest alias resolves")
    check(not api.artifact_exists(f"{path}/{NAME}:v9"), "v9 must not exist")

    types = sorted(t.name for t in api.artifact_types(path))
    check(types == ["dataset", "model"], f"types {types}")
    check(api.artifact_type("dataset", path).name == "dataset", "artifact_type")
    collections = [c.name for c in api.artifact_collections(path, "dataset")]
    check(collections == [NAME], f"collections {collections}")
    coll = api.artifact_collection("dataset", f"{path}/{NAME}")
    check({"latest", "candidate", "newest"} <= set(coll.aliases), f"collection aliases {coll.aliases}")
    versions = api.artifacts("dataset", f"{path}/{NAME}")
    names = sorted(a.name for a in versions)
    check(len(versions) == 2 and names == [f"{NAME}:v0", f"{NAME}:v1"], f"versions {names}")
    # Listings carry aliases too (the SDK relies on `$includeAliases: Boolean = true`).
    listed_aliases = {a.version: set(a.aliases) for a in versions}
    check(listed_aliases == {"v0": {"candidate"}, "v1": {"latest", "newest"}}, f"{listed_aliases}")

    w0 = api.run(f"{path}/{m['writer0']}")
    logged0 = [a.name for a in w0.logged_artifacts()]
    check(logged0 == [f"{NAME}:v0"], f"writer0 logged {logged0}")
    w1 = api.run(f"{path}/{m['writer1']}")
    logged1 = sorted(a.name for a in w1.logged_artifacts())
    check(all("latest" in a.aliases for a in w1.logged_artifacts()), "logged artifacts' aliases")
    check(logged1 == [f"{NAME}:v1", f"{MODEL}:v0"], f"writer1 logged {logged1}")
    reader = api.run(f"{path}/{m['reader']}")
    used = [a.name for a in reader.used_artifacts()]
    check(used == [f"{NAME}:v0"], f"reader used {used}")
    check([r.id for r in v0.used_by()] == [m["reader"]], "used_by")
    check(v0.logged_by().id == m["writer0"], "logged_by")

    files = {f.name: f.size for f in latest.files()}
    check(files == {"a.txt": len(A0), "sub/b.txt": len(B1)}, f"files {files}")
    only = [f.name for f in latest.files(names=["sub/b.txt"])]
    check(only == ["sub/b.txt"], f"files(names=) {only}")
    paged = latest.files(per_page=1)
    check(len(paged) == 2 and [f.name for f in paged] == ["a.txt", "sub/b.txt"], "files(per_page=1)")

    entries = latest.manifest.entries
    check(sorted(entries) == ["a.txt", "sub/b.txt"], f"manifest {sorted(entries)}")
    check(entries["a.txt"].digest == b64md5(A0) and entries["a.txt"].size == len(A0), "a.txt entry")
    check(entries["sub/b.txt"].digest == b64md5(B1) and entries["sub/b.txt"].size == len(B1), "b entry")
    # The unchanged file was stored by v0: v1's entry keeps v0 as its birth artifact.
    check(entries["a.txt"].birth_artifact_id == v0.id, "a.txt birth artifact is v0")
    check(entries["sub/b.txt"].birth_artifact_id == latest.id, "sub/b.txt birth artifact is v1")

    # The fallback when an entry has no signed URL: the authenticated /artifactsV2 route. (The
    # model was never downloaded here, so its bytes are not in the local cache.)
    model = api.artifact(f"{path}/{MODEL}:latest")
    check(model.type == "model" and model.version == "v0", f"model {model.type} {model.version}")
    fetched = model.get_entry("weights.bin").download(root=os.path.join(work, "entry"))
    with open(fetched, "rb") as f:
        check(f.read() == WEIGHTS, "get_entry().download() bytes")

    # Editing a logged version: aliases (addAliases/deleteAliases) and attributes (updateArtifact).
    v0.aliases.append("golden")
    v0.aliases.remove("candidate")
    v0.description = "edited"
    v0.save()
    again = api.artifact(f"{path}/{NAME}:golden")
    check(again.id == v0.id and again.description == "edited", f"golden -> {again.version}")
    check(not api.artifact_exists(f"{path}/{NAME}:candidate"), "candidate was removed")

    print(json.dumps({
        "latest_id": latest.id,
        "v0_id": v0.id,
        "latest_digest": latest.digest,
        "v0_digest": v0.digest,
        "types": types,
        "files": files,
    }))


def main() -> None:
    {"log": log, "read": read}[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
