"""The backbone seam: the WorldModel protocol, config.json naming its class, and a second backbone in the envs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vap_env.model import ActionToVideoModel, WorldModelConfig, loading
from vap_env.model.cogvideox.loaders import load_config
from vap_env.model.loading import (
    DEFAULT_BACKBONE,
    backbone_class,
    default_model_path,
    load_world_model,
    model_directory,
    register_backbone,
    saved_class_name,
)
from vap_env.model.protocol import WorldModel, WorldModelSpec


class CopyLastFrameModel:
    """A second backbone in a few lines: it 'generates' the newest context frame again (a DIAMOND-style EDM
    U-Net would denoise here). It meets the protocol without sharing any code with the CogVideoX model."""

    codec = None

    def __init__(self, spec: WorldModelSpec) -> None:
        self._spec, self.calls = spec, 0

    @property
    def spec(self) -> WorldModelSpec:
        return self._spec

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def generate(self, context_frames, prompts, num_inference_steps=None, generator=None, guidance_scale=1.0):
        self.calls += 1
        return context_frames[:, -1:].repeat(1, self._spec.frames_per_step, 1, 1, 1).float()

    def save_pretrained(self, save_directory: str | Path) -> None:
        directory = Path(save_directory)
        directory.mkdir(parents=True)
        values = {"_class_name": type(self).__name__, **dataclasses.asdict(self._spec)}
        (directory / "config.json").write_text(json.dumps(values))

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, *, device: torch.device | str = "cpu"
    ) -> CopyLastFrameModel:
        values = json.loads((Path(directory) / "config.json").read_text())
        values.pop("_class_name")
        return cls(WorldModelSpec(**values))

    def to(self, device: torch.device | str) -> CopyLastFrameModel:
        return self

    def eval(self) -> CopyLastFrameModel:
        return self


def _copy_model() -> CopyLastFrameModel:
    return CopyLastFrameModel(WorldModelSpec("panda", (64, 64), "skeleton", 3, 1, 1, 0, 1))


def test_the_cogvideox_model_meets_the_protocol_and_names_its_class(tmp_path: Path) -> None:
    config = WorldModelConfig.tiny(
        robot="panda", image_size=32, patch_size=4, num_layers=1, controlnet_layers=1
    )
    torch.manual_seed(0)
    model = ActionToVideoModel(config).eval()
    assert isinstance(model, WorldModel)
    assert model.spec == WorldModelSpec(
        robot="panda",
        image_size=(32, 32),
        prompt="skeleton",
        prompt_channels=3,
        context_frames=config.context_frames,
        frames_per_step=config.frames_per_step,
        state_dim=0,
        num_inference_steps=config.num_inference_steps,
    )
    model.save_pretrained(tmp_path / "wm")
    saved = json.loads((tmp_path / "wm" / "config.json").read_text())
    assert next(iter(saved)) == "_class_name" and saved["_class_name"] == "ActionToVideoModel"
    assert load_config(tmp_path / "wm").robot == "panda"  # `_class_name` is not a config field
    assert WorldModelConfig.from_json((tmp_path / "wm" / "config.json").read_text()) == model.config
    loaded = load_world_model(tmp_path / "wm")
    assert isinstance(loaded, ActionToVideoModel) and not loaded.training
    # a config without `_class_name` (older saves) is the CogVideoX model's
    del saved["_class_name"]
    (tmp_path / "wm" / "config.json").write_text(json.dumps(saved))
    assert saved_class_name(tmp_path / "wm") == DEFAULT_BACKBONE == "ActionToVideoModel"
    assert json.loads((default_model_path() / "config.json").read_text())["_class_name"] == DEFAULT_BACKBONE
    assert isinstance(load_world_model(tmp_path / "wm"), ActionToVideoModel)
    g = torch.Generator().manual_seed(0)
    context = torch.rand(1, config.context_frames, 3, 32, 32, generator=g) * 2 - 1
    prompts = torch.rand(1, config.context_frames + config.frames_per_step, 3, 32, 32, generator=g) * 2 - 1
    a = model.generate(context, prompts, generator=torch.Generator().manual_seed(1))
    b = load_world_model(tmp_path / "wm").generate(
        context, prompts, generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_unknown_class_names_and_missing_models_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text(json.dumps({"_class_name": "EDMUNet", "robot": "panda"}))
    with pytest.raises(
        ValueError, match=r"unknown world-model class 'EDMUNet'; known classes: .*ActionToVideoModel"
    ):
        load_world_model(tmp_path / "odd")
    (tmp_path / "odd" / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        saved_class_name(tmp_path / "odd")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_world_model(tmp_path / "missing")
    with pytest.raises(TypeError, match="must be a world model"):
        load_world_model(object())  # type: ignore[arg-type]
    (tmp_path / "run" / "model").mkdir(parents=True)
    (tmp_path / "run" / "model" / "config.json").write_text("{}")
    assert model_directory(tmp_path / "run") == tmp_path / "run" / "model"  # a `vap-env train` OUT
    assert model_directory("default") == default_model_path()


def test_the_seam_imports_no_torch() -> None:
    code = "import sys, vap_env.model.loading, vap_env.model.protocol; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backbone_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "BACKBONES", dict(loading.BACKBONES))
    assert backbone_class("ActionToVideoModel") is ActionToVideoModel
    assert register_backbone(CopyLastFrameModel) is CopyLastFrameModel
    assert register_backbone(CopyLastFrameModel) is CopyLastFrameModel  # again: the same class, no error
    assert backbone_class("CopyLastFrameModel") is CopyLastFrameModel
    register_backbone(ActionToVideoModel)  # the registered "module:name" is this class
    with pytest.raises(ValueError, match="'ActionToVideoModel' is taken"):
        register_backbone(CopyLastFrameModel, name="ActionToVideoModel")


def test_a_second_backbone_runs_in_the_envs_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium as gym

    import vap_env  # noqa: F401  (the env ids)

    monkeypatch.setattr(loading, "BACKBONES", dict(loading.BACKBONES))
    register_backbone(CopyLastFrameModel)
    _copy_model().save_pretrained(tmp_path / "copy")
    assert saved_class_name(tmp_path / "copy") == "CopyLastFrameModel"
    env = gym.make("vap_env/PandaPush-WM-v0", model=tmp_path / "copy", obs_mode="both")
    assert isinstance(env.unwrapped.model, CopyLastFrameModel)
    first, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([0.5, 0.0, -0.5, 1.0], np.float32))
    assert env.unwrapped.model.calls == 1 and np.isfinite(reward)
    np.testing.assert_array_equal(obs["image"], first["image"])  # copied through frames -> [-1, 1] -> frames
    assert not np.array_equal(obs["state"], first["state"])  # the commanded robot moved
    env.close()
    venv = gym.make_vec(
        "vap_env/PandaReach-WM-v0", num_envs=2, vectorization_mode="vector_entry_point", model=_copy_model()
    )
    obs, _ = venv.reset(seed=1)
    after, *_ = venv.step(np.zeros((2, 4), np.float32))
    np.testing.assert_array_equal(after, obs)
    venv.close()
