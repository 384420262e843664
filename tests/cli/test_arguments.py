"""Flags read from a config dataclass: names, types, defaults, choices and help from its ``Args:``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from vap_env.cli.arguments import Flag, add_config_flags, config_values, field_docs

KINDS = ("small", "large")


@dataclasses.dataclass
class _Config:
    """A config of every supported kind of field.

    Args:
        steps: Optimizer steps in all
            (a continuation line).
        lr: Peak learning rate, see :class:`~vap_env.train.config.CodecTrainConfig`.
        name: The run's ``name``.
        size: Image side; by default (``None``) the data's.
        channels: Channels per level, from 10% of full resolution down.
        ema: Keep an EMA of the weights.
        shuffle: Shuffle the clips.
        kind: PSNR kind of the model.
        path: Where it goes.
        tags: Labels.
    """

    path: str
    steps: int = 100
    lr: float = 3e-4
    name: str = "run"
    size: int | None = None
    channels: tuple[int, ...] = (16, 32)
    ema: bool = False
    shuffle: bool = True
    kind: str = dataclasses.field(default="small", metadata={"choices": KINDS})
    tags: tuple[str, ...] = dataclasses.field(default_factory=lambda: ("a", "b"))


FLAGS = ("path", "steps", "lr", "name", "size", "channels", "ema", "shuffle", "kind", "tags")


def _parser(flags: tuple = FLAGS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="test")
    add_config_flags(parser, _Config, flags)
    return parser


def _help(parser: argparse.ArgumentParser, option: str) -> str:
    return next(a.help for a in parser._actions if option in a.option_strings)


def test_field_docs_reads_the_args_section_with_continuation_lines() -> None:
    docs = field_docs(_Config)
    assert list(docs) == ["steps", "lr", "name", "size", "channels", "ema", "shuffle", "kind", "path", "tags"]
    assert docs["steps"] == "Optimizer steps in all (a continuation line)."


def test_defaults_types_and_values_come_from_the_fields() -> None:
    args = _parser().parse_args(["--path", "p"])
    assert config_values(args, FLAGS) == dataclasses.asdict(_Config(path="p"))
    argv = ["--path", "p", "--steps", "7", "--lr", "0.5", "--size", "32", "--channels", "8,16,32"]
    argv += ["--ema", "--no-shuffle", "--kind", "large", "--tags", "x"]
    config = _Config(**config_values(_parser().parse_args(argv), FLAGS))
    assert config == _Config("p", 7, 0.5, "run", 32, (8, 16, 32), True, False, "large", ("x",))


def test_bad_values_and_a_missing_required_field_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--steps", "7"], ["--path", "p", "--steps", "x"], ["--path", "p", "--kind", "huge"]):
        with pytest.raises(SystemExit) as exit_info:
            _parser().parse_args(argv)
        assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_help_is_the_docstring_entry_as_plain_text_with_the_default() -> None:
    parser = _parser()
    assert _help(parser, "--steps") == "optimizer steps in all (a continuation line); default: 100"
    assert _help(parser, "--lr") == "peak learning rate, see `CodecTrainConfig`; default: 0.0003"
    assert _help(parser, "--name") == "the run's `name`; default: run"
    assert _help(parser, "--size") == "image side; by default (`None`) the data's"  # None: no "default:"
    assert _help(parser, "--channels").endswith("from 10%% of full resolution down; default: 16,32")
    # an acronym keeps its capitals
    assert _help(parser, "--kind") == "PSNR kind of the model; default: small"
    assert _help(parser, "--no-shuffle") == "shuffle the clips (on by default: this flag turns it off)"
    assert "--help" in parser.format_help()  # argparse formats every help (a lone % would raise here)


def test_a_flag_overrides_name_default_help_and_metavar() -> None:
    flags = (
        Flag("path"),
        Flag("steps", flag="--iterations", default=None, default_text="the preset's", metavar="K"),
        Flag("name", help="What to call it.", note="also the folder"),
    )
    parser = _parser(flags)
    args = parser.parse_args(["--path", "p", "--iterations", "3"])
    assert config_values(args, flags) == {"path": "p", "steps": 3, "name": "run"}
    assert parser.parse_args(["--path", "p"]).steps is None
    expected = "optimizer steps in all (a continuation line); default: the preset's"
    assert _help(parser, "--iterations") == expected
    assert _help(parser, "--name") == "what to call it; also the folder; default: run"
    assert "--iterations K" in parser.format_usage()


def test_an_unknown_or_undocumented_field_is_an_error_at_build_time() -> None:
    @dataclasses.dataclass
    class Undocumented:
        """No Args section."""

        steps: int = 1

    with pytest.raises(ValueError, match="_Config has no field 'stpes'"):
        _parser(("stpes",))
    with pytest.raises(ValueError, match="Undocumented's `Args:` docstring has no entry 'steps'"):
        add_config_flags(argparse.ArgumentParser(), Undocumented, ("steps",))
    add_config_flags(argparse.ArgumentParser(), Undocumented, (Flag("steps", help="Steps."),))
