"""Frame sources for the camera node, chosen by one string (no rclpy here).

Accepted forms:
  v4l2:/dev/video0  or a bare index such as 0   -- a V4L2 camera (OpenCV)
  gst:<pipeline>                               -- GStreamer, e.g. nvarguscamerasrc (Jetson
                                                  CSI), libcamerasrc (Pi camera), RTSP;
                                                  through OpenCV or PyGObject
  picamera2: or picamera2:<index>              -- Raspberry Pi CSI camera (Picamera2)
  file:<video>                                 -- a video file
  dir:<folder>                                 -- image files, sorted by name
  bag:<bag>[:<image topic>]                    -- Image / CompressedImage messages of any
                                                  bag BagReader opens: rosbag2 directory,
                                                  lone .mcap / .db3, ROS 1 .bag (the bag's
                                                  only image topic if none given)
  test:                                        -- a synthetic moving scene made of real
                                                  photographs (scikit-image), no camera
Files that do not exist at start are an error (a typo); a live device that cannot be
opened yet is not (it may enumerate late): the node reports it and keeps retrying.
"""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cnn_perception.errors import SourceEnded, SourceError, SourceLost, UserError

ACCEPTED = (
    'v4l2:/dev/videoN, N (camera index), gst:<pipeline>, picamera2:[N], file:<video>, '
    'dir:<folder>, bag:<bag>[:<image topic>], test:'
)
KINDS = ('v4l2', 'gst', 'picamera2', 'file', 'dir', 'bag', 'test')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


@dataclass(frozen=True)
class SourceSpec:
    kind: str  # v4l2 | gst | file | dir | bag | test
    target: str = ''
    topic: str = ''


def parse_source(text: str) -> SourceSpec:
    """Parse a source string; SourceError names it and lists the accepted forms."""
    s = text.strip()
    if s.isdigit():
        return SourceSpec('v4l2', s)
    kind, sep, rest = s.partition(':')
    if not sep or kind not in KINDS:
        raise SourceError(f'cannot parse camera source {text!r}; accepted: {ACCEPTED}')
    if kind in ('test', 'picamera2'):
        if kind == 'picamera2' and rest and not rest.isdigit():
            raise SourceError(
                f'camera source {text!r}: use picamera2: or picamera2:<index>; accepted: '
                f'{ACCEPTED}'
            )
        return SourceSpec(kind, rest)
    if not rest:
        raise SourceError(
            f'camera source {text!r} names nothing after {kind}:; accepted: {ACCEPTED}'
        )
    if kind == 'bag':
        # bag:<bag> (its only image topic) or bag:<bag>:<topic>
        bag, sep, topic = rest.rpartition(':')
        if not sep or not bag or Path(rest).exists():
            return SourceSpec('bag', rest, '')
        return SourceSpec('bag', bag, topic)
    return SourceSpec(kind, rest)


def check_openable(spec: SourceSpec) -> None:
    """Fail at start for file-like sources that are not there, and camera stacks that are.

    A `gst:` pipeline needs GStreamer through OpenCV or PyGObject; `picamera2:` needs
    Picamera2. Without them the node could only retry forever, so it stops with one line.
    """
    if spec.kind == 'gst':
        from cnn_perception.io.camera_stacks import gstreamer_backend

        gstreamer_backend()
    if spec.kind == 'picamera2':
        import importlib.util

        if importlib.util.find_spec('picamera2') is None:
            raise SourceError(
                'camera source picamera2: needs Picamera2 (Raspberry Pi OS: apt install '
                'python3-picamera2; create the venv with --system-site-packages)'
            )
    if spec.kind == 'file' and not Path(spec.target).is_file():
        raise SourceError(f'camera source file:{spec.target}: no such video file')
    if spec.kind == 'dir':
        folder = Path(spec.target)
        if not folder.is_dir():
            raise SourceError(f'camera source dir:{spec.target}: no such folder')
        if not _image_files(folder):
            raise SourceError(
                f'camera source dir:{spec.target}: no image files ({", ".join(IMAGE_SUFFIXES)})'
            )
    if spec.kind == 'bag':
        from cnn_perception.io.bags import BagReader

        try:  # the bag opens and has the image topic (or exactly one)
            with BagReader(spec.target) as reader:
                reader.image_connections(spec.topic or None)
        except UserError as exc:
            raise SourceError(f'camera source bag:{exc}') from exc


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if width <= 0 or height <= 0 or rgb.shape[:2] == (height, width):
        return rgb
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


class TestScene:
    """A camera panning over a strip of real photographs (deterministic by frame index)."""

    __test__ = False  # not a pytest class

    def __init__(self, width: int, height: int, speed_px: int = 8):
        from skimage import data

        self.width, self.height = width or 640, height or 480
        photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
        strip = [
            cv2.resize(
                p,
                (round(p.shape[1] * self.height / p.shape[0]), self.height),
                interpolation=cv2.INTER_AREA,
            )
            for p in photos
        ]
        self.strip = np.concatenate(strip + strip[:1], axis=1)
        self.period = sum(s.shape[1] for s in strip)
        self.speed = speed_px
        self.index = 0

    def read(self) -> np.ndarray:
        x = (self.index * self.speed) % self.period
        self.index += 1
        frame = self.strip[:, x : x + self.width]
        if frame.shape[1] < self.width:  # wrap around the end of the strip
            frame = np.concatenate([frame, self.strip[:, : self.width - frame.shape[1]]], 1)
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        pass


