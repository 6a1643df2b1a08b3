"""camera_node: frames from a camera, video, folder, bag or the built-in test scene.

Publishes `camera/image_raw` (sensor-data QoS), its JPEG twin
`camera/image_raw/compressed` (only encoded while someone subscribes: a datalink cannot
carry raw frames) and `camera/camera_info`, stamped with the capture time. A source that
fails is reported on /diagnostics and reopened with exponential back-off; a bag message
that does not decode is skipped with a WARN; the node itself stays up.

In a one-process `pipeline` the frames go to the processing nodes of that process
without DDS (`intra.FrameHub`), and over DDS only while someone outside subscribes.
"""

import sys
import time

import cv2
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from cnn_perception import contract
from cnn_perception.errors import SourceEnded, SourceLost
from cnn_perception.intra import FrameHub
from cnn_perception.io.calibration import load_camera_info
from cnn_perception.io.images import jpeg_msg, numpy_to_image
from cnn_perception.io.sources import (
    ACCEPTED,
    check_openable,
    open_source,
    parse_source,
)
from cnn_perception.nodes.common import (
    ERROR,
    IMAGE_QOS,
    OK,
    WARN,
    Param,
    declare_params,
    overridable,
    read_params,
    run_node,
)
from cnn_perception.nodes.managed import ManagedNode

PARAMS = [
    Param('source', 'test:', f'Frame source; accepted: {ACCEPTED}'),
    Param('width', 640, 'Output width in pixels (0: native size of the source)', 0, 8192),
    Param('height', 480, 'Output height in pixels (0: native size of the source)', 0, 8192),
    Param('fps', 30.0, 'Publishing rate, frames per second', 0.1, 1000.0),
    Param('frame_id', 'camera_optical_frame', 'frame_id of the published images'),
    Param('loop', True, 'Start again at the end of a file, folder or bag'),
    Param(
        'encoding', 'bgr8', 'Encoding of the published images', choices=('bgr8', 'rgb8', 'mono8')
    ),
    Param(
        'wait_for_subscribers',
        0,
        'Hold the first frame until this many subscribers listen (replays, demos)',
        0,
        100,
    ),
    Param('jpeg_quality', 80, 'JPEG quality of camera/image_raw/compressed', 1, 100, live=True),
    Param(
        'camera_info_url',
        '',
        'Calibration YAML (camera_info format, file:// or a path); empty: uncalibrated',
    ),
]
BACKOFF_MIN, BACKOFF_MAX = 0.5, 8.0
WAIT_LIMIT = 60.0  # wait_for_subscribers never holds the camera longer than this


