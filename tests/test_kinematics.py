import numpy as np
import pybullet as p
import pytest
from pybullet_utils import bullet_client

from vap_env.description import list_robots, load_description
from vap_env.kinematics import Robot, load_body

ARMS = [n for n in list_robots() if load_description(n).kind == "arm"]


@pytest.fixture(scope="module", params=ARMS)
def robot(request):
    r = Robot(request.param)
    yield r
    r.close()


def test_fk_matches_pybullet_link_states(robot):
    """FK of a keypoint with zero offset is the link origin PyBullet reports, to 1e-6 m, for random states."""
    client = bullet_client.BulletClient(connection_mode=p.DIRECT)
    body = load_body(client, robot.desc)
    rng = np.random.default_rng(0)
    links = list(range(client.getNumJoints(body)))
    for _ in range(5):
        q = rng.uniform(robot.joint_lower, robot.joint_upper)
        g = rng.uniform()
        for j, v in zip(robot.arm_joint_ids, q, strict=True):
            client.resetJointState(body, j, v)
        for j, v in zip(robot.gripper_joint_ids, robot.desc.gripper.joint_positions(g), strict=True):
            client.resetJointState(body, j, v)
        expected = np.array([s[4] for s in client.getLinkStates(body, links, computeForwardKinematics=1)])
        got, _ = robot.link_frames(q, g, links)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        kp = robot.fk(q, g)
        assert kp.shape == (len(robot.graph.keypoint_names), 3)
        assert np.all(np.isfinite(kp))
    client.disconnect()


def test_ik_reaches_workspace_targets_within_1mm(robot):
    d = robot.desc
    errs = []
    for x in np.linspace(*d.workspace_x, 3):
        for y in np.linspace(*d.workspace_y, 3):
            for z in (0.03, 0.15, 0.3):
                q = robot.ik([x, y, z])
                assert np.all(q >= robot.joint_lower - 1e-9) and np.all(q <= robot.joint_upper + 1e-9)
                errs.append(np.linalg.norm(robot.ee_pose(q)[0] - [x, y, z]))
    errs = np.array(errs)
    # 1 mm everywhere except the odd kinematic corner; no more than 1 in 20 targets may miss it.
    assert np.median(errs) < 1e-4
    assert np.mean(errs <= 1e-3) >= 0.95, errs.max()


def test_ik_keeps_gripper_pointing_down(robot):
    q = robot.ik([np.mean(robot.desc.workspace_x), 0.05, 0.1])
    _, orn = robot.ee_pose(q)
    z_axis = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)[:, 2]
    assert z_axis[2] < -0.99


def test_gripper_openness_moves_finger_keypoints(robot):
    fingers = [b for b in robot.graph.bones if b.gripper]
    assert len(fingers) == 2
    a, b = fingers[0].end, fingers[1].end
    open_kp, closed_kp = robot.fk(robot.home, 1.0), robot.fk(robot.home, 0.0)
    assert np.linalg.norm(open_kp[a] - open_kp[b]) > np.linalg.norm(closed_kp[a] - closed_kp[b]) + 0.01


def test_bad_joint_vectors_are_rejected(robot):
    with pytest.raises(ValueError, match="joint positions"):
        robot.fk(np.zeros(robot.num_joints + 1))
    q = robot.home.copy()
    q[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        robot.fk(q)
    with pytest.raises(ValueError, match="position"):
        robot.ik([0.5, np.inf, 0.1])


def test_hand_has_no_kinematic_model():
    hands = [n for n in list_robots() if load_description(n).kind == "hand"]
    for name in hands:
        with pytest.raises(ValueError, match="no kinematic model"):
            Robot(name)


def test_two_robots_do_not_share_a_client():
    a, b = Robot("panda"), Robot("panda")
    assert a.client._client != b.client._client
    ka = a.fk(a.home)
    b.fk(b.home + 0.3)
    np.testing.assert_array_equal(a.fk(a.home), ka)
    a.close()
    a.close()  # closing twice is harmless
    b.close()


def test_ee_pose_is_remembered_but_never_stale():
    """``ee_pose`` reuses the pose of the state the model holds (IK's last check, then its caller's), hands out
    copies, and recomputes as soon as the state changes: it always equals a fresh model's answer."""
    robot, fresh = Robot("panda"), Robot("panda")
    q1, q2 = robot.home, robot.home + 0.1
    first = robot.ee_pose(q1)
    first[0][:], first[1][:] = 9.0, 9.0  # callers may write into what they get
    for q, gripper in ((q1, 1.0), (q1, 1.0), (q2, 1.0), (q1, 0.0), (q2, 0.0)):
        robot.pose(q, gripper)
        fresh.pose(q, gripper)
        for got, want in zip(robot.ee_pose(q), fresh.ee_pose(q), strict=True):
            np.testing.assert_array_equal(got, want)
    q = robot.ik([0.5, 0.1, 0.2], q_init=q2)
    np.testing.assert_array_equal(robot.ee_pose(q)[0], fresh.ee_pose(q)[0])
    assert np.linalg.norm(robot.ee_pose(q)[0] - [0.5, 0.1, 0.2]) < 1e-3
    robot.close()
    fresh.close()
