"""Reproduce the defect detector's figures in docs/defects.md, through the command line.

For each surface: make-dataset (fit: 100 normal crops; test: 40 + 40 at other random
placements; seeds 1 and 2 unless --seeds),
`defects fit` on the normal crops alone (20% held out for the calibration), `defects eval`
on the test set. Prints one markdown table. Usage (after `source scripts/env.sh`):

    python cnn_perception/scripts/defect_figures.py [--out DIR] [--seeds 1 2] [SURFACE ...]
"""

import argparse
import json
from pathlib import Path
import subprocess
import sys
import tempfile
import time


def cli(*args) -> str:
    res = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
    )
    if res.returncode:
        sys.exit(res.stdout + res.stderr)
    return res.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('surfaces', nargs='*', default=['brick', 'gravel', 'grass', 'moon'])
    ap.add_argument('--out', type=Path, default=None, help='keep datasets, models, plots here')
    ap.add_argument(
        '--seeds', type=int, nargs=2, default=(1, 2), metavar=('FIT', 'TEST'), help='dataset seeds'
    )
    args = ap.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix='defect_figures_'))
    print(
        '| surface | image AUROC | pixel AUROC | box hit | false alarms | F1 | fit (100 images) |'
    )
    print('|---|---|---|---|---|---|---|')
    for name in args.surfaces:
        d = root / name
        for split, count, seed in (('fit', 100, args.seeds[0]), ('test', 40, args.seeds[1])):
            cli(
                'defects',
                'make-dataset',
                '--out',
                d / split,
                '--texture',
                name,
                '--count',
                count,
                '--seed',
                seed,
            )
        t0 = time.monotonic()
        cli('defects', 'fit', '--normal', d / 'fit' / 'normal', '--out', d / 'model.npz',
            '--calibration', 'holdout')  # fmt: skip
        fit_s = time.monotonic() - t0
        m = json.loads(
            cli(
                'defects',
                'eval',
                '--model',
                d / 'model.npz',
                '--normal',
                d / 'test' / 'normal',
                '--defect',
                d / 'test' / 'defect',
                '--masks',
                d / 'test' / 'masks',
                '--json',
                '--plot',
                d / 'roc.png',
            )
            .strip()
            .splitlines()[-1]
        )
        print(
            f'| {name} | {m["image_auroc"]:.3f} | {m["pixel_auroc"]:.3f} | '
            f'{m["box_hit_rate"]:.3f} | {m["false_alarm_rate"]:.3f} | {m["f1"]:.3f} | '
            f'{fit_s:.1f} s |',
            flush=True,
        )
    print(f'\ndatasets, models and plots: {root}')


if __name__ == '__main__':
    main()