class CameraNode(ManagedNode):
    """The camera: configure checks the source, activate opens it, deactivate closes it.

    The lifecycle is `nodes/managed.py`'s; a closed device draws no power and another
    process may open it.
    """

    def __init__(self, **kwargs):
        self.source = self.timer = None
        self.sent = 0
        super().__init__('camera', **kwargs)

    def declare(self) -> None:
        declare_params(self, PARAMS, settable=self.settable)
        self.add_post_set_parameters_callback(self._params_changed)

    def configure(self) -> None:
        p = read_params(self, PARAMS)
        self.spec = parse_source(p['source'])
        check_openable(self.spec)
        self.diag.hardware_id = p['source']
        self.width, self.height, self.fps = p['width'], p['height'], p['fps']
        self.frame_id, self.loop, self.encoding = p['frame_id'], p['loop'], p['encoding']
        self.wait_for = p['wait_for_subscribers']
        self.info_template = load_camera_info(p['camera_info_url'], self.width, self.height)
        self.jpeg_quality = p['jpeg_quality']
        self.image_pub = self.make_publisher(
            Image, contract.CAMERA_IMAGE.name, IMAGE_QOS, qos_overriding_options=overridable()
        )
        self.jpeg_pub = self.make_publisher(
            CompressedImage, contract.CAMERA_IMAGE_COMPRESSED.name, IMAGE_QOS
        )
        self.info_pub = self.make_publisher(
            CameraInfo, contract.CAMERA_INFO.name, IMAGE_QOS, qos_overriding_options=overridable()
        )
        self.hub = FrameHub.get(self.context, self.image_pub.topic_name)
        self.in_process_only = 0  # frames that went to local nodes only, no DDS

    def activate(self) -> None:
        self.wait_deadline = time.monotonic() + WAIT_LIMIT
        self.backoff = BACKOFF_MIN
        self.next_try = 0.0
        self.ended = False
        self.last_sent = -1e9
        self._connect()
        self.timer = self.create_timer(1.0 / self.fps, self._tick)

    def deactivate(self) -> None:
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        if self.source is not None:  # the device is free (and powered down) while inactive
            self.source.close()
            self.source = None

    def cleanup(self) -> None:
        for name in ('image_pub', 'jpeg_pub', 'info_pub'):
            if getattr(self, name, None) is not None:
                self.drop_publisher(getattr(self, name))
                setattr(self, name, None)

    def _params_changed(self, params) -> None:
        for prm in params:
            if prm.name == 'jpeg_quality':
                self.jpeg_quality = int(prm.value)

    def _connect(self) -> bool:
        try:
            self.source = open_source(self.spec, self.width, self.height, self.fps, self.loop)
        except SourceLost as exc:
            self._lost(str(exc))
            return False
        self.backoff = BACKOFF_MIN
        self.diag.set(OK, f'streaming from {self.spec.kind}', frames_sent=self.sent)
        return True

    def _lost(self, why: str) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        self.diag.count('source_failures')
        self.diag.set(ERROR, f'camera source lost: {why}; retrying in {self.backoff:.1f} s')
        self.next_try = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def _tick(self) -> None:
        try:
            self._send_frame()
        except Exception:
            # ^C shuts the context down, possibly while a frame is being sent: the
            # publishers then fail ("context is invalid"). A shutdown, not an error.
            if self.context.ok():
                raise

    def _send_frame(self) -> None:
        if self.ended:
            return
        if self.wait_for and self.image_pub.get_subscription_count() < self.wait_for:
            if time.monotonic() < self.wait_deadline:
                return
            self.diag.set(
                WARN,
                f'only {self.image_pub.get_subscription_count()} of '
                f'{self.wait_for} subscribers after {WAIT_LIMIT:.0f} s; starting',
            )
        self.wait_for = 0  # once started, never hold frames again
        now = time.monotonic()
        if now - self.last_sent < 0.25 / self.fps:
            # A timer event queued while the executor was busy (the other nodes of the
            # process loading their models): sending now would put two frames 1 ms
            # apart, and latest-frame-wins downstream would drop the first of them.
            return
        if self.source is None:
            if time.monotonic() < self.next_try or not self._connect():
                return
        try:
            rgb = self.source.read()
        except SourceEnded as exc:
            self.ended = True
            self.diag.set(WARN, f'source ended: {exc}', frames_sent=self.sent)
            return
        except SourceLost as exc:
            self._lost(str(exc))
            return
        except Exception as exc:  # a source bug must not kill the timer (and the node)
            self._lost(f'{type(exc).__name__}: {exc}')
            return
        for problem in getattr(self.source, 'pop_problems', list)():
            self.diag.count('bad_messages_skipped')
            self.diag.set(WARN, f'bad bag message skipped: {problem}')
        stamp = self.get_clock().now().to_msg()
        header = Header(stamp=stamp, frame_id=self.frame_id)
        local = 0
        if self.hub.local_count:
            # What a subscriber decoding the message would get (mono8: grey in 3 channels).
            shown = rgb
            if self.encoding == 'mono8':
                shown = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
            local = self.hub.publish(header, shown, contract.stamp_ns(header))
        # Local takers are DDS subscribers too: only a count above theirs is someone else.
        if not local or self.image_pub.get_subscription_count() > local:
            self.image_pub.publish(self._message(rgb, header))
        else:
            self.in_process_only += 1
        if self.jpeg_pub.get_subscription_count() > 0:
            self.jpeg_pub.publish(jpeg_msg(rgb, header, self.jpeg_quality))
        info = self.info_template
        info.header = header
        if info.width == 0:  # uncalibrated, native size: fill in what we now know
            info.width, info.height = rgb.shape[1], rgb.shape[0]
        self.info_pub.publish(info)
        self.last_sent = now
        self.sent += 1
        self.diag.update(frames_sent=self.sent, frames_in_process_only=self.in_process_only)
        if self.hub.errors:
            self.diag.update(
                in_process_errors=self.hub.errors, in_process_last_error=self.hub.last_error
            )

    def _message(self, rgb, header) -> Image:
        if self.encoding == 'bgr8':
            frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        elif self.encoding == 'mono8':
            frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        else:
            frame = rgb
        return numpy_to_image(frame, self.encoding, header)


def main(args=None) -> int:
    return run_node(CameraNode, 'camera_node', args)


if __name__ == '__main__':
    sys.exit(main())
