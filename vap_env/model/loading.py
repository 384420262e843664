"""The one place world models are found and loaded: :func:`load_world_model` and the backbone registry.

A saved world model is a directory whose ``config.json`` names its class in ``_class_name``, as diffusers
pipelines and models do; :data:`BACKBONES` maps that name to the class, whose ``from_pretrained`` reads the
directory. A ``config.json`` without the key (the shipped default's, and every model saved before the key
existed) is the CogVideoX action-to-video model's (:data:`DEFAULT_BACKBONE`). A new backbone is a class
meeting :class:`~vap_env.model.protocol.WorldModel` plus one :func:`register_backbone` call.

Also here: where the shipped default lives (:func:`default_model_path`, :func:`default_segmenter_path`).
Light on purpose (no torch import until a model is loaded): ``vap_env.envs`` and the command line import it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch

    from vap_env.model.protocol import WorldModel

__all__ = [
    "BACKBONES",
    "CLASS_NAME_KEY",
    "CONFIG_FILE",
    "DEFAULT_BACKBONE",
    "DEFAULT_MODEL_DIR",
    "backbone_class",
    "default_model_path",
    "default_segmenter_path",
    "load_world_model",
    "model_directory",
    "register_backbone",
    "saved_class_name",
]

CONFIG_FILE = "config.json"
CLASS_NAME_KEY = "_class_name"  # diffusers' key for the class that wrote a config
DEFAULT_BACKBONE = "ActionToVideoModel"

BACKBONES: dict[str, str | type] = {
    # "module:attribute" strings import on first use, so that reading the registry imports no torch
    "ActionToVideoModel": "vap_env.model.cogvideox.model:ActionToVideoModel",
}
"""Backbone classes by the name their ``config.json`` gives (``_class_name``): a class or ``"module:name"``."""

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "default_model"
"""Where the shipped default lives: ``model/`` (the world model with its codec), ``segmenter/`` (the robot
segmenter `vap-env evaluate` uses with it) and ``MODEL_CARD.md`` (data, commands, held-out metrics)."""

_Class = TypeVar("_Class", bound=type)


def register_backbone(cls: _Class, name: str | None = None) -> _Class:
    """Registers a world-model class under ``name`` (its class name by default); usable as a decorator.

    The class meets :class:`~vap_env.model.protocol.WorldModel`: its ``save_pretrained`` writes that name as
    ``_class_name`` into ``config.json`` and its ``from_pretrained(directory, device=...)`` reads it back.

    Raises:
        ValueError: If another class is registered under that name.
    """
    name = name or cls.__name__
    known = BACKBONES.get(name)
    if known is not None and known is not cls and not (isinstance(known, str) and _import(known) is cls):
        raise ValueError(
            f"world-model class name {name!r} is taken by {known!r}; register {cls!r} as another"
        )
    BACKBONES[name] = cls
    return cls


def backbone_class(name: str) -> type:
    """The registered class named ``name`` (imported on first use).

    Raises:
        ValueError: If no class has that name (the message lists the known ones).
    """
    if name not in BACKBONES:
        raise ValueError(
            f"unknown world-model class {name!r}; known classes: {', '.join(sorted(BACKBONES))} "
            "(register another with vap_env.model.loading.register_backbone)"
        )
    cls = BACKBONES[name]
    return _import(cls) if isinstance(cls, str) else cls


def saved_class_name(directory: str | Path) -> str:
    """The class named by ``directory/config.json`` (:data:`DEFAULT_BACKBONE` when it names none).

    Raises:
        FileNotFoundError: If there is no ``config.json``.
        ValueError: If it is not a JSON object or its ``_class_name`` is not a string.
    """
    config_file = Path(directory) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"missing world-model config: {config_file} does not exist")
    try:
        values = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid world-model config {config_file}: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"invalid world-model config {config_file}: not a JSON object")
    name = values.get(CLASS_NAME_KEY, DEFAULT_BACKBONE)
    if not isinstance(name, str):
        raise ValueError(f"`{CLASS_NAME_KEY}` in {config_file} must be a class name, got {name!r}")
    return name


def default_model_path() -> Path:
    """The directory of the default world model (``model="default"``): the tiny Panda push model,
    128x128, hull prompts, motion-compensated context and object dynamics, trained by vap-env on its
    simulator (see ``vap_env/default_model/MODEL_CARD.md``).

    Raises:
        FileNotFoundError: If this installation lacks it (a build without package data); the message says
            what to pass instead.
    """
    path = DEFAULT_MODEL_DIR / "model"
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"the default world model is missing from this installation ({path / CONFIG_FILE} does not "
            "exist): reinstall vap-env with its package data, or pass model=DIR, a directory written by "
            "a world model's save_pretrained (or the --out directory of `vap-env train`); e.g. "
            "gym.make('vap_env/PandaPush-WM-v0', model='runs/wm')"
        )
    return path


def default_segmenter_path() -> Path | None:
    """The robot segmenter shipped with the default model (fitted on random-camera simulator frames and the
    codec's reconstructions of them), or ``None`` if this installation lacks it."""
    path = DEFAULT_MODEL_DIR / "segmenter"
    return path if (path / "segmenter.json").is_file() else None


def model_directory(model: str | Path) -> Path:
    """The saved model directory that ``model`` names: a directory holding ``config.json``, the ``--out``
    directory of ``vap-env train`` (which holds it as ``model/``), or ``"default"``
    (:func:`default_model_path`).

    Raises:
        FileNotFoundError: If there is no ``config.json`` there (or the default is not installed).
    """
    path = default_model_path() if model == "default" else Path(model)
    if not (path / CONFIG_FILE).is_file() and (path / "model" / CONFIG_FILE).is_file():
        path = path / "model"  # the output directory of `vap-env train`
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"`model` must be a world model or a directory written by its save_pretrained; {path} has no "
            f"{CONFIG_FILE}"
        )
    return path


def load_world_model(model: WorldModel | str | Path, device: torch.device | str | None = None) -> WorldModel:
    """The world model from a model object, a saved directory (see :func:`model_directory`) or
    ``"default"``.

    A model object (anything meeting :class:`~vap_env.model.protocol.WorldModel`) is used as it is (moved
    to ``device`` if given): the envs only call its ``generate``, under ``torch.no_grad``. A directory is
    loaded by the class its ``config.json`` names, on ``device`` (the CPU when ``None``), in eval mode.

    Raises:
        FileNotFoundError: If a directory holds no saved model.
        ValueError: If its ``config.json`` names an unknown class, or is invalid.
        TypeError: If ``model`` is neither a world model nor a path.
    """
    if not isinstance(model, str | Path):
        from vap_env.model.protocol import WorldModel

        if not isinstance(model, WorldModel):
            raise TypeError(
                f"`model` must be a world model (vap_env.model.WorldModel), a directory or 'default', got "
                f"{type(model).__name__}"
            )
        return model.to(device) if device is not None else model
    path = model_directory(model)
    cls = backbone_class(saved_class_name(path))
    return cls.from_pretrained(path, device=device or "cpu").eval()


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