class DirSource:
    def __init__(self, folder: str, width: int, height: int, loop: bool):
        self.folder, self.width, self.height, self.loop = Path(folder), width, height, loop
        self.files = _image_files(self.folder)
        self.pos = 0

    def read(self) -> np.ndarray:
        if self.pos >= len(self.files):
            if not self.loop:
                raise SourceEnded(f'dir:{self.folder}: all {len(self.files)} images sent')
            self.files, self.pos = _image_files(self.folder), 0
            if not self.files:
                raise SourceLost(f'dir:{self.folder}: folder is empty or gone')
        path = self.files[self.pos]
        self.pos += 1
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SourceLost(f'dir:{self.folder}: cannot read {path.name}')
        return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.width, self.height)

    def close(self) -> None:
        pass


class VideoSource:
    """OpenCV VideoCapture for V4L2 devices, GStreamer pipelines and video files."""

    def __init__(self, spec: SourceSpec, width: int, height: int, fps: float, loop: bool):
        self.spec, self.width, self.height, self.loop = spec, width, height, loop
        if spec.kind == 'file' and not Path(spec.target).is_file():
            raise SourceLost(f'file:{spec.target}: file is gone')
        if spec.kind == 'gst':
            cap = cv2.VideoCapture(spec.target, cv2.CAP_GSTREAMER)
        elif spec.kind == 'v4l2':
            target = int(spec.target) if spec.target.isdigit() else spec.target
            if isinstance(target, str) and not Path(target).exists():
                raise SourceLost(f'v4l2:{target}: no such device')
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
            if width > 0 and height > 0:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps > 0:
                cap.set(cv2.CAP_PROP_FPS, fps)
        else:
            cap = cv2.VideoCapture(spec.target)
        if not cap.isOpened():
            cap.release()
            raise SourceLost(f'{spec.kind}:{spec.target}: cannot open')
        self.cap = cap

    def read(self) -> np.ndarray:
        ok, bgr = self.cap.read()
        if not ok and self.spec.kind == 'file':
            if not self.loop:
                raise SourceEnded(f'file:{self.spec.target}: end of video')
            self.cap.release()
            if not Path(self.spec.target).is_file():
                raise SourceLost(f'file:{self.spec.target}: file is gone')
            self.cap = cv2.VideoCapture(self.spec.target)
            ok, bgr = self.cap.read()
        if not ok or bgr is None:
            raise SourceLost(f'{self.spec.kind}:{self.spec.target}: no frame')
        return _fit(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.width, self.height)

    def close(self) -> None:
        self.cap.release()


class BagSource:
    """Image or CompressedImage messages of one topic of a rosbag2 or ROS 1 bag.

    A message that does not decode is skipped and kept in `problems` (the node reports
    it on /diagnostics); the next good frame is sent.
    """

    def __init__(self, spec: SourceSpec, width: int, height: int, loop: bool):
        from cnn_perception.io.bags import image_frames

        self.spec, self.width, self.height, self.loop = spec, width, height, loop
        self.problems: list[str] = []
        self._open = lambda: image_frames(spec.target, spec.topic or None, self.problems.append)
        self._it = self._open()
        self.sent_any = False

    def read(self) -> np.ndarray:
        try:
            _, rgb = next(self._it)
        except StopIteration:
            if not self.loop or not self.sent_any:
                if not self.sent_any:
                    raise SourceLost(f'bag:{self.spec.target}: no decodable image') from None
                raise SourceEnded(f'bag:{self.spec.target}: end of bag') from None
            self._it = self._open()
            _, rgb = next(self._it)
        self.sent_any = True
        return _fit(rgb, self.width, self.height)

    def pop_problems(self) -> list[str]:
        out, self.problems[:] = list(self.problems), []
        return out

    def close(self) -> None:
        pass


def open_source(
    spec: SourceSpec, width: int = 640, height: int = 480, fps: float = 30.0, loop: bool = True
):
    """Open a source; raises SourceLost when it cannot deliver right now."""
    if spec.kind == 'test':
        return TestScene(width, height)
    if spec.kind == 'dir':
        if not Path(spec.target).is_dir():
            raise SourceLost(f'dir:{spec.target}: folder is gone')
        return DirSource(spec.target, width, height, loop)
    if spec.kind == 'bag':
        return BagSource(spec, width, height, loop)
    if spec.kind == 'picamera2':
        from cnn_perception.io.camera_stacks import Picamera2Source

        return Picamera2Source(int(spec.target or 0), width, height, fps)
    if spec.kind == 'gst':
        from cnn_perception.io.camera_stacks import GstSource, gstreamer_backend

        if gstreamer_backend() == 'pygobject':
            return _Fitted(GstSource(spec.target), width, height)
    return VideoSource(spec, width, height, fps, loop)


class _Fitted:
    """A source whose frames are resized to the requested output size."""

    def __init__(self, source, width: int, height: int):
        self.source, self.width, self.height = source, width, height

    def read(self) -> np.ndarray:
        return _fit(self.source.read(), self.width, self.height)

    def close(self) -> None:
        self.source.close()
