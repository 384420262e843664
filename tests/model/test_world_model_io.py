"""ActionToVideoModel: save/load, attaching a new conditioning to a pretrained base, damaged files."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel
from safetensors.torch import load_file

from tests.conftest import perturb, tiny_autoencoder, tiny_world_model
from vap_env.model import ActionToVideoModel, WorldModelConfig
from vap_env.model.cogvideox.transformer import base_state_dict
from vap_env.model.config import ATTACHMENT_FIELDS

ModelFactory = Callable[..., ActionToVideoModel]
BatchFactory = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------- save / load


@pytest.mark.parametrize(("prompt", "controlnet_layers"), [("skeleton", 2), ("state", 2), ("skeleton", 0)])
def test_save_load_generate_identical(
    prompt: str,
    controlnet_layers: int,
    tmp_path: Path,
    make_config: Callable[..., WorldModelConfig],
    make_batch: BatchFactory,
) -> None:
    torch.manual_seed(0)
    config = make_config(patch_size=2, prompt=prompt, state_dim=3, controlnet_layers=controlnet_layers)
    model = ActionToVideoModel(config, codec=tiny_autoencoder()).eval()
    perturb(model)
    model.set_stage("control")
    context, _, prompts = make_batch(model)
    expected = model.generate(context, prompts, generator=_seed(3))
    model.save_pretrained(tmp_path / "wm")
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm").eval()
    assert loaded.config == model.config and loaded.config.stage == "control"
    if prompt == "skeleton":
        assert len(loaded.controlnet.transformer_blocks) == controlnet_layers
    assert loaded.trainable_parameters_report() == model.trainable_parameters_report()
    assert torch.equal(loaded.generate(context, prompts, generator=_seed(3)), expected)
    names = sorted(
        p.relative_to(tmp_path / "wm").as_posix() for p in (tmp_path / "wm").rglob("*") if p.is_file()
    )
    assert "lora/pytorch_lora_weights.safetensors" in names and "extras.safetensors" in names
    assert ("controlnet/diffusion_pytorch_model.safetensors" in names) == (prompt == "skeleton")
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    # transformer/ is a stock diffusers folder holding the base weights without LoRA
    stock = CogVideoXTransformer3DModel.from_pretrained(tmp_path / "wm" / "transformer")
    for key, value in stock.state_dict().items():
        assert torch.equal(value, base_state_dict(model.transformer)[key]), key


def test_without_lora(tmp_path: Path, make_model: ModelFactory, make_batch: BatchFactory) -> None:
    model = make_model(lora_rank=0).eval()
    assert model.trainable_parameters_report()["lora"] == 0
    model.save_pretrained(tmp_path / "wm")
    assert not (tmp_path / "wm" / "lora").exists()
    context, _, prompts = make_batch(model)
    loaded = ActionToVideoModel.from_pretrained(tmp_path / "wm").eval()
    expected = model.generate(context, prompts, generator=_seed(0))
    assert torch.equal(loaded.generate(context, prompts, generator=_seed(0)), expected)


def test_save_is_atomic(tmp_path: Path, make_model: ModelFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model()
    target = tmp_path / "wm"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwriting works
    before = (target / "extras.safetensors").read_bytes()

    def broken(directory: Path) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.codec, "save_pretrained", broken)
    with torch.no_grad():
        model.null_text.embedding.add_(1.0)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save_pretrained(target)
    assert (target / "extras.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wm"]


# ---------------------------------------------------------------------- attaching to a pretrained base


@pytest.fixture(scope="module")
def pretrain_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved ``pretrain`` model whose base and null text moved away from their initial values."""
    model = tiny_world_model(stage="pretrain", control_dropout=0.0)
    g = _seed(7)
    with torch.no_grad():
        for name, param in model.transformer.named_parameters():
            if ".lora_" not in name:
                param.add_(torch.randn(param.shape, generator=g) * 0.02)
        model.null_text.embedding.add_(torch.randn(model.null_text.embedding.shape, generator=g))
    path = tmp_path_factory.mktemp("pretrain") / "wm"
    model.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "attachment",
    [
        {},
        {"prompt": "state", "state_dim": 3},
        {"prompt": "none"},
        {"lora_rank": 0},
        {"controlnet_layers": 0},
        {"prompt": "mask", "prompt_channels": 1, "controlnet_layers": 1, "lora_rank": 4, "lora_alpha": 2.0},
    ],
    ids=["skeleton", "state", "none", "controlnet-only", "lora-only", "mask"],
)
def test_a_new_conditioning_on_a_pretrain_base_starts_as_the_base(
    attachment: dict[str, object], pretrain_model: Path, make_batch: BatchFactory
) -> None:
    pretrained = ActionToVideoModel.from_pretrained(pretrain_model).eval()
    config = dataclasses.replace(pretrained.config, stage="control", **attachment)
    assert set(pretrained.config.architecture_differences(config)) <= set(ATTACHMENT_FIELDS)
    torch.manual_seed(1)
    model = ActionToVideoModel.from_pretrained_base(pretrain_model, config).eval()
    assert model.config == config  # the codec fingerprint is the saved model's

    # the saved base (no LoRA on disk), null text and codec
    saved = load_file(pretrain_model / "transformer" / "diffusion_pytorch_model.safetensors")
    base = base_state_dict(model.transformer)
    assert base.keys() == saved.keys() and all(torch.equal(base[k], saved[k]) for k in saved)
    assert torch.equal(model.null_text.embedding, pretrained.null_text.embedding)
    assert model.config.codec_fingerprint == pretrained.config.codec_fingerprint

    # a fresh attachment, trained in the control stage beside the frozen base
    report = model.trainable_parameters_report()
    assert report["base"] == 0 and (report["lora"] > 0) == (config.lora_rank > 0)
    lora_b = [p for n, p in model.transformer.named_parameters() if ".lora_B" in n]
    assert len(lora_b) == (4 * 4 if config.lora_rank else 0) and not any(p.any() for p in lora_b)
    if config.prompt == "state":
        assert model.state_embedder is not None and model.controlnet is None
    if model.controlnet is not None:
        assert len(model.controlnet.transformer_blocks) == config.controlnet_layers
        for key, value in model.controlnet.state_dict().items():
            if key.startswith("transformer_blocks."):  # copied from the trained base
                assert torch.equal(value, saved[key]), key
    else:
        assert config.prompt not in ("skeleton", "mask")

    # zero-initialised where it meets the base: the output is the pretrain model's
    context, _, prompts = make_batch(model)
    _, _, pretrain_prompts = make_batch(pretrained)
    expected = pretrained.generate(context, pretrain_prompts, generator=_seed(3))
    assert torch.equal(model.generate(context, prompts, generator=_seed(3)), expected)


