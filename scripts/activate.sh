# Source me: activates the venv and the colcon overlay (works under `set -u` too).
_act_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_act_u=$-; set +u
if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]; then
  source "/opt/ros/${ROS_DISTRO}/setup.bash"
fi
source "$_act_root/.venv/bin/activate"
source "$_act_root/install/setup.bash"
export MUJOCO_GL=${MUJOCO_GL:-egl}
case $_act_u in *u*) set -u;; esac
unset _act_root _act_u
