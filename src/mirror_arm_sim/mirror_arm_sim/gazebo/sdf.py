"""SDFormat world of the cell for Gazebo (Harmonic, gz-sim 8), generated from `cell.py`.

The world holds: the table (static), the robot model `mirror_arm_cell` with both arms (each base
fixed to the world; arm 1 is the reflected chain of `tree.py`: x-negated origins, identical
axes), the cube (free) and the target disk (static, visual only), the top camera on the mirror
plane (a static model carrying a camera sensor with the cell's pose and vertical fov), one
wrist camera per arm, and the Gazebo systems that make it controllable from ROS through
`ros_gz_bridge` (see `bridge_config.py`):

- `JointPositionController` per arm joint (PID on force = MuJoCo's position actuator: p = kp,
  force clamp = force_limit) listening to gz topic `gz_command_topic(k, joint)`; the gripper
  controller drives both finger slides from the one gripper value, like MuJoCo's two actuators.
- `JointStatePublisher` with the 14 policy joints (`arm<k>_<joint>`) on `GZ_JOINT_STATE_TOPIC`.
- `PosePublisher` on the cube and the target (model pose in the world) -> `/model/<name>/pose`.
- MuJoCo's `gravcomp="1"` on the arm links is `<gravity>false</gravity>` (gz-sim with DART).

Written as SDFormat 1.9 so that Debian 12's libsdformat12 can check it here; Gazebo Harmonic
(sdformat14) reads 1.9 and converts it.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..cell import CellSpec, default_cell
from .tree import CellTree, Geom, Link, build_tree
from .urdf import rpy_from_matrix

SDF_VERSION = "1.9"
WORLD_NAME = "mirror_arm_cell"
ROBOT_MODEL = "mirror_arm_cell"
GZ_JOINT_STATE_TOPIC = "/mirror_arm_cell/joint_states"
DEFAULT_IMAGE_SIZE = (96, 96)   # (H, W), the env's default observation size
CAMERA_CLIP = (0.01, 10.0)


def gz_command_topic(k: int, joint: str) -> str:
    """Gazebo topic (gz.msgs.Double) of arm k's joint position command."""
    return f"/mirror_arm_cell/arm{int(k)}/{joint}/cmd_pos"


def gz_image_topic(camera_name: str, arm: int | None = None) -> str:
    """Gazebo image topic of a cell camera (a wrist camera: the one on arm `arm`)."""
    return f"/mirror_arm_cell/camera/{camera_name if arm is None else f'arm{arm}_{camera_name}'}/image"


def gz_pose_topic(model: str) -> str:
    """Topic of the PosePublisher system on `model` (gz-sim's fixed naming)."""
    return f"/model/{model}/pose"


def _f(*xs) -> str:
    return " ".join(f"{float(x):.9g}" for x in xs)


def _pose(pos, rot=None, relative_to: str | None = None) -> str:
    rpy = (0.0, 0.0, 0.0) if rot is None else rpy_from_matrix(rot)
    rel = f" relative_to={quoteattr(relative_to)}" if relative_to else ""
    return f"<pose{rel}>{_f(*pos, *rpy)}</pose>"


def _material(rgba) -> str:
    return (f"<material><ambient>{_f(*rgba)}</ambient><diffuse>{_f(*rgba)}</diffuse>"
            f"<specular>0.1 0.1 0.1 1</specular></material>")


def _geometry(g: Geom) -> str:
    if g.kind == "box":
        return f"<geometry><box><size>{_f(*g.size)}</size></box></geometry>"
    r, length = g.size
    return f"<geometry><{g.kind}><radius>{_f(r)}</radius><length>{_f(length)}</length></{g.kind}></geometry>"


def _friction(mu: float | None) -> str:
    if mu is None:
        return ""
    return f"<surface><friction><ode><mu>{_f(mu)}</mu><mu2>{_f(mu)}</mu2></ode></friction></surface>"


def _geoms_xml(name: str, geoms: list[Geom], indent: str) -> list[str]:
    out = []
    for i, g in enumerate(geoms):
        out.append(f"{indent}<visual name={quoteattr(f'{name}_visual_{i}')}>{_pose(g.pos, g.rot)}"
                   f"{_geometry(g)}{_material(g.rgba)}</visual>")
        if g.collide:
            out.append(f"{indent}<collision name={quoteattr(f'{name}_collision_{i}')}>{_pose(g.pos, g.rot)}"
                       f"{_geometry(g)}{_friction(g.friction)}</collision>")
    return out


def _inertial(link: Link) -> str:
    ixx, iyy, izz = link.inertia
    return (f"<inertial>{_pose(link.com)}<mass>{_f(link.mass)}</mass><inertia><ixx>{_f(ixx)}</ixx>"
            f"<ixy>0</ixy><ixz>0</ixz><iyy>{_f(iyy)}</iyy><iyz>0</iyz><izz>{_f(izz)}</izz></inertia></inertial>")


