"""Task success from object poses (pure numpy): the env's criterion, for the Gazebo adapter.

`MirrorArmEnv.is_success` (env.py) decides from the MuJoCo state: the cube centre within
`target.radius - task.success_margin` of the target centre (xy), resting on the table
(|z - (table.height + cube.half)| < task.success_z_tol and speed < task.success_speed) and no
finger touching it. Over ROS only poses are available, so the speed comes from successive
poses and "no finger touching" is the caller's `released` flag (Gazebo: the gripper is open
wider than the cube, or a contact sensor). tests/test_gazebo_agreement.py checks this
function against `MirrorArmEnv.is_success` on MuJoCo states.
"""

from __future__ import annotations

import numpy as np

from ..cell import CellSpec


def cube_on_target(cell: CellSpec, cube_pos, cube_speed: float, target_pos, released: bool = True) -> bool:
    """The env's success test from poses (module docstring): cube position (3,) and speed (m/s),
    target position (3,), world frame, m; `released`: no finger touches the cube."""
    t = cell.task
    cube_pos = np.asarray(cube_pos, float)
    target_pos = np.asarray(target_pos, float)
    on_target = float(np.hypot(*(cube_pos[:2] - target_pos[:2]))) < cell.target.radius - t.success_margin
    resting = (abs(cube_pos[2] - (cell.table.height + cell.cube.half)) < t.success_z_tol
               and float(cube_speed) < t.success_speed)
    return bool(on_target and resting and released)


class SpeedEstimator:
    """Linear speed of a body from timestamped positions (finite difference, last two)."""

    def __init__(self) -> None:
        self._last: tuple[float, np.ndarray] | None = None
        self.speed = float("inf")

    def update(self, t: float, pos) -> float:
        """Add the position at time `t` (s); returns the speed (m/s) from the last two samples
        (inf until there are two)."""
        pos = np.asarray(pos, float)
        if self._last is not None and t > self._last[0]:
            self.speed = float(np.linalg.norm(pos - self._last[1]) / (t - self._last[0]))
        self._last = (t, pos)
        return self.speed

    def reset(self) -> None:
        """Forget the samples (speed back to inf)."""
        self._last = None
        self.speed = float("inf")
