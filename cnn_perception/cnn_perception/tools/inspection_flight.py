"""An inspection flight to test tracks, geotags and the report against known truth.

A long wall made of a real surface photograph (scikit-image's brick wall, repeated with
alternate mirror images so there is no seam), N defects painted at known wall positions,
and a camera sweeping along it at a known speed (overlap >= 70% between frames) while a
GNSS receiver reports the drone's position along the wall (sensor_msgs/NavSatFix, a few
centimetres of noise). Written as a rosbag2 with the rosbags library; the truth (defect
positions in metres and lat/lon) as JSON beside it. Tooling: nothing a robot runs uses it.

With `takeoff`, the flight starts the way a real one does: the camera sees the ground
(grass), the sky, a table with a cup and a cat before the drone reaches the wall -- real
photographs, flown over at the wall's speed -- while GNSS fixes (4 Hz) and odometry
(20 Hz) arrive at their own rates, not with the frames.
"""

import json
from pathlib import Path

import cv2
import numpy as np

from cnn_perception.core.geo import lat_lon
from cnn_perception.core.surfaces import texture
from cnn_perception.tools.datasets import DEFECT_KINDS, paint_defect

IMAGE_TOPIC = '/drone/camera/image_raw/compressed'
FIX_TOPIC = '/drone/fix'
ODOM_TOPIC = '/drone/odom'
# The take-off leg: scenery -> (photograph, region x0, y0, x1, y1 or None for all of it)
TAKEOFF = {
    'ground (grass)': ('grass', None),
    'sky': ('china', (300, 0, 640, 140)),
    'table with a cup': ('coffee', None),
    'cat': ('chelsea', None),
}
TAKEOFF_FRAMES = 6  # per scenery
TRUTH = 'inspection_truth.json'
ORIGIN = (47.397742, 8.545594)  # lat, lon of the wall's west end (any place will do)
METRES_PER_PIXEL = 0.005  # 5 mm per wall pixel: a 320 px frame sees 1.6 m of wall


WALL_ROWS = (100, 400)  # of the brick photograph: a wall 300 px high
FRAME = (320, 240)  # camera frames, pixels


def make_wall(tiles: int = 8, defects: int = 10, seed: int = 4):
    """Return (wall RGB, [{kind, x_px, y_px, box}]) with `defects` painted on it."""
    src = texture('brick')
    strip = src[WALL_ROWS[0] : WALL_ROWS[1]]
    wall = np.concatenate([strip if i % 2 == 0 else strip[:, ::-1] for i in range(tiles)], 1)
    wall = np.ascontiguousarray(wall)  # mirrored copies: no seam, the texture runs on
    rng = np.random.default_rng(seed)
    truth = []
    if defects:
        # evenly spread along the wall, away from both ends, jittered
        # the last one leaves the view before the flight ends (its track ends in the bag)
        xs = np.linspace(400, wall.shape[1] - 800, defects)
        xs += rng.uniform(-60, 60, defects)
        top = FLIGHT_Y  # inside the band the inspection camera sees
        for i, x in enumerate(xs.astype(int)):
            patch_x0 = int(np.clip(x - 96, 0, wall.shape[1] - 192))
            patch = wall[top : top + FRAME[1], patch_x0 : patch_x0 + 192]
            kind = DEFECT_KINDS[i % len(DEFECT_KINDS)]
            painted, mask = paint_defect(patch, kind, rng)
            wall[top : top + FRAME[1], patch_x0 : patch_x0 + 192] = painted
            ys, xs_m = np.nonzero(mask)
            box = (
                patch_x0 + int(xs_m.min()),
                top + int(ys.min()),
                int(xs_m.max() - xs_m.min() + 1),
                int(ys.max() - ys.min() + 1),
            )
            cx = box[0] + box[2] / 2
            truth.append({'kind': kind, 'x_px': cx, 'y_px': box[1] + box[3] / 2, 'box': box})
    return wall, truth


FLIGHT_Y = 40  # the inspection flight's camera row on the wall


def sweep(wall: np.ndarray, step: int = 64, y: int = FLIGHT_Y, x0: int = 0):
    """Frames of a camera moving along the wall by `step` pixels each (80% overlap)."""
    w, h = FRAME
    xs = list(range(x0, wall.shape[1] - w + 1, step))
    return [(x, np.ascontiguousarray(wall[y : y + h, x : x + w])) for x in xs]


