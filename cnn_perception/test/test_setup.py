"""`make setup` is idempotent: run again with nothing changed, it rebuilds nothing."""

import os
import subprocess

from conftest import REPO


def _snapshot(root):
    return {p: p.stat().st_mtime_ns for p in (root).rglob('*') if p.is_file()}


def _suffix() -> str:
    """'' for Jazzy's wheels, '-kilted' under `make test ROS_DISTRO=kilted` (setup.sh)."""
    distro = os.environ.get('ROS_DISTRO', '')
    own = distro and distro != 'jazzy' and not os.path.isdir(f'/opt/ros/{distro}')
    return f'-{distro}' if own and (REPO / f'requirements-{distro}.txt').is_file() else ''


def test_second_setup_rebuilds_nothing():
    sfx = _suffix()
    before = _snapshot(REPO / f'install{sfx}')
    env = {k: v for k, v in os.environ.items()}
    res = subprocess.run(
        ['bash', 'scripts/setup.sh'],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f'install{sfx}/ is up to date' in res.stdout, res.stdout
    if (REPO / f'.venv{sfx}').is_dir():
        assert f'.venv{sfx} is up to date' in res.stdout, res.stdout
    assert _snapshot(REPO / f'install{sfx}') == before


def test_cli_version_and_help():
    import sys

    out = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', '--version'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith('cnn_perception ')
    res = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', '--help'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 'usage' in res.stdout
