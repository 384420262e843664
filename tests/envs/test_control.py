"""vap_env.control: validation, clipping, ee_delta / joint_delta commands, workspace, interpolation."""

from __future__ import annotations

import numpy as np
import pytest

from vap_env.control import ActionController, check_action, gripper_command, workspace_box
from vap_env.kinematics import Robot


@pytest.fixture(scope="module")
def robot() -> Robot:
    r = Robot("panda")
    yield r
    r.close()


def test_check_action_validates_and_clips() -> None:
    np.testing.assert_array_equal(check_action([0.5, -3.0, 2.0, 1.0], (4,)), [0.5, -1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"action must have shape \(4,\) \(ee_delta\), got \(5,\)"):
        check_action(np.zeros(5), (4,), "ee_delta")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        check_action(np.zeros((1, 4)), (4,))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="finite"):
            check_action([0.0, bad, 0.0, 0.0], (4,))


def test_ee_delta_moves_the_tcp_target_and_the_gripper(robot: Robot) -> None:
    controller = ActionController(robot, "ee_delta")
    start = controller.reset(robot.home, 1.0)
    centre = 0.5 * (controller.workspace[0] + controller.workspace[1])
    direction = np.sign(centre - start.ee_position)  # towards the inside of the box on every axis
    cmd = controller.step(np.append(direction, -1.0))
    np.testing.assert_allclose(cmd.ee_position, start.ee_position + 0.02 * direction, atol=1e-9)
    np.testing.assert_allclose(robot.ee_pose(cmd.joints)[0], cmd.ee_position, atol=1e-3)  # IK reached it
    assert cmd.gripper == 0.0 and gripper_command(0.0) == 0.5
    # out of range is clipped: 5 moves as far as 1
    clipped = controller.step(np.append(5 * direction, 1.0))
    np.testing.assert_allclose(clipped.ee_position - cmd.ee_position, 0.02 * direction, atol=1e-9)
    assert clipped.gripper == 1.0


def test_ee_target_stays_in_the_workspace(robot: Robot) -> None:
    controller = ActionController(robot, "ee_delta")
    controller.reset(robot.home, 1.0)
    for _ in range(40):
        cmd = controller.step(np.array([0.0, 0.0, -1.0, 1.0]))
    low, high = controller.workspace
    assert cmd.ee_position[2] == pytest.approx(low[2])
    assert np.all(cmd.ee_position >= low - 1e-9) and np.all(cmd.ee_position <= high + 1e-9)
    assert 0.0 < low[2] < 0.05  # fingers just above the table


def test_joint_delta_respects_limits(robot: Robot) -> None:
    controller = ActionController(robot, "joint_delta", max_joint_step=0.05)
    assert controller.action_space.shape == (robot.num_joints + 1,)
    start = controller.reset(robot.home, 0.5)
    action = np.zeros(robot.num_joints + 1)
    action[0] = 1.0
    cmd = controller.step(action)
    assert cmd.joints[0] == pytest.approx(start.joints[0] + 0.05)
    np.testing.assert_allclose(cmd.ee_position, robot.ee_pose(cmd.joints)[0])
    for _ in range(200):
        cmd = controller.step(action)
    assert cmd.joints[0] == pytest.approx(robot.joint_upper[0])


def test_controllers_sharing_a_robot_do_not_interfere(robot: Robot) -> None:
    """Each controller poses the kinematic model itself, so interleaving two gives what each gives alone."""
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (6, 4))
    alone = ActionController(robot)
    alone.reset(robot.home, 1.0)
    expected = [alone.step(a).joints for a in actions]
    a, b = ActionController(robot), ActionController(robot)
    a.reset(robot.home, 1.0)
    b.reset(robot.home, 0.0)
    for action, joints in zip(actions, expected, strict=True):
        b.step(-action)
        np.testing.assert_array_equal(a.step(action).joints, joints)


def test_interpolation_and_reset_validation(robot: Robot) -> None:
    controller = ActionController(robot)
    start = controller.reset(robot.home, 1.0)
    end = controller.step(np.array([1.0, 0.0, 0.0, -1.0]))
    path = controller.interpolate(start, end, 4)
    assert len(path) == 4 and path[-1] is end
    np.testing.assert_allclose(path[1].joints, start.joints + 0.5 * (end.joints - start.joints))
    assert path[1].gripper == pytest.approx(0.5)
    assert controller.interpolate(start, end, 1) == [end]
    with pytest.raises(ValueError, match="7 finite joint positions"):
        controller.reset(np.zeros(6), 1.0)
    with pytest.raises(ValueError, match=r"openness in \[0, 1\]"):
        controller.reset(robot.home, 2.0)
    with pytest.raises(ValueError, match="ee_delta, joint_delta"):
        ActionController(robot, "torque")
    low, high = workspace_box(robot)
    np.testing.assert_allclose(low, controller.workspace[0])
    np.testing.assert_allclose(high, controller.workspace[1])
