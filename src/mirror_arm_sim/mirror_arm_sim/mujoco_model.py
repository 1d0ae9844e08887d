"""Generate the MuJoCo model (MJCF) of the cell from `cell.py` -- nothing geometric is written here.

Names in the generated model (k = arm index 0 / 1):

    joints     arm{k}/waist ... arm{k}/wrist_roll, arm{k}/finger_left, arm{k}/finger_right
    actuators  same names as the joints (position actuators; both fingers get the gripper value)
    sites      arm{k}/tcp (tool centre point between the fingertips)
    cameras    top, arm{k}/wrist
    bodies     arm{k}/base, arm{k}/<link name>, arm{k}/finger_left|right, cube (free), target (mocap)
"""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from .cell import ArmSpec, BoxGeom, CapsuleGeom, CellSpec, mirror_vec

FINGERS = ("finger_left", "finger_right")


def _f(*xs) -> str:
    return " ".join(f"{float(x):.6g}" for x in xs)


def _inertia(mass: float, r: float = 0.03) -> str:
    i = 0.4 * mass * r * r
    return _f(i, i, i)


def _geom(g, name: str, **extra) -> str:
    attrs = " ".join(f'{k}={quoteattr(str(v))}' for k, v in extra.items())
    if isinstance(g, CapsuleGeom):
        return (f'<geom name="{name}" type="capsule" fromto="{_f(*g.p0, *g.p1)}" '
                f'size="{_f(g.radius)}" rgba="{_f(*g.rgba)}" {attrs}/>')
    if isinstance(g, BoxGeom):
        return (f'<geom name="{name}" type="box" pos="{_f(*g.pos)}" size="{_f(*g.half)}" '
                f'rgba="{_f(*g.rgba)}" {attrs}/>')
    raise TypeError(f"unknown geom {g!r}")


def _mirror_xyaxes(xy):
    """Camera axes of the reflected camera whose image is the horizontal flip."""
    x, y = xy[:3], xy[3:]
    mx = tuple(-c for c in mirror_vec(x))
    return (*mx, *mirror_vec(y))


def _arm_xml(cell: CellSpec, k: int) -> tuple[str, list[str], list[str]]:
    arm: ArmSpec = cell.arm_spec(k)
    p = f"arm{k}/"
    lines: list[str] = []
    actuators: list[str] = []
    excludes: list[str] = []
    lines.append(f'<body name="{p}base" pos="{_f(*arm.base_pos)}">')
    lines.append(f'<geom name="{p}base" type="box" pos="{_f(0, 0, arm.base_half[2])}" '
                 f'size="{_f(*arm.base_half)}" rgba="0.1 0.1 0.12 1"/>')
    depth = 1
    for i, lk in enumerate(arm.links):
        j = lk.joint
        lines.append(f'<body name="{p}{lk.name}" pos="{_f(*lk.pos)}" gravcomp="1">')
        lines.append(f'<joint name="{p}{j.name}" type="{j.type}" axis="{_f(*j.axis)}" '
                     f'range="{_f(*j.limit)}" damping="{_f(j.damping)}" armature="{_f(j.armature)}" '
                     f'ref="{_f(j.zero_offset)}"/>')
        lines.append(f'<inertial pos="{_f(*lk.com)}" mass="{_f(lk.mass)}" '
                     f'diaginertia="{_inertia(lk.mass)}"/>')
        for gi, g in enumerate(lk.geoms):
            lines.append(_geom(g, f"{p}{lk.name}_{gi}"))
        actuators.append(
            f'<position name="{p}{j.name}" joint="{p}{j.name}" kp="{_f(j.kp)}" '
            f'ctrlrange="{_f(*j.limit)}" forcerange="{_f(-j.force_limit, j.force_limit)}"/>'
        )
        if i < 2:  # links touching the static base: MuJoCo does not filter these pairs
            excludes.append(f'<exclude body1="{p}base" body2="{p}{lk.name}"/>')
            excludes.append(f'<exclude body1="world" body2="{p}{lk.name}"/>')
        depth += 1
    # gripper: on the last link
    g = arm.gripper
    last = f"{p}{arm.links[-1].name}"
    lines.append(f'<site name="{p}tcp" pos="{_f(*(a + b for a, b in zip(g.pos, g.tcp)))}" '
                 f'size="0.006" rgba="1 1 0 0.0"/>')
    for cam in cell.cameras:
        if cam.mount == "wrist":
            pos = cam.pos if k == 0 else mirror_vec(cam.pos)
            xy = cam.xyaxes if k == 0 else _mirror_xyaxes(cam.xyaxes)
            lines.append(f'<camera name="{p}{cam.name}" pos="{_f(*pos)}" xyaxes="{_f(*xy)}" '
                         f'fovy="{_f(cam.fovy)}"/>')
    fh = g.finger_half
    lo, hi = g.travel
    for side, sgn in zip(FINGERS, (1.0, -1.0)):
        lines.append(f'<body name="{p}{side}" pos="{_f(*g.pos)}" gravcomp="1">')
        lines.append(f'<joint name="{p}{side}" type="slide" axis="{_f(0, sgn, 0)}" range="{_f(lo, hi)}" '
                     f'damping="2" armature="0.01"/>')
        lines.append(f'<inertial pos="{_f(g.finger_offset_x, sgn * fh[1], 0)}" mass="{_f(g.finger_mass)}" '
                     f'diaginertia="{_inertia(g.finger_mass, 0.01)}"/>')
        lines.append(f'<geom name="{p}{side}" type="box" pos="{_f(g.finger_offset_x, sgn * fh[1], 0)}" '
                     f'size="{_f(*fh)}" rgba="0.8 0.8 0.82 1" friction="{_f(g.friction, 0.02, 0.001)}" '
                     f'condim="4" priority="1"/>')
        lines.append("</body>")
        actuators.append(
            f'<position name="{p}{side}" joint="{p}{side}" kp="{_f(g.kp)}" ctrlrange="{_f(lo, hi)}" '
            f'forcerange="{_f(-g.force_limit, g.force_limit)}"/>'
        )
    excludes.append(f'<exclude body1="{p}{FINGERS[0]}" body2="{p}{FINGERS[1]}"/>')
    excludes.append(f'<exclude body1="{last}" body2="{p}{FINGERS[0]}"/>')
    excludes.append(f'<exclude body1="{last}" body2="{p}{FINGERS[1]}"/>')
    lines.extend("</body>" for _ in range(depth))
    return "\n".join(lines), actuators, excludes