def clean_flight(frames: int = 60, y: int = FLIGHT_Y + 4) -> list[np.ndarray]:
    """Return the frames of a baseline flight along the clean wall.

    What a user fits the detector on: the same wall before the defects, flown a little
    higher and with other steps than the inspection, so no frame is repeated.
    """
    wall, _ = make_wall(defects=0)
    return [f for _, f in sweep(wall, step=57, y=y, x0=23)][:frames]


def takeoff_frames(per_scenery: int = TAKEOFF_FRAMES) -> list[tuple[str, np.ndarray]]:
    """Return (scenery, frame) of the take-off leg: a window sliding over each photograph."""
    from cnn_perception.tools.bench_localize import photo

    w, h = FRAME
    out = []
    for kind, (name, box) in TAKEOFF.items():
        img = texture(name) if name == 'grass' else photo(name)
        if box is not None:
            img = img[box[1] : box[3], box[0] : box[2]]
        # the largest 4:3 window that fits, sliding along the longer free direction
        s = min(img.shape[1] / w, img.shape[0] / h) * 0.8
        ww, wh = int(w * s), int(h * s)
        for k in range(per_scenery):
            t = k / max(1, per_scenery - 1)
            x0, y0 = int(t * (img.shape[1] - ww)), int(t * (img.shape[0] - wh))
            crop = img[y0 : y0 + wh, x0 : x0 + ww]
            out.append((kind, cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)))
    return out


