"""Command-line flags read from config dataclasses: name, type, default and help are written once, there.

:func:`add_config_flags` adds the fields a command exposes to its parser: ``--field-name`` from the field
name, the type from the annotation, the default from the field's, and the help from the class's Google-style
``Args:`` docstring entry with ``default: X`` appended. :func:`config_values` reads them back, keyed by field
name, ready for ``Config(**values)``.

This small module rather than tyro (what CleanRL uses): tyro is not a dependency and would be one more, and it
exposes every field, while each command shows a chosen few (the command line stays what it was), some with a
command-specific default (``None`` for "the saved model's").
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any


class _FieldDefault:
    """The default of :attr:`Flag.default`: the field's own default (a field without one is required)."""

    def __repr__(self) -> str:
        return "the field's default"


_FIELD_DEFAULT: Any = _FieldDefault()


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one config field appears on the command line where that differs from what the field says.

    Args:
        field: The dataclass field.
        flag: The option string; default: ``--`` and the field name with dashes.
        default: The flag's default; default: the field's.
        default_text: What the default means, shown after ``default:`` instead of its value (e.g. for a
            ``None`` that stands for "the saved model's").
        help: Replaces the docstring entry.
        note: Appended to the docstring entry (a command-specific remark).
        metavar: The value's name in the usage; default: ``N`` for integers, argparse's otherwise.
        choices: The allowed values; default: the field's ``metadata["choices"]``, if any.
        type: Parses the flag's text; default: from the annotation.
    """

    field: str
    flag: str | None = None
    default: Any = _FIELD_DEFAULT
    default_text: str | None = None
    help: str | None = None
    note: str | None = None
    metavar: str | None = None
    choices: Sequence[Any] | None = None
    type: Callable[[str], Any] | None = None


def field_docs(config_class: type) -> dict[str, str]:
    """The entries of the ``Args:`` section of ``config_class``'s docstring, continuation lines joined."""
    docs: dict[str, str] = {}
    lines = inspect.cleandoc(config_class.__doc__ or "").splitlines()
    if "Args:" not in lines:
        return docs
    indent, name = None, None
    for line in lines[lines.index("Args:") + 1 :]:
        if line.strip() and not line.startswith(" "):
            break  # the next section, e.g. "Returns:"
        depth = len(line) - len(line.lstrip())
        if indent is None and line.strip():
            indent = depth
        match = re.match(r"(\w+): ?(.*)", line.strip())
        if match and depth == indent:
            name = match[1]
            docs[name] = match[2]
        elif name is not None and line.strip():
            docs[name] += " " + line.strip()
    return docs


