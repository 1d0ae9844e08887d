"""The Gazebo artefacts and the MuJoCo model describe the same cell, and arm 1 mirrors arm 0.

SDF data are what libsdformat resolved (poses, axes, limits, cameras); URDF data are what
urdf_parser_py parsed; the MuJoCo side is the compiled MJCF. Forward kinematics of the SDF and
URDF chains (product of exponentials / origin-axis chain) is compared with MuJoCo's for random q.
"""

from __future__ import annotations

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from mirror_arm_sim.cell import ARM_JOINTS, default_cell, joint_mirror_signs  # noqa: E402
from mirror_arm_sim.gazebo import parsers  # noqa: E402
from mirror_arm_sim.gazebo.generate import generate  # noqa: E402
from mirror_arm_sim.gazebo.sdf import DEFAULT_IMAGE_SIZE  # noqa: E402
from mirror_arm_sim.gazebo.urdf import matrix_from_rpy  # noqa: E402
from mirror_arm_sim.mujoco_model import build_model  # noqa: E402

M = np.diag([-1.0, 1.0, 1.0])
MJ_JOINT = {j: j for j in ARM_JOINTS[:6]} | {"gripper": "finger_left"}


def quat_mat(q) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def rot(axis, angle) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.fixture(scope="module")
def cell():
    return default_cell()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("gz"))


@pytest.fixture(scope="module")
def sdf(files):
    try:
        rep = parsers.check_sdf(files["sdf"])
    except parsers.ParserUnavailable as exc:
        pytest.skip(str(exc))
    assert rep.errors == []
    return rep


@pytest.fixture(scope="module")
def mj():
    m = build_model(default_cell())
    return m, mujoco.MjData(m)


def mj_set(m, d, q: dict[str, float]):
    d.qpos[:] = m.qpos0
    for name, v in q.items():
        d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)]] = v
    mujoco.mj_kinematics(m, d)
    mujoco.mj_camlight(m, d)


def sdf_fk(model: dict, link: str, q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """World pose of `link` from libsdformat's resolved joints: product of exponentials."""
    links = {lk["name"]: lk for lk in model["links"]}
    by_child = {j["child"]: j for j in model["joints"]}
    chain, cur = [], link
    while cur in by_child:
        chain.append(by_child[cur])
        cur = by_child[cur]["parent"]
    r0 = quat_mat(links[link]["pose"]["quat"])
    p0 = np.array(links[link]["pose"]["pos"])
    rr, pp = np.eye(3), np.zeros(3)
    for j in reversed(chain):  # root first
        v = q.get(j["name"], 0.0)
        if j["type"] == "revolute":
            r = rot(j["axis"], v)
            c = np.array(j["pose"]["pos"])
            step_r, step_p = r, c - r @ c
        elif j["type"] == "prismatic":
            step_r, step_p = np.eye(3), np.asarray(j["axis"]) * v
        else:
            continue
        pp = rr @ step_p + pp
        rr = rr @ step_r
    return rr @ r0, rr @ p0 + pp


def urdf_fk(robot, link: str, q: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    by_child = {j.child: j for j in robot.joints}
    chain, cur = [], link
    while cur in by_child:
        chain.append(by_child[cur])
        cur = by_child[cur].parent
    r, p = np.eye(3), np.zeros(3)
    for j in reversed(chain):
        o = j.origin
        p = p + r @ np.asarray(o.xyz)
        r = r @ matrix_from_rpy(*o.rpy)
        v = q.get(j.mimic.joint if j.mimic else j.name, 0.0)
        if j.type == "revolute":
            r = r @ rot(j.axis, v)
        elif j.type == "prismatic":
            p = p + r @ (np.asarray(j.axis) * v)
    return r, p


def random_q(cell, rng, k: int) -> dict[str, float]:
    lims = cell.arm_spec(k).limits
    return {f"arm{k}_{j}": rng.uniform(*lims[i]) for i, j in enumerate(ARM_JOINTS)}


def to_mj(q: dict[str, float]) -> dict[str, float]:
    out = {}
    for name, v in q.items():
        k, j = name[3], name[5:]
        out[f"arm{k}/{MJ_JOINT[j]}"] = v
        if j == "gripper":
            out[f"arm{k}/finger_right"] = v
    return out


def test_base_poses_links_axes_limits(cell, sdf, mj):
    m, d = mj
    mj_set(m, d, {})
    model = sdf.model("mirror_arm_cell")
    links = {lk["name"]: lk for lk in model["links"]}
    joints = {j["name"]: j for j in model["joints"]}
    for k in (0, 1):
        body_names = ["base"] + [lk.name for lk in cell.arm.links] + ["finger_left", "finger_right"]
        for b in body_names:
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"arm{k}/{b}")
            np.testing.assert_allclose(links[f"arm{k}_{b}"]["pose"]["pos"], d.xpos[bid], atol=1e-9, err_msg=b)
            r_sdf = quat_mat(links[f"arm{k}_{b}"]["pose"]["quat"])
            np.testing.assert_allclose(r_sdf, d.xmat[bid].reshape(3, 3), atol=1e-9)
        for j in ARM_JOINTS:
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"arm{k}/{MJ_JOINT[j]}")
            sj = joints[f"arm{k}_{j}"]
            np.testing.assert_allclose(sj["pose"]["pos"], d.xanchor[jid], atol=1e-9, err_msg=j)
            np.testing.assert_allclose(sj["axis"], d.xaxis[jid], atol=1e-9, err_msg=j)
            np.testing.assert_allclose([sj["lower"], sj["upper"]], m.jnt_range[jid], atol=1e-12, err_msg=j)
            hinge = m.jnt_type[jid] == mujoco.mjtJoint.mjJNT_HINGE
            assert sj["type"] == ("revolute" if hinge else "prismatic")
        # masses of the moving links
        for lk in cell.arm.links:
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"arm{k}/{lk.name}")
            assert links[f"arm{k}_{lk.name}"]["mass"] == pytest.approx(m.body_mass[bid])


