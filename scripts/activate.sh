# Source me: activates the venv and the colcon overlay (works under `set -u` too).
# Without a system ROS 2 it also sources the overlay of the vendored launch / ros2 CLI tools
# that scripts/setup.sh builds (.venv/ros2-cli), keeping the venv on AMENT_PREFIX_PATH, where
# the PyPI wheels' ROS packages live.
_act_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_act_u=$-; set +u
_act_system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]; then
  source "/opt/ros/${ROS_DISTRO}/setup.bash"
  _act_system_ros=1
fi
source "$_act_root/.venv/bin/activate"
source "$_act_root/install/setup.bash"
if [ "$_act_system_ros" = 0 ]; then
  if [ -f "$_act_root/.venv/ros2-cli/install/local_setup.bash" ]; then
    source "$_act_root/.venv/ros2-cli/install/local_setup.bash"
  fi
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$VIRTUAL_ENV:"*) ;;
    *) export AMENT_PREFIX_PATH="${AMENT_PREFIX_PATH:+$AMENT_PREFIX_PATH:}$VIRTUAL_ENV";;
  esac
fi
export MUJOCO_GL=${MUJOCO_GL:-egl}
case $_act_u in *u*) set -u;; esac
unset _act_root _act_u _act_system_ros