def _camera_sensor(name: str, pos, rot, hfov: float, size: tuple[int, int], topic: str, rate: float,
                   indent: str) -> str:
    h, w = size
    return (f"{indent}<sensor name={quoteattr(name)} type=\"camera\">{_pose(pos, rot)}"
            f"<always_on>true</always_on><update_rate>{_f(rate)}</update_rate>"
            f"<topic>{escape(topic)}</topic>"
            f"<camera name={quoteattr(name)}><horizontal_fov>{_f(hfov)}</horizontal_fov>"
            f"<image><width>{int(w)}</width><height>{int(h)}</height><format>R8G8B8</format></image>"
            f"<clip><near>{_f(CAMERA_CLIP[0])}</near><far>{_f(CAMERA_CLIP[1])}</far></clip></camera>"
            f"</sensor>")


def _plugin(filename: str, name: str, body: str) -> str:
    return f"      <plugin filename={quoteattr(filename)} name={quoteattr(name)}>{body}</plugin>"


def robot_model_xml(cell: CellSpec, tree: CellTree, image_size: tuple[int, int]) -> str:
    """The `mirror_arm_cell` model: both arms, controllers, joint states, wrist cameras."""
    frames = {lname for lname, lk in tree.links.items() if lname != "world" and lk.mass == 0 and not lk.geoms}
    out = [f"    <model name={quoteattr(ROBOT_MODEL)}>"]
    for lname, link in tree.links.items():
        if lname == "world" or lname in frames:
            continue
        j = next(j for j in tree.joints if j.child == lname)
        rel = None if j.parent == "world" else j.parent
        out.append(f"      <link name={quoteattr(lname)}>{_pose(j.origin, None, rel)}")
        if not link.gravity:
            out.append("        <gravity>false</gravity>")
        if link.mass > 0:
            out.append(f"        {_inertial(link)}")
        out.extend(_geoms_xml(lname, link.geoms, "        "))
        for cam in tree.cameras:
            if cam.link == lname:
                hfov = cam.hfov(image_size[1], image_size[0])
                out.append(_camera_sensor(
                    f"arm{cam.arm}_{cam.name}", cam.pos, cam.rot_gazebo, hfov,
                    image_size, gz_image_topic(cam.name, cam.arm), cell.control_hz, "        "))
        out.append("      </link>")
    for j in tree.joints:
        if j.child in frames:
            # massless frames (tcp, camera frames) are SDF <frame>s on the parent link
            parent_frame = j.parent if j.parent not in frames else j.parent
            out.append(f"      <frame name={quoteattr(j.child)} attached_to={quoteattr(parent_frame)}>"
                       f"{_pose(j.origin, j.rot, parent_frame)}</frame>")
            continue
        out.append(f"      <joint name={quoteattr(j.name)} type={quoteattr(j.type)}>")
        out.append(f"        <parent>{escape(j.parent)}</parent><child>{escape(j.child)}</child>")
        if j.type != "fixed":
            out.append(f"        <axis><xyz>{_f(*j.axis)}</xyz><limit><lower>{_f(j.limit[0])}</lower>"
                       f"<upper>{_f(j.limit[1])}</upper><effort>{_f(j.effort)}</effort>"
                       f"<velocity>{_f(j.velocity)}</velocity></limit>"
                       f"<dynamics><damping>{_f(j.damping)}</damping></dynamics></axis>")
        out.append("      </joint>")
    # joint position control: one controller per controlled joint; the gripper drives both fingers
    for k in (0, 1):
        for jname in tree.arm_joint_names(k):
            j = tree.joint(jname)
            followers = [m.name for m in tree.joints if m.mimic == jname]
            names = "".join(f"<joint_name>{escape(n)}</joint_name>" for n in [jname, *followers])
            short = jname.split("_", 1)[1]
            out.append(_plugin(
                "gz-sim-joint-position-controller-system", "gz::sim::systems::JointPositionController",
                f"{names}<topic>{escape(gz_command_topic(k, short))}</topic>"
                f"<p_gain>{_f(j.kp)}</p_gain><i_gain>0</i_gain><d_gain>0</d_gain>"
                f"<i_max>0</i_max><i_min>0</i_min><cmd_max>{_f(j.effort)}</cmd_max>"
                f"<cmd_min>{_f(-j.effort)}</cmd_min><initial_position>{_f(_home(cell, k, short))}"
                f"</initial_position>"))
    names = "".join(f"<joint_name>{escape(n)}</joint_name>"
                    for k in (0, 1) for n in tree.arm_joint_names(k))
    out.append(_plugin("gz-sim-joint-state-publisher-system", "gz::sim::systems::JointStatePublisher",
                       f"{names}<topic>{escape(GZ_JOINT_STATE_TOPIC)}</topic>"))
    out.append("    </model>")
    return "\n".join(out)


