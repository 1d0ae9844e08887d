"""A simulator-neutral kinematic tree of the cell, read from `cell.py` (numpy only).

The URDF and SDF writers both walk this tree, so the cell is traversed in one place. Names
follow the MuJoCo bridge's ROS naming (`arm<k>_<joint>`, see `act_policy_node.inputs`):

    links   world, arm{k}_base, arm{k}_<link name>, arm{k}_finger_left, arm{k}_finger_right,
            arm{k}_tcp (massless frame), arm{k}_wrist_camera (massless frame, if the cell has one)
    joints  arm{k}_base_fixed (world -> base, fixed), arm{k}_<ARM_JOINTS[0..5]>,
            arm{k}_gripper (left finger slide, the gripper value), arm{k}_finger_right_slide (the right
            finger slide; follows arm{k}_gripper: a mimic joint in the URDF, the same position
            command in Gazebo, like MuJoCo's two position actuators), arm{k}_tcp_fixed, ...

Every body frame is world-aligned (cell.py's convention), so each joint origin is a pure
translation and each axis is expressed in both its parent's and its child's frame. Arm 1 comes
from `CellSpec.arm_spec(1)` (the reflection): positions with x negated, identical axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cell import ARM_JOINTS, BoxGeom, CapsuleGeom, CellSpec, mirror_vec, ros_joint_name
from ..mujoco_model import FINGERS, _inertia, _mirror_xyaxes

# MuJoCo's <position> actuator on each finger slide and the gripper command both act on the
# half-gap; the right finger's slide axis is -y (as in mujoco_model.py).
FINGER_SIGNS = {FINGERS[0]: 1.0, FINGERS[1]: -1.0}


@dataclass
class Geom:
    """A link's shape: box (full sizes) or capsule/cylinder (radius, length along its z), pose in the
    link frame, colour, whether it collides, optional friction."""

    kind: str                 # "box" | "capsule" | "cylinder"
    pos: np.ndarray           # centre in the link frame
    rot: np.ndarray           # 3x3, geometry frame in the link frame (capsule axis = its z)
    size: tuple               # box: full sizes (x, y, z); capsule/cylinder: (radius, length)
    rgba: tuple
    collide: bool = True
    friction: float | None = None


@dataclass
class Link:
    """A body: mass (kg; 0 = massless frame), centre of mass and diagonal inertia, its geoms."""

    name: str
    mass: float = 0.0          # 0 = massless frame (URDF: no <inertial>; SDF: merged, see sdf.py)
    com: tuple = (0.0, 0.0, 0.0)
    inertia: tuple = (0.0, 0.0, 0.0)  # diagonal
    geoms: list[Geom] = field(default_factory=list)
    gravity: bool = True       # False: MuJoCo's gravcomp="1" (gravity compensated)


@dataclass
class Joint:
    """A joint from `parent` to `child`: type, origin in the parent frame, axis, limits, effort,
    velocity, damping and position gain; `mimic` names the joint it copies."""

    name: str
    type: str                  # "revolute" | "prismatic" | "fixed"
    parent: str
    child: str
    origin: np.ndarray         # child frame origin in the parent frame (frames world-aligned)
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))  # child frame in parent (fixed only)
    axis: tuple = (0.0, 0.0, 1.0)
    limit: tuple = (0.0, 0.0)
    effort: float = 0.0
    velocity: float = 10.0
    damping: float = 0.0
    kp: float = 0.0
    arm: int | None = None
    mimic: str | None = None   # this joint copies `mimic` (multiplier 1)
    mj_name: str | None = None  # the MuJoCo joint it corresponds to


@dataclass
class Camera:
    """A camera attached to `link`: position and MuJoCo xyaxes in that frame, vertical fov (deg)."""

    name: str                  # ROS-facing camera name ("top", or "wrist" on arm k)
    mj_name: str               # MuJoCo camera name ("top", "arm{k}/wrist")
    link: str                  # link it is attached to ("world" for fixed cameras)
    pos: np.ndarray            # in the link frame
    xyaxes: tuple              # MuJoCo convention: image right, image up (link frame)
    fovy_deg: float
    arm: int | None = None

    @property
    def rot_mujoco(self) -> np.ndarray:
        """Columns: image right, image up, backwards (MuJoCo cameras look along -z)."""
        x = np.asarray(self.xyaxes[:3], float)
        y = np.asarray(self.xyaxes[3:], float)
        x = x / np.linalg.norm(x)
        y = y - x * (x @ y)
        y = y / np.linalg.norm(y)
        return np.column_stack([x, y, np.cross(x, y)])

    @property
    def rot_gazebo(self) -> np.ndarray:
        """Columns: forward (+x), image left (+y), image up (+z): the gz/SDF camera convention."""
        r = self.rot_mujoco
        return np.column_stack([-r[:, 2], -r[:, 0], r[:, 1]])

    @property
    def rot_optical(self) -> np.ndarray:
        """Columns: image right (+x), image down (+y), forward (+z): REP-103 optical frame."""
        r = self.rot_mujoco
        return np.column_stack([r[:, 0], -r[:, 1], -r[:, 2]])

    def hfov(self, width: int, height: int) -> float:
        """Horizontal field of view (rad) that gives vertical fov `fovy_deg` at width x height."""
        return 2.0 * np.arctan(np.tan(np.radians(self.fovy_deg) / 2.0) * width / height)


@dataclass
class CellTree:
    """The whole cell as links, joints and cameras (what the URDF and SDF writers walk)."""

    links: dict[str, Link]
    joints: list[Joint]
    cameras: list[Camera]

    def joint(self, name: str) -> Joint:
        """The joint called `name` (KeyError if absent)."""
        for j in self.joints:
            if j.name == name:
                return j
        raise KeyError(name)

    def arm_joint_names(self, k: int) -> list[str]:
        """The 7 controlled joints of arm k in ARM_JOINTS order (the ROS names)."""
        return [ros_joint_name(k, j) for j in ARM_JOINTS]

    def chain(self, link: str) -> list[Joint]:
        """Joints from the world to `link`, root first."""
        by_child = {j.child: j for j in self.joints}
        out = []
        while link in by_child:
            j = by_child[link]
            out.append(j)
            link = j.parent
        return out[::-1]

    def fk(self, link: str, q: dict[str, float]) -> np.ndarray:
        """4x4 world pose of `link` for joint positions `q` (name -> value; missing = 0)."""
        t = np.eye(4)
        for j in self.chain(link):
            step = np.eye(4)
            step[:3, :3] = j.rot
            step[:3, 3] = j.origin
            v = q.get(j.mimic or j.name, 0.0)
            if j.type == "revolute":
                step[:3, :3] = j.rot @ axis_angle(np.asarray(j.axis, float), v)
            elif j.type == "prismatic":
                step[:3, 3] = j.origin + j.rot @ (np.asarray(j.axis, float) * v)
            t = t @ step
        return t


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix (3, 3) of `angle` rad about `axis` (Rodrigues)."""
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def rot_z_to(d: np.ndarray) -> np.ndarray:
    """A rotation whose z column is the unit vector along `d`."""
    z = d / np.linalg.norm(d)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def _geom(g) -> Geom:
    if isinstance(g, BoxGeom):
        return Geom("box", np.asarray(g.pos, float), np.eye(3), tuple(2 * h for h in g.half), g.rgba)
    if isinstance(g, CapsuleGeom):
        p0, p1 = np.asarray(g.p0, float), np.asarray(g.p1, float)
        return Geom("capsule", (p0 + p1) / 2, rot_z_to(p1 - p0), (g.radius, float(np.linalg.norm(p1 - p0))),
                    g.rgba)
    raise TypeError(f"unknown geom {g!r}")


