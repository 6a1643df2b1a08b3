"""`bag process`: the nodes' steps on every frame of a bag, results into a new bag.

No ROS graph: the same `steps/` objects the live nodes run, with the same parameters
(the platform YAML or `--params-file`), so offline results equal live ones. Any bag the
`BagReader` opens (rosbag2 of any version, ROS 1), Image or CompressedImage frames. A
message that does not decode is skipped, counted and named; the output bag is closed
properly whatever happens (a bad message, an exception, Ctrl-C, SIGTERM), so everything
processed so far stays readable.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
import threading

from cnn_perception import contract
from cnn_perception.bagtools.common import stop_on_signals
from cnn_perception.contract import ANNOTATION_TYPE
from cnn_perception.errors import BagError, UserError
from cnn_perception.io.annotations import Builder, annotation_topic
from cnn_perception.io.bags import BagReader, norm_topic, typestore


@dataclass
class ProcessReport:
    frames: int = 0  # processed
    skipped: list[str] = field(default_factory=list)  # 'topic at stamp: why'
    failed: list[str] = field(default_factory=list)  # a step raised on a good frame
    counts: dict[str, int] = field(default_factory=dict)  # written per topic
    interrupted: str = ''  # signal or storage error that ended the run early
    image_topic: str = ''
    quirks: list[str] = field(default_factory=list)  # what was unusual in the input bag

    def summary(self, bag_out: Path) -> str:
        lines = [
            f'bag process: wrote {bag_out}: {self.frames} frame(s) processed from '
            f'{self.image_topic}, {len(self.skipped)} skipped, {len(self.failed)} failed'
            + (f'; stopped early: {self.interrupted}' if self.interrupted else '')
        ]
        lines += [f'  skipped {s}' for s in self.skipped[:20]]
        lines += [f'  ... and {len(self.skipped) - 20} more'] if len(self.skipped) > 20 else []
        lines += [f'  failed {s}' for s in self.failed[:20]]
        lines += [f'  note: {q}' for q in self.quirks]
        lines += [f'  {t}: {n}' for t, n in sorted(self.counts.items())]
        return '\n'.join(lines)


def build_steps(
    classifier: bool,
    defects: str | None,
    features: bool,
    params_file: Path | None,
    overrides: dict[str, dict],
    log: Callable[[str], None] = print,
) -> list:
    """Build the chosen steps, configured as their nodes would be from `params_file`."""
    from cnn_perception import platforms
    from cnn_perception.params import params_from_file
    from cnn_perception.steps import node_params, step_class

    keys = [
        k
        for k, on in (('classifier', classifier), ('defects', defects), ('features', features))
        if on
    ]
    if not keys:
        raise UserError('bag process: choose --classifier, --defects MODEL and/or --features')
    pfile = Path(params_file) if params_file else platforms.params_file('desktop')
    if not pfile.is_file():
        raise UserError(f'{pfile}: no such parameters file')
    steps = []
    for key in keys:
        cls = step_class(key)
        p = params_from_file(pfile, cls.node, node_params(cls))
        p.update({k: v for k, v in overrides.get(key, {}).items() if v is not None})
        steps.append(cls(p, log=log))
    return steps


def ros_header(h):
    """Return an rclpy std_msgs/Header made from a stored message header (rosbags type)."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(
        stamp=Time(sec=int(h.stamp.sec), nanosec=int(h.stamp.nanosec)), frame_id=str(h.frame_id)
    )


def process(
    bag_in: Path,
    bag_out: Path,
    image_topic: str | None = None,
    classifier: bool = False,
    defects: str | None = None,
    features: bool = False,
    storage: str = 'mcap',
    classifier_model: str | None = None,
    backend: str | None = None,
    params_file: Path | None = None,
    namespace: str = contract.NAMESPACE,
    log: Callable[[str], None] = print,
) -> ProcessReport:
    """Run the steps on every frame of the image topic; write frames and results to bag_out.

    Raises BagError (after closing the output) when not one frame could be processed.
    """
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    from cnn_perception.io.images import numpy_to_image

    bag_out = Path(bag_out)
    if bag_out.exists():
        raise UserError(f'{bag_out}: exists already; bags are never overwritten')
    overrides = {
        'classifier': {'model': classifier_model, 'backend': backend},
        'defects': {'model': defects, 'backend': backend},
        'features': {'backend': backend},
    }
    reader = BagReader(bag_in)
    try:
        conns = reader.image_connections(image_topic)
        steps = build_steps(classifier, defects, features, params_file, overrides, log)
    except BaseException:
        reader.close()
        raise
    report = ProcessReport(image_topic=norm_topic(conns[0].topic))
    store = typestore()
    stop = threading.Event()
    stop_on_signals(stop)
    writer = Writer(
        bag_out,
        version=9,
        storage_plugin=StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3,
    )
    writer.open()
    out_conns = {}

    def write(topic: str, msgtype: str, data: bytes, stamp: int) -> None:
        if topic not in out_conns:
            out_conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
        writer.write(out_conns[topic], stamp, data)
        report.counts[topic] = report.counts.get(topic, 0) + 1

    annotate = Builder(store.types)

    def write_result(topic, msg, stamp: int) -> None:
        full = topic.full(namespace)
        write(full, topic.type, serialize_message(msg), stamp)
        ann_topic = annotation_topic(full)
        if ann_topic:  # Foxglove draws these over the camera image
            ann = annotate.for_result(topic.name, msg)
            write(
                ann_topic, ANNOTATION_TYPE, bytes(store.serialize_cdr(ann, ANNOTATION_TYPE)), stamp
            )

    total = sum(c.msgcount for c in conns)
    last_header, last_stamp = None, 0
    bar = tqdm(total=total, unit='frame', desc='bag process')

    def skip(where: str, why: str) -> None:
        bar.update()
        report.skipped.append(f'{where}: {why}')
        bar.write(f'bag process: skipped {where}: {why}')

    try:
        for conn, stamp, raw, msg, rgb in reader.frames(conns, skip):
            bar.update()
            if stop.is_set():
                report.interrupted = 'signal'
                break
            where = f'{norm_topic(conn.topic)} at {stamp}'
            header = ros_header(msg.header)
            last_header, last_stamp = header, stamp
            write(report.image_topic, conn.msgtype, reader.to_cdr(raw, conn.msgtype), stamp)
            try:
                for step in steps:
                    out = step(rgb, header, frozenset(step.outputs))
                    for topic, m in out.messages:
                        write_result(topic, m, stamp)
                    for topic, img in out.images:
                        data = serialize_message(numpy_to_image(img, 'rgb8', header))
                        write(topic.full(namespace), topic.type, data, stamp)
            except Exception as exc:  # one frame's failure must not cost the run
                report.failed.append(f'{where}: {type(exc).__name__}: {exc}')
                continue
            report.frames += 1
        for step in steps:  # open defect tracks end with the bag
            if hasattr(step, 'finish') and last_header is not None:
                for topic, m in step.finish(last_header).messages:
                    write_result(topic, m, last_stamp)
    except KeyboardInterrupt:
        report.interrupted = 'interrupted'
    except Exception as exc:  # the storage itself broke (truncated file): keep what we have
        report.interrupted = f'{type(exc).__name__}: {str(exc)[:200]}'
    finally:
        bar.close()
        writer.close()
        report.quirks = reader.notes()
        reader.close()
    log(report.summary(bag_out))
    if report.frames == 0 and report.interrupted != 'signal':
        raise BagError(
            f'{bag_in}: not one frame of {report.image_topic} could be processed '
            f'({len(report.skipped)} skipped; see above); {bag_out} holds no results'
        )
    return report
