"""`bag record | play | info | process`: rosbag2 tools that need no ROS install."""

import json
from pathlib import Path

from cnn_perception.bagtools import STORAGE


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
    q.add_argument('bag_in', type=Path, metavar='IN')
    q.add_argument('bag_out', type=Path, metavar='OUT')
    q.add_argument('--classifier', action='store_true')
    q.add_argument('--model', default=None, help='classifier model (default: the params file)')
    q.add_argument(
        '--defects', default=None, metavar='MODEL', help='defect model (.npz or builtin:brick)'
    )
    q.add_argument('--features', action='store_true')
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
    q.add_argument('--storage', choices=STORAGE, default='mcap')
    q.set_defaults(func=_process)


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

    report = process(
        args.bag_in,
        args.bag_out,
        args.image_topic,
        args.classifier,
        args.defects,
        args.features,
        args.storage,
        args.model,
        args.backend,
        args.params_file,
    )
    return 130 if report.interrupted == 'signal' else 0
