"""A sample "flight" as a rosbag2 file, with a ground-truth sidecar.

Real photographs and brick-wall frames with painted defects; used by the replay tests
and `make demo`.
"""

import json
from pathlib import Path

import cv2
import numpy as np

TOPIC = '/flight/image_raw'
TRUTH = 'ground_truth.json'
# ImageNet classes the classifier should give as top-1 on each photograph.
EXPECTED = {
    'chelsea': ['tabby', 'tiger cat', 'Persian cat', 'Siamese cat', 'Egyptian cat'],
    'coffee': ['espresso', 'cup'],
}
SEQUENCE = [
    'chelsea',
    'brick',
    'coffee',
    'crack',
    'brick',
    'hole',
    'chelsea',
    'stain',
    'coffee',
    'scratch',
    'brick',
    'crack',
]


def flight_frames(seed: int = 7):
    """Yield (name, rgb, truth) for SEQUENCE; defect truth boxes in pixels (x, y, w, h)."""
    from skimage import data

    from cnn_perception.core.defect_eval import mask_box
    from cnn_perception.tools.datasets import augment_crop, paint_defect, texture

    rng = np.random.default_rng(seed)
    wall = texture('brick')
    for name in SEQUENCE:
        if name in EXPECTED:
            yield name, getattr(data, name)(), {'kind': 'photo', 'expected': EXPECTED[name]}
        elif name == 'brick':
            yield name, augment_crop(wall, 256, rng), {'kind': 'clean'}
        else:
            img, mask = paint_defect(augment_crop(wall, 256, rng), name, rng)
            yield name, img, {'kind': 'defect', 'defect': name, 'box': mask_box(mask > 0)}


def make_flight_bag(
    out: Path,
    fps: float = 2.0,
    seed: int = 7,
    start_sec: int = 1_700_000_000,
    frame_id: str = 'camera_optical_frame',
) -> list[dict]:
    """Write the flight as sensor_msgs/Image (bgr8) on TOPIC; returns the ground truth."""
    from builtin_interfaces.msg import Time
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from cnn_perception.io.bags import typestore
    from cnn_perception.io.images import numpy_to_image

    out = Path(out)
    truth = []
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=typestore())
        for i, (name, rgb, gt) in enumerate(flight_frames(seed)):
            ns = start_sec * 10**9 + round(i * 1e9 / fps)
            msg = numpy_to_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), 'bgr8')
            msg.header.stamp = Time(sec=ns // 10**9, nanosec=ns % 10**9)
            msg.header.frame_id = frame_id
            writer.write(conn, ns, serialize_message(msg))
            truth.append(
                {
                    'index': i,
                    'name': name,
                    'stamp_ns': ns,
                    'width': rgb.shape[1],
                    'height': rgb.shape[0],
                    **gt,
                }
            )
    (out / TRUTH).write_text(json.dumps(truth, indent=1))
    return truth


def load_truth(bag: Path) -> list[dict]:
    return json.loads((Path(bag) / TRUTH).read_text())