def _diag(mass: float, r: float = 0.03) -> tuple:
    return tuple(float(v) for v in _inertia(mass, r).split())


def build_tree(cell: CellSpec) -> CellTree:
    """The kinematic tree of `cell`: both arms (arm 1 from its reflected spec), fingers, TCP and
    camera frames, world cameras."""
    links: dict[str, Link] = {"world": Link("world")}
    joints: list[Joint] = []
    cameras: list[Camera] = []
    for c in cell.cameras:
        if c.mount == "world":
            cameras.append(Camera(c.name, c.name, "world", np.asarray(c.pos, float), tuple(c.xyaxes), c.fovy))
    for k in (0, 1):
        arm = cell.arm_spec(k)
        base = f"arm{k}_base"
        bh = arm.base_half
        links[base] = Link(base, geoms=[Geom("box", np.array([0, 0, bh[2]]), np.eye(3),
                                             tuple(2 * h for h in bh), (0.1, 0.1, 0.12, 1.0))])
        joints.append(Joint(f"{base}_fixed", "fixed", "world", base, np.asarray(arm.base_pos, float), arm=k))
        parent = base
        for lk in arm.links:
            name = f"arm{k}_{lk.name}"
            links[name] = Link(name, lk.mass, tuple(lk.com), _diag(lk.mass), [_geom(g) for g in lk.geoms],
                               gravity=False)
            j = lk.joint
            joints.append(Joint(
                ros_joint_name(k, j.name), "revolute" if j.type == "hinge" else "prismatic", parent, name,
                np.asarray(lk.pos, float), axis=tuple(float(a) for a in j.axis), limit=tuple(j.limit),
                effort=j.force_limit, damping=j.damping, kp=j.kp, arm=k, mj_name=f"arm{k}/{j.name}"))
            parent = name
        last = parent
        g = arm.gripper
        fh = g.finger_half
        for side in FINGERS:
            sgn = FINGER_SIGNS[side]
            name = f"arm{k}_{side}"
            centre = (g.finger_offset_x, sgn * fh[1], 0.0)
            links[name] = Link(name, g.finger_mass, centre, _diag(g.finger_mass, 0.01),
                               [Geom("box", np.asarray(centre, float), np.eye(3), tuple(2 * h for h in fh),
                                     (0.8, 0.8, 0.82, 1.0), friction=g.friction)], gravity=False)
            jname = ros_joint_name(k, "gripper") if side == FINGERS[0] else f"{name}_slide"
            joints.append(Joint(
                jname, "prismatic", last, name, np.asarray(g.pos, float), axis=(0.0, sgn, 0.0),
                limit=tuple(g.travel), effort=g.force_limit, damping=2.0, kp=g.kp, arm=k,
                mimic=None if side == FINGERS[0] else ros_joint_name(k, "gripper"),
                mj_name=f"arm{k}/{side}"))
        tcp = f"arm{k}_tcp"
        links[tcp] = Link(tcp)
        joints.append(Joint(f"{tcp}_fixed", "fixed", last, tcp,
                            np.asarray(g.pos, float) + np.asarray(g.tcp, float), arm=k))
        for c in cell.cameras:
            if c.mount != "wrist":
                continue
            pos = c.pos if k == 0 else mirror_vec(c.pos)
            xy = tuple(c.xyaxes) if k == 0 else tuple(_mirror_xyaxes(c.xyaxes))
            cam = Camera(c.name, f"arm{k}/{c.name}", last, np.asarray(pos, float), xy, c.fovy, arm=k)
            cameras.append(cam)
            frame = f"arm{k}_{c.name}_camera"
            links[frame] = Link(frame)
            joints.append(Joint(f"{frame}_fixed", "fixed", last, frame, cam.pos, rot=cam.rot_gazebo, arm=k))
            optical = f"{frame}_optical_frame"
            links[optical] = Link(optical)
            joints.append(Joint(f"{optical}_fixed", "fixed", frame, optical, np.zeros(3),
                                rot=cam.rot_gazebo.T @ cam.rot_optical, arm=k))
    return CellTree(links, joints, cameras)