def make_inspection_bag(
    out: Path,
    defects: int = 10,
    fps: float = 5.0,
    seed: int = 4,
    step: int = 64,
    gps_noise_m: float = 0.05,
    takeoff: bool = False,
    fix_hz: float = 0.0,
    odom_hz: float = 0.0,
) -> dict:
    """Write the flight bag (JPEG camera, NavSatFix, Odometry) and its truth; return truth.

    Without `fix_hz`, one fix per frame (1 ms after it); `odom_hz` > 0 adds
    nav_msgs/Odometry (east, north in an `odom` frame at the wall's west end).
    `takeoff`: the take-off leg first (`takeoff_frames`), flown from 10 m south-west
    of the wall's end towards it.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    tt = store.types
    wall, painted = make_wall(defects=defects, seed=seed)
    w = FRAME[0]
    lead = takeoff_frames() if takeoff else []
    frames = [(kind, None, img) for kind, img in lead]
    frames += [('wall', x, img) for x, img in sweep(wall, step=step)]
    rng = np.random.default_rng(seed + 1)
    t0 = 1_750_000_000 * 10**9
    speed = step * METRES_PER_PIXEL * fps

    def where(t: float) -> tuple[float, float]:
        """(east, north) of the drone at t seconds: the path the camera frames follow."""
        i = t * fps - len(lead)  # frames since the wall sweep began
        if i >= 0:
            return (i * step + w / 2) * METRES_PER_PIXEL, 0.0
        k = -i / max(1, len(lead))  # 1 at take-off, 0 at the wall
        return w / 2 * METRES_PER_PIXEL - 10.0 * k, -10.0 * k

    def header(ns: int, frame_id: str):
        stamp = tt['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9)
        return tt['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)

    end_s = len(frames) / fps
    out = Path(out)
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        cam = writer.add_connection(
            IMAGE_TOPIC, 'sensor_msgs/msg/CompressedImage', typestore=store
        )
        fix = writer.add_connection(FIX_TOPIC, 'sensor_msgs/msg/NavSatFix', typestore=store)
        odom = (
            writer.add_connection(ODOM_TOPIC, 'nav_msgs/msg/Odometry', typestore=store)
            if odom_hz
            else None
        )
        fix_times = (
            np.arange(0, end_s, 1 / fix_hz) if fix_hz else np.arange(len(frames)) / fps + 1e-3
        )
        msgs = [(t, 'fix') for t in fix_times]
        msgs += [(t, 'odom') for t in (np.arange(0, end_s, 1 / odom_hz) if odom_hz else [])]
        msgs += [(i / fps, i) for i in range(len(frames))]
        for t, what in sorted(msgs, key=lambda m: m[0]):
            ns = t0 + round(t * 1e9)
            if what == 'fix':
                east, north = where(t)
                lat, lon = lat_lon(east + rng.normal(0, gps_noise_m),
                                   north + rng.normal(0, gps_noise_m), *ORIGIN)  # fmt: skip
                gps = tt['sensor_msgs/msg/NavSatFix'](
                    header=header(ns, 'gps'),
                    status=tt['sensor_msgs/msg/NavSatStatus'](status=0, service=1),
                    latitude=lat,
                    longitude=lon,
                    altitude=12.0,
                    position_covariance=np.zeros(9),
                    position_covariance_type=0,
                )
                writer.write(fix, ns, store.serialize_cdr(gps, gps.__msgtype__))
            elif what == 'odom':
                writer.write(odom, ns, _odometry(store, header(ns, 'odom'), *where(t)))
            else:
                rgb = frames[what][2]
                ok, buf = cv2.imencode(
                    '.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
                )
                msg = tt['sensor_msgs/msg/CompressedImage'](
                    header=header(ns, 'drone_camera'),
                    format='rgb8; jpeg compressed bgr8',
                    data=buf.ravel(),
                )
                writer.write(cam, ns, store.serialize_cdr(msg, msg.__msgtype__))
    first_wall = t0 + round(len(lead) * 1e9 / fps)
    truth = {
        'image_topic': IMAGE_TOPIC,
        'fix_topic': FIX_TOPIC,
        'odom_topic': ODOM_TOPIC if odom_hz else None,
        'frames': len(frames),
        # the take-off leg: not the wall, to be reported as not inspected
        'takeoff': {
            'frames': len(lead),
            'sceneries': list(dict.fromkeys(k for k, _ in lead)),
            'first_ns': t0 if lead else None,
            'last_ns': first_wall - round(1e9 / fps) if lead else None,
        },
        'wall_frames': len(frames) - len(lead),
        'fps': fps,
        'speed_m_s': speed,
        'overlap': 1 - step / w,
        'wall_m': wall.shape[1] * METRES_PER_PIXEL,
        'defects': [
            {
                **d,
                'east_m': d['x_px'] * METRES_PER_PIXEL,
                'north_m': 0.0,
                'lat_lon': list(lat_lon(d['x_px'] * METRES_PER_PIXEL, 0.0, *ORIGIN)),
            }
            for d in painted
        ],
    }
    (out / TRUTH).write_text(json.dumps(truth, indent=1))
    return truth


def _odometry(store, header, east: float, north: float) -> bytes:
    """Return a serialised nav_msgs/Odometry at (east, north, 12 m), level, at rest."""
    tt = store.types
    pose = tt['geometry_msgs/msg/Pose'](
        position=tt['geometry_msgs/msg/Point'](x=east, y=north, z=12.0),
        orientation=tt['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0),
    )
    zero = tt['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0)
    msg = tt['nav_msgs/msg/Odometry'](
        header=header,
        child_frame_id='base_link',
        pose=tt['geometry_msgs/msg/PoseWithCovariance'](pose=pose, covariance=np.zeros(36)),
        twist=tt['geometry_msgs/msg/TwistWithCovariance'](
            twist=tt['geometry_msgs/msg/Twist'](linear=zero, angular=zero),
            covariance=np.zeros(36),
        ),
    )
    return store.serialize_cdr(msg, msg.__msgtype__)


def score_findings(findings: list[dict], truth: dict, gate_m: float = 1.0) -> dict:
    """Recall, precision, duplicates and position errors of reported defects vs the truth.

    findings: dicts with latitude / longitude (as in defects.csv). Each is matched to the
    nearest true defect within `gate_m`; a second finding on the same defect is a
    duplicate, one matching none a false positive.
    """
    from cnn_perception.core.geo import local_metres

    real = truth['defects']
    matched: dict[int, float] = {}
    duplicates = false_pos = 0
    for f in findings:
        if f.get('latitude') is None:
            false_pos += 1
            continue
        # the report's east/north start at the first fix; the truth's at the wall's end
        e, n = local_metres(f['latitude'], f['longitude'], *ORIGIN)
        dists = [np.hypot(e - d['east_m'], n - d['north_m']) for d in real]
        if not dists or min(dists) > gate_m:
            false_pos += 1
            continue
        i = int(np.argmin(dists))
        if i in matched:
            duplicates += 1
        else:
            matched[i] = float(dists[i])
    n = len(findings)
    return {
        'true_defects': len(real),
        'reported': n,
        'found': len(matched),
        'recall': len(matched) / len(real) if real else 1.0,
        'precision': (n - false_pos) / n if n else 1.0,
        'duplicates': duplicates,
        'false_positives': false_pos,
        'median_position_error_m': float(np.median(list(matched.values()))) if matched else None,
        'max_position_error_m': max(matched.values()) if matched else None,
    }
