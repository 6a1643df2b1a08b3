"""Many flights at once: `report` / `bag process` over a fleet's bags on Ray, resumable.

`report BAG_OR_FOLDER... --out DIR` with several bags (folders are searched for rosbag2
directories, ROS 1 `.bag` files and lone `.mcap` / `.db3` pieces) runs each bag as one
task on Ray: a local instance sized by `--workers` (started and stopped here), or the
cluster at `--ray-address` / `RAY_ADDRESS`. Per worker one actor loads the models once
and takes whole bags, frames in time order (the tracker needs them so).

- A bag that cannot be read fails once, with its reason; a worker that dies (killed, out
  of memory) is restarted and its bag retried, twice at most (Ray's `max_restarts` /
  `max_task_retries`: worker deaths are retried, user exceptions are not).
- Outputs per flight in `DIR/<flight>/`, made in a temporary folder and renamed into
  place, with `fingerprint.json` (settings + input files) written last: a second run with
  the same settings keeps complete flights and redoes the rest (`--force`: all).
- The fleet's `index.html`, `defects.geojson` and `defects.csv` (every flight's defects,
  each with its flight) are written to temporary files and renamed (`os.replace`), so a
  crash never leaves half a file.
"""

from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
import re
import shutil
import time

from cnn_perception.errors import UserError

PIECES = ('.bag', '.mcap', '.db3', '.mcap.zstd', '.db3.zstd')
EXIT_SOME_FAILED = 3


def is_bag(p: Path) -> bool:
    return (p.is_dir() and (p / 'metadata.yaml').is_file()) or (
        p.is_file() and p.name.endswith(PIECES)
    )


def find_bags(paths) -> list[Path]:
    """Bags named or found under folders (a rosbag2 directory is not searched inside).

    A folder holding only the numbered pieces of one recording (`rec_0.mcap`, `rec_1.mcap`)
    is one bag, as `bag info` reads it; other loose `.mcap` / `.db3` files are one each.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f'{p}: no such bag or folder')
        if is_bag(p):
            out.append(p)
            continue
        if not p.is_dir():
            raise UserError(f'{p}: not a bag (rosbag2 directory, .bag, .mcap or .db3)')
        for root, dirs, files in os.walk(p):
            here = Path(root)
            pieces = sorted(f for f in files if f.endswith(PIECES))
            if (here / 'metadata.yaml').is_file() or _one_split(pieces):
                out.append(here)  # one recording (`io/bag_layout.py` reads the pieces)
                dirs[:] = []
                continue
            dirs.sort()
            out += [here / f for f in pieces]
    unique = list(dict.fromkeys(q.resolve() for q in out))
    if not unique:
        raise UserError(f'no bags in {", ".join(map(str, paths))}')
    return unique


def _one_split(pieces: list[str]) -> bool:
    """Whether a folder's files are the numbered pieces of one split recording (name_0 ...)."""
    bases = {re.sub(r'_\d+$', '', _strip(f)) for f in pieces}
    numbered = all(re.search(r'_\d+$', _strip(f)) for f in pieces)
    return len(pieces) > 1 and numbered and len(bases) == 1


def flight_names(bags: list[Path]) -> list[str]:
    """Folder-safe unique names: the path below the bags' common folder, '/' -> '__'."""
    if len(bags) == 1:
        return [_strip(bags[0].name)]
    common = Path(os.path.commonpath([b.parent for b in bags]))
    return [_strip(str(b.relative_to(common))).replace(os.sep, '__') for b in bags]


