"""examples/evaluate_my_policy.py and the command it prints, run as a user runs them, small."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--episodes", "2", "--max-steps", "5", "--horizon", "2"]


@pytest.mark.slow
def test_the_example_trains_a_checkpoint_that_the_cli_evaluates_beside_the_family(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ppo_reach.zip"
    script = ROOT / "examples" / "evaluate_my_policy.py"
    argv = [sys.executable, str(script), "--checkpoint", str(checkpoint), "--timesteps", "256", *SMALL]
    result = subprocess.run([*argv, "--out", str(tmp_path / "example")], capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line.split("|")[1].strip() for line in result.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["mine", "scripted", "random"]  # header, then one row per policy
    assert checkpoint.is_file()

    # the README's command on that checkpoint, with a py: policy from a file beside it
    (tmp_path / "my_policies.py").write_text(
        "import numpy as np\n\ndef down(obs):\n    return np.array([0, 0, -0.5, 1], dtype=np.float32)\n"
    )
    policies = f"mine=sb3:{checkpoint};scripted;random;fn=py:{tmp_path / 'my_policies.py'}:down"
    out = tmp_path / "cli"
    cli = [sys.executable, "-m", "vap_env.cli", "evaluate", "--task", "reach", "--policies", policies, *SMALL]
    result = subprocess.run([*cli, "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert list(report["policies"]) == ["mine", "scripted", "random", "fn"]
    assert all(row["status"] == "ok" and row["episodes"] == 2 for row in report["policies"].values())
