"""A training process killed (SIGKILL) in the middle of a checkpoint write resumes from the last complete one.

The runs are short codec trainings in subprocesses. A driver script, written here, monkeypatches a file
writer of the checkpoint path so that the process kills itself once part of checkpoint 4 is on disk:
either in the middle of ``optimizer.bin`` (accelerate's ``save``: the model weights whole, the optimizer
state cut in half, the rest missing) or just before the harness writes the completion marker (every
accelerate file whole, the marker missing). Resumed, the run must skip the half-written checkpoint, continue
from checkpoint 2 and end with the very weights of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vap_env
from vap_env.model.checkpoint import COMPLETE_MARKER
from vap_env.train.codec_trainer import train_codec
from vap_env.train.config import CodecTrainConfig
from vap_env.train.metrics import read_metrics

CONFIG = dict(
    steps=6, batch_size=4, eval_every=2, eval_frames=4, checkpoint_every=2, checkpoints_total_limit=None,
    warmup_steps=1, block_channels=(8, 16), norm_num_groups=4, latent_channels=4, num_threads=1,
    object_weight=0.0,
)  # fmt: skip
WEIGHTS = "diffusion_pytorch_model.safetensors"

DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys

    import numpy as np

    out, kill, resume, data, config = sys.argv[1], sys.argv[2], sys.argv[3] == "resume", sys.argv[4], sys.argv[5]
    TARGET = ".tmp-step-000004"  # the temporary folder of checkpoint 4

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if kill == "optimizer":
        import accelerate.checkpointing

        original_save = accelerate.checkpointing.save

        def save(obj, path, *args, **kwargs):
            original_save(obj, path, *args, **kwargs)
            if TARGET in str(path) and str(path).endswith("optimizer.bin"):
                with open(path, "r+b") as f:  # half of the file reached the disk
                    f.truncate(os.path.getsize(path) // 2)
                die()

        accelerate.checkpointing.save = save
    elif kill == "marker":
        import vap_env.train.harness

        original_mark = vap_env.train.harness.mark_complete

        def mark_complete(checkpoint, step):
            if TARGET in str(checkpoint):
                die()
            original_mark(checkpoint, step)

        vap_env.train.harness.mark_complete = mark_complete

    from vap_env.train.codec_trainer import train_codec
    from vap_env.train.config import CodecTrainConfig

    frames = np.load(data)
    result = train_codec(frames["train"], frames["heldout"], out, CodecTrainConfig(**json.loads(config)), resume)
    print(json.dumps({"start_step": result["start_step"], "step": result["step"]}))
    """
)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Random 16x16 training and held-out frames (the codec only has to train, not to learn them well)."""
    rng = np.random.default_rng(0)
    return {
        "train": rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8),
        "heldout": rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, frames: dict[str, np.ndarray]) -> Path:
    """An uninterrupted run of the same configuration."""
    out = tmp_path_factory.mktemp("straight")
    assert train_codec(frames["train"], frames["heldout"], out, CodecTrainConfig(**CONFIG))["step"] == 6
    return out


def _drive(
    tmp_path: Path, frames: dict[str, np.ndarray], out: Path, kill: str, resume: bool
) -> subprocess.CompletedProcess:
    """Runs the driver: a codec training into ``out`` that kills itself at ``kill`` (or ``"none"``)."""
    driver, data = tmp_path / "driver.py", tmp_path / "frames.npz"
    if not driver.exists():
        driver.write_text(DRIVER)
        np.savez(data, **frames)
    root = str(Path(vap_env.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    argv = [sys.executable, str(driver), str(out), kill, "resume" if resume else "fresh", str(data)]
    return subprocess.run([*argv, json.dumps(CONFIG)], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("kill", ["optimizer", "marker"])
def test_sigkill_mid_checkpoint_resumes_from_the_last_complete_one(
    tmp_path: Path, frames: dict[str, np.ndarray], straight: Path, kill: str
) -> None:
    out = tmp_path / "run"
    killed = _drive(tmp_path, frames, out, kill, resume=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    # what the kill left: checkpoint 2 whole, checkpoint 4 cut off in its temporary folder
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".tmp-step-000004", "step-000002"]
    assert (checkpoints / "step-000002" / COMPLETE_MARKER).is_file()
    partial = checkpoints / ".tmp-step-000004"
    assert not (partial / COMPLETE_MARKER).exists()
    whole = straight / "checkpoints" / "step-000004"
    assert (partial / "model.safetensors").stat().st_size == (whole / "model.safetensors").stat().st_size
    if kill == "optimizer":
        assert 0 < (partial / "optimizer.bin").stat().st_size < (whole / "optimizer.bin").stat().st_size
        assert not (partial / "scheduler.bin").exists()
    else:
        assert {p.name for p in partial.iterdir()} == {p.name for p in whole.iterdir()} - {COMPLETE_MARKER}

    resumed = _drive(tmp_path, frames, out, "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {checkpoints / 'step-000002'} at step 2" in resumed.stdout
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == {"start_step": 2, "step": 6}
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000002", "step-000004", "step-000006"]

    # the same weights as the uninterrupted run: the final model and every checkpoint after the kill
    for relative in (WEIGHTS, *(f"checkpoints/step-00000{n}/model.safetensors" for n in (4, 6))):
        expected, got = load_file(straight / relative), load_file(out / relative)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), relative
    drop = {"elapsed_s"}
    rows = [{k: v for k, v in row.items() if k not in drop} for row in read_metrics(out)]
    assert rows == [{k: v for k, v in row.items() if k not in drop} for row in read_metrics(straight)]
    assert [row["step"] for row in rows] == [2, 4, 6]
    saved = json.loads((out / "train_config.json").read_text())["train"]
    assert saved == json.loads(json.dumps(dataclasses.asdict(CodecTrainConfig(**CONFIG))))
