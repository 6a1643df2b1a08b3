"""FrameNode: what every frame-processing node is (a step behind a ROS interface)."""

from collections import deque
import threading
import time

from sensor_msgs.msg import CompressedImage, Image

from cnn_perception.contract import IMAGE_INPUT, compressed_topic, message_class
from cnn_perception.intra import FrameHub
from cnn_perception.nodes.common import (
    ERROR,
    IMAGE_QOS,
    OK,
    OUTPUT_IMAGE_QOS,
    QOS_BY_KIND,
    RESULT_QOS,
    WARN,
    declare_params,
    overridable,
    read_params,
)
from cnn_perception.nodes.managed import ManagedNode
from cnn_perception.runtime import FrameMonitor, LatestFrameWorker
from cnn_perception.steps import node_params, step_class


def decode_frame(raw: bytes, compressed: bool):
    """CDR bytes of a sensor_msgs/Image or CompressedImage -> (header, HxWx3 RGB uint8).

    Called on the worker thread for the frames that are processed only: the ones that
    latest-frame-wins drops cost no deserialisation and no JPEG decoding at all.
    """
    from rclpy.serialization import deserialize_message

    from cnn_perception.io.images import ImageError, frame_to_rgb8

    cls = CompressedImage if compressed else Image
    try:
        msg = deserialize_message(raw, cls)
    except Exception as exc:  # malformed CDR from a misbehaving publisher
        raise ImageError(f'undecodable {cls.__name__} message ({type(exc).__name__})') from exc
    return msg.header, frame_to_rgb8(msg)


