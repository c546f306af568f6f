"""Reads back, with wandb.Api() in a fresh process, everything write_runs.py (and resume_run.py)
logged, and asserts it.

Usage: read_runs.py MANIFEST_PATH   (env: WANDB_BASE_URL, WANDB_API_KEY)
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import requests
import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import check, same  # noqa: E402


def check_listing(api: wandb.Api, manifest: dict) -> None:
    path = f"{manifest['entity']}/{manifest['project']}"
    all_ids = [manifest["main"]] + [a["id"] for a in manifest["aux"]]

    runs = api.runs(path, per_page=2, order="+created_at")
    check(len(runs) == len(all_ids), f"len(runs) = {len(runs)}, expected {len(all_ids)}")
    listed = [r.id for r in runs]
    check(listed == all_ids, f"runs in creation order {listed} != {all_ids}")

    newest_first = [r.id for r in api.runs(path, per_page=2, order="-created_at")]
    check(newest_first == all_ids[::-1], f"-created_at order {newest_first}")

    fast = {"config.lr": {"$gte": 0.01}, "tags": {"$in": ["aux"]}}
    expected = [a["id"] for a in manifest["aux"] if a["lr"] >= 0.01]
    got = api.runs(path, filters=fast, per_page=2)
    check(len(got) == len(expected), f"filtered len {len(got)} != {len(expected)}")
    check([r.id for r in got] == expected, f"filtered runs {[r.id for r in got]} != {expected}")

    by_lr = [r.id for r in api.runs(path, filters={"tags": "aux"}, order="-config.lr.value", per_page=2)]
    expected_by_lr = [a["id"] for a in sorted(manifest["aux"], key=lambda a: -a["lr"])]
    check(by_lr == expected_by_lr, f"order by config.lr desc {by_lr} != {expected_by_lr}")

    failed = [r.id for r in api.runs(path, filters={"state": "failed"})]
    expected_failed = [a["id"] for a in manifest["aux"] if a["exit_code"] != 0]
    check(failed == expected_failed, f"failed runs {failed} != {expected_failed}")

    either = api.runs(path, filters={"$or": [{"display_name": "main-run"}, {"config.lr": {"$lt": 0.001}}]})
    check(
        sorted(r.id for r in either) == sorted([manifest["main"]] + [a["id"] for a in manifest["aux"] if a["lr"] < 0.001]),
        "$or filter",
    )
    check(len(api.runs(path, filters={"no_such_field": 1})) == 0, "unknown filter keys match nothing")

    for a in manifest["aux"]:
        run = api.run(f"{path}/{a['id']}")
        check(run.config == {"lr": a["lr"], "index": a["index"]}, f"aux config {run.config}")
        check(run.name == a["name"], f"display name {run.name}")
        check(sorted(run.tags) == sorted(a["tags"]), f"tags {run.tags}")
        check(run.state == ("failed" if a["exit_code"] else "finished"), f"aux state {run.state}")
        check(run.notes == a.get("notes"), f"aux notes {run.notes!r}")
        check(run.summary.get("edited") == ("notes" in a or None), f"aux summary edit {dict(run.summary)}")
        check(same(run.summary["loss"], a["lr"] * 1), f"aux summary loss {run.summary['loss']}")


def check_main(api: wandb.Api, manifest: dict) -> wandb.apis.public.Run:
    run = api.run(f"{manifest['entity']}/{manifest['project']}/{manifest['main']}")
    check(run.state == "finished", f"main state {run.state}")
    check(same(run.config, common.MAIN_CONFIG), f"main config {run.config}")
    check(run.name == "main-run" and run.group == "g1" and run.job_type == "train", "main metadata")
    check(run.notes == "the main run" and sorted(run.tags) == ["main", "nan"], f"notes/tags {run.notes} {run.tags}")
    summary = dict(run.summary)
    check(same(summary["best_loss"], 1.0 / common.MAIN_STEPS), f"summary best_loss {summary.get('best_loss')}")
    last = common.MAIN_STEPS + common.RESUMED_STEPS - 1
    check(same(summary["loss"], 1.0 / (last + 1)), f"summary loss {summary.get('loss')}")
    check(summary["_step"] == last, f"summary _step {summary.get('_step')}")
    return run


def check_history(run) -> None:
    total = common.MAIN_STEPS + common.RESUMED_STEPS
    rows = list(run.scan_history())
    check(len(rows) == total, f"scan_history gave {len(rows)} rows, expected {total}")
    for step, row in enumerate(rows):
        check(row.get("_step") == step, f"row {step} has _step {row.get('_step')}")
        expected = common.logged_row(step) if step < common.MAIN_STEPS else common.resumed_row(step)
        for key, value in expected.items():
            check(key in row, f"step {step}: key {key} missing from {row}")
            check(same(row[key], value), f"step {step}: {key} = {row[key]!r}, logged {value!r}")
        extra = set(row) - set(expected) - {"_step", "_runtime", "_timestamp", "img"}
        check(not extra, f"step {step}: unexpected keys {extra}")
        check(isinstance(row["_timestamp"], float) and isinstance(row["_runtime"], (int, float)), "timestamps")
    image = rows[common.IMAGE_STEP].get("img")
    check(isinstance(image, dict) and image.get("_type") == "image-file", f"image cell {image}")
    check(math.isnan(rows[0]["nan_metric"]) and rows[89]["inf_metric"] == float("inf"), "non-finite values")
    check(rows[90]["inf_metric"] == float("-inf"), "negative infinity")

    sampled = run.history(samples=100, pandas=False)
    check(2 <= len(sampled) <= 100, f"history(samples=100) returned {len(sampled)} rows")
    steps = [r["_step"] for r in sampled]
    check(steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == total - 1, f"sampled steps {steps[:5]}…{steps[-5:]}")

    keyed = run.history(keys=["nan_metric"], samples=total, pandas=False)
    check(len(keyed) == common.MAIN_STEPS, f"history(keys=[nan_metric]) gave {len(keyed)} rows")
    check(keyed[0]["nan_metric"] == "NaN", f"JSON-typed NaN sentinel, got {keyed[0]['nan_metric']!r}")

    partial = list(run.scan_history(keys=["loss"], min_step=100, max_step=300))
    check([r["_step"] for r in partial] == list(range(100, 300)), "scan_history(keys, min_step, max_step)")
    check(all(same(r["loss"], 1.0 / (r["_step"] + 1)) for r in partial), "keyed scan values")


def check_files(run) -> None:
    files = {f.name: f for f in run.files()}
    for name in [common.SAVED_FILE, common.UPLOADED_FILE, "wandb-metadata.json", "config.yaml", "requirements.txt", "wandb-summary.json"]:
        check(name in files, f"file {name} not listed: {sorted(files)}")
    images = [n for n in files if n.startswith("media/images/") and n.endswith(".png")]
    check(len(images) == 1, f"image files {images}")
    check(len(run.files()) == len(files), "len(files()) matches the listing")
    check(len(list(run.files(per_page=2))) == len(files), "paginated file listing")
    pngs = [f.name for f in run.files(pattern="%.png")]
    check(pngs == images, f"pattern listing {pngs}")

    saved = files[common.SAVED_FILE]
    check(saved.size == len(common.saved_file_bytes()), f"size {saved.size}")
    root = tempfile.mkdtemp(prefix="downloads-")
    saved.download(root=root)
    with open(os.path.join(root, common.SAVED_FILE), "rb") as f:
        check(f.read() == common.saved_file_bytes(), "downloaded bytes differ from the saved file")
    files[common.UPLOADED_FILE].download(root=root)
    with open(os.path.join(root, common.UPLOADED_FILE), encoding="utf-8") as f:
        check(f.read() == common.UPLOADED_TEXT, "run.upload_file() bytes")
    image = files[images[0]]
    image.download(root=root)
    with open(os.path.join(root, images[0]), "rb") as f:
        check(f.read(8) == b"\x89PNG\r\n\x1a\n", "downloaded image is not a PNG")

    # directUrl: signed, fetched without credentials (as the SDK's artifact code does).
    direct_url = saved._attrs["directUrl"]
    direct = requests.get(direct_url, timeout=30)
    check(direct.status_code == 200 and direct.content == common.saved_file_bytes(), "directUrl download")
    ranged = requests.get(direct_url, headers={"Range": "bytes=10-19"}, timeout=30)
    check(ranged.status_code == 206 and ranged.content == common.saved_file_bytes()[10:20], "directUrl range")


def check_console(run) -> None:
    lines = [line.content for line in run.console_logs()]
    check(common.CONSOLE_LINE in lines, f"console_logs() lacks the printed line: {lines[:5]}")
    tail = list(run.console_logs(last=1))
    check(len(tail) == 1, f"console_logs(last=1) gave {len(tail)} lines")


def check_artifacts(api: wandb.Api, manifest: dict) -> None:
    # --- ARTIFACTS --------------------------------------------------------------------------
    path = f"{manifest['entity']}/{manifest['project']}/{common.ARTIFACT_NAME}"
    latest = api.artifact(f"{path}:latest")
    check(latest.version == "v0" and common.ARTIFACT_ALIAS in latest.aliases, f"aliases {latest.aliases}")
    root = latest.download(root=tempfile.mkdtemp(prefix="scenario-artifact-"))
    for rel, data in common.artifact_files().items():
        with open(os.path.join(root, rel), "rb") as f:
            check(f.read() == data, f"artifact file {rel} differs")
    by_alias = api.artifact(f"{path}:{common.ARTIFACT_ALIAS}")
    check(by_alias.id == latest.id, "the custom alias resolves to the same version")
    # ----------------------------------------------------------------------------------------


def main() -> None:
    manifest = common.load_manifest(sys.argv[1])
    api = wandb.Api(timeout=60)
    check_listing(api, manifest)
    run = check_main(api, manifest)
    check_history(run)
    check_files(run)
    check_console(run)
    check_artifacts(api, manifest)
    print("read scenario passed")


if __name__ == "__main__":
    main()
