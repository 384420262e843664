"""The ``vap-env`` command line: a light parser, every ``--help``, defaults shared with the configs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from vap_env.cli import build_parser
from vap_env.train.codec_trainer import CodecTrainConfig
from vap_env.train.world_model_trainer import WorldModelTrainConfig

COMMANDS = ("robots", "collect", "info", "train", "train-codec", "evaluate", "rollout")


def _vap_env_script() -> str:
    """The installed ``vap-env`` console script: beside this interpreter, else on ``PATH``."""
    script = shutil.which("vap-env", path=str(Path(sys.executable).parent)) or shutil.which("vap-env")
    assert script is not None, "the vap-env console script is not installed (pip install -e .)"
    return script


def test_building_the_parser_imports_no_torch_or_pybullet() -> None:
    """``vap-env --help`` took 6-8 s when building the parser imported torch; the handlers import it now."""
    code = (
        "import sys; import vap_env.cli; vap_env.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'pybullet', 'diffusers', 'accelerate') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_help_of_every_command_exits_0() -> None:
    script = _vap_env_script()
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert all(command in result.stdout for command in COMMANDS)
    for command in COMMANDS:
        result = subprocess.run([script, command, "--help"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: vap-env {command}"), command


def test_train_flags_default_to_the_config_defaults() -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    config = WorldModelTrainConfig()
    names = ("steps", "batch_size", "lr", "eval_every", "checkpoint_every", "interaction_weight")
    names += ("mixed_precision", "log", "seed")
    assert {n: getattr(args, n) for n in names} == {n: getattr(config, n) for n in names}


def test_train_codec_flags_default_to_the_config_defaults() -> None:
    args = build_parser().parse_args(["train-codec", "--data", "d", "--out", "o"])
    config = CodecTrainConfig()
    names = ("steps", "batch_size", "lr", "eval_every", "checkpoint_every", "image_size", "downsample")
    names += ("latent_channels", "seed")
    assert {n: getattr(args, n) for n in names} == {n: getattr(config, n) for n in names}
    assert args.block_channels == ",".join(map(str, config.block_channels))
