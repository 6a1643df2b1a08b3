"""The defect detector's step (demo D9): frame -> DetectionArray (+ heatmap with boxes)."""

from cnn_perception_msgs.msg import BoundingBox2D, Detection, DetectionArray, ObjectHypothesis

from cnn_perception import contract
from cnn_perception.core.defects import DefectDetector, DefectResult, load_defect_model
from cnn_perception.core.draw import draw_defects
from cnn_perception.params import Param
from cnn_perception.steps import StepOutput

PARAMS = [
    Param(
        'model',
        'builtin:brick',
        'Defect model: .npz from `defects fit`, or builtin:brick|gravel|grass|moon (fitted '
        'once on a scikit-image surface photograph and cached)',
    ),
    Param('backend', 'onnxruntime', 'Inference backend', choices=('onnxruntime', 'torch')),
    Param('device', 'cpu', 'cpu or cuda', choices=('cpu', 'cuda')),
    Param('num_threads', 0, 'CPU threads for inference (0: library default)', 0, 64),
    Param(
        'tile',
        0,
        'Score overlapping square tiles of this many pixels (0: whole frame); '
        'keeps small defects in large frames; the threshold rises with the tile count',
        0,
        4096,
    ),
    Param(
        'sensitivity',
        1.0,
        'Scales anomaly scores: > 1 flags more, < 1 fewer',
        0.01,
        100.0,
        live=True,
    ),
    Param('min_area', 16, 'Smallest defect region reported, in pixels', 1, 1000000, live=True),
]


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


class DefectStep:
    """Loads (or fits once, for builtin:) the defect model; each call scores one frame."""

    node = 'defect_detector'
    PARAMS = PARAMS
    outputs = (contract.DETECTIONS, contract.HEATMAP)
    needs_watchers = False

    def __init__(self, p: dict, log=print):
        self.sensitivity, self.min_area, self.tile = p['sensitivity'], p['min_area'], p['tile']
        model = load_defect_model(p['model'], log=log)
        self.detector = DefectDetector(model, p['backend'], p['device'], p['num_threads'])
        self.model_name = p['model'].rsplit('/', 1)[-1]
        self.describe = self.model_name

    def set(self, name: str, value) -> None:
        if name == 'sensitivity':
            self.sensitivity = float(value)
        elif name == 'min_area':
            self.min_area = int(value)

    def __call__(self, rgb, header, want=frozenset()) -> StepOutput:
        res = self.detector.detect(rgb, self.sensitivity, self.min_area, self.tile)
        out = StepOutput(
            [(contract.DETECTIONS, detections_msg(header, res, self.model_name))],
            values={
                'last_inference_ms': round(res.inference_ms, 2),
                'last_score': round(res.score, 3),
            },
        )
        if contract.HEATMAP in want:
            out.images.append((contract.HEATMAP, draw_defects(rgb, res)))
        return out
