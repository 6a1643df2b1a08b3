"""Result messages from core results, shared by the live nodes and offline processing.

A replayed bag and a `bag process`-ed bag therefore carry exactly the same fields.
"""

from cnn_perception_msgs.msg import (
    BoundingBox2D,
    Classification,
    Detection,
    DetectionArray,
    ObjectHypothesis,
)

from cnn_perception.core.classifier import Prediction
from cnn_perception.core.defects import DefectResult


def classification_msg(header, pred: Prediction, model: str) -> Classification:
    msg = Classification(header=header, model=model, inference_ms=float(pred.inference_ms))
    msg.results = [
        ObjectHypothesis(class_id=h.class_id, label=h.label, score=h.score) for h in pred.results
    ]
    return msg


def detections_msg(header, res: DefectResult, model: str) -> DetectionArray:
    """Every processed frame gets one; boxes only when the frame is flagged."""
    msg = DetectionArray(
        header=header,
        model=model,
        image_score=float(res.score),
        inference_ms=float(res.inference_ms),
    )
    for i, b in enumerate(res.boxes if res.is_defect else []):
        msg.detections.append(
            Detection(
                hypothesis=ObjectHypothesis(class_id=0, label='defect', score=float(b.score)),
                bbox=BoundingBox2D(
                    center_x=b.x + b.width / 2.0,
                    center_y=b.y + b.height / 2.0,
                    size_x=float(b.width),
                    size_y=float(b.height),
                ),
                id=str(i),
            )
        )
    return msg


def overlay_lines(pred: Prediction, model: str) -> list[str]:
    lines = [f'{h.label}  {h.score:.0%}' for h in pred.results[:3]]
    return lines + [f'{model} {pred.inference_ms:.0f} ms']
