#!/usr/bin/env bash
# One-command, idempotent workspace setup.
#   - creates .venv (with system site-packages when a system ROS 2 is sourced),
#   - installs the pinned Python dependencies (requirements.txt),
#   - installs ROS 2 Kilted from PyPI wheels when no system ROS 2 is sourced,
#   - builds the colcon workspace (act_msgs + the three ament_python packages),
#   - installs act_training and mirror_arm_sim into the venv in editable mode.
# Each step is skipped when its inputs did not change (stamps in .venv/.stamps), so a second
# run takes seconds. Afterwards: `source scripts/activate.sh`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$VENV/.stamps"
PY=${PYTHON:-python3}
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# pip_install LABEL ARGS...: quiet install; on failure show pip's last lines and say what is missing.
pip_install() {
  local label=$1; shift
  local logf="$VENV/pip-$label.log"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" >"$logf" 2>&1; then
    grep -v "is ignored" "$logf" | tail -15 >&2
    if grep -q "No space left on device" "$logf"; then
      die "could not install $label: the disk is full ($(free_gib "$VENV") GiB left on the file system of \
$VENV; the venv needs about ${NEED_GIB} GiB). Free space and run make setup again. Full log: $logf"
    fi
    die "could not install $label ($*). If the lines above mention a connection or index error, \
this machine cannot reach the package registry (PyPI): connect it or configure a mirror \
(PIP_INDEX_URL). Full log: $logf"
  fi
}

# The venv holds torch's CUDA build (docs/install.md): about 6.5 GiB installed, and pip unpacks
# wheels in a temporary directory on top of that.
NEED_GIB=8
free_gib() { df -Pk "$1" 2>/dev/null | awk 'NR==2 {printf "%.1f", $4 / 1048576}'; }

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" > "$STAMPS/$1"; }

SYSTEM_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && [ -d "/opt/ros/${ROS_DISTRO}" ]; then
  SYSTEM_ROS=1
  log "using system ROS 2 '${ROS_DISTRO}' from /opt/ros/${ROS_DISTRO}"
fi

# 0. supported Python
command -v "$PY" >/dev/null || die "no '$PY' found: install Python 3.11 (or set PYTHON=/path/to/python3.11)"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$SYSTEM_ROS" = 0 ] && [ "$PYVER" != "3.11" ]; then
  die "Python $PYVER found ($PY), but the ROS 2 Kilted PyPI wheels need Python 3.11. Install python3.11 \
and run PYTHON=python3.11 make setup, or source a system ROS 2 (/opt/ros/<distro>/setup.bash) first."
fi
case "$PYVER" in 3.10|3.11|3.12|3.13) ;; *) die "Python $PYVER is not supported (need 3.10-3.13)";; esac
"$PY" -c "import venv, ensurepip" 2>/dev/null || die "Python $PYVER lacks venv/ensurepip: apt-get install python3-venv"

# 1. venv
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c "" 2>/dev/null; then
  log "existing .venv is broken (its Python moved?): recreating"; rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  if [ "$SYSTEM_ROS" = 1 ]; then "$PY" -m venv --system-site-packages "$VENV"; else "$PY" -m venv "$VENV"; fi
  pip_install pip --upgrade pip
fi

# 2. Python dependencies
h=$(hash_of requirements.txt)
if ! stamp_ok python-deps "$h"; then
  log "installing Python dependencies (requirements.txt; torch is large, first run takes minutes)"
  left=$(free_gib "$VENV")
  if [ -n "$left" ] && awk -v l="$left" -v n="$NEED_GIB" 'BEGIN { exit !(l < n) }'; then
    die "only $left GiB free on the file system of $VENV; installing requirements.txt needs about \
$NEED_GIB GiB (torch's CUDA build). Free space and run make setup again."
  fi
  pip_install python-deps -r requirements.txt
  "$VENV/bin/python" -c "import torch, torchvision, mujoco, h5py, cv2, rosbags, gymnasium" \
    || die "Python dependencies installed but do not import (see the traceback above)"
  stamp_set python-deps "$h"
fi

# 2b. Real SDFormat / URDF parsers for the Gazebo artefact tests (Debian/Ubuntu apt, optional):
#     libsdformat-dev (the SDFormat C++ library + pkg-config) and liburdfdom-tools (check_urdf).
#     Skipped when present, when not root or without apt-get; the tests then skip with the reason.
if ! { pkg-config --exists sdformat12 2>/dev/null || pkg-config --exists sdformat14 2>/dev/null; } \
    || ! command -v check_urdf >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing libsdformat-dev liburdfdom-tools g++ pkg-config (apt)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        libsdformat-dev liburdfdom-tools g++ pkg-config >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends libsdformat-dev liburdfdom-tools g++ pkg-config >/dev/null 2>&1; }; } \
      || log "apt install of the SDFormat/URDF parsers failed: the Gazebo parser tests will skip"
  else
    log "libsdformat-dev / liburdfdom-tools missing (not root or no apt): Gazebo parser tests will skip"
  fi
fi