def test_attaching_needs_a_pretrain_model_of_the_same_architecture(
    pretrain_model: Path, tmp_path: Path
) -> None:
    saved = ActionToVideoModel.from_pretrained(pretrain_model).config
    with pytest.raises(
        ValueError,
        match=r"does not fit the model in .*\(num_layers: saved 4, requested 2, controlnet_layers: saved 2, "
        r"requested 1\); only the attachment fields",
    ):
        ActionToVideoModel.from_pretrained_base(
            pretrain_model, dataclasses.replace(saved, num_layers=2, controlnet_layers=1)
        )
    for field, value in (("image_size", (64, 64)), ("robot", "ur5"), ("frames_per_step", 2)):
        with pytest.raises(ValueError, match=f"does not fit the model .*{field}: saved"):
            ActionToVideoModel.from_pretrained_base(
                pretrain_model, dataclasses.replace(saved, **{field: value})
            )

    torch.manual_seed(0)
    joint = ActionToVideoModel(dataclasses.replace(saved, stage="joint"))
    joint.save_pretrained(tmp_path / "joint")
    with pytest.raises(
        ValueError,
        match=r"\(prompt: saved 'skeleton', requested 'none'\): a new conditioning .* can be attached only "
        r"to the base of a 'pretrain' model, and this one was trained in stage 'joint'",
    ):
        ActionToVideoModel.from_pretrained_base(tmp_path / "joint", dataclasses.replace(saved, prompt="none"))
    with pytest.raises(ValueError, match="only to the base of a 'pretrain' model"):
        ActionToVideoModel.from_pretrained_base(tmp_path / "joint", saved)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "wm"
    tiny_world_model(codec=tiny_autoencoder, patch_size=2).save_pretrained(path)
    return path


WEIGHT_FILES = [
    "transformer/diffusion_pytorch_model.safetensors",
    "controlnet/diffusion_pytorch_model.safetensors",
    "lora/pytorch_lora_weights.safetensors",
    "codec/diffusion_pytorch_model.safetensors",
    "extras.safetensors",
]


@pytest.mark.parametrize("damage", ["delete", "truncate"])
@pytest.mark.parametrize("relative", WEIGHT_FILES)
def test_damaged_weight_file_is_named(saved_model: Path, tmp_path: Path, relative: str, damage: str) -> None:
    copy = tmp_path / "wm"
    shutil.copytree(saved_model, copy)
    victim = copy / relative
    if damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(OSError) as error:
        ActionToVideoModel.from_pretrained(copy)
    assert str(victim) in str(error.value)
    reason = (
        "does not exist" if damage == "delete" else "could not load" if "codec" in relative else "corrupt"
    )
    assert reason in str(error.value)


def test_missing_config_is_named(saved_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "wm"
    shutil.copytree(saved_model, copy)
    (copy / "config.json").write_text('{"prompt": "x"}')
    with pytest.raises(ValueError, match="invalid world-model config .*config.json: `prompt` must be one of"):
        ActionToVideoModel.from_pretrained(copy)
    (copy / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        ActionToVideoModel.from_pretrained(copy)
