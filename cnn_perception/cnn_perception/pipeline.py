"""The one-process pipeline: the chosen nodes under one executor.

Python nodes cannot be composable components, and without a ROS install there is no
`ros2 launch`; this runs the same graph the launch files start (`platforms.py`), with the
same per-platform YAML, in one process. `python -m cnn_perception run` calls it.

Why a SingleThreadedExecutor: every node already runs its inference on its own worker
thread (latest frame wins), so callbacks only hand over a reference and never block.
rclpy's MultiThreadedExecutor busy-spins its wait loop while a handler thread has not yet
taken a ready message; on 2 cores that held the GIL and starved the classifier (the
measurement: README, design notes).
"""

import argparse
import importlib
import sys
import threading
import time

from cnn_perception import platforms
from cnn_perception.errors import UserError


def build_nodes(entries, context=None, log=print):
    """Instantiate each available node; returns (nodes, keys not available)."""
    from rclpy.parameter import Parameter

    nodes, missing = [], []
    for entry in entries:
        spec = entry.spec
        if not spec.available():
            missing.append(spec.key)
            log(
                f'pipeline: node {spec.key!r} ({spec.executable}) is not available in this '
                'build; skipped'
            )
            continue
        cls = getattr(importlib.import_module(spec.module), spec.cls)
        cli = ['--ros-args', '--params-file', str(entry.params_file)]
        for src, dst in entry.remappings.items():
            cli += ['-r', f'{src}:={dst}']
        overrides = [Parameter(k, value=v) for k, v in entry.overrides.items()]
        kw = {'key': spec.key} if spec.step else {}  # FrameNode itself serves plugin steps
        nodes.append(
            cls(
                **kw,
                namespace=entry.namespace,
                cli_args=cli,
                parameter_overrides=overrides,
                context=context,
            )
        )
    return nodes, missing


def make_executor():
    """EventsExecutor where rclpy has it (Jazzy+), else SingleThreadedExecutor.

    CNN_PERCEPTION_EXECUTOR=single forces the classic one.
    """
    import os

    from rclpy.executors import SingleThreadedExecutor

    if os.environ.get('CNN_PERCEPTION_EXECUTOR', 'events') == 'events':
        try:
            from rclpy.experimental import EventsExecutor

            return EventsExecutor()
        except ImportError:  # Humble
            pass
    return SingleThreadedExecutor()


def run(
    entries,
    duration: float = 0.0,
    args=None,
    ready: threading.Event | None = None,
    trim_heap: bool = False,
) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    from cnn_perception.runtime import keep_heap_small, limit_blas_threads, stop_on_signals

    limit_blas_threads()
    keep_heap_small(trim_heap)
    stop = threading.Event()
    stop_on_signals(stop)  # ^C ends the loop; nodes are destroyed with their context valid
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    nodes = []
    try:
        nodes, _ = build_nodes(entries)
        if not nodes:
            print('pipeline: no node to run', file=sys.stderr)
            return 2
        executor = make_executor()
        for node in nodes:
            executor.add_node(node)
        names = ', '.join(n.get_fully_qualified_name() for n in nodes)
        torch_state = 'loaded' if 'torch' in sys.modules else 'not loaded'
        print(f'pipeline: running {names} (torch {torch_state})', flush=True)
        if ready is not None:
            ready.set()
        end = time.monotonic() + duration if duration > 0 else None
        while not stop.is_set() and rclpy.ok() and (end is None or time.monotonic() < end):
            executor.spin_once(timeout_sec=0.1)
        return 0
    except UserError as exc:
        print(f'pipeline: {exc}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except Exception:
        # ^C shuts the context down during a callback, which then fails on its
        # publishers (RCLError, "context is invalid"): a shutdown, not an error.
        if rclpy.ok():
            raise
        return 0
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--platform', choices=platforms.PLATFORMS, default=platforms.DEFAULT_PLATFORM)
    p.add_argument('--source', default=None, help='camera source (overrides the YAML)')
    p.add_argument('--params-file', default=None, help='parameters YAML (default: platform)')
    p.add_argument(
        '--nodes',
        default=','.join(platforms.NODES),
        help='comma-separated: ' + ','.join(platforms.NODES),
    )
    p.add_argument('--namespace', default=platforms.DEFAULT_NAMESPACE)
    p.add_argument(
        '--image-topic',
        default=None,
        help='make the processing nodes subscribe to this topic (e.g. a bag replay)',
    )
    p.add_argument('--duration', type=float, default=0.0, help='seconds to run (0: until ^C)')
    p.add_argument(
        '--localize',
        action='store_true',
        help='classifier: boxes around what it recognises (localize: true over the YAML)',
    )
    p.add_argument(
        '--lifecycle',
        action='store_true',
        help='managed (lifecycle) nodes, driven by `ros2 lifecycle` or a lifecycle manager',
    )
    p.add_argument(
        '--no-autostart',
        dest='autostart',
        action='store_false',
        help='with --lifecycle: leave the nodes unconfigured at start-up',
    )


def run_from_args(args) -> int:
    try:
        keys = platforms.parse_nodes(args.nodes)
        entries = platforms.node_entries(
            args.platform,
            keys,
            args.namespace,
            args.source,
            args.params_file,
            args.image_topic,
            localize=args.localize,
            lifecycle=args.lifecycle,
            autostart=args.autostart,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if not entries[0].params_file.is_file():
        raise UserError(f'{entries[0].params_file}: no such parameters file')
    return run(entries, args.duration, trim_heap=args.platform in platforms.TRIM_HEAP)


def main(argv=None) -> int:
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog='pipeline', description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(remove_ros_args(argv if argv is not None else sys.argv)[1:])
    try:
        return run_from_args(args)
    except UserError as exc:
        print(f'pipeline: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
