"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from vap_env.recording import collect


@pytest.fixture(scope="module")
def episodes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six scripted Panda push episodes at 32x32 (about 35 frames each) from the simulator."""
    out = tmp_path_factory.mktemp("data") / "panda_push"
    collect("panda", "push", 6, "scripted:noise=0.2", out, image_size=32, progress=False)
    return out
