"""`bag record | play | info | process`: rosbag2 tools that need no ROS install."""

import json
from pathlib import Path

from cnn_perception.bagtools import STORAGE
from cnn_perception.commands.report import add_fleet_flags
from cnn_perception.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser('bag', help='record, play, inspect and process rosbag2 files')
    bsub = p.add_subparsers(dest='bag_command', metavar='ACTION', required=True)

    q = bsub.add_parser('record', help='record topics to a new bag')
    q.add_argument('--out', type=Path, required=True, help='bag directory to create')
    q.add_argument('--topics', nargs='+', default=None)
    q.add_argument('--all', action='store_true', help='every topic, including late ones')
    q.add_argument('--duration', type=float, default=0.0, help='seconds (0: until ^C)')
    q.add_argument('--storage', choices=STORAGE, default='mcap')
    q.set_defaults(func=_record)

    q = bsub.add_parser('play', help='republish a bag with its original timing')
    q.add_argument('bag', type=Path)
    q.add_argument('--rate', type=float, default=1.0)
    q.add_argument('--loop', action='store_true')
    q.add_argument('--topics', nargs='+', default=None)
    q.add_argument('--clock', action='store_true', help='publish /clock (use_sim_time)')
    q.add_argument(
        '--wait-for-subscribers',
        type=float,
        default=5.0,
        metavar='S',
        help='wait up to S seconds for subscribers before the first message',
    )
    q.set_defaults(func=_play)

    q = bsub.add_parser('info', help='topics, types, counts, duration')
    q.add_argument('bag', type=Path, help='rosbag2 directory or ROS 1 .bag file')
    q.add_argument('--json', action='store_true')
    q.set_defaults(func=_info)

    q = bsub.add_parser('process', help='run the models offline on every image of a bag')
    q.add_argument(
        'bags',
        type=Path,
        nargs='+',
        metavar='IN [OUT]',
        help='IN OUT: one bag into a new bag OUT; with --out-dir: every IN (bags, or folders '
        'of them) into OUT_DIR/<flight>/bag, on Ray',
    )
    q.add_argument('--out-dir', type=Path, default=None, help='many bags: where their results go')
    add_node_flags(q)
    q.add_argument(
        '--image-topic',
        default=None,
        help="Image or CompressedImage topic (default: the bag's only image topic)",
    )
    q.add_argument(
        '--params-file',
        type=Path,
        default=None,
        help='node parameters YAML, as for `run` (default: config/desktop.yaml)',
    )
    q.add_argument('--backend', choices=('onnxruntime', 'torch'), default=None)
    q.add_argument(
        '--localize',
        action='store_true',
        help='with --classifier: boxes around what it recognises, from its own activations',
    )
    q.add_argument('--storage', choices=STORAGE, default='mcap')
    add_fleet_flags(q)
    q.set_defaults(func=_process)


def add_node_flags(q) -> None:
    """One flag per node that runs offline (platforms.NODES and plugins): `--<key>`.

    A node whose NodeSpec names an `offline_arg` takes an optional value for that
    parameter (`--defects builtin:brick`, `--classifier efficientnet_lite2`); without one
    the parameters file's value is used.
    """
    from cnn_perception.platforms import frame_nodes

    g = q.add_argument_group('nodes (at least one)')
    for spec in frame_nodes():
        if not spec.offline:
            continue
        if spec.offline_arg:
            g.add_argument(
                f'--{spec.key}', nargs='?', const=True, default=None,
                metavar=spec.offline_arg.upper(),
                help=f'the {spec.title} (optional {spec.offline_arg}: default the params file)',
            )  # fmt: skip
        else:
            g.add_argument(f'--{spec.key}', action='store_true', help=f'the {spec.title}')


def chosen_nodes(args) -> dict:
    """Node key -> True or its flag's value, for the flags `add_node_flags` made."""
    from cnn_perception.platforms import frame_nodes

    return {s.key: getattr(args, s.key, None) for s in frame_nodes() if s.offline}


def _record(args) -> int:
    from cnn_perception.bagtools import record

    record(args.out, args.topics, args.all, args.duration, args.storage)
    return 0


def _play(args) -> int:
    from cnn_perception.bagtools import play

    play(args.bag, args.rate, args.loop, args.topics, args.clock, args.wait_for_subscribers)
    return 0


def _info(args) -> int:
    from cnn_perception.bagtools import format_info, info

    meta = info(args.bag)
    print(json.dumps(meta) if args.json else format_info(meta))
    return 0


def _process(args) -> int:
    from cnn_perception.bagtools import process

    if args.out_dir is not None:
        from cnn_perception.commands.report import run_fleet_cli
        from cnn_perception.fleet import find_bags

        job = {'kind': 'process', 'nodes': {k: (str(v) if v not in (True, None) else v)
                                            for k, v in chosen_nodes(args).items()},
               'image_topic': args.image_topic, 'storage': args.storage,
               'backend': args.backend, 'localize': args.localize,
               'params_file': str(args.params_file) if args.params_file else None}  # fmt: skip
        return run_fleet_cli(args, find_bags(args.bags), args.out_dir, job)
    if len(args.bags) != 2:
        raise UserError('bag process IN OUT (one bag), or IN... --out-dir DIR (many)')
    report = process(
        args.bags[0],
        args.bags[1],
        chosen_nodes(args),
        args.image_topic,
        args.storage,
        args.backend,
        args.params_file,
        localize=args.localize,
    )
    return 130 if report.interrupted == 'signal' else 0
