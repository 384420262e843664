"""The default world model shipped inside the package: present, small, loadable, and it generates frames."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

import vap_env  # noqa: F401  (registers the env ids)
from vap_env.model.loading import DEFAULT_MODEL_DIR, default_model_path, default_segmenter_path

MAX_BYTES = 50 * 2**20


def test_the_default_ships_in_safetensors_within_50_mb() -> None:
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert sum(p.stat().st_size for p in files) <= MAX_BYTES
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    for needed in (
        "vap-env collect",
        "vap-env train-codec",
        "vap-env train",
        "held-out",
        "wall time",
        "--task reach",
        "--stage distill",
    ):
        assert needed in card


def test_default_model_loads_with_its_codec_and_segmenter() -> None:
    from vap_env.evaluate.segmenter import RobotSegmenter
    from vap_env.model.codec import FrameAutoencoder
    from vap_env.model.loading import load_world_model

    model = load_world_model("default")
    assert model.config.robot == "panda" and model.config.image_size == (64, 64)
    assert model.config.prompt == "skeleton" and model.config.stage == "distill"
    # distilled for one denoising step: its config samples with 1 (more steps make it worse, see its card)
    assert model.config.num_inference_steps == model.spec.num_inference_steps == 1
    assert isinstance(model.codec, FrameAutoencoder) and model.codec.spatial_factor == 4
    assert default_model_path() == DEFAULT_MODEL_DIR / "model"
    segmenter = RobotSegmenter.load(default_segmenter_path())
    assert segmenter.image_size == 64 and segmenter.info["camera"] == "random"


def test_default_model_generates_a_frame_in_the_env() -> None:
    env = gym.make("vap_env/PandaPush-WM-v0", model="default")
    try:
        first, _ = env.reset(seed=3)
        obs, reward, terminated, truncated, info = env.step(np.array([0.5, 0.0, -0.5, 1.0], np.float32))
    finally:
        env.close()
    assert obs.shape == first.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert np.isfinite(reward) and not truncated
    # a generated frame, not a copy: it differs from the start frame but keeps the scene (trained model)
    difference = np.abs(obs.astype(np.int16) - first.astype(np.int16))
    assert difference.max() > 0
    assert difference.mean() < 20, "a trained model keeps the scene; an untrained one would make noise"


def test_default_model_imagines_reach_without_a_cube() -> None:
    # the default was trained on push and reach: a reach scene has a goal sphere and no red cube
    env = gym.make("vap_env/PandaReach-WM-v0", model="default", camera="random")
    try:
        first, _ = env.reset(seed=500_000)
        frames = [env.step(np.array([0.8, -0.5, 0.3, 1.0], np.float32))[0] for _ in range(4)]
    finally:
        env.close()
    pixels = np.stack(frames).astype(np.int16)
    red = (pixels[..., 0] > 150) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() == 0, "a red cube appeared in a reach scene"
    difference = np.abs(pixels[-1] - first.astype(np.int16))
    assert difference.max() > 0 and difference.mean() < 20
