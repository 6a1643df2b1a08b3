"""The classifier's step (demo D4): frame -> top-k Classification (+ labelled overlay)."""

from cnn_perception_msgs.msg import (
    BoundingBox2D,
    Classification,
    Detection,
    DetectionArray,
    LabelMap,
    ObjectHypothesis,
)

from cnn_perception import contract
from cnn_perception.core.classifier import Prediction, load_classifier
from cnn_perception.core.draw import draw_label_panel, draw_objects
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.core.tracking import DefectTracker
from cnn_perception.errors import UserError
from cnn_perception.params import Param
from cnn_perception.steps import Step, StepOutput

PARAMS = [
    Param(
        'model',
        DEFAULT_MODEL,
        'Registry name (efficientnet_lite0/1/2, mobilenet_v3_small, ...), checkpoint .pt from '
        '`train`, or exported .onnx (runs without torch)',
    ),
    Param('weights', '', 'Weights file for a registry model (empty: shipped weights)'),
    Param('backend', 'onnxruntime', 'Inference backend', choices=('onnxruntime', 'torch')),
    Param(
        'device',
        'cpu',
        'cpu or cuda (cuda: torch CUDA / ONNX Runtime CUDA+TensorRT)',
        choices=('cpu', 'cuda'),
    ),
    Param('fp16', False, 'Half precision on CUDA (torch backend)'),
    Param('input_size', 0, 'Network input size in pixels (0: the model default)', 0, 1024),
    Param(
        'precision',
        'fp32',
        'fp32, or int8: the quantized ONNX export (onnxruntime backend; made once with '
        '`export --int8`, else from built-in calibration frames, refused if top-1 drifts)',
        choices=('fp32', 'int8'),
    ),
    Param('num_threads', 0, 'CPU threads for inference (0: library default)', 0, 64),
    Param(
        'shared_backbone',
        False,
        'Share one backbone pass per frame with the other heads in this process (same '
        'answers; onnxruntime on the CPU or torch on CUDA): classifier, defect detector, '
        'feature maps',
    ),
    Param('top_k', 5, 'Number of classes published per frame', 1, 1000, live=True),
    Param(
        'score_threshold', 0.0, 'Classes scoring below this are not published', 0.0, 1.0, live=True
    ),
    Param(
        'localize',
        False,
        'Also publish classifier/detections: a box around each recognised object, from the '
        "classifier's own activations (class activation maps; same network pass)",
    ),
    Param(
        'localize_min_score',
        0.1,
        'Smallest class probability that gets boxes (with localize)',
        0.0,
        1.0,
        live=True,
    ),
    Param(
        'object_tracking',
        True,
        'With localize: follow each object across frames (camera motion compensated); '
        "Detection.id is its track id ('o1', 'o2', ... once seen in 2 frames)",
    ),
]
OBJECT_CONFIRM_FRAMES, OBJECT_END_AFTER_FRAMES = 2, 5


def classification_msg(header, pred: Prediction, model: str) -> Classification:
    msg = Classification(header=header, model=model, inference_ms=float(pred.inference_ms))
    msg.results = [
        ObjectHypothesis(class_id=h.class_id, label=h.label, score=h.score) for h in pred.results
    ]
    return msg


def object_detections_msg(header, pred: Prediction, boxes, model: str, ids) -> DetectionArray:
    """Every processed frame gets one (empty: nothing recognised above the minimum score)."""
    msg = DetectionArray(
        header=header,
        model=model,
        image_score=float(pred.results[0].score) if pred.results else 0.0,
        inference_ms=float(pred.inference_ms),
    )
    for i, b in enumerate(boxes):
        msg.detections.append(
            Detection(
                hypothesis=ObjectHypothesis(class_id=b.class_id, label=b.label, score=b.score),
                bbox=BoundingBox2D(
                    center_x=float(b.x + b.width / 2.0),
                    center_y=float(b.y + b.height / 2.0),
                    size_x=float(b.width),
                    size_y=float(b.height),
                ),
                id=ids[i] if ids is not None else str(i),
            )
        )
    return msg


def overlay_lines(pred: Prediction, model: str) -> list[str]:
    lines = [f'{h.label}  {h.score:.0%}' for h in pred.results[:3]]
    return lines + [f'{model} {pred.inference_ms:.0f} ms']


