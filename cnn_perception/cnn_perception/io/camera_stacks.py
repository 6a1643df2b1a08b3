"""Board camera stacks: GStreamer without OpenCV's help, and the Pi's Picamera2.

The pip OpenCV is built without GStreamer, so `gst:` pipelines (nvarguscamerasrc on a
Jetson, libcamerasrc on a Pi, RTSP) would never open through `cv2.VideoCapture`. Where
OpenCV has GStreamer (JetPack's and Raspberry Pi OS's own OpenCV) it is used; otherwise
the pipeline runs through PyGObject with an appsink. Where neither exists, the camera
fails at start-up in one line naming what to install -- not a retry loop that never says
why. No rclpy here.
"""

from functools import lru_cache

import numpy as np

from cnn_perception.errors import SourceError

GST_INSTALL = (
    'install GStreamer and PyGObject (Debian/Ubuntu/Raspberry Pi OS: apt install '
    'gstreamer1.0-plugins-base gir1.2-gstreamer-1.0 python3-gi; in a venv also pip install '
    "PyGObject) or use an OpenCV built with GStreamer (the board's own: JetPack, "
    'python3-opencv)'
)


@lru_cache(maxsize=1)
def opencv_has_gstreamer() -> bool:
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith('GStreamer:'):
            return 'YES' in line
    return False


@lru_cache(maxsize=1)
def pygobject_gst():
    """Gst module from PyGObject, initialised; None where it cannot be imported."""
    try:
        import gi

        gi.require_version('Gst', '1.0')
        from gi.repository import Gst
    except (ImportError, ValueError):
        return None
    Gst.init(None)
    return Gst


def gstreamer_backend() -> str:
    """'opencv' or 'pygobject'; SourceError (one line, what to install) when neither."""
    if opencv_has_gstreamer():
        return 'opencv'
    if pygobject_gst() is not None:
        return 'pygobject'
    raise SourceError(f'gst: pipelines need GStreamer, and none is usable here: {GST_INSTALL}')


# appsink formats -> (channels, conversion to RGB); anything else needs a videoconvert
_FORMATS = {'RGB': 3, 'BGR': 3, 'RGBx': 4, 'RGBA': 4, 'BGRx': 4, 'BGRA': 4, 'GRAY8': 1}


class GstSource:
    """A GStreamer pipeline ending in an appsink, read through PyGObject.

    OpenCV-style pipelines (`... ! video/x-raw,format=BGR ! appsink`) work unchanged; a
    pipeline without an appsink gets `! videoconvert ! video/x-raw,format=RGB ! appsink`.
    The sink keeps only the newest buffer (max-buffers=1, drop=true): latest frame wins
    from the sensor on.
    """

    def __init__(self, pipeline: str, timeout_s: float = 2.0):
        from cnn_perception.errors import SourceLost

        gst = pygobject_gst()
        self.Gst, self.timeout_ns = gst, int(timeout_s * 1e9)
        desc = (
            pipeline
            if 'appsink' in pipeline
            else (f'{pipeline} ! videoconvert ! video/x-raw,format=RGB ! appsink')
        )
        try:
            self.pipe = gst.parse_launch(desc)
        except Exception as exc:  # GLib.Error: no such element, syntax error
            raise SourceLost(f'gst: cannot build pipeline: {exc}') from exc
        self.sink = next(
            (
                e
                for e in _iterate(self.pipe.iterate_sinks())
                if e.get_factory().get_name() == 'appsink'
            ),
            None,
        )
        if self.sink is None:
            raise SourceLost('gst: the pipeline has no appsink to read frames from')
        self.sink.set_property('max-buffers', 1)
        self.sink.set_property('drop', True)
        if self.pipe.set_state(gst.State.PLAYING) == gst.StateChangeReturn.FAILURE:
            why = self._bus_error() or 'state change to PLAYING failed'
            self.close()
            raise SourceLost(f'gst: cannot start pipeline: {why}')

    def _bus_error(self) -> str | None:
        gst = self.Gst
        bus = self.pipe.get_bus()
        msg = bus.pop_filtered(gst.MessageType.ERROR | gst.MessageType.EOS)
        if msg is None:
            return None
        if msg.type == gst.MessageType.EOS:
            return 'end of stream'
        err, _ = msg.parse_error()
        return err.message

    def read(self) -> np.ndarray:
        from cnn_perception.errors import SourceLost

        sample = self.sink.emit('try-pull-sample', self.timeout_ns)
        if sample is None:
            raise SourceLost(f'gst: no frame ({self._bus_error() or "timed out"})')
        s = sample.get_caps().get_structure(0)
        w, h, fmt = s.get_value('width'), s.get_value('height'), s.get_value('format')
        if fmt not in _FORMATS:
            raise SourceLost(
                f'gst: appsink delivers {fmt}; end the pipeline with '
                '`! videoconvert ! video/x-raw,format=BGR ! appsink`'
            )
        buf = sample.get_buffer()
        ok, info = buf.map(self.Gst.MapFlags.READ)
        if not ok:
            raise SourceLost('gst: cannot map the frame buffer')
        try:
            data = np.frombuffer(info.data, np.uint8)
            stride = len(data) // h  # rows are padded to 4 bytes
            ch = _FORMATS[fmt]
            img = data[: stride * h].reshape(h, stride)[:, : w * ch].reshape(h, w, ch).copy()
        finally:
            buf.unmap(info)
        return _to_rgb(img, fmt)

    def close(self) -> None:
        self.pipe.set_state(self.Gst.State.NULL)


def _iterate(it):
    """Python iteration over a Gst.Iterator."""
    while True:
        ok, value = it.next()
        if ok != 1:  # Gst.IteratorResult.OK
            return
        yield value


def _to_rgb(img: np.ndarray, fmt: str) -> np.ndarray:
    import cv2

    if fmt == 'RGB':
        return img
    if fmt == 'BGR':
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if fmt in ('RGBx', 'RGBA'):
        return np.ascontiguousarray(img[..., :3])
    if fmt in ('BGRx', 'BGRA'):
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)


class Picamera2Source:
    """The Raspberry Pi CSI camera through Picamera2 (libcamera), RGB frames.

    `picamera2:` or `picamera2:<camera index>`; Picamera2 comes with Raspberry Pi OS
    (`apt install python3-picamera2`); it is imported only when this source is chosen.
    """

    def __init__(self, index: int, width: int, height: int, fps: float):
        from cnn_perception.errors import SourceLost

        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(
                'picamera2: source needs Picamera2 (Raspberry Pi OS: apt install '
                'python3-picamera2; create the venv with --system-site-packages)'
            ) from exc
        try:
            self.cam = Picamera2(index)
            # libcamera's 'RGB888' is stored B, G, R in memory: OpenCV's BGR.
            config = self.cam.create_video_configuration(
                main={'size': (width or 640, height or 480), 'format': 'RGB888'},
                controls={'FrameRate': float(fps)},
            )
            self.cam.configure(config)
            self.cam.start()
        except Exception as exc:  # no camera connected, busy, ...
            raise SourceLost(f'picamera2:{index}: cannot start the camera: {exc}') from exc

    def read(self) -> np.ndarray:
        import cv2

        return cv2.cvtColor(self.cam.capture_array('main'), cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:  # closing a camera that failed must not raise
            pass
