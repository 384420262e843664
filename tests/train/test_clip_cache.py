"""The disk cache of rendered clips: the same arrays as rendering, keyed by everything they come from."""

from pathlib import Path

import numpy as np
import pytest

from tests.train.test_clips import _episode
from vap_env.train import clip_cache
from vap_env.train.clip_cache import CACHE_ENV, ClipCache, default_cache_dir, episode_key
from vap_env.train.clips import ClipConfig, ClipDataset

WARPED = ClipConfig(prompt="hull", context_frames=2, warped_context=True)


def test_a_second_dataset_reads_what_the_first_rendered(tmp_path: Path) -> None:
    episodes = [_episode(t=6), _episode(t=5)]
    episodes[1].commanded_joints = episodes[1].commanded_joints[::-1].copy()  # another episode
    rendered = ClipDataset(episodes, WARPED)
    cache = ClipCache(tmp_path)
    first = ClipDataset(episodes, WARPED, cache=cache)
    assert (cache.hits, cache.misses) == (0, 2)
    assert len(list(tmp_path.rglob("*.npz"))) == 2 and not list(tmp_path.rglob("*.tmp"))
    again = ClipCache(tmp_path)
    second = ClipDataset(episodes, WARPED, cache=again)
    assert (again.hits, again.misses) == (2, 0)
    for dataset in (first, second):
        for e in range(2):
            assert np.array_equal(dataset.prompts[e], rendered.prompts[e])
            assert np.array_equal(dataset.warped[e], rendered.warped[e])
            assert dataset.warped[e].dtype == np.uint8 and dataset.warped[e].shape == (
                len(episodes[e].frames) - 1,
                32,
                32,
                3,
            )
    # the warped frames drew something: the cache holds real renders, not empty arrays
    assert (second.warped[0] != episodes[0].frames[:-1]).any()


def test_a_plain_context_needs_only_prompts_and_a_warped_one_does_not_take_them_for_its_own(
    tmp_path: Path,
) -> None:
    ep = _episode()
    cache = ClipCache(tmp_path)
    ClipDataset([ep], ClipConfig(prompt="hull", context_frames=2), cache=cache)
    ClipDataset([ep], WARPED, cache=cache)  # another key: rendered, not read without its warped frames
    ClipDataset([ep], ClipConfig(prompt="skeleton"), cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)


def test_the_key_changes_with_the_frames_the_commands_the_camera_the_kind_and_the_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ep = _episode()
    key = episode_key(ep, "hull", "robot")
    assert episode_key(_episode(), "hull", "robot") == key  # the same content: the same key
    changed = []
    for edit in (
        lambda e: e.frames.__setitem__((2, 5, 5, 0), e.frames[2, 5, 5, 0] ^ 1),  # one bit of one pixel
        lambda e: e.commanded_joints.__setitem__((3, 1), e.commanded_joints[3, 1] + 1e-4),
        lambda e: e.commanded_gripper.__setitem__(0, 0.5),
        lambda e: e.camera.extrinsics.__setitem__((0, 3), e.camera.extrinsics[0, 3] + 1e-3),
        lambda e: e.object_poses.__setitem__((1, 0), e.object_poses[1, 0] + 1e-4),
        lambda e: e.object_mask.__setitem__((0, 3, 3), ~e.object_mask[0, 3, 3]),
    ):
        other = _episode()
        edit(other)
        changed.append(episode_key(other, "hull", "robot"))
    changed += [episode_key(ep, "skeleton", "robot"), episode_key(ep, "hull", "none")]
    changed.append(episode_key(ep, "hull", "robot+object"))
    monkeypatch.setattr(clip_cache, "_code_fingerprint", lambda: "edited rendering code")
    changed.append(episode_key(ep, "hull", "robot"))
    assert len(set(changed)) == len(changed) and key not in changed


def test_a_damaged_file_is_rendered_again(tmp_path: Path) -> None:
    ep = _episode()
    cache = ClipCache(tmp_path)
    expected = ClipDataset([ep], WARPED, cache=cache).warped[0]
    (stored,) = tmp_path.rglob("*.npz")
    stored.write_bytes(stored.read_bytes()[:100])  # a truncated file (a full disk, say)
    again = ClipCache(tmp_path)
    assert np.array_equal(ClipDataset([ep], WARPED, cache=again).warped[0], expected)
    assert again.misses == 1
    assert np.array_equal(
        ClipDataset([ep], WARPED, cache=ClipCache(tmp_path)).warped[0], expected
    )  # rewritten


def test_the_cache_lives_where_the_environment_says(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert default_cache_dir() == tmp_path / "clips" and ClipCache().root == tmp_path / "clips"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "vap-env" / "clips"
