import pytest

from vap_env.description import list_robots, load_description


def test_shipped_robots_parse():
    names = list_robots()
    assert {"panda", "kuka_iiwa", "xarm6"} <= set(names)
    for name in names:
        d = load_description(name)
        assert d.name == name
        assert len(d.graph.bones) > 0
        if d.kind == "arm":
            assert len(d.home) == d.num_arm_joints and d.gripper is not None
            assert d.model_path().endswith((".urdf", ".sdf"))


def test_unknown_robot_lists_known_ones():
    with pytest.raises(ValueError, match="unknown robot 'r2d2'.*panda"):
        load_description("r2d2")


def test_gripper_openness_round_trip():
    g = load_description("panda").gripper
    for o in (0.0, 0.3, 1.0):
        assert g.openness(g.joint_positions(o)) == pytest.approx(o)


def test_adding_a_robot_is_adding_a_file(tmp_path):
    src = load_description("panda").source.read_text()
    path = tmp_path / "my_panda.toml"
    path.write_text(src.replace('name = "panda"', 'name = "my_panda"'))
    d = load_description(path)
    assert d.name == "my_panda" and d.model_path().endswith("panda.urdf")


def test_invalid_file_names_the_problem(tmp_path):
    src = load_description("panda").source.read_text()
    path = tmp_path / "bad.toml"
    path.write_text(src.replace('to = "shoulder"', 'to = "nowhere"'))
    with pytest.raises(ValueError, match="nowhere"):
        load_description(path)
    path.write_text("kind = [")
    with pytest.raises(ValueError, match="bad.toml"):
        load_description(path)
