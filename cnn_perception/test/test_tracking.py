"""Tracks and positions without ROS: ids stay with a defect, positions interpolate."""

from dataclasses import dataclass

import numpy as np
import pytest

from cnn_perception.core.geo import PositionTrack, lat_lon, local_metres
from cnn_perception.core.tracking import DefectTracker, MotionEstimator, Track
from cnn_perception.tools.inspection_flight import make_wall, sweep


@dataclass
class B:
    x: int
    y: int
    width: int
    height: int
    score: float = 0.8


def wall_boxes(x, truth, frame_w=320):
    """Box the painted defects visible in the frame at wall x, as detections would."""
    out = []
    for d in truth:
        bx, by, bw, bh = d['box']
        if bx - x >= 0 and bx - x + bw <= frame_w:
            out.append(B(bx - x, by - 40, bw, bh))
    return out


def test_motion_is_the_camera_step():
    wall, _ = make_wall(defects=0)
    me = MotionEstimator()
    shifts = [me(f) for _, f in sweep(wall, step=64)[:5]]
    assert shifts[0] == (0.0, 0.0)
    for dx, dy in shifts[1:]:
        assert abs(dx + 64) < 1.5 and abs(dy) < 1.5, shifts


def test_one_id_per_defect_across_the_sweep_and_fragments_do_not_split_it():
    wall, truth = make_wall(defects=6)
    tracker = DefectTracker(confirm=3, end_after=3)
    ended = []
    for i, (x, f) in enumerate(sweep(wall, step=64)):
        boxes = wall_boxes(x, truth)
        if i % 4 == 0 and boxes:  # hysteresis sometimes splits a defect into two boxes
            b = boxes[0]
            boxes.append(B(b.x + b.width // 2, b.y, b.width // 2, b.height, 0.6))
        ft = tracker.update(f, boxes, i * 200_000_000)
        ended += ft.ended
        if i % 4 == 0 and len(ft.ids) > 1:
            assert ft.ids[-1] == ft.ids[0], 'a fragment gets the id of its defect'
    ended += tracker.finish()
    assert len(ended) == len(truth), [t.id for t in ended]
    assert [t.id for t in ended] == [f'd{i}' for i in range(1, len(truth) + 1)]


def test_nearest_centre_time_is_interpolated_between_frames():
    t = Track((0, 0, 10, 10), 0, 0)
    t.path = [(0, -30.0, 5.0), (100, 10.0, 5.0)]  # crossed the centre 3/4 of the way
    assert t.nearest_centre_ns() == 75
    t.path = [(0, 20.0, 0.0), (100, 40.0, 0.0)]  # never crossed: the nearest frame
    assert t.nearest_centre_ns() == 0


def test_a_clock_jump_back_resets_the_tracks():
    tracker = DefectTracker(confirm=1)
    f = np.zeros((240, 320, 3), np.uint8)
    assert tracker.update(f, [B(10, 10, 20, 20)], 1000).confirmed
    ft = tracker.update(f, [B(10, 10, 20, 20)], 10)
    assert [t.id for t in ft.ended] == ['d1'] and ft.ids == ['d2']


def test_positions_interpolate_and_refuse_to_invent():
    p = PositionTrack(max_gap_s=1.0)
    lat0, lon0 = 47.4, 8.5
    for i, east in enumerate((0.0, 1.0, 2.0)):
        p.add_fix(i * 10**9, *lat_lon(east, 0.0, lat0, lon0), 10.0)
    mid = p.at(1_500_000_000)
    assert mid.east_m == pytest.approx(1.5, abs=1e-3) and mid.has_fix
    assert p.at(5 * 10**9) is None  # 3 s after the last fix
    assert p.at(2_500_000_000).east_m == pytest.approx(2.0, abs=1e-3)  # within the gap
    e, n = local_metres(*lat_lon(123.4, -56.7, lat0, lon0), lat0, lon0)
    assert (e, n) == pytest.approx((123.4, -56.7), abs=1e-6)
    q = PositionTrack()
    q.add_fix(0, 0.0, 0.0)  # a receiver without a fix reports zeros: ignored
    q.add_pose(0, 3.0, 4.0)
    assert q.at(0).east_m == 3.0 and not q.at(0).has_fix
