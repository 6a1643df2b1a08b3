"""One filled-in instance of each cnn_perception_msgs message, for round-trip tests."""

from builtin_interfaces.msg import Time
from cnn_perception_msgs.msg import (
    BoundingBox2D,
    Classification,
    Detection,
    DetectionArray,
    LabelMap,
    ObjectHypothesis,
)
from std_msgs.msg import Header


def header(i: int = 0) -> Header:
    return Header(
        stamp=Time(sec=1_700_000_000 + i, nanosec=123_456_789), frame_id='camera_optical'
    )


def samples() -> dict:
    hyp = ObjectHypothesis(class_id=285, label='Egyptian cat', score=0.75)
    box = BoundingBox2D(center_x=320.5, center_y=240.25, size_x=64.0, size_y=32.0)
    det = Detection(
        hypothesis=ObjectHypothesis(class_id=0, label='defect', score=0.9375), bbox=box, id='0'
    )
    return {
        'ObjectHypothesis': hyp,
        'BoundingBox2D': box,
        'Detection': det,
        'Classification': Classification(
            header=header(1),
            results=[hyp, ObjectHypothesis(class_id=281, label='tabby', score=0.125)],
            model='efficientnet_lite0',
            inference_ms=12.5,
        ),
        'DetectionArray': DetectionArray(
            header=header(2),
            detections=[det, det],
            model='patchcore',
            image_score=0.875,
            inference_ms=30.0,
        ),
        'LabelMap': LabelMap(
            header=header(3),
            model='efficientnet_lite0',
            labels=['tench', 'goldfish', 'ünïcode'],
            threshold=0.25,
        ),
    }
