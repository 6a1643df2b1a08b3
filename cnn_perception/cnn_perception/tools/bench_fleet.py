"""`bench --fleet`: many bags in one process vs on Ray with 1 and 2 workers, one run.

Eight copies of the inspection flight (60 frames, 10 painted defects, `tools/
inspection_flight.py`), the defect report of each: sequential in this process (models
loaded once, the loop a user would write), then `fleet.run_fleet` on a local Ray with one
and with two workers. Ray's start-up is measured apart; the ratios compare the bags' own
time (frames / s over the fleet).
"""

from pathlib import Path
import shutil
import tempfile
import time


def fleet(log=print, bags: int = 8) -> dict:
    import cv2

    from cnn_perception.fleet import FlightWorker, find_bags, flight_names, run_fleet
    from cnn_perception.tools.inspection_flight import clean_flight, make_inspection_bag

    tmp = Path(tempfile.mkdtemp(prefix='bench_fleet_'))
    try:
        log('fleet: writing the flights and fitting the wall model ...')
        make_inspection_bag(tmp / 'one')
        for i in range(bags):
            shutil.copytree(tmp / 'one', tmp / 'bags' / f'flight{i}')
        (tmp / 'baseline').mkdir()
        for i, f in enumerate(clean_flight()):
            cv2.imwrite(str(tmp / 'baseline' / f'{i:03d}.png'), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        _fit(tmp / 'baseline', tmp / 'wall.npz')
        job = {'kind': 'report', 'defects': str(tmp / 'wall.npz')}
        found = find_bags([tmp / 'bags'])
        names = flight_names(found)
        log('fleet: sequential, one process ...')
        worker = FlightWorker(job)
        load = worker.run(str(found[0]), str(tmp / 'warm'), 'warm', '')['load_s']
        t0 = time.monotonic()
        frames = sum(
            worker.run(str(b), str(tmp / 'seq'), n, '')['frames']
            for b, n in zip(found, names, strict=True)
        )
        rows = {'sequential': {'seconds': time.monotonic() - t0, 'frames': frames, 'start': 0.0,
                               'load': load}}  # fmt: skip
        for workers in (1, 2):
            log(f'fleet: Ray, {workers} worker(s) ...')
            res = run_fleet(found, tmp / f'ray{workers}', job, workers, log=lambda *_: None)
            loads = max(s.get('load_s', 0.0) for s in res.done.values())
            rows[f'Ray, {workers} worker(s)'] = {
                'seconds': res.seconds - res.ray_start_s - loads,
                'frames': res.frames,
                'start': res.ray_start_s,
                'load': loads,
                'failed': len(res.failed),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows['sequential']['seconds']
    for r in rows.values():
        r['fps'] = r['frames'] / r['seconds']
        r['ratio'] = base / r['seconds']
        r['per_bag_s'] = r['seconds'] / bags
    return {'bags': bags, 'frames_per_bag': frames // bags, 'rows': rows}


def _fit(folder: Path, out: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, '-m', 'cnn_perception', 'defects', 'fit', '--normal', str(folder)]
    r = subprocess.run([*cmd, '--out', str(out)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])


def fleet_markdown(r: dict) -> str:
    lines = [
        f'{r["bags"]} bags of {r["frames_per_bag"]} frames (the inspection flight), defect '
        'report of each; this 2-core machine. Ray: a local instance, one actor per worker '
        '(models loaded once each), one ONNX Runtime thread per worker; the sequential loop '
        "ONNX Runtime's default threads. The bags' time leaves out Ray's start-up and the "
        "models' loading (once per worker, in parallel), given apart.",
        '',
        "| run | bags' time | per bag | frames/s | x sequential | Ray start-up | models' load |",
        '|---|---|---|---|---|---|---|',
    ]
    for name, m in r['rows'].items():
        start = f'{m["start"]:.1f} s' if m['start'] else '-'
        lines.append(
            f'| {name} | {m["seconds"]:.1f} s | {m["per_bag_s"]:.2f} s | {m["fps"]:.1f} | '
            f'{m["ratio"]:.2f} | {start} | {m["load"]:.1f} s |'
        )
    return '\n'.join(lines) + '\n'