def test_forward_kinematics_agree_and_mirror(cell, sdf, mj, files):
    m, d = mj
    robot = parsers.parse_urdf_py(files["urdf"].read_text())
    model = sdf.model("mirror_arm_cell")
    signs = np.array(joint_mirror_signs(cell.arm))
    rng = np.random.default_rng(0)
    for _ in range(20):
        q0 = random_q(cell, rng, 0)
        q1 = {f"arm1_{j}": signs[i] * q0[f"arm0_{j}"] for i, j in enumerate(ARM_JOINTS)}
        q = q0 | q1
        # the SDF has no mimic: Gazebo's gripper controller sends the same target to both slides
        q |= {f"arm{k}_finger_right_slide": q[f"arm{k}_gripper"] for k in (0, 1)}
        mj_set(m, d, to_mj({n: v for n, v in q.items() if not n.endswith("_slide")}))
        for k in (0, 1):
            for b in ("gripper_link", "finger_left", "finger_right"):
                bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"arm{k}/{b}")
                r_s, p_s = sdf_fk(model, f"arm{k}_{b}", q)
                r_u, p_u = urdf_fk(robot, f"arm{k}_{b}", q)
                np.testing.assert_allclose(p_s, d.xpos[bid], atol=1e-9)
                np.testing.assert_allclose(r_s, d.xmat[bid].reshape(3, 3), atol=1e-9)
                np.testing.assert_allclose(p_u, d.xpos[bid], atol=1e-9)
                np.testing.assert_allclose(r_u, d.xmat[bid].reshape(3, 3), atol=1e-9)
        # arm 1 with the mirrored joints is the reflection of arm 0, in the SDF and the URDF
        for b in ("gripper_link", "finger_left", "finger_right"):
            for src, desc in (("sdf", model), ("urdf", robot)):
                fk = sdf_fk if src == "sdf" else urdf_fk
                r0, p0 = fk(desc, f"arm0_{b}", q)
                r1, p1 = fk(desc, f"arm1_{b}", q)
                np.testing.assert_allclose(p1, M @ p0, atol=1e-9, err_msg=src)
                np.testing.assert_allclose(r1, M @ r0 @ M, atol=1e-9, err_msg=src)
        tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "arm1/tcp")
        _, p_tcp = urdf_fk(robot, "arm1_tcp", q)
        np.testing.assert_allclose(p_tcp, d.site_xpos[tcp], atol=1e-9)


