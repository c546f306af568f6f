"""Writes runs with the real SDK: one long main run and several short auxiliary runs.

Usage: write_runs.py MANIFEST_PATH   (env: SCENARIO_PROJECT, WANDB_BASE_URL, WANDB_API_KEY)
"""

from __future__ import annotations

import os
import sys
import tempfile

import numpy as np
import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def write_main(project: str, workdir: str) -> dict:
    run = wandb.init(
        project=project,
        name="main-run",
        config=common.MAIN_CONFIG,
        tags=["main", "nan"],
        group="g1",
        job_type="train",
        notes="the main run",
    )
    print(common.CONSOLE_LINE, flush=True)
    for step in range(common.MAIN_STEPS):
        row = common.logged_row(step)
        if step == common.IMAGE_STEP:
            pixels = (np.arange(16 * 16 * 3) % 256).astype(np.uint8).reshape(16, 16, 3)
            row["img"] = wandb.Image(pixels)
        run.log(row)
    run.summary["best_loss"] = 1.0 / common.MAIN_STEPS

    saved = os.path.join(workdir, common.SAVED_FILE)
    os.makedirs(os.path.dirname(saved), exist_ok=True)
    with open(saved, "wb") as f:
        f.write(common.saved_file_bytes())
    wandb.save(saved, base_path=workdir, policy="now")

    # --- ARTIFACTS --------------------------------------------------------------------------
    # An artifact with two files (one in a subfolder) and a custom alias; read_runs.py
    # downloads it as `<entity>/<project>/main-dataset:latest` and compares the bytes.
    artifact = wandb.Artifact(common.ARTIFACT_NAME, type="dataset")
    for rel, data in common.artifact_files().items():
        local = os.path.join(workdir, "artifact", rel)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(data)
        artifact.add_file(local, name=rel)
    run.log_artifact(artifact, aliases=[common.ARTIFACT_ALIAS])
    # ----------------------------------------------------------------------------------------

    info = {"id": run.id, "entity": run.entity}
    run.finish()
    return info


def write_aux(project: str) -> list[dict]:
    out = []
    for i, (name, lr, tags, exit_code) in enumerate(common.AUX_RUNS):
        run = wandb.init(project=project, name=name, config={"lr": lr, "index": i}, tags=tags, reinit="finish_previous")
        for step in range(10):
            run.log({"loss": lr * (10 - step), "index": i})
        out.append({"id": run.id, "name": name, "index": i, "lr": lr, "tags": tags, "exit_code": exit_code})
        run.finish(exit_code=exit_code)
    return out


def edit_with_public_api(entity: str, project: str, main_id: str, aux: list[dict], workdir: str) -> None:
    """Edits runs after the fact, as users do: run.update() and run.upload_file()."""
    api = wandb.Api(timeout=60)
    edited = aux[1]
    run = api.run(f"{entity}/{project}/{edited['id']}")
    run.tags = run.tags + ["edited"]
    run.notes = "edited later"
    run.summary["edited"] = True
    run.update()
    edited["tags"] = edited["tags"] + ["edited"]
    edited["notes"] = "edited later"

    uploaded = os.path.join(workdir, common.UPLOADED_FILE)
    os.makedirs(os.path.dirname(uploaded), exist_ok=True)
    with open(uploaded, "w") as f:
        f.write(common.UPLOADED_TEXT)
    api.run(f"{entity}/{project}/{main_id}").upload_file(uploaded, root=workdir)


def main() -> None:
    manifest_path = sys.argv[1]
    project = common.env("SCENARIO_PROJECT")
    workdir = tempfile.mkdtemp(prefix="scenario-files-")
    main_info = write_main(project, workdir)
    aux = write_aux(project)
    edit_with_public_api(main_info["entity"], project, main_info["id"], aux, workdir)
    common.save_manifest(
        manifest_path,
        {"entity": main_info["entity"], "project": project, "main": main_info["id"], "aux": aux},
    )
    print(f"wrote main run {main_info['id']} and {len(aux)} aux runs")


if __name__ == "__main__":
    main()
