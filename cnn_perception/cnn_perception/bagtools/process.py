"""`bag process`: the nodes' steps on every frame of a bag, results into a new bag.

No ROS graph: the same `steps/` objects the live nodes run, with the same parameters
(the platform YAML or `--params-file`), so offline results equal live ones; the frame loop
is `offline.drive`, which `report` runs too. Any bag the `BagReader` opens, Image or
CompressedImage frames. A message that does not decode is skipped, counted and named; the
output bag is closed properly whatever happens (a bad message, an exception, Ctrl-C,
SIGTERM), so everything processed so far stays readable.
"""

from collections.abc import Callable
from pathlib import Path
import threading
from typing import Any

from cnn_perception import contract
from cnn_perception.bagtools.offline import OfflineReport, build_steps, drive
from cnn_perception.contract import ANNOTATION_TYPE
from cnn_perception.errors import BagError, UserError
from cnn_perception.io.annotations import Builder, annotation_topic
from cnn_perception.io.bags import BagReader, norm_topic, typestore
from cnn_perception.runtime import stop_on_signals


def process(
    bag_in: Path,
    bag_out: Path,
    nodes: dict[str, Any],
    image_topic: str | None = None,
    storage: str = 'mcap',
    backend: str | None = None,
    params_file: Path | None = None,
    namespace: str = contract.NAMESPACE,
    log: Callable[[str], None] = print,
    localize: bool = False,
    steps: list | None = None,
) -> OfflineReport:
    """Run the steps of `nodes` on every frame of the image topic; frames and results to bag_out.

    `nodes`: node key -> True, or the value its `bag process --<key> VALUE` flag sets (the
    defect detector's model, a classifier model). Raises BagError (after closing the
    output) when not one frame could be processed. `localize`: the classifier also
    writes classifier/detections (boxes from its activations) and their annotations.
    `steps`: steps built before for these nodes, reused (reset first): many bags, models
    loaded once (`fleet.py`).
    """
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from cnn_perception.io.images import numpy_to_image

    bag_out = Path(bag_out)
    if bag_out.exists():
        raise UserError(f'{bag_out}: exists already; bags are never overwritten')
    reader = BagReader(bag_in)
    try:
        conns = reader.image_connections(image_topic)
        overrides = {'backend': backend, 'localize': True if localize else None}
        if steps is None:
            steps = build_steps(nodes, params_file, overrides, log)
        for s in steps:
            s.reset()
    except BaseException:
        reader.close()
        raise
    store = typestore()
    stop = threading.Event()
    stop_on_signals(stop)
    writer = Writer(
        bag_out,
        version=9,
        storage_plugin=StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3,
    )
    writer.open()
    out_conns, counts = {}, {}
    annotate = Builder(store.types)

    def write(topic: str, msgtype: str, data: bytes, stamp: int) -> None:
        if topic not in out_conns:
            out_conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
        writer.write(out_conns[topic], stamp, data)
        counts[topic] = counts.get(topic, 0) + 1

    def write_frame(frame) -> None:
        write(
            norm_topic(frame.conn.topic),
            frame.conn.msgtype,
            reader.to_cdr(frame.raw, frame.conn.msgtype),
            frame.stamp,
        )

    def write_results(frame, outs) -> None:
        for _, out, _ in outs:
            for topic, m in out.messages:
                full = topic.full(namespace)
                write(full, topic.type, serialize_message(m), frame.stamp)
                ann_topic = annotation_topic(full)
                if ann_topic:  # Foxglove draws these over the camera image
                    ann = annotate.for_result(topic.name, m)
                    data = bytes(store.serialize_cdr(ann, ANNOTATION_TYPE))
                    write(ann_topic, ANNOTATION_TYPE, data, frame.stamp)
            for topic, img in out.images:
                data = serialize_message(numpy_to_image(img, 'rgb8', frame.header))
                write(topic.full(namespace), topic.type, data, frame.stamp)

    try:
        report = drive(reader, conns, steps, write_results, write_frame, images=True, stop=stop)
    finally:
        writer.close()
        reader.close()
    report.counts = counts
    log(report.summary(f'bag process: wrote {bag_out}'))
    if report.frames == 0 and report.interrupted != 'signal':
        raise BagError(
            f'{bag_in}: not one frame of {report.image_topic} could be processed '
            f'({len(report.skipped)} skipped; see above); {bag_out} holds no results'
        )
    return report
