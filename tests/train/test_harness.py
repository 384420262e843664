"""The training harness: checkpoint folders and their marker, the run directory, metrics rows, EMA, steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator

from vap_env.model.checkpoint import (
    COMPLETE_MARKER,
    checkpoint_name,
    last_checkpoint,
    list_checkpoints,
    mark_complete,
    prune_checkpoints,
)
from vap_env.train.harness import (
    Checkpoints,
    RunDirectory,
    StepState,
    create_ema,
    ema_weights,
    optimizer_step,
    write_json,
)
from vap_env.train.metrics import MetricsLog, read_metrics


def _checkpoint(directory: Path, step: int, complete: bool = True) -> Path:
    path = directory / checkpoint_name(step)
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        mark_complete(path, step)
    return path


def test_only_marked_checkpoints_count_and_are_pruned(tmp_path: Path) -> None:
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 8, complete=False)  # cut off before its marker, or written without markers
    (tmp_path / ".tmp-step-000010").mkdir()  # a save cut off before its rename
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4, 6]
    assert [step for step, _ in list_checkpoints(tmp_path, complete_only=False)] == [2, 4, 6, 8]
    assert last_checkpoint(tmp_path) == tmp_path / "step-000006"
    assert json.loads((tmp_path / "step-000006" / COMPLETE_MARKER).read_text()) == {
        "step": 6,
        "complete": True,
    }
    assert prune_checkpoints(tmp_path, 2) == [tmp_path / "step-000002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".tmp-step-000010", "step-000004", "step-000006", "step-000008",
    ]  # fmt: skip
    assert prune_checkpoints(tmp_path, None) == []


def test_run_directory_refuses_checkpoints_and_resumes_the_last_complete_one(tmp_path: Path) -> None:
    assert RunDirectory(tmp_path / "new", resume=True).resume_from is None  # nothing to resume: start afresh
    _checkpoint(tmp_path / "checkpoints", 3)
    _checkpoint(tmp_path / "checkpoints", 5, complete=False)
    with pytest.raises(FileExistsError, match="already holds checkpoints: resume"):
        RunDirectory(tmp_path, resume=False)
    run = RunDirectory(tmp_path, resume=True)
    assert run.resume_from == tmp_path / "checkpoints" / "step-000003"
    assert (run.metrics.name, run.config_file.name) == ("metrics.csv", "train_config.json")


def test_write_json_writes_dataclasses_paths_and_tuples_plainly(tmp_path: Path) -> None:
    from vap_env.train.config import CodecTrainConfig

    write_json(
        tmp_path / "c.json", {"train": CodecTrainConfig(), "dirs": [Path("a"), Path("b")], "n": (1, 2)}
    )
    saved = json.loads((tmp_path / "c.json").read_text())
    assert (
        saved["train"]["block_channels"] == [16, 32, 64]
        and saved["dirs"] == ["a", "b"]
        and saved["n"] == [1, 2]
    )


def test_checkpoints_round_trip_the_step_optimizer_and_ema(tmp_path: Path) -> None:
    def setup() -> tuple[Accelerator, torch.nn.Linear, torch.optim.Optimizer, object, StepState, object]:
        torch.manual_seed(0)
        accelerator = Accelerator()
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
        model, optimizer, schedule = accelerator.prepare(model, optimizer, schedule)
        state = StepState()
        accelerator.register_for_checkpointing(state)
        ema = create_ema(accelerator, list(model.parameters()), decay=0.5)
        return accelerator, model, optimizer, schedule, state, ema

    def train(count: int, parts: tuple) -> None:
        accelerator, model, optimizer, schedule, state, ema = parts
        for _ in range(count):
            x = torch.full((4, 3), float(state.step), device=accelerator.device)
            optimizer_step(
                model(x).square().mean(), optimizer, schedule, model.parameters(), 1.0, accelerator
            )
            ema.step(model.parameters())
            state.step += 1

    straight = setup()
    train(4, straight)
    first = setup()
    train(2, first)
    saved = Checkpoints(first[0], tmp_path / "checkpoints", keep=1).save(first[4].step)
    assert saved == tmp_path / "checkpoints" / "step-000002" and (saved / COMPLETE_MARKER).is_file()
    second = setup()
    Checkpoints(second[0], tmp_path / "checkpoints", keep=1).load(saved, second[5])
    assert second[4].step == 2
    train(2, second)
    for a, b in zip(straight[1].parameters(), second[1].parameters(), strict=True):
        assert torch.equal(a, b)
    params = list(second[1].parameters())
    before = [p.detach().clone() for p in params]
    with ema_weights(second[5], params):
        assert all(torch.equal(p, s) for p, s in zip(params, second[5].shadow_params, strict=True))
        assert all(
            torch.equal(s, t) for s, t in zip(second[5].shadow_params, straight[5].shadow_params, strict=True)
        )
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_metrics_rows_are_cut_back_on_resume_and_keep_the_clock(tmp_path: Path) -> None:
    accelerator, path, fields = Accelerator(), tmp_path / "metrics.csv", ("step", "loss", "psnr", "elapsed_s")
    log = MetricsLog(accelerator, path, fields, start_step=0)
    for step in (2, 4, 6):
        log.write(step, {"loss": 1.0 / step} | ({"psnr": 20.0} if step == 4 else {}))
    rows = read_metrics(tmp_path)
    assert (
        [row["step"] for row in rows] == [2, 4, 6]
        and rows[1]["psnr"] == 20.0
        and rows[0]["psnr"] != rows[0]["psnr"]
    )
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], lines[2].rsplit(",", 1)[0] + ",1000.0", lines[3]]) + "\n")
    resumed = MetricsLog(accelerator, path, fields, start_step=4)  # a run resumed from its step-4 checkpoint
    assert [row["step"] for row in read_metrics(tmp_path)] == [2, 4]
    assert 1000.0 <= resumed.elapsed() < 1100.0
    resumed.write(6, {"loss": 0.5})
    assert read_metrics(tmp_path)[-1]["elapsed_s"] >= 1000.0