def _check_camera(sensor: dict, m, d, cam_name: str):
    cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam_name)
    np.testing.assert_allclose(sensor["pose"]["pos"], d.cam_xpos[cid], atol=1e-9)
    r_gz = quat_mat(sensor["pose"]["quat"])
    r_mj = d.cam_xmat[cid].reshape(3, 3)
    # gz camera: +x forward, +y image left, +z image up; MuJoCo: +x right, +y up, looks along -z
    np.testing.assert_allclose(r_gz[:, 0], -r_mj[:, 2], atol=1e-6)
    np.testing.assert_allclose(r_gz[:, 1], -r_mj[:, 0], atol=1e-6)
    np.testing.assert_allclose(r_gz[:, 2], r_mj[:, 1], atol=1e-6)
    cam = sensor["camera"]
    h, w = DEFAULT_IMAGE_SIZE
    assert (cam["height"], cam["width"]) == (h, w)
    fovy = 2 * np.degrees(np.arctan(np.tan(cam["horizontal_fov"] / 2) * cam["height"] / cam["width"]))
    assert fovy == pytest.approx(m.cam_fovy[cid], abs=1e-6)
    assert cam["format"] == "RGB_INT8"


def test_cameras_agree(sdf, mj, cell):
    m, d = mj
    mj_set(m, d, {})
    top = sdf.model("top_camera")["links"][0]["sensors"][0]
    _check_camera(top, m, d, "top")
    assert abs(top["pose"]["pos"][0]) < 1e-12  # on the mirror plane
    links = {lk["name"]: lk for lk in sdf.model("mirror_arm_cell")["links"]}
    sensors = {s["name"]: s for lk in links.values() for s in lk["sensors"]}
    for k in (0, 1):
        _check_camera(sensors[f"arm{k}_wrist"], m, d, f"arm{k}/wrist")
    # the wrist cameras are each other's mirror image: position reflected, view flipped
    p0, p1 = (np.array(sensors[f"arm{k}_wrist"]["pose"]["pos"]) for k in (0, 1))
    np.testing.assert_allclose(p1, M @ p0, atol=1e-9)


def test_objects_and_table(sdf, cell):
    table = sdf.model("table")
    assert table["static"]
    assert table["links"][0]["pose"]["pos"][2] == pytest.approx(cell.table.height - cell.table.half[2])
    cube = sdf.model("cube")
    assert not cube["static"] and cube["links"][0]["mass"] == pytest.approx(cell.cube.mass)
    assert "gz::sim::systems::PosePublisher" in cube["plugins"]
    assert "gz::sim::systems::PosePublisher" in sdf.model("target")["plugins"]


def test_success_function_matches_env(cell):
    from mirror_arm_sim.env import MirrorArmEnv
    from mirror_arm_sim.gazebo.success import cube_on_target

    env = MirrorArmEnv(cameras=("top",))
    try:
        env.reset(seed=0, options={"arm": 0})
        tgt = env.target_pos()
        z = cell.table.height + cell.cube.half
        for dx, expect in ((0.0, True), (cell.target.radius * 0.9, True), (cell.target.radius * 1.1, False)):
            env.set_object_poses(cube_xy=(tgt[0] + dx, tgt[1]), cube_yaw=0.0, target_xy=tuple(tgt[:2]),
                                 cube_z=z)
            mujoco.mj_forward(env.model, env.data)
            pos, _ = env.cube_pose()
            assert env.is_success() == expect
            assert cube_on_target(cell, pos, 0.0, env.target_pos(), released=env.cube_released()) == expect
        assert not cube_on_target(cell, pos * [1, 1, 0] + [0, 0, z + 0.05], 0.0, env.target_pos())
    finally:
        env.close()