def _home(cell: CellSpec, k: int, joint: str) -> float:
    arm = cell.arm_spec(k)
    return float(arm.home[cell.joint_names.index(joint)])


def _pose_publisher() -> str:
    return _plugin("gz-sim-pose-publisher-system", "gz::sim::systems::PosePublisher",
                   "<publish_link_pose>false</publish_link_pose><publish_visual_pose>false</publish_visual_pose>"
                   "<publish_collision_pose>false</publish_collision_pose>"
                   "<publish_sensor_pose>false</publish_sensor_pose>"
                   "<publish_model_pose>true</publish_model_pose>"
                   "<use_pose_vector_msg>false</use_pose_vector_msg>"
                   "<static_publisher>false</static_publisher><update_frequency>50</update_frequency>")


def build_sdf(cell: CellSpec | None = None, image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
              tree: CellTree | None = None) -> str:
    """SDF world string. `image_size` = (H, W) of every camera (the policy's image size)."""
    cell = cell or default_cell()
    tree = tree or build_tree(cell)
    t, cube, tg = cell.table, cell.cube, cell.target
    top = t.height
    cube_inertia = cube.mass * (2 * cube.half) ** 2 / 6.0
    world_cams = []
    for cam in tree.cameras:
        if cam.link != "world":
            continue
        hfov = cam.hfov(image_size[1], image_size[0])
        world_cams.append(
            f"    <model name={quoteattr(f'{cam.name}_camera')}><static>true</static>"
            f"{_pose(cam.pos, cam.rot_gazebo)}\n"
            f"      <link name=\"link\">\n"
            + _camera_sensor(cam.name, (0, 0, 0), np.eye(3), hfov, image_size,
                             gz_image_topic(cam.name), cell.control_hz, "        ")
            + "\n      </link>\n    </model>")
    lx, ly, lz = cell.light_pos
    return f"""<?xml version="1.0"?>
<!-- Generated by mirror_arm_sim.gazebo from cell.py: do not edit. -->
<sdf version="{SDF_VERSION}">
  <world name="{WORLD_NAME}">
    <physics name="cell" type="ignored">
      <max_step_size>{_f(cell.timestep)}</max_step_size>
      <real_time_factor>1</real_time_factor>
    </physics>
    <gravity>{_f(*cell.gravity)}</gravity>
    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>
    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>
    <plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>
    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">
      <render_engine>ogre2</render_engine>
    </plugin>
    <scene>
      <ambient>0.35 0.35 0.35 1</ambient>
      <background>0.6 0.6 0.6 1</background>
      <shadows>false</shadows>
    </scene>
    <light type="directional" name="top_light">
      <pose>{_f(lx, ly, lz)} 0 0 0</pose>
      <direction>0 0 -1</direction>
      <diffuse>0.5 0.5 0.5 1</diffuse>
      <specular>0 0 0 1</specular>
      <cast_shadows>false</cast_shadows>
    </light>
    <model name="table">
      <static>true</static>
      <link name="top">
        {_pose((0, 0, top - t.half[2]))}
{chr(10).join(_geoms_xml("table", [Geom("box", np.zeros(3), np.eye(3), tuple(2 * h for h in t.half), t.rgba,
                                         friction=t.friction)], "        "))}
      </link>
    </model>
{chr(10).join(world_cams)}
{robot_model_xml(cell, tree, image_size)}
    <model name="cube">
      {_pose((0, 0.5, top + cube.half))}
      <link name="link">
        <inertial><mass>{_f(cube.mass)}</mass><inertia><ixx>{_f(cube_inertia)}</ixx><ixy>0</ixy><ixz>0</ixz>
          <iyy>{_f(cube_inertia)}</iyy><iyz>0</iyz><izz>{_f(cube_inertia)}</izz></inertia></inertial>
{chr(10).join(_geoms_xml("cube", [Geom("box", np.zeros(3), np.eye(3), (2 * cube.half,) * 3, cube.rgba,
                                        friction=cube.friction)], "        "))}
      </link>
{_pose_publisher()}
    </model>
    <model name="target">
      <static>true</static>
      {_pose((0, -0.5, top + tg.half_height))}
      <link name="link">
{chr(10).join(_geoms_xml("target", [Geom("cylinder", np.zeros(3), np.eye(3), (tg.radius, 2 * tg.half_height),
                                          tg.rgba, collide=False)], "        "))}
      </link>
{_pose_publisher()}
    </model>
  </world>
</sdf>
"""
