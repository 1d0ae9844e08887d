"""The one description of the mirrored two-arm cell (pure data, no simulator imports).

Everything geometric lives here and nowhere else: the MuJoCo model (`mujoco_model.py`), the
Gazebo generator, the env, the expert and the symmetry test all read it.

Conventions
-----------
* World frame: z up, the table top is the plane z = `table.height`, the mirror plane is x = 0.
  The top camera sits on the mirror plane with its image x-axis along world +x, so the mirrored
  scene is its horizontally flipped image.
* Arm 0 is described explicitly (`CellSpec.arm`), base on the x < 0 side, reaching towards +x.
  Arm 1 is its reflection through x = 0 (`CellSpec.arm_spec(1)`): every position has its x
  negated, every joint axis vector is kept identical. All body frames are world-aligned (no
  rotations), joint axes and box geoms are axis-aligned, so the reflection is exact. Hence a
  hinge about an axis in the mirror plane (y, z) flips sign between the arms and a hinge about
  x (the plane normal) keeps it; finger slides along y keep it. That is
  `config/mirror_map.yaml`: signs [-1, -1, -1, +1, -1, +1, +1].
* Units: metres, radians, kilograms, seconds. The gripper joint value is the half-gap: the
  distance (m) of each finger's inner face from the gripper centre line (0 = closed).
* Task poses are drawn for arm 0 and mirrored (x -> -x, yaw -> -yaw) for arm 1, so episode
  `seed` on arm 1 is the exact mirror of episode `seed` on arm 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

ARM_JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_pitch", "wrist_roll", "gripper"]
NUM_ARM_JOINTS = len(ARM_JOINTS)


def ros_joint_name(arm: int, joint: str) -> str:
    """The ROS name of arm `arm`'s `joint`, `arm<k>_<joint>` (e.g. arm1_waist): the one place this
    naming is written (MuJoCo bridge, Gazebo model, policy node defaults all use it)."""
    return f"arm{int(arm)}_{joint}"


def ros_joint_names(arm: int, joints=ARM_JOINTS) -> list[str]:
    """`ros_joint_name` of every joint in `joints` (default: the cell's ARM_JOINTS order)."""
    return [ros_joint_name(arm, j) for j in joints]

Vec3 = tuple[float, float, float]
Range = tuple[float, float]


def mirror_vec(v: Vec3) -> Vec3:
    """Reflect a position through the plane x = 0."""
    return (-v[0], v[1], v[2])


@dataclass(frozen=True)
class JointSpec:
    """A 1-DoF joint. `axis` is expressed in the (world-aligned) body frame and axis-aligned."""

    name: str
    type: str  # "hinge" | "slide"
    axis: Vec3
    limit: Range
    damping: float = 1.0
    armature: float = 0.05
    kp: float = 60.0            # position actuator gain (N m / rad or N / m)
    force_limit: float = 30.0   # actuator force/torque limit
    # The joint reading at the link's described pose (MJCF `ref`): 0 for an exact arm; a
    # non-zero value is a joint zero (encoder) offset, see `CellVariant`.
    zero_offset: float = 0.0


@dataclass(frozen=True)
class CapsuleGeom:
    """A capsule from `p0` to `p1` (body frame), radius `radius`."""

    p0: Vec3
    p1: Vec3
    radius: float
    rgba: tuple[float, float, float, float] = (0.15, 0.15, 0.17, 1.0)


@dataclass(frozen=True)
class BoxGeom:
    """An axis-aligned box centred at `pos` (body frame) with half sizes `half`."""

    pos: Vec3
    half: Vec3
    rgba: tuple[float, float, float, float] = (0.15, 0.15, 0.17, 1.0)


@dataclass(frozen=True)
class LinkSpec:
    """A body: its origin `pos` in the parent body's frame, the joint at that origin, its mass
    (a point mass with a small isotropic inertia, at `com` in the body frame) and its geoms."""

    name: str
    pos: Vec3
    joint: JointSpec
    mass: float
    com: Vec3
    geoms: tuple = ()


@dataclass(frozen=True)
class GripperSpec:
    """Parallel-jaw gripper on the last link: two fingers sliding along body y."""

    pos: Vec3                   # gripper (finger) frame origin in the last link's frame
    finger_half: Vec3           # finger box half sizes (x along the tool for arm 0, y, z)
    finger_offset_x: float      # finger box centre along the tool axis
    travel: Range               # half-gap range (m): 0 closed .. open
    kp: float = 300.0
    force_limit: float = 12.0
    finger_mass: float = 0.03
    friction: float = 1.5
    tcp: Vec3 = (0.0, 0.0, 0.0)  # tool centre point (between the fingertips) in the finger frame
    tool_axis: Vec3 = (1.0, 0.0, 0.0)   # approach direction in the finger frame (arm 0)
    close_axis: Vec3 = (0.0, 1.0, 0.0)  # finger closing direction in the finger frame


@dataclass(frozen=True)
class CameraSpec:
    """A camera. `mount` is "world" or "wrist" (then `pos`/`xyaxes` are in the last link's
    frame of arm 0 and mirrored for arm 1). `xyaxes` = image-right and image-up directions."""

    name: str
    pos: Vec3
    xyaxes: tuple[float, float, float, float, float, float]
    fovy: float  # degrees, vertical field of view
    mount: str = "world"


@dataclass(frozen=True)
class ArmSpec:
    """One arm: base position (world) and the kinematic chain (waist ... wrist_roll), gripper."""

    base_pos: Vec3
    base_half: Vec3
    links: tuple[LinkSpec, ...]
    gripper: GripperSpec
    home: tuple[float, ...]       # 7 values, ARM_JOINTS order
    mirrored: bool = False

    @property
    def joint_names(self) -> list[str]:
        return [lk.joint.name for lk in self.links] + ["gripper"]

    @property
    def limits(self) -> list[Range]:
        """(lo, hi) position limit per joint in ARM_JOINTS order (rad; the gripper's half-gap travel in m)."""
        return [lk.joint.limit for lk in self.links] + [self.gripper.travel]


@dataclass(frozen=True)
class TableSpec:
    """The table: top slab half sizes (m) with its top at `height`, colour and friction."""

    half: Vec3 = (0.65, 0.55, 0.02)   # table-top slab half sizes; top at `height`
    height: float = 0.0
    rgba: tuple[float, float, float, float] = (0.62, 0.62, 0.60, 1.0)
    friction: float = 1.0


@dataclass(frozen=True)
class CubeSpec:
    """The cube to move: half edge (m), mass (kg), colour and friction."""

    half: float = 0.02              # 4 cm cube
    mass: float = 0.05
    rgba: tuple[float, float, float, float] = (0.85, 0.1, 0.1, 1.0)
    friction: float = 1.5


@dataclass(frozen=True)
class TargetSpec:
    """The target disk (visual only, no collision): radius and half height (m), colour."""

    radius: float = 0.055           # flat disk, visual only (does not collide)
    half_height: float = 0.001
    rgba: tuple[float, float, float, float] = (0.1, 0.75, 0.15, 1.0)


@dataclass(frozen=True)
class TaskSpec:
    """Randomisation ranges for ARM 0 (arm 1 = mirror), world frame, and success tolerances."""

    cube_x: Range = (-0.27, -0.09)
    cube_y: Range = (0.02, 0.20)
    cube_yaw: Range = (-0.785, 0.785)
    target_x: Range = (-0.27, -0.09)
    target_y: Range = (-0.20, -0.02)
    start_joint_noise: float = 0.05   # rad, uniform, on the 6 arm joints of the active arm
    # success: cube centre within `target radius - success_margin` of the target centre (xy),
    # cube resting on the table (|z - half| < success_z_tol, speed < success_speed), no finger
    # touching the cube.
    success_margin: float = 0.0
    success_z_tol: float = 0.005
    success_speed: float = 0.02
    success_hold_s: float = 0.5       # success held this long -> early termination


@dataclass(frozen=True)
class CellSpec:
    """The whole cell. `arm` is arm 0; `arm_spec(1)` is its reflection through x = 0."""

    arm: ArmSpec
    table: TableSpec = field(default_factory=TableSpec)
    cube: CubeSpec = field(default_factory=CubeSpec)
    target: TargetSpec = field(default_factory=TargetSpec)
    task: TaskSpec = field(default_factory=TaskSpec)
    cameras: tuple[CameraSpec, ...] = ()
    control_hz: float = 50.0
    timestep: float = 0.002
    gravity: Vec3 = (0.0, 0.0, -9.81)
    light_pos: Vec3 = (0.0, 0.0, 1.5)  # on the mirror plane, pointing straight down
    # How this cell departs from the exact mirror (`with_variant`): arm 1's parts are applied in
    # `arm_spec(1)`, a camera offset is already in `cameras`.
    variant: CellVariant = field(default_factory=lambda: CellVariant())

    @property
    def substeps(self) -> int:
        """Physics steps per control step (1 / (control_hz * timestep)); ValueError if not whole."""
        n = round(1.0 / (self.control_hz * self.timestep))
        if abs(n * self.timestep * self.control_hz - 1.0) > 1e-9:
            raise ValueError("control period must be a multiple of the physics timestep")
        return n

    @property
    def joint_names(self) -> list[str]:
        return list(ARM_JOINTS)

    def arm_spec(self, k: int) -> ArmSpec:
        """Arm k's description in world coordinates (k = 1 is the reflection of arm 0)."""
        if k == 0:
            return self.arm
        if k == 1:
            return self.variant.perturb_arm(mirror_arm(self.arm))
        raise ValueError(f"unknown arm index {k!r}: expected 0 or 1")

    def camera(self, name: str) -> CameraSpec:
        """The camera named `name` (KeyError if the cell has none)."""
        for c in self.cameras:
            if c.name == name:
                return c
        raise KeyError(f"unknown camera {name!r}; the cell has {[c.name for c in self.cameras]}")

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def with_variant(self, variant: CellVariant | str) -> CellSpec:
        """This (exact) cell with `variant` applied: a `CellVariant` or a name in VARIANTS."""
        variant = get_variant(variant) if isinstance(variant, str) else variant
        if not self.variant.is_exact:
            raise ValueError(f"cell already has variant {self.variant.name!r}; apply variants to "
                             "the exact cell")
        known = set(self.camera_names)
        if variant.camera not in known:
            raise ValueError(f"variant {variant.name!r}: unknown camera {variant.camera!r}; the cell "
                             f"has {sorted(known)}")
        cams = tuple(dataclasses.replace(c, pos=tuple(p + d for p, d in zip(c.pos, variant.camera_offset)))
                     if c.name == variant.camera else c for c in self.cameras)
        return dataclasses.replace(self, cameras=cams, variant=variant)


# --- imperfect mirrors -----------------------------------------------------------------------
@dataclass(frozen=True)
class CellVariant:
    """How a physical pair departs from the exact mirror: arm 1 (the reflection of arm 0) with
    its base moved, its joints read with a zero offset, and/or one camera moved (world frame).

    Applied to the one cell description with `CellSpec.with_variant`; the default is "exact".
    """

    name: str = "exact"
    arm1_base_offset: Vec3 = (0.0, 0.0, 0.0)   # m, added to arm 1's base position (world)
    # rad, per arm joint in ARM_JOINTS order without the gripper (6 values); empty = none. Arm 1
    # then reads q + offset where the exact mirror would read q.
    arm1_zero_offsets: tuple[float, ...] = ()
    camera: str = "top"                        # the camera `camera_offset` moves
    camera_offset: Vec3 = (0.0, 0.0, 0.0)      # m, added to its position (x = off the mirror plane)

    def __post_init__(self):
        if self.arm1_zero_offsets and len(self.arm1_zero_offsets) != NUM_ARM_JOINTS - 1:
            raise ValueError(f"variant {self.name!r}: arm1_zero_offsets has "
                             f"{len(self.arm1_zero_offsets)} values, expected {NUM_ARM_JOINTS - 1}")

    @property
    def is_exact(self) -> bool:
        """True when the variant changes nothing (arm 1 is the exact mirror)."""
        return (not any(self.arm1_base_offset) and not any(self.arm1_zero_offsets)
                and not any(self.camera_offset))

    def perturb_arm(self, arm1: ArmSpec) -> ArmSpec:
        """Arm 1's description (the exact mirror) with this variant's base and zero offsets."""
        base = tuple(p + d for p, d in zip(arm1.base_pos, self.arm1_base_offset))
        links = arm1.links
        if self.arm1_zero_offsets:
            links = tuple(dataclasses.replace(lk, joint=dataclasses.replace(lk.joint, zero_offset=off))
                          for lk, off in zip(links, self.arm1_zero_offsets))
        return dataclasses.replace(arm1, base_pos=base, links=links)


# The named variants (docs/sim.md "Imperfect mirrors"): each is one realistic defect of a
# physical pair, sized like a careful but unmeasured installation.
VARIANTS: dict[str, CellVariant] = {v.name: v for v in (
    CellVariant("exact"),
    # arm 1 bolted 15 mm off its mirror position, along y (parallel to the mirror plane)
    CellVariant("base_offset_15mm", arm1_base_offset=(0.0, 0.015, 0.0)),
    # the top camera 5 mm off the mirror plane (towards arm 1)
    CellVariant("camera_offset_5mm", camera="top", camera_offset=(0.005, 0.0, 0.0)),
    # arm 1's shoulder encoder zero 0.02 rad (1.1 deg) off: ~1 cm at the gripper
    CellVariant("joint_zero_offset", arm1_zero_offsets=(0.0, 0.02, 0.0, 0.0, 0.0, 0.0)),
)}


def get_variant(name: str) -> CellVariant:
    """The named variant (`VARIANTS`); a clear error naming the known ones otherwise."""
    if name not in VARIANTS:
        raise ValueError(f"unknown cell variant {name!r}; expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]


# --- reflection ------------------------------------------------------------------------------
def _mirror_geom(g):
    if isinstance(g, CapsuleGeom):
        return dataclasses.replace(g, p0=mirror_vec(g.p0), p1=mirror_vec(g.p1))
    if isinstance(g, BoxGeom):
        return dataclasses.replace(g, pos=mirror_vec(g.pos))
    raise TypeError(f"cannot mirror geom {g!r}")


def mirror_arm(arm: ArmSpec) -> ArmSpec:
    """Reflect an arm through x = 0: positions x -> -x, joint axes identical (see module doc).

    The home pose is mirrored with the joint signs that follow from the axes: a hinge about x
    (the plane normal) and slides along y/z keep their sign, other hinges flip.
    """
    links = tuple(
        dataclasses.replace(
            lk, pos=mirror_vec(lk.pos), com=mirror_vec(lk.com),
            geoms=tuple(_mirror_geom(g) for g in lk.geoms),
        )
        for lk in arm.links
    )
    g = arm.gripper
    gripper = dataclasses.replace(
        g, pos=mirror_vec(g.pos), finger_offset_x=-g.finger_offset_x, tcp=mirror_vec(g.tcp),
        tool_axis=mirror_vec(g.tool_axis), close_axis=mirror_vec(g.close_axis),
    )
    signs = joint_mirror_signs(arm)
    home = tuple(s * q for s, q in zip(signs, arm.home))
    # a mirror-image arm has mirrored limits: a flipped joint's range (lo, hi) becomes (-hi, -lo)
    links = tuple(
        dataclasses.replace(lk, joint=dataclasses.replace(lk.joint, limit=(-lk.joint.limit[1],
                                                                             -lk.joint.limit[0])))
        if s < 0 else lk
        for lk, s in zip(links, signs)
    )
    return dataclasses.replace(
        arm, base_pos=mirror_vec(arm.base_pos), links=links, gripper=gripper, home=home,
        mirrored=not arm.mirrored,
    )


def joint_mirror_signs(arm: ArmSpec) -> list[float]:
    """Joint signs of the reflection through x = 0, derived from the joint axes (7 values)."""
    signs = []
    for lk in arm.links:
        ax = lk.joint.axis
        if sum(1 for a in ax if abs(a) > 0) != 1:
            raise ValueError(f"joint {lk.joint.name}: axis {ax} is not axis-aligned")
        along_x = abs(ax[0]) > 0
        if lk.joint.type == "hinge":
            signs.append(1.0 if along_x else -1.0)
        else:
            signs.append(-1.0 if along_x else 1.0)
    signs.append(1.0)  # fingers slide along y (in the mirror plane): unchanged
    return signs


# --- the default cell -------------------------------------------------------------------------
def _viperx_like_arm() -> ArmSpec:
    """A ViperX-300-like 6-DoF arm (link lengths after the Trossen URDF, rounded)."""
    dark = (0.12, 0.12, 0.14, 1.0)
    grey = (0.35, 0.35, 0.38, 1.0)
    links = (
        LinkSpec("base_link_waist", (0.0, 0.0, 0.072),
                 JointSpec("waist", "hinge", (0, 0, 1), (-3.14, 3.14), damping=3.0, kp=80.0),
                 mass=0.5, com=(0.0, 0.0, 0.02),
                 geoms=(CapsuleGeom((0, 0, 0.0), (0, 0, 0.04), 0.045, dark),)),
        LinkSpec("shoulder_link", (0.0, 0.0, 0.04),
                 JointSpec("shoulder", "hinge", (0, 1, 0), (-1.88, 1.99), damping=3.0, kp=120.0,
                           force_limit=50.0),
                 mass=0.8, com=(0.03, 0.0, 0.15),
                 geoms=(CapsuleGeom((0, 0, 0), (0.06, 0, 0.30), 0.03, grey),)),
        LinkSpec("upper_forearm_link", (0.06, 0.0, 0.30),
                 JointSpec("elbow", "hinge", (0, 1, 0), (-2.15, 1.60), damping=2.0, kp=100.0,
                           force_limit=40.0),
                 mass=0.5, com=(0.1, 0.0, 0.0),
                 geoms=(CapsuleGeom((0, 0, 0), (0.20, 0, 0), 0.027, dark),)),
        LinkSpec("lower_forearm_link", (0.20, 0.0, 0.0),
                 JointSpec("forearm_roll", "hinge", (1, 0, 0), (-3.14, 3.14), damping=1.0, kp=40.0),
                 mass=0.3, com=(0.05, 0.0, 0.0),
                 geoms=(CapsuleGeom((0, 0, 0), (0.10, 0, 0), 0.024, grey),)),
        LinkSpec("wrist_link", (0.10, 0.0, 0.0),
                 JointSpec("wrist_pitch", "hinge", (0, 1, 0), (-1.75, 2.15), damping=1.0, kp=40.0),
                 mass=0.15, com=(0.035, 0.0, 0.0),
                 geoms=(CapsuleGeom((0, 0, 0), (0.06, 0, 0), 0.022, dark),)),
        LinkSpec("gripper_link", (0.07, 0.0, 0.0),
                 JointSpec("wrist_roll", "hinge", (1, 0, 0), (-3.14, 3.14), damping=0.5, kp=30.0),
                 mass=0.15, com=(0.02, 0.0, 0.0),
                 geoms=(BoxGeom((0.02, 0.0, 0.0), (0.02, 0.055, 0.018), grey),)),
    )
    gripper = GripperSpec(
        pos=(0.04, 0.0, 0.0),
        finger_half=(0.03, 0.006, 0.012),
        finger_offset_x=0.03,
        travel=(0.0, 0.045),
        tcp=(0.04, 0.0, 0.0),
    )
    home = (0.0, -0.6, 0.3, 0.0, 1.8708, 0.0, 0.04)
    return ArmSpec(base_pos=(-0.40, 0.0, 0.0), base_half=(0.06, 0.06, 0.036), links=links,
                   gripper=gripper, home=home)


def default_cell(wrist_cameras: bool = True, variant: CellVariant | str = "exact") -> CellSpec:
    """The embedded cell. `wrist_cameras=False` leaves only the top camera; `variant` makes
    arm 1 an imperfect mirror (`VARIANTS`)."""
    cams = [
        # Above the mirror plane, behind the table's front edge, looking down and slightly
        # forward; image right = world +x, so the mirror is the horizontal image flip.
        CameraSpec("top", pos=(0.0, -0.25, 0.95), xyaxes=(1, 0, 0, 0, 0.966, 0.259), fovy=41.0),
    ]
    if wrist_cameras:
        # On the gripper link of each arm, looking along the tool with the fingers in view.
        cams.append(CameraSpec("wrist", pos=(0.0, 0.0, -0.06), xyaxes=(0, -1, 0, -0.34, 0, 0.94),
                               fovy=75.0, mount="wrist"))
    return CellSpec(arm=_viperx_like_arm(), cameras=tuple(cams)).with_variant(variant)
