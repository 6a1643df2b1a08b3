#!/usr/bin/env bash
# `make setup`: build everything this repository needs, idempotently.
#
#  - ROS 2 already sourced (ROS_DISTRO set): just `colcon build` the two packages.
#  - Otherwise: .venv/ with the pip-installable ROS 2 Jazzy wheels and the Python
#    dependencies of requirements.txt, then `colcon build` into install/.
#
# Each step keeps a stamp (hash of its inputs) and is skipped when its inputs did not
# change, so a second run with nothing changed takes seconds and rebuilds nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

log() { printf '[setup] %s\n' "$*"; }
hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

if [ -z "${ROS_DISTRO:-}" ] || [ -d .venv ]; then
  py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null 2>&1 || py=python3
  if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($py --version)"
    "$py" -m venv .venv
  fi
  req_stamp=.venv/.requirements.stamp
  want=$(hash_of requirements.txt scripts/setup.sh)
  if [ "$(cat "$req_stamp" 2>/dev/null)" != "$want" ]; then
    log 'installing requirements.txt into .venv (first run: a few minutes)'
    # The ros_wheels_bootstrapper .pth re-executes Python to set LD_LIBRARY_PATH;
    # pip does not need it.
    _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 .venv/bin/python -m pip install --quiet \
      --disable-pip-version-check -r requirements.txt
    # The ROS wheels' CMake export files name the Python and numpy include dirs of
    # the machine that built them; point them at this venv's, or the interface
    # generation fails at CMake generate time.
    pyinc=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    npinc=$(_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 .venv/bin/python -c 'import numpy; print(numpy.get_include())')
    { grep -rlZ '/opt/python/cp3' .venv/share --include='*.cmake' || true; } \
      | xargs -0 -r sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${pyinc}#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${npinc}#g"
    echo "$want" > "$req_stamp"
  else
    log '.venv is up to date'
  fi
fi

# colcon's generated setup scripts read unset variables.
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u

build_stamp=install/.build.stamp
want=$( (git ls-files -co --exclude-standard cnn_perception_msgs cnn_perception 2>/dev/null \
         || find cnn_perception_msgs cnn_perception -type f) \
        | grep -E '(package\.xml|CMakeLists\.txt|setup\.(py|cfg)|\.msg|resource/.*|launch/.*|config/.*)$' \
        | sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$build_stamp" 2>/dev/null)" != "$want" ] || [ ! -f install/local_setup.bash ]; then
  log 'colcon build (symlink install: Python, launch and config edits need no rebuild)'
  colcon build --symlink-install --event-handlers console_cohesion- summary+ \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$(command -v python)"
  echo "$want" > "$build_stamp"
else
  log 'install/ is up to date'
fi