# 3. ROS 2 from PyPI wheels (only without a system ROS 2)
if [ "$SYSTEM_ROS" = 0 ]; then
  h=$(hash_of requirements-ros.txt)
  if ! stamp_ok ros-wheels "$h"; then
    log "installing ROS 2 Kilted wheels (requirements-ros.txt)"
    pip_install ros-wheels -r requirements-ros.txt
    # The wheels' CMake exports name the Python they were built with: repoint them.
    PYINC=$("$VENV/bin/python" -c "import sysconfig;print(sysconfig.get_paths()['include'])")
    NPINC=$("$VENV/bin/python" -c "import numpy;print(numpy.get_include())")
    grep -rl /opt/python/cp311-cp311/ "$VENV/share" --include='*.cmake' | xargs -r sed -i \
      -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g"
    "$VENV/bin/python" -c "import rclpy, std_msgs.msg, sensor_msgs.msg, std_srvs.srv" \
      || die "ROS 2 wheels installed but rclpy does not import (see the traceback above)"
    stamp_set ros-wheels "$h"
  fi
fi
touch "$VENV/COLCON_IGNORE"  # else colcon finds the 60+ ROS packages inside the venv

# 4. colcon build (interfaces + ament_python packages, symlinked so edits are live)
h=$(find src colcon.meta -type f \( -name '*.msg' -o -name 'CMakeLists.txt' -o -name 'package.xml' \
      -o -name 'setup.py' -o -name 'setup.cfg' -o -name 'colcon.meta' -o -name '*.launch.py' \
      -o -name '*.yaml' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
if ! stamp_ok colcon "$h" || [ ! -f install/setup.bash ]; then
  log "building the workspace with colcon"
  (
    set +u
    # shellcheck disable=SC1091
    [ "$SYSTEM_ROS" = 1 ] && source "/opt/ros/${ROS_DISTRO}/setup.bash"
    source "$VENV/bin/activate"
    [ "$SYSTEM_ROS" = 0 ] && export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
    set -u
    "$VENV/bin/python" -m colcon build --base-paths src --symlink-install \
      --event-handlers console_cohesion- summary+ \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
  )
  stamp_set colcon "$h"
fi

# 5. plain-pip editable installs, so `python -c "import act_training"` works without sourcing
h=$(hash_of src/act_training/setup.py src/mirror_arm_sim/setup.py src/act_policy_node/setup.py)
if ! stamp_ok pip-editable "$h"; then
  log "installing mirror_arm_sim, act_training, act_policy_node into the venv (editable)"
  pip_install workspace-packages --no-deps --no-build-isolation -e src/mirror_arm_sim \
    -e src/act_training -e src/act_policy_node
  stamp_set pip-editable "$h"
fi

# 6. `ros2 launch` / `ros2 run|topic|service|param|lifecycle` without a system ROS 2: they are
#    pure-Python ament packages not published as wheels. Where ../shared/vendor/ros2-cli holds
#    their upstream sources, build them into an overlay inside the venv (never into the repo);
#    scripts/activate.sh sources it. Recipe: that folder's README.md.
ROS2_CLI_VENDOR=${ROS2_CLI_VENDOR:-"$(cd "$ROOT/.." && pwd)/shared/vendor/ros2-cli"}
ROS2_CLI_WS="$VENV/ros2-cli"
if [ "$SYSTEM_ROS" = 0 ] && [ -d "$ROS2_CLI_VENDOR" ]; then
  h=$( { ls -l "$ROS2_CLI_VENDOR"/*.tar.gz; cat "$ROS2_CLI_VENDOR/MANIFEST.txt" requirements-ros.txt; } \
       2>/dev/null | sha256sum | cut -c1-16)
  if ! stamp_ok ros2-cli "$h" || [ ! -f "$ROS2_CLI_WS/install/local_setup.bash" ]; then
    log "building the ROS 2 launch / CLI tools from $ROS2_CLI_VENDOR into $ROS2_CLI_WS"
    rm -rf "$ROS2_CLI_WS"
    mkdir -p "$ROS2_CLI_WS/src"
    for a in "$ROS2_CLI_VENDOR"/*.tar.gz; do tar xzf "$a" -C "$ROS2_CLI_WS/src"; done
    (
      cd "$ROS2_CLI_WS"
      set +u
      source "$VENV/bin/activate"
      export AMENT_PREFIX_PATH="$VENV"
      set -u
      # BUILD_TESTING=OFF: composition_interfaces would otherwise ask for ament_cppcheck
      "$VENV/bin/python" -m colcon build --base-paths src \
        --event-handlers console_cohesion- summary+ \
        --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
    ) > "$VENV/ros2-cli-build.log" 2>&1 || { tail -20 "$VENV/ros2-cli-build.log" >&2;
      die "building the vendored ROS 2 CLI failed (full log: $VENV/ros2-cli-build.log)"; }
    stamp_set ros2-cli "$h"
  fi
elif [ "$SYSTEM_ROS" = 0 ]; then
  log "no system ROS 2 and no $ROS2_CLI_VENDOR: no ros2 launch / ros2 CLI (the launch tests check statically)"
fi

log "ready. Activate with:  source scripts/activate.sh"
