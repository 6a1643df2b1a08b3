"""Many flights on a real local Ray: merged outputs, a corrupt bag, a killed worker, a resume.

One Ray instance for the module (`ray start --head`), joined by each command with
`--ray-address`, as a cluster would be.
"""

import json
import os
from pathlib import Path
import secrets
import shutil
import signal
import subprocess
import sys
import time

from conftest import REPO, cli_run
import cv2
import pytest

ray = pytest.importorskip('ray', reason='Ray is installed by `make setup` (requirements.txt)')
PORT = 6391


@pytest.fixture(scope='module')
def fleet(tmp_path_factory):
    from cnn_perception.tools.inspection_flight import clean_flight, make_inspection_bag

    d = tmp_path_factory.mktemp('fleet')
    for name, n in (('f1', 10), ('f2', 6), ('f3', 3), ('clean', 0)):
        make_inspection_bag(d / 'bags' / name, defects=n)
    (d / 'bags' / 'broken.mcap').write_bytes(b'\x89MCAP0\r\n' + b'not a bag' * 100)
    (d / 'baseline').mkdir()
    for i, f in enumerate(clean_flight()):
        cv2.imwrite(str(d / 'baseline' / f'{i:03d}.png'), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    r = cli_run('defects', 'fit', '--normal', d / 'baseline', '--out', d / 'wall.npz')
    assert r.returncode == 0, r.stderr
    ray_bin = str(Path(sys.executable).with_name('ray'))
    subprocess.run([ray_bin, 'stop', '--force'], capture_output=True)
    # Ray 2.60 starts clusters with token authentication; a client joining one by address
    # needs RAY_AUTH_MODE=token and the token too, as a user's shell would. The token is
    # this run's own (RAY_AUTH_TOKEN): a fresh machine has no ~/.ray/auth_token.
    before = {k: os.environ.get(k) for k in ('RAY_AUTH_MODE', 'RAY_AUTH_TOKEN')}
    os.environ['RAY_AUTH_MODE'] = 'token'
    os.environ['RAY_AUTH_TOKEN'] = secrets.token_hex(32)
    up = subprocess.run(
        [ray_bin, 'start', '--head', f'--port={PORT}', '--node-ip-address=127.0.0.1',
         '--num-cpus=2', '--include-dashboard=false',
         '--object-store-memory=100000000', '--disable-usage-stats'],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    yield d
    subprocess.run([ray_bin, 'stop', '--force'], capture_output=True)
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def report(d, out, *extra, wait=True):
    args = [sys.executable, '-m', 'cnn_perception', 'report', str(d / 'bags'), '--defects',
            str(d / 'wall.npz'), '--out', str(out), '--ray-address', f'127.0.0.1:{PORT}',
            *extra]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    stdout, stderr = proc.communicate(timeout=600)
    return proc.returncode, stdout, stderr


def outputs(out: Path) -> dict:
    """Return what a run leaves, without timings: merged defects and each flight's files."""
    res = {'csv': sorted((out / 'defects.csv').read_text().splitlines())}
    for f in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith('.')):
        summary = json.loads((f / 'summary.json').read_text())
        res[f.name] = (summary['frames'], summary['defects'], (f / 'defects.csv').read_text())
    return res


@pytest.fixture(scope='module')
def full(fleet):
    rc, stdout, stderr = report(fleet, fleet / 'full')
    assert rc == 3, stdout + stderr  # one bag failed, the rest done
    return fleet / 'full', stdout


def test_a_fleet_report_merges_every_flight_and_names_the_corrupt_bag(full):
    out, stdout = full
    assert 'failed broken' in stdout and 'cannot open bag' in stdout
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ['clean', 'f1', 'f2', 'f3']
    merged = json.loads((out / 'defects.geojson').read_text())['features']
    union = []
    for flight in ('clean', 'f1', 'f2', 'f3'):
        for feat in json.loads((out / flight / 'defects.geojson').read_text())['features']:
            union.append({**feat, 'properties': {'flight': flight, **feat['properties']}})
    key = lambda f: (f['properties']['flight'], f['properties']['id'])  # noqa: E731
    assert sorted(merged, key=key) == sorted(union, key=key)
    counts = {f: json.loads((out / f / 'summary.json').read_text())['defects']
              for f in ('f1', 'f2', 'f3', 'clean')}  # fmt: skip
    assert counts['clean'] == 0 and counts['f1'] >= 9 and counts['f3'] <= 4, counts
    index = (out / 'index.html').read_text()
    assert 'failed' in index and 'f1/report.html' in index
    assert not list(out.glob('.*')), 'no temporary files left'


def test_a_killed_worker_gets_its_bag_retried(fleet, full):
    import psutil

    proc = report(fleet, fleet / 'killed', wait=False)
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        for p in psutil.process_iter(['name']):
            if p.info['name'] == 'ray::FlightWorker.run':
                victim = p
                break
        time.sleep(0.2)
    assert victim is not None, 'no worker was seen running a bag'
    time.sleep(0.5)  # inside its bag
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3, stdout + stderr  # only the corrupt bag failed
    assert outputs(fleet / 'killed') == outputs(full[0])


def test_an_interrupted_run_resumes_with_the_rest(fleet, full):
    out = fleet / 'resumed'
    proc = report(fleet, out, '--workers', '1', wait=False)
    deadline = time.monotonic() + 180
    while not list(out.glob('*/fingerprint.json')) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    first = {p.parent.name for p in out.glob('*/fingerprint.json')}
    assert first and len(first) < 4, first
    assert (out / 'index.html').is_file()  # the partial index, written whole
    rc, stdout, stderr = report(fleet, out)
    assert rc == 3, stdout + stderr
    assert f'{len(first)} flight(s) complete from an earlier run, kept' in stdout + stderr
    assert outputs(out) == outputs(full[0])


def test_bag_process_over_many_bags(fleet, tmp_path):
    bags = tmp_path / 'in'
    for name in ('f2', 'clean'):
        shutil.copytree(fleet / 'bags' / name, bags / name)
    r = cli_run('bag', 'process', bags, '--out-dir', tmp_path / 'out', '--defects',
                fleet / 'wall.npz', '--ray-address', f'127.0.0.1:{PORT}')  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ('f2', 'clean'):
        meta = (tmp_path / 'out' / name / 'bag' / 'metadata.yaml').read_text()
        assert 'defects/detections' in meta
    assert (tmp_path / 'out' / 'index.html').is_file()


def test_several_bags_without_ray_say_what_to_install(fleet, tmp_path):
    env = {**os.environ, 'PYTHONPATH': f'{tmp_path}:{os.environ.get("PYTHONPATH", "")}'}
    (tmp_path / 'ray').mkdir()
    (tmp_path / 'ray' / '__init__.py').write_text('raise ImportError("no ray here")\n')
    r = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', 'report', str(fleet / 'bags'), '--defects',
         str(fleet / 'wall.npz'), '--out', str(tmp_path / 'out')],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2 and 'pip install ray' in r.stderr, r.stderr
    assert 'Traceback' not in r.stderr


def test_bags_are_found_in_folders_and_split_recordings_stay_one(tmp_path):
    from cnn_perception.fleet import find_bags, flight_names

    (tmp_path / 'a' / 'rosbag2').mkdir(parents=True)
    (tmp_path / 'a' / 'rosbag2' / 'metadata.yaml').write_text('rosbag2_bagfile_information:\n')
    (tmp_path / 'a' / 'rosbag2' / 'nested.mcap').write_text('')  # inside a bag: not one
    (tmp_path / 'split').mkdir()
    for i in range(3):
        (tmp_path / 'split' / f'rec_{i}.mcap').write_text('')
    (tmp_path / 'loose').mkdir()
    for name in ('morning.mcap', 'noon.db3.zstd', 'old.bag', 'notes.txt'):
        (tmp_path / 'loose' / name).write_text('')
    bags = find_bags([tmp_path])
    names = flight_names(bags)
    assert names == ['a__rosbag2', 'loose__morning', 'loose__noon', 'loose__old', 'split'], names
