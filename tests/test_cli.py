"""The ``vap-env`` command line: a light parser, every ``--help``, defaults shared with the configs, and the
documented commands (README, ``benchmarks/default_model.sh``) still parsing."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vap_env.cli import build_parser
from vap_env.evaluate.config import SEED, EvaluateConfig
from vap_env.train.config import CodecTrainConfig, WorldModelTrainConfig

COMMANDS = ("robots", "collect", "info", "train", "train-codec", "evaluate", "rollout")
ROOT = Path(__file__).resolve().parents[1]


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
        assert "``" not in result.stdout and ":class:" not in result.stdout, command  # docstring markup


def test_python_dash_m_runs_the_command_line() -> None:
    """``benchmarks/prompt_comparison.py`` runs ``python -m vap_env.cli train ...``."""
    result = subprocess.run(
        [sys.executable, "-m", "vap_env.cli", "train", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: vap-env train"), result.stderr


def test_train_flags_default_to_the_config_defaults() -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    config = WorldModelTrainConfig()
    names = ("steps", "batch_size", "lr", "eval_every", "checkpoint_every", "interaction_weight")
    names += ("ema", "mixed_precision", "gradient_checkpointing", "log", "seed")
    assert {n: getattr(args, n) for n in names} == {n: getattr(config, n) for n in names}
    # model flags default to None: the tiny preset's value, or with --init the saved model's
    assert (args.prompt, args.controlnet_layers, args.lora_rank, args.stage) == (None, None, None, "joint")


def test_train_codec_flags_default_to_the_config_defaults() -> None:
    args = build_parser().parse_args(["train-codec", "--data", "d", "--out", "o"])
    config = CodecTrainConfig()
    names = ("steps", "batch_size", "lr", "eval_every", "checkpoint_every", "image_size", "downsample")
    names += ("latent_channels", "block_channels", "seed")
    assert {n: getattr(args, n) for n in names} == {n: getattr(config, n) for n in names}
    args = build_parser().parse_args(["train-codec", "--data", "d", "--out", "o", "--block-channels", "8,16"])
    assert args.block_channels == (8, 16)


def test_evaluate_and_rollout_flags_default_to_the_config_defaults() -> None:
    args = build_parser().parse_args(["evaluate", "--out", "o"])
    config = EvaluateConfig()
    assert EvaluateConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)}) == config
    assert args.policies is None and args.seed == SEED == 400_000 and args.model == "default"
    args = build_parser().parse_args(["rollout", "--out", "o.mp4"])
    assert (args.seed, args.task, args.camera, args.num_inference_steps) == (SEED, "push", "fixed", None)


def test_evaluate_config_names_the_field_in_its_errors() -> None:
    with pytest.raises(ValueError, match="`horizon` must be >= 1, got 0"):
        EvaluateConfig(horizon=0)
    with pytest.raises(ValueError, match=r"`camera` must be one of \['fixed', 'random'\], got 'moving'"):
        EvaluateConfig(camera="moving")


def _documented_commands(text: str) -> list[list[str]]:
    """The ``vap-env`` argument lists in shell text (continuations joined, comments, env vars dropped)."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True) if "vap-env " in line else []
        if "vap-env" in words and all(re.fullmatch(r"\w+=\S*", w) for w in words[: words.index("vap-env")]):
            commands.append(words[words.index("vap-env") + 1 :])
    return commands


def test_the_readme_commands_parse() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    commands = _documented_commands("\n".join(blocks))
    assert {c[0] for c in commands} >= {"robots", "train-codec", "train", "evaluate", "rollout"}
    for argv in commands:
        build_parser().parse_args(argv)  # exits (SystemExit 2) on a flag that no longer exists


def test_the_default_model_script_commands_parse() -> None:
    script = ROOT / "benchmarks" / "default_model.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    # the shell variables of its record() function, with values of the kind it passes
    values = {"$task": "push", "$episodes": "50", "$1": "scripted:noise=0.0", "$2": "0", "$out": "data/x"}
    commands = _documented_commands(script.read_text())
    assert [c[0] for c in commands] == ["collect", "train-codec", "train", "evaluate", "evaluate", "evaluate"]
    for argv in commands:
        build_parser().parse_args([values.get(word, word) for word in argv])