class ClassifierStep(Step):
    """Loads the classifier once; each call classifies one RGB frame."""

    key = 'classifier'
    PARAMS = PARAMS
    outputs = (
        contract.CLASSIFICATION,
        contract.CLASSIFIER_OVERLAY,
        contract.CLASSIFIER_DETECTIONS,
    )
    # Every frame it processes goes through the shared pass: the other heads on the same
    # stream take their frames from it (core/shared.py, `hand_over`).
    leads_shared_pass = True

    def __init__(self, p: dict, log=print):
        super().__init__(p, log)
        self.top_k, self.threshold = p['top_k'], float(p['score_threshold'])
        self.precision = p['precision']
        self.localize, self.min_score = bool(p['localize']), float(p['localize_min_score'])
        self.tracker = None
        self.reset()
        self.shared_pass = None
        if p['shared_backbone']:
            from cnn_perception.core.classifier import SharedClassifier
            from cnn_perception.core.shared import SharedBackbone

            needs = ('logits', 'cam') if self.localize else ('logits',)
            self.shared_pass = SharedBackbone.for_node(p['model'], p, needs)
            self.clf = SharedClassifier(self.shared_pass, self.localize, log)
            if self.precision == 'int8':
                log('precision int8 is not used with shared_backbone: the shared pass is fp32')
            self.precision = 'fp32, shared backbone pass'
        else:
            self.clf = self._load(p, log)
        try:
            self.clf.warm_up()
        except Exception as exc:  # e.g. an ONNX file exported at another input size
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f'{p["model"]}: a test inference failed at start-up: {first[:200]}'
            ) from exc
        self.model_name = self.clf.info.name
        self.describe = f'{self.model_name} on {p["backend"]}/{p["device"]} {self.precision}'

    def _load(self, p: dict, log):
        from cnn_perception.core.quantize import QualityGateError

        kw = dict(
            weights=p['weights'] or None,
            backend=p['backend'],
            device=p['device'],
            fp16=p['fp16'],
            num_threads=p['num_threads'],
            input_size=p['input_size'] or None,
            localize=self.localize,
            log=log,
        )
        try:
            return load_classifier(p['model'], precision=self.precision, **kw)
        except QualityGateError as exc:
            # The board runs on: fp32 gives the same answers, only slower.
            log(f'{exc}; running fp32')
            self.precision = 'fp32 (int8 refused by the quality gate)'
            return load_classifier(p['model'], **kw)

    def reset(self) -> None:
        if self.localize and self.p['object_tracking']:  # ids start again at o1
            self.tracker = DefectTracker(OBJECT_CONFIRM_FRAMES, OBJECT_END_AFTER_FRAMES,
                                         prefix='o')  # fmt: skip

    def set(self, name: str, value) -> None:
        if name == 'top_k':
            self.top_k = int(value)
        elif name == 'score_threshold':
            self.threshold = float(value)
        elif name == 'localize_min_score':
            self.min_score = float(value)

    def labels_msg(self) -> LabelMap:
        return LabelMap(
            model=self.model_name, labels=list(self.clf.labels), threshold=float(self.threshold)
        )

    def __call__(self, rgb, header, want=frozenset()) -> StepOutput:
        boxes = None
        if self.localize:
            pred, boxes, box_ms = self.clf.localize(rgb, self.top_k, self.threshold,
                                                    self.min_score)  # fmt: skip
        else:
            pred = self.clf.predict(rgb, self.top_k, self.threshold)
        out = StepOutput(
            [(contract.CLASSIFICATION, classification_msg(header, pred, self.model_name))],
            values={'last_inference_ms': round(pred.inference_ms, 2)},
        )
        ids = None
        if boxes is not None:
            if self.tracker is not None and (boxes or self.tracker.tracks):
                # nothing seen and nothing followed: no camera motion to estimate
                ids = self.tracker.update(rgb, boxes, contract.stamp_ns(header)).ids
            msg = object_detections_msg(header, pred, boxes, self.model_name, ids)
            out.messages.append((contract.CLASSIFIER_DETECTIONS, msg))
            out.values['last_boxes_ms'] = round(box_ms, 2)
            out.values['objects_tracked'] = self.tracker.next_id - 1 if self.tracker else 0
        if contract.CLASSIFIER_OVERLAY in want:
            frame = draw_objects(rgb, boxes, ids) if boxes else rgb
            panel = draw_label_panel(frame, overlay_lines(pred, self.model_name))
            out.images.append((contract.CLASSIFIER_OVERLAY, panel))
        return out
