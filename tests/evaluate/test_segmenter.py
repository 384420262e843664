"""The robot segmenter: fitted on simulator frames, scored on held-out episodes, saved and reloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vap_env.evaluate.metrics import st_iou
from vap_env.evaluate.segmenter import (
    RobotSegmenter,
    SegmentationData,
    SegmenterConfig,
    SegmenterNet,
    codec_reconstructions,
    collect_segmentation_frames,
    degrade,
    fit_for_evaluation,
    fit_segmenter,
)
from vap_env.model.codec import FrameAutoencoder, PixelCodec

# Measured with this config (8 training + 4 held-out push episodes at 64 px, 300 steps of batch 8), under the
# Panda's workspace camera: held-out IoU 0.888 on clean frames and 0.847 on degraded ones (0.880 / 0.859 under
# the wider view before it; the default config, 24 + 8 episodes and 1500 steps of batch 16, reaches 0.96 /
# 0.94). The floors leave room for other CPUs' float arithmetic.
QUICK = SegmenterConfig(episodes=8, heldout_episodes=4, every=3, steps=300, batch_size=8)
CLEAN_FLOOR, DEGRADED_FLOOR = 0.84, 0.80


def test_net_maps_images_to_one_logit_per_pixel() -> None:
    torch.manual_seed(0)
    logits = SegmenterNet(width=4)(torch.rand(2, 3, 32, 48) * 2 - 1)
    assert logits.shape == (2, 1, 32, 48)


def test_degrade_is_seeded_and_changes_images() -> None:
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    a = degrade(images, torch.Generator().manual_seed(0))
    b = degrade(images, torch.Generator().manual_seed(0))
    assert a.shape == images.shape
    torch.testing.assert_close(a, b)
    assert (a - images).abs().mean() > 0.01


def test_segmenter_refuses_frames_of_another_size() -> None:
    segmenter = RobotSegmenter(SegmenterNet(4), {"image_size": 32})
    assert segmenter.robot_masks(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, 32, 32)
    assert segmenter.robot_masks(np.zeros((32, 32, 3), np.uint8)).shape == (32, 32)
    with pytest.raises(ValueError, match="uint8"):
        segmenter.robot_masks(np.zeros((2, 64, 64, 3), np.uint8))


def _squares(n: int, seed: int) -> SegmentationData:
    """Frames with a bright square (the "robot") at a random place on a dark background."""
    rng = np.random.default_rng(seed)
    frames = np.full((n, 16, 16, 3), 40, np.uint8)
    masks = np.zeros((n, 16, 16), bool)
    for i, (r, c) in enumerate(rng.integers(0, 10, size=(n, 2))):
        frames[i, r : r + 6, c : c + 6] = 220
        masks[i, r : r + 6, c : c + 6] = True
    return SegmentationData(frames, masks, np.zeros_like(masks), np.arange(n))


def test_codec_reconstructions_join_training_and_scoring() -> None:
    config = SegmenterConfig(width=4, steps=60, batch_size=4, lr=1e-2)
    # a bright square on a dark background is easy: 60 steps find it (measured held-out IoU 0.94)
    _, plain_report = fit_segmenter(_squares(8, 1), _squares(4, 2), config)
    assert plain_report["heldout_iou"] > 0.7
    assert plain_report["heldout_iou_codec"] is None

    data = _squares(12, seed=0)
    assert codec_reconstructions(PixelCodec(), data.frames) is None  # the identity adds nothing
    torch.manual_seed(0)
    codec = FrameAutoencoder(latent_channels=4, downsample=4, block_channels=(8, 16, 16), norm_num_groups=4)
    data.reconstructions = codec_reconstructions(codec.eval(), data.frames)
    assert data.reconstructions.shape == data.frames.shape and data.reconstructions.dtype == np.uint8
    _, report = fit_segmenter(data.subset(np.arange(8)), data.subset(np.arange(8, 12)), config)
    assert 0.0 <= report["heldout_iou_codec"] <= 1.0  # (an untrained codec: only the plumbing is tested)


def test_load_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="segmenter.json"):
        RobotSegmenter.load(tmp_path)


def test_object_masks_match_the_simulator() -> None:
    data = collect_segmentation_frames(
        "panda", "push", 64, episodes=2, seed=5, every=5, policies=("scripted:noise=0",)
    )
    segmenter = RobotSegmenter(SegmenterNet(4), {"image_size": 64})
    # the red-cube detector finds exactly the rendered cube pixels in simulator frames (measured: 1.0)
    assert st_iou(segmenter.object_masks(data.frames), data.object_masks) > 0.95
    assert data.robot_masks.any(axis=(1, 2)).all()  # the arm is in view in every frame


@pytest.mark.slow
def test_fitted_segmenter_reaches_its_heldout_iou_and_round_trips(tmp_path: Path) -> None:
    segmenter = fit_for_evaluation("panda", "push", 64, config=QUICK)
    info = segmenter.info
    assert info["heldout_iou"] > CLEAN_FLOOR
    assert info["heldout_iou_degraded"] > DEGRADED_FLOOR
    assert info["train_frames"] > 0 and info["heldout_frames"] > 0

    # fresh episodes on yet other seeds agree with the reported held-out figure (measured 0.78 / 0.91 / 0.89 for
    # seeds 123 / 124 / 125 alone: one close viewpoint is harder)
    fresh = collect_segmentation_frames(
        "panda", "push", 64, episodes=3, seed=123, every=2, policies=("scripted:noise=0.3",)
    )
    assert st_iou(segmenter.robot_masks(fresh.frames), fresh.robot_masks) > CLEAN_FLOOR - 0.05

    loaded = RobotSegmenter.load(segmenter.save(tmp_path / "segmenter"))
    assert loaded.info["heldout_iou"] == info["heldout_iou"]
    np.testing.assert_array_equal(loaded.robot_masks(fresh.frames), segmenter.robot_masks(fresh.frames))