def build_mjcf(cell: CellSpec, image_size: tuple[int, int] = (96, 96)) -> str:
    """MJCF string of the cell (both arms, table, cube, target, cameras).

    image_size: the largest (H, W) that will be rendered (sizes the offscreen buffer).
    """
    h, w = image_size
    off_w, off_h = max(640, int(w)), max(480, int(h))
    t = cell.table
    top_z = t.height
    body_xml, acts, excl = [], [], []
    for k in (0, 1):
        b, a, e = _arm_xml(cell, k)
        body_xml.append(b)
        acts.extend(a)
        excl.extend(e)
    world_cams = "\n".join(
        f'<camera name="{c.name}" pos="{_f(*c.pos)}" xyaxes="{_f(*c.xyaxes)}" fovy="{_f(c.fovy)}"/>'
        for c in cell.cameras if c.mount == "world"
    )
    cube, tg = cell.cube, cell.target
    return f"""<mujoco model="mirror_arm_cell">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{_f(cell.timestep)}" gravity="{_f(*cell.gravity)}" integrator="implicitfast"
          cone="elliptic" impratio="10"/>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{off_w}" offheight="{off_h}"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0 0 0"/>
    <rgba haze="0.6 0.6 0.6 1"/>
  </visual>
  <default>
    <geom friction="1 0.005 0.0001" solref="0.01 1" solimp="0.95 0.99 0.001"/>
  </default>
  <worldbody>
    <light name="top_light" pos="{_f(*cell.light_pos)}" dir="0 0 -1" directional="true"
           diffuse="0.5 0.5 0.5" specular="0 0 0" castshadow="false"/>
    <geom name="table" type="box" pos="{_f(0, 0, top_z - t.half[2])}" size="{_f(*t.half)}"
          rgba="{_f(*t.rgba)}" friction="{_f(t.friction, 0.005, 0.0001)}"/>
    {world_cams}
    {chr(10).join(body_xml)}
    <body name="cube" pos="{_f(0, 0.5, top_z + cube.half)}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{_f(cube.half, cube.half, cube.half)}" mass="{_f(cube.mass)}"
            rgba="{_f(*cube.rgba)}" friction="{_f(cube.friction, 0.02, 0.001)}" condim="4"/>
    </body>
    <body name="target" mocap="true" pos="{_f(0, -0.5, top_z + tg.half_height)}">
      <geom name="target" type="cylinder" size="{_f(tg.radius, tg.half_height)}" rgba="{_f(*tg.rgba)}"
            contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <contact>
    {chr(10).join(excl)}
  </contact>
  <actuator>
    {chr(10).join(acts)}
  </actuator>
</mujoco>
"""


def build_model(cell: CellSpec | None = None, image_size: tuple[int, int] = (96, 96)):
    """Compile the cell into an `mujoco.MjModel` (imports mujoco lazily)."""
    import mujoco

    from .cell import default_cell

    cell = cell or default_cell()
    return mujoco.MjModel.from_xml_string(build_mjcf(cell, image_size))
