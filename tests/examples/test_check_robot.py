"""examples/check_robot.py, run as a user runs it, small."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[2]


def test_check_robot_passes_a_shipped_robot_and_writes_its_picture(tmp_path: Path) -> None:
    out = tmp_path / "check.png"
    script = ROOT / "examples" / "check_robot.py"
    result = subprocess.run(
        [sys.executable, str(script), "xarm6", "--seeds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    IK reaches the workspace" in result.stdout
    assert "ok    skeleton on the robot mask" in result.stdout
    assert "ok    scripted push expert: success 100% over 1 seeds" in result.stdout
    picture = cv2.imread(str(out))
    assert picture.shape[0] == 3 * 192  # frame, overlay, prompt, each 64 px upscaled 3x


def test_check_robot_names_an_unknown_robot(tmp_path: Path) -> None:
    script = ROOT / "examples" / "check_robot.py"
    result = subprocess.run([sys.executable, str(script), "ur5"], capture_output=True, text=True, timeout=60)
    assert (
        result.returncode == 2 and "unknown robot 'ur5'; known robots: human_hand, kuka_iiwa" in result.stderr
    )
