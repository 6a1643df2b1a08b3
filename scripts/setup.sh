#!/usr/bin/env bash
# `make setup`: build everything this repository needs, idempotently.
#
#  - ROS 2 already sourced (ROS_DISTRO set): just `colcon build` the two packages.
#  - Otherwise: .venv/ with the pip-installable ROS 2 Jazzy wheels and the Python
#    dependencies of requirements.txt, then `colcon build` into install/.
#  - ROS_DISTRO=<distro> that is not installed, with a requirements-<distro>.txt
#    (`make test ROS_DISTRO=kilted`): the same with that distro's wheels, in
#    .venv-<distro>/ and install-<distro>/ (build-<distro>/, log-<distro>/), beside Jazzy's.
#
# Each step keeps a stamp (hash of its inputs) and is skipped when its inputs did not
# change, so a second run with nothing changed takes seconds and rebuilds nothing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

log() { printf '[setup] %s\n' "$*"; }
GST_PACKAGES='gstreamer1.0-plugins-base gstreamer1.0-tools gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 libgirepository1.0-dev libcairo2-dev pkg-config'
# chromium: the report test renders report.html in a real headless browser.
APT_PACKAGES="$GST_PACKAGES chromium"
# The last PyGObject that builds against Debian 12's gobject-introspection 1.74
# (3.51+ need girepository-2.0 from GLib 2.80).
PYGOBJECT='PyGObject==3.50.0'

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

# The same choice as scripts/env.sh: which wheels, which folders
sfx=''
if [ -n "${ROS_DISTRO:-}" ] && [ "$ROS_DISTRO" != jazzy ] && [ ! -d "/opt/ros/$ROS_DISTRO" ] \
   && [ -f "requirements-$ROS_DISTRO.txt" ]; then
  sfx="-$ROS_DISTRO"
fi
venv=".venv$sfx"
reqs=requirements.txt
[ -n "$sfx" ] && reqs="requirements$sfx.txt"

if [ -z "${ROS_DISTRO:-}" ] || [ -d .venv ] || [ -n "$sfx" ]; then
  py=${PYTHON:-python3.11}
  command -v "$py" >/dev/null 2>&1 || py=python3
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv with $($py --version)"
    "$py" -m venv "$venv"
  fi
  req_stamp="$venv/.requirements.stamp"
  want=$(hash_of "$reqs" scripts/setup.sh)
  if [ "$(cat "$req_stamp" 2>/dev/null)" != "$want" ]; then
    # GStreamer for `gst:` camera sources: the pip OpenCV has none, so they run through
    # PyGObject, which pip builds against these Debian packages (idempotent: only the
    # missing ones are installed; without root they are reported and the tests skip).
    missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "apt-get install $(echo $missing)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing \
        >/dev/null
    elif [ -n "$missing" ]; then
      log "not installed (needs root): $(echo $missing); gst: sources need an OpenCV with GStreamer"
    fi
    log "installing $reqs into $venv (first run: a few minutes)"
    # The ros_wheels_bootstrapper .pth re-executes Python to set LD_LIBRARY_PATH;
    # pip does not need it.
    _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$venv/bin/python" -m pip install --quiet \
      --disable-pip-version-check -r "$reqs"
    # The ROS wheels' CMake export files name the Python and numpy include dirs of
    # the machine that built them; point them at this venv's, or the interface
    # generation fails at CMake generate time.
    pyinc=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    npinc=$(_ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$venv/bin/python" -c 'import numpy; print(numpy.get_include())')
    { grep -rlZ '/opt/python/cp3' "$venv/share" --include='*.cmake' || true; } \
      | xargs -0 -r sed -i -E \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#${pyinc}#g" \
        -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#${npinc}#g"
    if [ -n "$(for p in $GST_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)" ]; then
      log 'PyGObject skipped: its build dependencies are missing'
    else
      _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$venv/bin/python" -m pip install --quiet \
        --disable-pip-version-check "$PYGOBJECT" || log 'PyGObject failed to build; gst: via OpenCV only'
    fi
    echo "$want" > "$req_stamp"
  else
    log "$venv is up to date"
  fi
fi

# colcon's generated setup scripts read unset variables.
set +u
# shellcheck disable=SC1091
source scripts/env.sh
set -u

build_stamp="install$sfx/.build.stamp"
want=$( (git ls-files -co --exclude-standard cnn_perception_msgs cnn_perception 2>/dev/null \
         || find cnn_perception_msgs cnn_perception -type f) \
        | grep -E '(package\.xml|CMakeLists\.txt|setup\.(py|cfg)|\.msg|resource/.*|launch/.*|config/.*)$' \
        | sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$build_stamp" 2>/dev/null)" != "$want" ] || [ ! -f "install$sfx/local_setup.bash" ]; then
  log 'colcon build (symlink install: Python, launch and config edits need no rebuild)'
  COLCON_LOG_PATH="log$sfx" colcon build --symlink-install --build-base "build$sfx" \
    --install-base "install$sfx" --event-handlers console_cohesion- summary+ \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$(command -v python)"
  echo "$want" > "$build_stamp"
else
  log "install$sfx/ is up to date"
fi
