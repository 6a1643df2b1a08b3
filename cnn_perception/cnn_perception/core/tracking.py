"""Defect tracks: the same physical defect across frames gets one stable id (no rclpy).

A drone sweeping along a wall sees each crack in many consecutive frames. Per frame:
1. the camera's motion since the previous frame is estimated by phase correlation of
   two small grey copies (OpenCV), and every track's box is moved by it;
2. detections are assigned to the moved boxes (Hungarian assignment on centre distance
   relative to the boxes' size, with a gate); a detection inside a track's box that the
   assignment left over is a fragment of that defect (hysteresis can split a crack), not
   a new one;
3. a track is confirmed after `confirm` hits and ends after `end_after` frames unseen or
   when it has left the image.
Confirmed tracks get ids 'd1', 'd2', ... (the tracker's `prefix`) in confirmation order;
tentative ones have none. Boxes with a `class_id` (recognised objects) are matched only to
tracks of their class.
Each track keeps where its box centre was relative to the image centre per hit, so the
moment it passed nearest the centre can be interpolated (for geotags).
"""

from dataclasses import dataclass, field
import math

import cv2
import numpy as np

MOTION_WIDTH = 160  # pixels of the grey copy used for phase correlation


@dataclass
class Track:
    box: tuple[float, float, float, float]  # x, y, w, h in the current frame
    first_ns: int
    last_ns: int
    id: str = ''  # set when confirmed
    hits: int = 1
    misses: int = 0
    best_score: float = 0.0
    best_ns: int = 0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    # (stamp ns, box centre x - image centre x, box centre y - image centre y) per hit
    path: list[tuple[int, float, float]] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # what a caller keeps per track (crops)
    class_id: int | None = None  # objects: a track follows one class

    @property
    def confirmed(self) -> bool:
        return bool(self.id)

    def nearest_centre_ns(self) -> int:
        """Stamp at which the box centre passed nearest the image centre.

        The centre's path between consecutive hits is taken as a straight line, so a
        defect that crossed the centre between two frames gets the crossing time, not the
        time of the nearer frame.
        """
        best_d, best_t = math.inf, self.path[0][0]
        for t, ox, oy in self.path:
            if math.hypot(ox, oy) < best_d:
                best_d, best_t = math.hypot(ox, oy), t
        for (ta, ax, ay), (tb, bx, by) in zip(self.path, self.path[1:], strict=False):
            vx, vy = bx - ax, by - ay
            vv = vx * vx + vy * vy
            if vv == 0 or tb <= ta:
                continue
            s = min(1.0, max(0.0, -(ax * vx + ay * vy) / vv))
            d = math.hypot(ax + s * vx, ay + s * vy)
            if d < best_d:
                best_d, best_t = d, int(ta + s * (tb - ta))
        return best_t


@dataclass
class FrameTracks:
    ids: list[str]  # per detection box of the frame ('' while tentative)
    confirmed: list[Track]  # confirmed in this frame
    ended: list[Track]  # confirmed tracks that ended in this frame
    motion: tuple[float, float]  # camera content shift since the last frame, pixels


class MotionEstimator:
    """Shift of the image content between consecutive frames (phase correlation)."""

    def __init__(self):
        self.prev: np.ndarray | None = None
        self.window: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray) -> tuple[float, float]:
        h, w = rgb.shape[:2]
        scale = min(1.0, MOTION_WIDTH / w)
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        grey = cv2.resize(
            cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA
        )
        grey = grey.astype(np.float32)
        if self.prev is None or self.prev.shape != grey.shape:
            self.prev, self.window = grey, cv2.createHanningWindow(size, cv2.CV_32F)
            return 0.0, 0.0
        (sx, sy), _ = cv2.phaseCorrelate(self.prev, grey, self.window)
        self.prev = grey
        return sx / scale, sy / scale

    def reset(self) -> None:
        self.prev = None


