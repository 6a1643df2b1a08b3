"""Tracks, geotags and DefectEvents on top of the defect step (rclpy-free).

`Inspector` follows the defect boxes of each frame with `core.tracking.DefectTracker`,
keeps each track's best crop and heatmap crop, places it with `core.geo.PositionTrack`
(the drone's position when the defect passed nearest the image centre) and turns
confirmations and ends into `DefectEvent` messages. The live node and the offline
`report` both run it inside `DefectStep`, so their defect lists are the same.
"""

from dataclasses import dataclass
import threading

from builtin_interfaces.msg import Time
from cnn_perception_msgs.msg import BoundingBox2D, DefectEvent
import numpy as np
from sensor_msgs.msg import NavSatFix

from cnn_perception.contract import stamp_ns
from cnn_perception.core.draw import heatmap_overlay
from cnn_perception.core.geo import Position, PositionTrack
from cnn_perception.core.tracking import DefectTracker, Track
from cnn_perception.io.images import jpeg_msg

# The drone's position, from whichever of these it publishes (MAVROS, PX4's bridge, an
# odometry filter): message type -> the node parameter naming its topic.
POSITION_TYPES = {
    'sensor_msgs/msg/NavSatFix': 'fix_topic',
    'geometry_msgs/msg/PoseStamped': 'pose_topic',
    'nav_msgs/msg/Odometry': 'odom_topic',
}
CROP_MARGIN = 0.5  # of the box size, on each side
CROP_MIN = 64  # pixels


@dataclass
class Finding:
    """A confirmed defect at its end: what the report and the last event carry."""

    id: str
    score: float
    first_ns: int
    last_ns: int
    frames: int
    box: tuple[float, float, float, float]  # in the best crop's frame
    crop: np.ndarray  # RGB, around the box, from the best frame
    heat_crop: np.ndarray  # the same region with the anomaly heatmap
    centre_ns: int  # when it passed nearest the image centre
    position: Position | None


@dataclass
class Stretch:
    """Consecutive frames that were off the surface: not inspected."""

    first_ns: int
    last_ns: int
    frames: int = 1


