"""The one offline driver: a bag's camera frames through the nodes' steps, as live.

`bag process` (results into a new bag), `report` (an inspection report) and the fleet run
all call `drive`: the steps built from the same parameters the live nodes read
(`build_steps`, the platform YAML or `--params-file`), every decodable frame of one image
topic in record order, its header copied onto the results, a bad message skipped, named
and counted, a failing step counted without ending the run, Ctrl-C and storage errors
ending it with what was done kept, and each step's `finish` (open defect tracks) at the
end.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
import threading
import time
from typing import Any

from cnn_perception.errors import UserError
from cnn_perception.io.bags import BagReader, norm_topic


@dataclass
class OfflineReport:
    frames: int = 0  # processed
    skipped: list[str] = field(default_factory=list)  # 'topic at stamp: why'
    failed: list[str] = field(default_factory=list)  # a step raised on a good frame
    counts: dict[str, int] = field(default_factory=dict)  # written per topic (bag process)
    interrupted: str = ''  # signal or storage error that ended the run early
    image_topic: str = ''
    quirks: list[str] = field(default_factory=list)  # what was unusual in the input bag

    def summary(self, what: str) -> str:
        """Return the lines a user reads; `what` starts the first ('bag process: wrote X')."""
        lines = [
            f'{what}: {self.frames} frame(s) processed from {self.image_topic}, '
            f'{len(self.skipped)} skipped, {len(self.failed)} failed'
            + (f'; stopped early: {self.interrupted}' if self.interrupted else '')
        ]
        lines += [f'  skipped {s}' for s in self.skipped[:20]]
        lines += [f'  ... and {len(self.skipped) - 20} more'] if len(self.skipped) > 20 else []
        lines += [f'  failed {s}' for s in self.failed[:20]]
        lines += [f'  note: {q}' for q in self.quirks]
        lines += [f'  {t}: {n}' for t, n in sorted(self.counts.items())]
        return '\n'.join(lines)


@dataclass
class OfflineFrame:
    conn: Any  # the bag connection it came on
    stamp: int  # record time, ns
    raw: bytes  # as stored (decompressed)
    header: Any  # rclpy std_msgs/Header, as the live node gets it
    rgb: Any


def build_steps(
    nodes: dict[str, Any],
    params_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> list:
    """Build the steps of `nodes` (key -> True, or the value of its NodeSpec.offline_arg).

    Configured as their nodes would be from `params_file` (default config/desktop.yaml),
    then `overrides` (parameter -> value, for every step that has the parameter).
    """
    from cnn_perception import platforms
    from cnn_perception.params import params_from_file
    from cnn_perception.steps import node_params, step_class

    specs = platforms.load_plugins()
    offline = [k for k, s in specs.items() if s.offline]
    chosen = {k: v for k, v in nodes.items() if v not in (None, False)}
    if not chosen:
        raise UserError(f'choose at least one of: {", ".join(offline)}')
    if bad := [k for k in chosen if k not in offline]:
        raise UserError(f'{", ".join(bad)}: not a node that runs offline ({", ".join(offline)})')
    pfile = Path(params_file) if params_file else platforms.params_file(platforms.DEFAULT_PLATFORM)
    if not pfile.is_file():
        raise UserError(f'{pfile}: no such parameters file')
    steps = []
    for key, value in chosen.items():
        spec, cls = specs[key], step_class(key)
        params = node_params(cls)
        p = params_from_file(pfile, spec.name, params)
        names = {q.name for q in params}
        p.update({k: v for k, v in (overrides or {}).items() if v is not None and k in names})
        if spec.offline_arg and value is not True:
            p[spec.offline_arg] = value
        steps.append(cls(p, log=log))
    return steps


def ros_header(h):
    """Return an rclpy std_msgs/Header made from a stored message header (rosbags type)."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(
        stamp=Time(sec=int(h.stamp.sec), nanosec=int(h.stamp.nanosec)), frame_id=str(h.frame_id)
    )


def drive(
    reader: BagReader,
    conns: list,
    steps: list,
    on_results: Callable[[OfflineFrame, list], None],
    on_frame: Callable[[OfflineFrame], None] | None = None,
    images: bool = False,
    stop: threading.Event | None = None,
    desc: str = 'bag process',
) -> OfflineReport:
    """Run `steps` on every decodable frame of `conns`; returns what happened.

    `on_frame(frame)` sees each frame before the steps; `on_results(frame, outs)` gets
    [(step, StepOutput, ms)] for each processed frame, and once more at the end with each
    step's `finish` (ms None), on the last frame. `images`: every step's output images
    too (offline nobody "watches", so it is all or none).
    """
    from tqdm import tqdm

    report = OfflineReport(image_topic=norm_topic(conns[0].topic))
    bar = tqdm(total=sum(c.msgcount for c in conns), unit='frame', desc=desc)

    def skip(where: str, why: str) -> None:
        bar.update()
        report.skipped.append(f'{where}: {why}')
        bar.write(f'{desc}: skipped {where}: {why}')

    last = None
    try:
        for conn, stamp, raw, msg, rgb in reader.frames(conns, skip):
            bar.update()
            if stop is not None and stop.is_set():
                report.interrupted = 'signal'
                break
            frame = OfflineFrame(conn, stamp, raw, ros_header(msg.header), rgb)
            if on_frame is not None:
                on_frame(frame)
            outs = []
            try:
                for step in steps:
                    want = frozenset(step.outputs) if images else frozenset()
                    t0 = time.perf_counter()
                    out = step(rgb, frame.header, want)
                    outs.append((step, out, (time.perf_counter() - t0) * 1000.0))
            except Exception as exc:  # one frame's failure must not cost the run
                where = f'{norm_topic(conn.topic)} at {stamp}'
                report.failed.append(f'{where}: {type(exc).__name__}: {exc}')
                continue
            on_results(frame, outs)
            last = frame
            report.frames += 1
        if last is not None:  # open defect tracks end with the bag
            on_results(last, [(s, s.finish(last.header), None) for s in steps])
    except KeyboardInterrupt:
        report.interrupted = 'interrupted'
    except Exception as exc:  # the storage itself broke (truncated file): keep what we have
        report.interrupted = f'{type(exc).__name__}: {str(exc)[:200]}'
    finally:
        bar.close()
        report.quirks = reader.notes()
    return report
