# shellcheck shell=bash
# Source this file (`source scripts/env.sh`) to get a shell in which rclpy, the
# cnn_perception_msgs messages and `python -m cnn_perception` work.
#
# Two environments (DESIGN.md section 4):
#  A. a robot with ROS 2 installed and sourced (ROS_DISTRO set, no .venv/ here):
#     only the workspace overlay install/ is sourced on top of it;
#  B. any Linux machine without ROS: the .venv/ that `make setup` built holds the
#     pip-installable ROS 2 Jazzy wheels; we activate it and set the library paths
#     the wheels need, then source the overlay.

_cnnp_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
# Which pip wheels (B): Jazzy's in .venv/ + install/; another distro's, asked for with
# ROS_DISTRO=<distro> where it is not installed (`make test ROS_DISTRO=kilted`), in
# .venv-<distro>/ + install-<distro>/.
_cnnp_sfx=''
if [ -n "${ROS_DISTRO:-}" ] && [ "$ROS_DISTRO" != jazzy ] && [ ! -d "/opt/ros/$ROS_DISTRO" ] \
   && [ -f "$_cnnp_root/requirements-$ROS_DISTRO.txt" ]; then
  _cnnp_sfx="-$ROS_DISTRO"
fi
_cnnp_venv="$_cnnp_root/.venv$_cnnp_sfx"

if [ -d "$_cnnp_venv" ]; then
  # shellcheck disable=SC1091
  VIRTUAL_ENV_DISABLE_PROMPT=${VIRTUAL_ENV_DISABLE_PROMPT:-1} source "$_cnnp_venv/bin/activate"
  _cnnp_site=$(echo "$_cnnp_venv"/lib/python3.*/site-packages)
  _cnnp_libs="$_cnnp_venv/lib"
  for _d in "$_cnnp_site"/ros_*.libs; do
    [ -d "$_d" ] && _cnnp_libs="$_cnnp_libs:$_d"
  done
  # The wheels' shared libraries are not on the default loader path, and CMake
  # builds (the interface package) need them too, not only Python.
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$_cnnp_venv/lib:"*) ;;
    *) export LD_LIBRARY_PATH="$_cnnp_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
  esac
  # ros_wheels_bootstrapper (a .pth file) re-executes every Python start-up to set
  # LD_LIBRARY_PATH unless this guard is set; we already set the path above.
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  case ":${AMENT_PREFIX_PATH:-}:" in
    *":$_cnnp_venv:"*) ;;
    *) export AMENT_PREFIX_PATH="$_cnnp_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
  esac
  case ":${CMAKE_PREFIX_PATH:-}:" in
    *":$_cnnp_venv:"*) ;;
    *) export CMAKE_PREFIX_PATH="$_cnnp_venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;;
  esac
  export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
  unset _d _cnnp_site _cnnp_libs
fi

# Camera frames are larger than Fast DDS's default shared-memory segment; without this
# profile best-effort image subscribers lose most frames (config/fastdds.xml says why).
# Fast DDS 3 (Kilted on) reads FASTDDS_DEFAULT_PROFILES_FILE (the old name: a warning on
# every start); Fast DDS 2 (Humble, Jazzy) only the old one.
if [ -z "${FASTRTPS_DEFAULT_PROFILES_FILE:-}${FASTDDS_DEFAULT_PROFILES_FILE:-}" ] \
   && [ -f "$_cnnp_root/cnn_perception/config/fastdds.xml" ]; then
  case "${ROS_DISTRO:-jazzy}" in
    humble|iron|jazzy) export FASTRTPS_DEFAULT_PROFILES_FILE="$_cnnp_root/cnn_perception/config/fastdds.xml" ;;
    *) export FASTDDS_DEFAULT_PROFILES_FILE="$_cnnp_root/cnn_perception/config/fastdds.xml" ;;
  esac
fi

if [ -f "$_cnnp_root/install$_cnnp_sfx/local_setup.bash" ] && [ -n "${BASH_VERSION:-}" ]; then
  # shellcheck disable=SC1091
  source "$_cnnp_root/install$_cnnp_sfx/local_setup.bash"
elif [ -f "$_cnnp_root/install$_cnnp_sfx/local_setup.sh" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_cnnp_root/install$_cnnp_sfx" . "$_cnnp_root/install$_cnnp_sfx/local_setup.sh"
fi
unset _cnnp_root _cnnp_venv _cnnp_sfx
