"""
`python -m cnn_perception <command>`: the project's command line.

Every sub-command lives in its own module under `cnn_perception.commands` and imports
its heavy dependencies (torch, rclpy, ...) only when it runs, so `--help` is instant and
the torch-free Pi path never imports torch by accident.
"""

import argparse
import importlib
import sys

from cnn_perception import __version__
from cnn_perception.errors import UserError

# Modules in cnn_perception.commands; each provides `add_parser(subparsers)`.
COMMAND_MODULES = (
    'run',
    'classifier',
    'train',
    'defects',
    'features',
    'bag',
    'report',
    'demo',
    'bench',
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='python -m cnn_perception',
        description='CNN perception for drones: ROS 2 nodes, models and tools.',
    )
    parser.add_argument('--version', action='version', version=f'cnn_perception {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for module in COMMAND_MODULES:
        importlib.import_module(f'cnn_perception.commands.{module}').add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(main())