def _time(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def crop_box(box, h: int, w: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around a box, with a margin, at least CROP_MIN, inside the frame."""
    x, y, bw, bh = box
    cw = max(CROP_MIN, bw * (1 + 2 * CROP_MARGIN))
    ch = max(CROP_MIN, bh * (1 + 2 * CROP_MARGIN))
    cx, cy = x + bw / 2, y + bh / 2
    x0 = int(np.clip(cx - cw / 2, 0, max(0, w - cw)))
    y0 = int(np.clip(cy - ch / 2, 0, max(0, h - ch)))
    return x0, y0, min(w, int(x0 + cw)), min(h, int(y0 + ch))


class Inspector:
    def __init__(self, confirm: int = 3, end_after: int = 5):
        self.tracker = DefectTracker(confirm, end_after)
        # GNSS fixes and local poses apart (a flight log often has both): the fixes
        # when there are any, else the poses; one track of both would mix their frames
        self.fixes, self.poses = PositionTrack(), PositionTrack()
        self._lock = threading.Lock()  # positions arrive on the executor thread
        self.findings: list[Finding] = []  # every confirmed defect that has ended
        self.not_inspected: list[Stretch] = []  # off-surface stretches, in time order
        self._stretch_open = False

    # ------------------------------------------------------------------ positions
    @property
    def positions(self) -> PositionTrack:
        return self.fixes if len(self.fixes) else self.poses

    def add_fix(self, ns: int, lat: float, lon: float, alt: float) -> None:
        with self._lock:
            self.fixes.add_fix(ns, lat, lon, alt)

    def add_pose(self, ns: int, x: float, y: float, z: float) -> None:
        with self._lock:
            self.poses.add_pose(ns, x, y, z)

    def add_position(self, msgtype: str, m) -> None:
        """Take a NavSatFix, PoseStamped or Odometry (rclpy or rosbags message) by its type."""
        ns = stamp_ns(m.header)
        if msgtype == 'sensor_msgs/msg/NavSatFix':
            self.add_fix(ns, m.latitude, m.longitude, m.altitude)
        elif msgtype in POSITION_TYPES:
            p = (
                m.pose.position
                if msgtype == 'geometry_msgs/msg/PoseStamped'
                else m.pose.pose.position
            )
            self.add_pose(ns, p.x, p.y, p.z)

    def position_at(self, ns: int) -> Position | None:
        with self._lock:
            return self.positions.at(ns)

    # ------------------------------------------------------------------ frames
    def update(self, rgb: np.ndarray, header, result) -> tuple[list[str], list[DefectEvent]]:
        """Track this frame's boxes; returns (track id per box, events to publish)."""
        ns = stamp_ns(header)
        self._note_surface(ns, getattr(result, 'off_surface', False))
        boxes = result.boxes if result.is_defect else []
        ft = self.tracker.update(rgb, boxes, ns)
        for t in self.tracker.tracks:
            if t.best_ns == ns and t.last_ns == ns:  # a new best view: keep its crops
                self._keep_crops(t, rgb, result)
        events = [self._event(t, header, DefectEvent.CONFIRMED) for t in ft.confirmed]
        events += [self._end(t, header) for t in ft.ended]
        return ft.ids, events

    def _note_surface(self, ns: int, off: bool) -> None:
        if not off:
            self._stretch_open = False
        elif self._stretch_open:
            s = self.not_inspected[-1]
            s.last_ns, s.frames = max(s.last_ns, ns), s.frames + 1
        else:
            self.not_inspected.append(Stretch(ns, ns))
            self._stretch_open = True

    def finish(self, header) -> list[DefectEvent]:
        """End every open track (the end of a bag or of a run)."""
        return [self._end(t, header) for t in self.tracker.finish()]

    def _keep_crops(self, t: Track, rgb: np.ndarray, result) -> None:
        x0, y0, x1, y1 = crop_box(t.best_box, *rgb.shape[:2])
        heat = heatmap_overlay(rgb[y0:y1, x0:x1], result.score_map[y0:y1, x0:x1])
        t.data.update(crop=rgb[y0:y1, x0:x1].copy(), heat=heat)

    def _end(self, t: Track, header) -> DefectEvent:
        centre = t.nearest_centre_ns()
        self.findings.append(
            Finding(
                t.id,
                t.best_score,
                t.first_ns,
                t.last_ns,
                t.hits,
                t.best_box,
                t.data.get('crop', np.zeros((CROP_MIN, CROP_MIN, 3), np.uint8)),
                t.data.get('heat', np.zeros((CROP_MIN, CROP_MIN, 3), np.uint8)),
                centre,
                self.position_at(centre),
            )
        )
        return self._event(t, header, DefectEvent.ENDED)

    def _event(self, t: Track, header, kind: int) -> DefectEvent:
        ev = DefectEvent(event=kind, track_id=t.id, score=float(t.best_score))
        ev.header.frame_id = header.frame_id
        ev.header.stamp = _time(t.best_ns)
        x, y, w, h = t.best_box
        ev.bbox = BoundingBox2D(center_x=x + w / 2, center_y=y + h / 2, size_x=w, size_y=h)
        crop = t.data.get('crop')
        if crop is not None:
            ev.crop = jpeg_msg(crop, ev.header, 85)
        pos = self.position_at(t.nearest_centre_ns())
        if pos is not None:
            ev.east_m, ev.north_m = pos.east_m, pos.north_m
            if pos.has_fix:
                ev.has_fix = True
                ev.fix = NavSatFix(
                    header=ev.header, latitude=pos.latitude, longitude=pos.longitude,
                    altitude=pos.altitude,
                )  # fmt: skip
        ev.first_seen, ev.last_seen, ev.frames = _time(t.first_ns), _time(t.last_ns), t.hits
        return ev