def _strip(name: str) -> str:
    for suffix in sorted(PIECES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def fingerprint(bag: Path, settings: dict) -> str:
    """Hash of the settings and of the bag's files (names, sizes, modification times)."""
    files = sorted(bag.rglob('*')) if bag.is_dir() else [bag]
    stats = [(f, f.stat()) for f in files if f.is_file()]
    meta = [(str(f.relative_to(bag.parent)), st.st_size, st.st_mtime_ns) for f, st in stats]
    text = json.dumps({'settings': settings, 'files': meta}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def kept(flight_dir: Path, fp: str) -> dict | None:
    """Return the summary of a complete earlier run with the same fingerprint, or None."""
    try:
        mark = json.loads((flight_dir / 'fingerprint.json').read_text())
        summary = json.loads((flight_dir / 'summary.json').read_text())
    except (OSError, ValueError):
        return None
    return summary if mark.get('fingerprint') == fp else None


class FlightWorker:
    """One worker's job over many bags: the steps (models) built once, reset per bag."""

    def __init__(self, job: dict):
        self.job = job
        self.steps = None
        self.load_s = 0.0  # building the steps (loading the models), once

    def _steps(self):
        if self.steps is None:
            from cnn_perception.bagtools.offline import build_steps

            t0 = time.monotonic()

            j = self.job
            if j['kind'] == 'report':
                nodes, over = {'defects': j['defects']}, {'tracking': True}
            else:
                nodes = j['nodes']
                over = {'backend': j.get('backend'), 'localize': j.get('localize') or None}
            over['num_threads'] = j.get('num_threads')  # on Ray: one per worker's core
            self.steps = build_steps(nodes, j.get('params_file'), over, log=lambda *_: None)
            self.load_s = time.monotonic() - t0
        return self.steps

    def run(self, bag: str, out: str, flight: str, fp: str) -> dict:
        """Process one bag into `out/<flight>/` (made aside, renamed into place)."""
        bag, final = Path(bag), Path(out) / flight
        tmp = Path(out) / f'.{flight}.tmp{os.getpid()}'
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            job = self._report if self.job['kind'] == 'report' else self._process
            summary = job(bag, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        summary.update(flight=flight, bag=str(bag), seconds=round(time.monotonic() - t0, 2),
                       load_s=round(self.load_s, 2))  # fmt: skip
        self.load_s = 0.0  # counted with the first bag only
        (tmp / 'summary.json').write_text(json.dumps(summary, indent=1))
        (tmp / 'fingerprint.json').write_text(json.dumps({'fingerprint': fp}))
        old = Path(out) / f'.{flight}.old{os.getpid()}'
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return summary

    def _report(self, bag: Path, tmp: Path) -> dict:
        from cnn_perception import report

        (step,) = self._steps()
        j = self.job
        res = report.run(bag, j['defects'], j.get('image_topic'), j.get('params_file'),
                         log=lambda *_: None, step=step)  # fmt: skip
        report.write(res, tmp, bag)
        return {'frames': res.frames, 'skipped': len(res.skipped),
                'defects': len(res.findings), 'rows': res.rows,
                'not_inspected': report.not_inspected_frames(res)}  # fmt: skip

    def _process(self, bag: Path, tmp: Path) -> dict:
        from cnn_perception.bagtools import process

        j = self.job
        rep = process(bag, tmp / 'bag', j['nodes'], j.get('image_topic'), j.get('storage', 'mcap'),
                      j.get('backend'), j.get('params_file'), log=lambda *_: None,
                      steps=self._steps())  # fmt: skip
        return {'frames': rep.frames, 'skipped': len(rep.skipped), 'defects': None, 'rows': []}


@dataclass
class FleetResult:
    done: dict[str, dict] = field(default_factory=dict)  # flight -> summary
    kept: list[str] = field(default_factory=list)  # complete from an earlier run
    failed: dict[str, str] = field(default_factory=dict)  # flight -> reason
    bags: dict[str, str] = field(default_factory=dict)  # flight -> bag path
    interrupted: bool = False
    ray_start_s: float = 0.0
    seconds: float = 0.0

    @property
    def frames(self) -> int:
        return sum(s['frames'] for s in self.done.values())


def run_fleet(bags, out: Path, job: dict, workers: int = 0, address: str | None = None,
              force: bool = False, log=print) -> FleetResult:  # fmt: skip
    """Process `bags` into `out` with `job` ({'kind': 'report' | 'process', ...})."""
    from cnn_perception.fleet_ray import dispatch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    job = dict(job)
    for key in ('defects', 'params_file'):
        f = Path(str(job.get(key) or ''))
        if job.get(key) and f.is_file():  # the same file however it was named
            job[key] = str(f.resolve())
    settings = dict(job)
    for key in ('defects', 'params_file'):
        if job.get(key) and Path(job[key]).is_file():  # a changed file redoes the flights
            settings[f'{key}_sha'] = hashlib.sha256(Path(job[key]).read_bytes()).hexdigest()[:16]
    res = FleetResult()
    todo = []
    for bag, name in zip(bags, flight_names(bags), strict=True):
        res.bags[name] = str(bag)
        fp = fingerprint(bag, settings)
        for stale in out.glob(f'.{name}.tmp*'):
            shutil.rmtree(stale, ignore_errors=True)
        prev = None if force else kept(out / name, fp)
        if prev is not None:
            res.done[name] = prev
            res.kept.append(name)
        else:
            todo.append((str(bag), name, fp))
    if res.kept:
        log(f'fleet: {len(res.kept)} flight(s) complete from an earlier run, kept '
            '(--force redoes them)')  # fmt: skip
    t0 = time.monotonic()
    try:
        if len(todo) == 1 and not (address or os.environ.get('RAY_ADDRESS')):
            bag, name, fp = todo[0]  # one bag never needs Ray
            try:
                res.done[name] = FlightWorker(job).run(bag, str(out), name, fp)
            except Exception as exc:  # the bag's reason, as a Ray task would give it
                text = str(exc).strip().splitlines()
                res.failed[name] = f'{type(exc).__name__}: {text[0] if text else ""}'[:300]
        elif todo:
            dispatch(todo, out, job, workers, address, res, log, FlightWorker)
    finally:
        res.seconds = time.monotonic() - t0
        for _, name, _ in todo:  # what a killed worker left
            for stale in [*out.glob(f'.{name}.tmp*'), *out.glob(f'.{name}.old*')]:
                shutil.rmtree(stale, ignore_errors=True)
        summarise(res, out, job)
    return res


def summarise(res: FleetResult, out: Path, job: dict) -> None:
    """Write the fleet's index.html, defects.geojson and defects.csv (atomically)."""
    import csv
    import io

    from cnn_perception.report import FIELDS, geojson_text

    rows = [{'flight': f, **r} for f in sorted(res.done) for r in res.done[f].get('rows', [])]
    if job['kind'] == 'report':
        write_atomic(out / 'defects.geojson', geojson_text(rows))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=('flight', *FIELDS))
        w.writeheader()
        w.writerows(rows)
        write_atomic(out / 'defects.csv', buf.getvalue())
    write_atomic(out / 'index.html', _index_html(res, job))


def _index_html(res: FleetResult, job: dict) -> str:
    import html

    link = 'report.html' if job['kind'] == 'report' else 'bag'
    rows = []
    for flight in sorted(res.bags):
        s = res.done.get(flight)
        if s is not None:
            status = 'kept' if flight in res.kept else 'done'
            defects = '-' if s['defects'] is None else s['defects']
            href = f'<a href="{html.escape(flight)}/{link}">{link}</a>'
            cells = [status, s['frames'], s['skipped'], s.get('not_inspected', '-'), defects,
                     href]  # fmt: skip
        elif flight in res.failed:
            cells = ['<b>failed</b>', '', '', '', '', html.escape(res.failed[flight])]
        else:
            cells = ['not done (interrupted)', '', '', '', '', '']
        tds = ''.join(f'<td>{c}</td>' for c in [html.escape(flight), *cells])
        rows.append(f'<tr>{tds}</tr>')
    head = ''.join(
        f'<th>{h}</th>'
        for h in ('flight', 'status', 'frames', 'skipped', 'not inspected', 'defects', '')
    )
    done = len(res.done)
    return (
        '<!doctype html><meta charset="utf-8"><title>cnn_perception fleet</title>'
        '<style>body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:'
        'collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}</style>'
        f'<h1>Fleet: {len(res.bags)} flight(s)</h1><p>{done} done ({len(res.kept)} kept from '
        f'an earlier run), {len(res.failed)} failed, {res.frames} frames; job '
        f'<code>{html.escape(job["kind"])}</code>.'
        + (' Defects of every flight: <a href="defects.geojson">defects.geojson</a>, '
           '<a href="defects.csv">defects.csv</a>.' if job['kind'] == 'report' else '')
        + f'</p><table><tr>{head}</tr>{"".join(rows)}</table>\n'
    )  # fmt: skip