class DefectTracker:
    def __init__(self, confirm: int = 3, end_after: int = 5, gate: float = 1.0, prefix: str = 'd'):
        self.confirm, self.end_after, self.gate, self.prefix = confirm, end_after, gate, prefix
        self.motion = MotionEstimator()
        self.tracks: list[Track] = []
        self.next_id = 1
        self.last_ns: int | None = None

    def reset(self) -> list[Track]:
        """Forget everything (a looped bag, a clock jump); returns the confirmed tracks."""
        ended = [t for t in self.tracks if t.confirmed]
        self.tracks, self.last_ns = [], None
        self.motion.reset()
        return ended

    def finish(self) -> list[Track]:
        """End every track (the end of a bag); returns the confirmed ones."""
        return self.reset()

    def update(self, rgb: np.ndarray, boxes, ns: int) -> FrameTracks:
        """Boxes: objects with x, y, width, height, score (core.defects.Box), maybe class_id."""
        ended: list[Track] = []
        if self.last_ns is not None and ns < self.last_ns:
            ended += self.reset()
        self.last_ns = ns
        h, w = rgb.shape[:2]
        dx, dy = self.motion(rgb)
        for t in self.tracks:
            x, y, bw, bh = t.box
            t.box = (x + dx, y + dy, bw, bh)
        dets = [(float(b.x), float(b.y), float(b.width), float(b.height)) for b in boxes]
        classes = [getattr(b, 'class_id', None) for b in boxes]
        owner = self._assign(dets, classes)
        ids = []
        confirmed = []
        matched = set()
        for i, (b, det) in enumerate(zip(boxes, dets, strict=True)):
            t = owner.get(i)
            if t is None:
                t = Track(det, ns, ns, class_id=classes[i])
                self.tracks.append(t)
            elif id(t) in matched:  # a fragment of a defect already seen in this frame
                ids.append(t.id)
                self._best(t, b, det, ns)
                continue
            else:
                t.hits += 1
                t.misses = 0
                t.box, t.last_ns = det, ns
            matched.add(id(t))
            cx, cy = det[0] + det[2] / 2 - w / 2, det[1] + det[3] / 2 - h / 2
            t.path.append((ns, cx, cy))
            self._best(t, b, det, ns)
            if not t.confirmed and t.hits >= self.confirm:
                t.id = f'{self.prefix}{self.next_id}'
                self.next_id += 1
                confirmed.append(t)
            ids.append(t.id)
        keep = []
        for t in self.tracks:
            if id(t) not in matched:
                t.misses += 1
            x, y, bw, bh = t.box
            gone = x + bw < 0 or y + bh < 0 or x > w or y > h
            if t.misses >= self.end_after or (gone and id(t) not in matched):
                if t.confirmed:
                    ended.append(t)
                continue
            keep.append(t)
        self.tracks = keep
        return FrameTracks(ids, confirmed, ended, (dx, dy))

    @staticmethod
    def _best(t: Track, b, det, ns: int) -> None:
        if b.score >= t.best_score:
            t.best_score, t.best_ns, t.best_box = float(b.score), ns, det

    def _assign(self, dets, classes) -> dict[int, Track]:
        """Map detection index to track: assignment first, then fragments inside a box."""
        from scipy.optimize import linear_sum_assignment

        if not dets or not self.tracks:
            return {}
        cost = np.full((len(dets), len(self.tracks)), 1e6)
        for i, d in enumerate(dets):
            for j, t in enumerate(self.tracks):
                n = _centre_distance(d, t.box)
                if n <= self.gate and t.class_id == classes[i]:
                    cost[i, j] = n
        rows, cols = linear_sum_assignment(cost)
        owner = {
            int(i): self.tracks[j] for i, j in zip(rows, cols, strict=True) if cost[i, j] < 1e6
        }
        for i, d in enumerate(dets):
            if i in owner:
                continue
            cx, cy = d[0] + d[2] / 2, d[1] + d[3] / 2
            for t in owner.values():
                if t.class_id != classes[i]:
                    continue
                x, y, bw, bh = t.box
                if x - bw / 2 <= cx <= x + 1.5 * bw and y - bh / 2 <= cy <= y + 1.5 * bh:
                    owner[i] = t
                    break
        return owner


def _centre_distance(a, b) -> float:
    """Centre distance of two boxes in units of their mean half-diagonal."""
    ca = (a[0] + a[2] / 2, a[1] + a[3] / 2)
    cb = (b[0] + b[2] / 2, b[1] + b[3] / 2)
    half = (math.hypot(a[2], a[3]) + math.hypot(b[2], b[3])) / 4
    return math.hypot(ca[0] - cb[0], ca[1] - cb[1]) / max(half, 1.0)