def add_config_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_class: type,
    flags: Sequence[str | Flag],
) -> None:
    """Adds one flag per entry of ``flags`` (a field name, or a :class:`Flag` for a different look).

    Raises:
        ValueError: A field that ``config_class`` lacks, that its ``Args:`` docstring does not explain, or
            whose annotation is none of ``int``, ``float``, ``str``, ``bool``, ``X | None`` and
            ``tuple[X, ...]`` (unless its :class:`Flag` has a ``type``).
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    hints = typing.get_type_hints(config_class)
    docs = field_docs(config_class)
    for spec in flags:
        spec = spec if isinstance(spec, Flag) else Flag(spec)
        if spec.field not in fields:
            raise ValueError(
                f"{config_class.__name__} has no field {spec.field!r}; its fields: {', '.join(fields)}"
            )
        if spec.help is None and spec.field not in docs:
            raise ValueError(
                f"{config_class.__name__}'s `Args:` docstring has no entry {spec.field!r}: document the field"
            )
        # a Flag's own `type` parses any annotation; the kind then only says it is no switch
        where = f"{config_class.__name__}.{spec.field}"
        kind = (object, None) if spec.type else _kind(hints[spec.field], where)
        option, options = _argument(spec, fields[spec.field], kind, spec.help or docs[spec.field])
        parser.add_argument(option, **options)


def _argument(
    spec: Flag, field: dataclasses.Field, kind: tuple[type, type | None], doc: str
) -> tuple[str, dict[str, Any]]:
    """The option string and ``add_argument`` keywords of one field (``kind``: see :func:`_kind`)."""
    default = _default(field) if spec.default is _FIELD_DEFAULT else spec.default
    text = _plain(doc).rstrip(".")
    if spec.note:
        text += f"; {spec.note}"
    dashed = field.name.replace("_", "-")
    options: dict[str, Any] = {"dest": field.name}
    options.update({"required": True} if default is dataclasses.MISSING else {"default": default})
    if kind[0] is bool:
        if default is True:  # a switch that is on by default: --no-x turns it off
            return spec.flag or f"--no-{dashed}", {
                **options,
                "action": "store_false",
                "help": f"{text} (on by default: this flag turns it off)",
            }
        return spec.flag or f"--{dashed}", {**options, "action": "store_true", "help": text}
    shown = spec.default_text if spec.default_text is not None else _show(options.get("default"))
    options["help"] = f"{text}; default: {shown}" if shown is not None else text
    options["type"] = spec.type or (_comma_list(kind[1]) if kind[0] is tuple else kind[0])
    choices = spec.choices if spec.choices is not None else field.metadata.get("choices")
    if choices is not None:
        options["choices"] = tuple(choices)
    # without a metavar, argparse names the value after the option, or lists the choices
    options["metavar"] = spec.metavar or ("N" if kind[0] is int and choices is None else None)
    return spec.flag or f"--{dashed}", options


def config_values(args: argparse.Namespace, flags: Sequence[str | Flag]) -> dict[str, Any]:
    """``{field: parsed value}`` of the flags :func:`add_config_flags` added, for ``Config(**values)``."""
    names = [spec.field if isinstance(spec, Flag) else spec for spec in flags]
    return {name: getattr(args, name) for name in names}


def _default(field: dataclasses.Field) -> Any:
    """A field's default, made by its ``default_factory`` if it has one; ``MISSING`` when it has none."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _kind(annotation: Any, where: str) -> tuple[type, type | None]:
    """``(int | float | str | bool | tuple, element type of a tuple)`` of an annotation, ``None`` dropped."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else annotation
    if typing.get_origin(annotation) is tuple:
        element = typing.get_args(annotation)
        if len(element) == 2 and element[1] is Ellipsis and element[0] in (int, float, str):
            return tuple, element[0]
    elif annotation in (int, float, str, bool):
        return annotation, None
    raise ValueError(f"{where}: no command-line type for {annotation}; give its Flag a `type`")


def _comma_list(element: type) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(element(item) for item in text.split(",") if item.strip())

    parse.__name__ = f"comma-separated {element.__name__}"  # argparse names it in "invalid ... value"
    return parse


def _show(default: Any) -> str | None:
    """A default as the user would type it; ``None`` (the docstring says what it means) as nothing."""
    if default is None:
        return None
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)


def _plain(text: str) -> str:
    """Docstring markup as plain help text: ``x`` and :role:`~a.b.x` become `x`; ``%`` is escaped."""
    text = re.sub(r":\w+:`~?[\w.]*?(\w+)`", r"`\1`", text)
    text = re.sub(r"``(.+?)``", r"`\1`", text).replace("%", "%%")
    word = text.split(" ", 1)[0]
    if word[:1].isupper() and word[1:].islower():  # a sentence's capital, not an acronym such as PSNR
        text = text[0].lower() + text[1:]
    return text


def add_dataset_flags(parser: argparse.ArgumentParser) -> None:
    """``--data``, ``--out`` and ``--val-data``: the flags every trainer's command takes, written once."""
    parser.add_argument(
        "--data",
        required=True,
        nargs="+",
        metavar="DIR",
        help="recorded episodes (from `vap-env collect`); several directories are pooled, e.g. one per task",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument(
        "--val-data",
        nargs="+",
        metavar="DIR",
        help="held-out episodes, one or more directories; default: the last episodes of each --data "
        "directory (10%%, at least one)",
    )
