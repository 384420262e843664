"""examples/finetune_on_my_episodes.py, run as a user runs it, small: record, continue the default, compare."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vap_env.model.cogvideox.loaders import load_config
from vap_env.model.loading import default_model_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_finetune_example_continues_the_default_and_scores_it_before_and_after(tmp_path: Path) -> None:
    script = ROOT / "examples" / "finetune_on_my_episodes.py"
    out = tmp_path / "run"
    argv = [
        sys.executable,
        str(script),
        "--record",
        "3",
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--horizon",
        "1",
    ]
    result = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2 training and 1 held-out episodes" in result.stdout
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert {"default", "fine-tuned", "repeat first frame"} <= set(rows)
    saved = load_config(out / "model")
    assert saved.architecture_differences(load_config(default_model_path())) == {}  # the default, continued
    assert saved.stage == "control"
