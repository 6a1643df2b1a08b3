"""`bench`: throughput, latency and memory as ratios measured in one run."""

from pathlib import Path

from cnn_perception.core.models import DEFAULT_MODEL


def add_parser(sub) -> None:
    p = sub.add_parser('bench', help='benchmarks: model vs pipeline, backends, memory')
    p.add_argument('--model', default=DEFAULT_MODEL)
    p.add_argument(
        '--backend',
        action='append',
        choices=('torch', 'onnxruntime'),
        help='model-alone backends (default both; repeat the flag)',
    )
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--duration', type=float, default=10.0, help='seconds per measurement')
    p.add_argument('--no-growth', action='store_true', help='skip the size sweeps')
    p.add_argument(
        '--repeats', type=int, default=3, help='pipeline measurements repeated within the run'
    )
    p.add_argument(
        '--zoo',
        action='store_true',
        help='only the shipped classifiers side by side (accuracy, speed): the zoo section',
    )
    p.add_argument(
        '--int8',
        action='store_true',
        help='only INT8 vs fp32 (throughput, top-1 agreement): the int8 section',
    )
    p.add_argument(
        '--int8-model',
        type=Path,
        default=None,
        metavar='FILE',
        help='with --int8: measure this fine-tuned INT8 twin (`export --int8`, e.g. made on a '
        'GPU machine) instead of fine-tuning here',
    )
    p.add_argument(
        '--shared',
        action='store_true',
        help='only one backbone pass shared by the heads: its cost and what it changes',
    )
    p.add_argument(
        '--localize',
        action='store_true',
        help="only boxes from the classifier's activations (localisation accuracy, cost): "
        'the localize section',
    )
    p.add_argument(
        '--calibrate',
        action='store_true',
        help="with --localize: measure the map threshold and each model's map shift on a "
        'calibration set (the values core/localize.py ships)',
    )
    p.add_argument(
        '--fleet',
        action='store_true',
        help='only many bags: one process vs Ray with 1 and 2 workers: the fleet section',
    )
    p.add_argument(
        '--lifecycle',
        action='store_true',
        help='only managed nodes: CPU deactivated, RSS after cleanup, activate latency',
    )
    p.add_argument(
        '--transport',
        action='store_true',
        help='only compressed vs raw images (bytes, encode/decode cost): the transport section',
    )
    p.add_argument('--json', action='store_true')
    p.add_argument('--out', type=Path, default=None, help='markdown report to write')
    p.set_defaults(func=_bench)

    p = sub.add_parser('soak', help='all nodes above capacity for a long run: RSS, latency')
    p.add_argument('--duration', type=float, default=600.0, help='seconds')
    p.add_argument('--json', action='store_true')
    p.add_argument(
        '--out',
        type=Path,
        default=None,
        help='markdown file whose soak section is replaced (docs/reliability.md)',
    )
    p.set_defaults(func=_soak)


# `bench --<tag>` -> the tools module measuring it (by default the tag itself)
SECTION_MODULES = {
    'shared': 'bench_shared',
    'localize': 'bench_localize',
    'fleet': 'bench_fleet',
    'lifecycle': 'bench_lifecycle',
}


def _bench(args) -> int:
    if args.localize and args.calibrate:
        import json

        from cnn_perception.tools.bench_localize import calibrate
        from cnn_perception.tools.zoo import ZOO

        for name in ZOO:
            print(json.dumps(calibrate(name)), flush=True)
        return 0
    for tag in ('zoo', 'transport', 'int8', 'shared', 'localize', 'fleet', 'lifecycle'):
        if getattr(args, tag):
            return _section(args, tag)
    from cnn_perception.tools.bench import main_bench

    return main_bench(args)


def _section(args, tag: str) -> int:
    """One measured section of docs/benchmarks.md (`<!-- zoo -->`, `<!-- transport -->`)."""
    import importlib
    import json
    import sys

    from cnn_perception.tools.bench_report import write_section

    module = importlib.import_module(f'cnn_perception.tools.{SECTION_MODULES.get(tag, tag)}')
    kwargs = {'model': args.int8_model} if tag == 'int8' and args.int8_model else {}
    res = getattr(module, tag)(log=lambda s: print(s, file=sys.stderr, flush=True), **kwargs)
    md = getattr(module, f'{tag}_markdown')(res)
    if args.out:
        write_section(Path(args.out), tag, md, '# Benchmarks')
    print(json.dumps(res) if args.json else md)
    return 0


def _soak(args) -> int:
    from cnn_perception.tools.soak import main_soak

    return main_soak(args)