class FrameNode(ManagedNode):
    """A processing node: its step (`steps/`), the image subscription, publishers, health.

    A node is its `key` (a NodeSpec in platforms.NODES: its ROS name and its step); a
    subclass sets it, or the pipeline passes it (`FrameNode(key=...)`, a plugin's node).
    Everything else -- parameters with descriptors, raw or compressed input,
    latest-frame-wins worker, publishing the step's messages and watched output images
    (plus their JPEG twins), diagnostics, the lifecycle (`nodes/managed.py`: configure
    loads the step's model, activate subscribes, cleanup frees the model) -- is the same
    for every node, and the step is what offline tools run.
    """

    key = ''
    task = 'inference'

    def __init__(self, key: str = '', **kwargs):
        from cnn_perception.platforms import load_plugins

        self.key = key or self.key
        self.step_cls = step_class(self.key)
        self.step = self.worker = self.sub = self.hub = None
        self.pubs, self.twins, self.annotators = {}, {}, {}
        self.min_period = 0.0
        super().__init__(load_plugins()[self.key].name, **kwargs)

    def declare(self) -> None:
        declare_params(self, node_params(self.step_cls), settable=self.settable)
        self.add_post_set_parameters_callback(self._params_changed)

    def configure(self) -> None:
        step_cls = self.step_cls
        self.params = p = read_params(self, node_params(step_cls))
        self.step = step_cls(p, log=self.get_logger().info)
        for t in step_cls.outputs:
            qos = QOS_BY_KIND[t.qos]
            extra = {'qos_overriding_options': overridable()} if t.qos == 'result' else {}
            self.pubs[t] = self.make_publisher(message_class(t.type), t.name, qos, **extra)
            if t.qos == 'output_image':
                self.twins[t] = self.make_publisher(
                    CompressedImage, compressed_topic(t.name), OUTPUT_IMAGE_QOS
                )
        self._start_annotations(step_cls)
        self.monitor = FrameMonitor()
        self.set_max_rate(p['max_rate_hz'])
        self.set_image_rate(p['image_max_rate_hz'])
        self._last_images = -1e9
        self.compressed = p['image_transport'] == 'compressed'
        # image_transport's naming: the compressed twin of a (remapped) topic is
        # <resolved topic>/compressed, so remapping `image` moves both.
        self.topic = IMAGE_INPUT
        if self.compressed:
            self.topic = compressed_topic(self.resolve_topic_name(IMAGE_INPUT))
        self.skipped_unwatched = 0
        self.duplicates_skipped = 0
        self.led_frames = 0
        self._taken: deque[int] = deque(maxlen=32)
        self._taken_lock = threading.Lock()
        self.on_configure_step()

    def activate(self) -> None:
        p = self.params
        self.worker = LatestFrameWorker(
            self._process, self.report_failure, name=self.key, niceness=p['niceness']
        )
        self.worker.min_period = self.min_period
        self.sub = self.create_subscription(
            CompressedImage if self.compressed else Image,
            self.topic,
            self._on_image,
            IMAGE_QOS,
            raw=True,
            qos_overriding_options=overridable(),
        )
        # A camera in this process hands its frames over directly (intra.py); the DDS
        # subscription stays for every other publisher (a bag replay, a remote camera).
        self.hub = None if self.compressed else FrameHub.get(self.context, self.sub.topic_name)
        if self.hub is not None:
            self.hub.subscribe(self._on_local_frame)
        # One backbone pass shared in this process (core/shared.py): the classifier leads,
        # handing each frame it processed over (through the hub) to the other heads on the
        # same stream, whose pass is then already computed. That is for the in-process
        # camera's frames: the followers leave them to the leader while it hands them over
        # (not when it is absent, throttled, on another stream). Frames from DDS (a bag,
        # another process) every node takes as they come, as before: a bad one is seen and
        # counted by each. A frame comes once, whichever way first: by its hub `seq`.
        sharing = self.hub is not None and self.step.shared_pass is not None
        self.leads = sharing and self.step.leads_shared_pass
        self.follows = sharing and not self.step.leads_shared_pass
        if self.follows:
            self.hub.follow(self._on_led_frame)
        self.on_start()
        self.diag.set(OK, f'{self.step.describe}: waiting for images on {self.topic}')

    def deactivate(self) -> None:
        if self.hub is not None:
            self.hub.unsubscribe(self._on_local_frame)
            self.hub.unsubscribe(self._on_led_frame)
            self.hub = None
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.worker is not None:
            self.worker.stop()  # the frame in flight is published first; counters kept
        self.on_stop()

    def cleanup(self) -> None:
        for pub in [*self.pubs.values(), *self.twins.values()]:
            self.drop_publisher(pub)
        for pub, _ in self.annotators.values():
            self.drop_publisher(pub)
        self.pubs, self.twins, self.annotators = {}, {}, {}
        self.on_cleanup_step()
        if self.step is not None:
            self.step.close()
            self.step = None

    def _start_annotations(self, step_cls) -> None:
        """Foxglove ImageAnnotations beside the results, where foxglove_msgs exists."""
        from cnn_perception.io.annotations import Builder, annotation_topic, rclpy_types

        self.annotators = {}
        wanted = [t for t in step_cls.outputs if annotation_topic(t.name)]
        module = rclpy_types() if wanted else None
        if wanted and module is None:
            self.get_logger().info(
                'foxglove_msgs is not installed: ImageAnnotations are written to bags '
                '(bag record / bag process) but not published live'
            )
            return
        for t in wanted:
            pub = self.make_publisher(
                module.ImageAnnotations, annotation_topic(t.name), RESULT_QOS
            )
            self.annotators[t] = (pub, Builder(module))

    def on_configure_step(self) -> None:
        """Make what a node adds to its step's publishers (a hook for subclasses)."""

    def on_start(self) -> None:
        """Start what a node adds on activation: a first message, more subscriptions."""

    def on_stop(self) -> None:
        """Stop what `on_start` started (a hook for subclasses)."""

    def on_cleanup_step(self) -> None:
        """Free what `on_configure_step` made (a hook for subclasses)."""

    def _params_changed(self, params) -> None:
        if self.step is None:  # unconfigured: the next configure reads them all
            return
        for prm in params:
            if prm.name == 'max_rate_hz':
                self.set_max_rate(float(prm.value))
            elif prm.name == 'image_max_rate_hz':
                self.set_image_rate(float(prm.value))
            else:
                self.step.set(prm.name, prm.value)

    def set_max_rate(self, hz: float) -> None:
        self.min_period = 1.0 / hz if hz > 0 else 0.0
        if self.worker is not None:
            self.worker.min_period = self.min_period

    def set_image_rate(self, hz: float) -> None:
        self.image_period = 1.0 / hz if hz > 0 else 0.0

    def watched(self) -> frozenset:
        """Output-image topics someone subscribes to (raw or compressed twin)."""
        return frozenset(
            t
            for t, pub in self.pubs.items()
            if t in self.twins
            and (pub.get_subscription_count() > 0 or self.twins[t].get_subscription_count() > 0)
        )

    def _on_image(self, raw: bytes) -> None:
        if self.hub is not None and self.hub.seen(raw):
            self.duplicates_skipped += 1  # already handed over in-process
            return
        self._submit(raw)

    def _on_local_frame(self, header, rgb, seq: int) -> None:
        if self.follows:
            # The leader's frames come at its rate; a follower wanting more than it
            # delivers takes the camera's after two of its own periods without one.
            if self.hub.leading(max(0.25, 2 * self.worker.min_period)):
                return
            if not self._take(seq):
                return
        self._submit((header, rgb, seq))

    def _on_led_frame(self, header, rgb, seq: int) -> None:
        if self._take(seq):
            self.led_frames += 1
            self._submit((header, rgb, seq))

    def _take(self, seq: int) -> bool:
        """Whether a follower takes this frame: not if it came the other way already."""
        with self._taken_lock:
            if seq in self._taken:
                return False
            self._taken.append(seq)
            return True

    def _submit(self, item) -> None:
        # A step for people only (feature maps) costs nothing while nobody looks.
        if self.step.needs_watchers and not self.watched():
            self.skipped_unwatched += 1
            return
        self.worker.submit(item)

    def _process(self, item) -> None:
        """One frame: CDR bytes from DDS, or (header, RGB array, seq) from this process."""
        from cnn_perception.io.images import jpeg_msg, numpy_to_image

        if isinstance(item, tuple):
            header, rgb, seq = item
        else:
            header, rgb = decode_frame(item, self.compressed)
        want = self.watched()
        now = time.monotonic()
        # Images are for people: a step that exists only for them (feature maps) has its
        # own max_rate_hz; for the others an image every image_period is enough.
        if want and not self.step.needs_watchers:
            if now - self._last_images < self.image_period:
                want = frozenset()
            else:
                self._last_images = now
        out = self.step(rgb, header, want)
        if self.leads and isinstance(item, tuple):  # in-process frames only
            self.hub.hand_over(header, rgb, seq)
        for topic, msg in out.messages:
            self.pubs[topic].publish(msg)
            if topic in self.annotators:
                pub, builder = self.annotators[topic]
                pub.publish(builder.for_result(topic.name, msg))
        for topic, img in out.images:
            if self.pubs[topic].get_subscription_count() > 0:
                self.pubs[topic].publish(numpy_to_image(img, 'rgb8', header))
            if self.twins[topic].get_subscription_count() > 0:
                self.twins[topic].publish(jpeg_msg(img, header))
        self.frame_done(header, out.values)

    def report_failure(self, exc: Exception) -> None:
        from cnn_perception.io.images import ImageError

        if not self.context.ok():  # shutting down: the frame in flight lost its publishers
            return
        if isinstance(exc, ImageError):
            self.diag.count('bad_frames')
            self.diag.set(WARN, f'bad image skipped: {exc}')
            return
        self.diag.count('inference_errors')
        n = self.worker.failures_in_a_row
        level = ERROR if n >= self.worker.backoff_after else WARN
        self.diag.set(level, f'{self.task} failed ({n} in a row): {type(exc).__name__}: {exc}')

    def frame_done(self, header, values: dict) -> None:
        """Diagnostics after a processed frame: frame warnings, or back to OK."""
        warning = self.monitor.check(header)
        if warning:
            self.diag.count('frame_warnings')
            self.diag.set(WARN, warning)
        elif self.worker.nice_error:
            self.diag.set(WARN, f'niceness not applied: {self.worker.nice_error}')
        elif self.diag.level != OK:
            self.diag.set(OK, f'{self.step.describe}: {self.task}')
        self.diag.update(
            processed=self.worker.processed + 1,
            dropped=self.worker.dropped,
            skipped_unwatched=self.skipped_unwatched,
            frames_from_shared_pass=self.led_frames,
            duplicates_skipped=self.duplicates_skipped,
            **values,
        )
