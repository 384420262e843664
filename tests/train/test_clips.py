import numpy as np
import pytest
import torch

from tests.test_data import make_episode
from vap_env.kinematics import Robot
from vap_env.train.clips import ClipConfig, ClipDataset, interaction_masks


def _episode(t=6):
    ep = make_episode(t=t, h=32, w=32)
    robot = Robot("panda")
    # Commanded states the robot can take: the home pose moved a little each frame.
    ep.commanded_joints = (robot.home + np.linspace(0, 0.3, t)[:, None]).astype(np.float32)
    ep.camera = ep.camera.__class__.from_spec(robot.desc.camera, 32, 32)
    robot.close()
    return ep


def test_clip_shapes_ranges_and_windows():
    ep = _episode(t=6)
    ds = ClipDataset([ep, ep], ClipConfig(prompt="skeleton", context_frames=2, target_frames=1))
    # the windows inside each episode, and one whose first context frame is before it (frame 0 repeated)
    assert len(ds) == 2 * (6 - 3 + 1 + 1)
    item = ds[2]
    assert item["context"].shape == (2, 3, 32, 32) and item["target"].shape == (1, 3, 32, 32)
    assert item["prompts"].shape == (3, 3, 32, 32)
    assert item["context"].min() >= -1 and item["context"].max() <= 1
    # The target is frame start + context_frames of the episode, exactly.
    expected = torch.from_numpy(ep.frames[1 + 2]).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(item["target"][0], expected)
    # Skeleton prompts draw something; the weight map amplifies only the gripper region.
    assert (item["prompts"] > -1).any()
    w = item["weight"]
    assert set(torch.unique(w).tolist()) == {1.0, 3.0}
    assert 0 < (w > 1).float().mean() < 0.2


def test_state_prompt_is_the_commanded_vector():
    ep = _episode()
    item = ClipDataset([ep], ClipConfig(prompt="state"))[0]
    assert item["prompts"].shape == (2, 8)
    np.testing.assert_allclose(item["prompts"][0, :7].numpy(), ep.commanded_joints[0], rtol=1e-6)


def test_interaction_mask_follows_the_gripper():
    ep = _episode()
    robot = Robot("panda")
    masks = interaction_masks(ep, robot, 0.08)
    uv, _ = ep.camera.project(robot.fk(ep.commanded_joints[0], ep.commanded_gripper[0]))
    u, v = np.round(uv[-1]).astype(int)
    assert masks[0, v, u]
    robot.close()


def test_bad_clip_config():
    with pytest.raises(ValueError, match="prompt"):
        ClipConfig(prompt="text")
    with pytest.raises(ValueError, match="interaction_weight"):
        ClipConfig(interaction_weight=0.5)
    with pytest.raises(ValueError, match="shorter"):
        ClipDataset([_episode(t=1)], ClipConfig(context_frames=2, target_frames=1))
    with pytest.raises(ValueError, match="object_weight"):
        ClipConfig(object_weight=-1.0)


def test_first_window_repeats_the_first_frame_as_the_env_does_at_reset():
    ep = _episode(t=6)
    ds = ClipDataset([ep], ClipConfig(prompt="skeleton", context_frames=3, target_frames=1))
    assert ds.index[:3] == [(0, -2), (0, -1), (0, 0)]
    first = ds[0]  # context: frames 0, 0, 0; target: frame 1
    frame = lambda t: torch.from_numpy(ep.frames[t]).permute(2, 0, 1).float() / 127.5 - 1  # noqa: E731
    for k in range(3):
        torch.testing.assert_close(first["context"][k], frame(0))
        torch.testing.assert_close(first["prompts"][k], first["prompts"][2])
    torch.testing.assert_close(first["target"][0], frame(1))
    assert not torch.equal(first["prompts"][3], first["prompts"][2])  # the arm moved
    torch.testing.assert_close(ds[1]["context"][1], frame(0))
    torch.testing.assert_close(ds[1]["context"][2], frame(1))


def test_object_weight_covers_where_the_object_is_and_where_it_was():
    ep = _episode(t=4)
    ep.object_mask[:] = False
    ep.object_mask[0, 5:8, 5:8] = True  # the cube at rest in frame 0 ...
    ep.object_mask[1, 5:8, 20:23] = True  # ... pushed 15 px right in frame 1
    config = ClipConfig(prompt="skeleton", interaction_weight=1.0, object_weight=10.0, object_dilation=1)
    weight = ClipDataset([ep], config)[0]["weight"][0, 0]  # target frame 1, context frame 0
    assert weight[6, 6] == weight[6, 21] == 11.0  # the vacated place and the new one
    assert weight[4, 4] == weight[8, 23] == 11.0  # dilated by a pixel
    assert weight[3, 3] == weight[6, 14] == 1.0
    assert int((weight > 1).sum()) == 2 * 5 * 5
    off = ClipDataset([ep], ClipConfig(prompt="skeleton", interaction_weight=1.0))[0]["weight"]
    assert torch.equal(off, torch.ones_like(off))


def test_a_warped_context_ends_with_the_newest_frame_moved_to_the_targets_state():
    from vap_env.prompts.warp import warp_to_pose

    ep = _episode(t=6)
    config = ClipConfig(prompt="hull", context_frames=2, target_frames=1, warped_context=True)
    plain = ClipDataset([ep], ClipConfig(prompt="hull", context_frames=2, target_frames=1))
    ds = ClipDataset([ep], config)
    robot = Robot("panda")
    for i in (0, 3):  # a window starting before the episode (frame 0 repeated) and one inside it
        item, before = ds[i], plain[i]
        last = int(ds.frame_indices(ds.index[i][1])[1])  # the newest context frame
        warped = warp_to_pose(
            ep.frames[last],
            robot,
            ep.camera,
            (ep.commanded_joints[last], ep.commanded_gripper[last]),
            (ep.commanded_joints[last + 1], ep.commanded_gripper[last + 1]),
        )
        # the oldest context frame out, the newest one first, its warp last; target and prompts unchanged
        torch.testing.assert_close(item["context"][0], before["context"][1])
        torch.testing.assert_close(item["context"][1], ClipDataset.to_tensor(warped[None])[0])
        assert not torch.equal(item["context"][1], before["context"][1])  # the robot did move
        torch.testing.assert_close(item["target"], before["target"])
        torch.testing.assert_close(item["prompts"], before["prompts"])
    robot.close()
    with pytest.raises(ValueError, match="rollout"):
        ClipConfig(prompt="hull", context_frames=2, warped_context=True, rollout_frames=2)


def test_clips_in_which_the_object_moves_are_told_apart():
    ep = _episode(t=6)
    ep.object_poses = np.zeros((6, 7), np.float32)
    ep.object_poses[4:, 0] = 0.003  # pushed 3 mm between frames 3 and 4, then at rest; z does not count
    ep.object_poses[:, 2] = np.arange(6) * 0.01
    ds = ClipDataset([ep], ClipConfig(prompt="skeleton", context_frames=2, target_frames=1))
    # clips start at -1..3: the target is frame start + 2, the frame before it start + 1
    targets = [s + 2 for _, s in ds.index]
    np.testing.assert_array_equal(ds.object_moves(), [t == 4 for t in targets])
    assert not ds.object_moves(threshold=0.004).any()
