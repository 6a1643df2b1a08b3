"""The defect detector's step (demo D9): frame -> DetectionArray (+ heatmap with boxes).

With tracking on (the default), boxes get track ids and confirmed / ended defects become
DefectEvents (`steps/inspection.py`); `finish()` ends the open ones at the end of a bag.
"""

import time

from cnn_perception_msgs.msg import BoundingBox2D, Detection, DetectionArray, ObjectHypothesis

from cnn_perception import contract
from cnn_perception.core.defects import DefectDetector, DefectResult, load_defect_model
from cnn_perception.core.defects.builtin import DEFAULT_DEFECT_MODEL
from cnn_perception.core.draw import draw_defects
from cnn_perception.params import Param
from cnn_perception.steps import Step, StepOutput
from cnn_perception.steps.inspection import Inspector

PARAMS = [
    Param(
        'model',
        DEFAULT_DEFECT_MODEL,
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
    Param(
        'shared_backbone',
        False,
        'Share one backbone pass per frame with the other heads in this process (the '
        'whole frame, short side 192 px; a built-in model is fitted on that view): '
        'classifier, defect detector and feature maps',
    ),
    Param(
        'tracking',
        True,
        'Follow each defect across frames (camera motion compensated): Detection.id is the '
        'track id, one DefectEvent per confirmed defect on defects/events',
    ),
    Param('confirm_frames', 3, 'Frames a defect must be seen in to be confirmed', 1, 100),
    Param('end_after_frames', 5, 'Frames unseen after which a defect track ends', 1, 1000),
    Param('fix_topic', '', "sensor_msgs/NavSatFix topic of the drone's position ('': none)"),
    Param('pose_topic', '', "geometry_msgs/PoseStamped topic of the drone ('': none)"),
    Param('odom_topic', '', "nav_msgs/Odometry topic of the drone ('': none)"),
]


def detections_msg(header, res: DefectResult, model: str, ids=None) -> DetectionArray:
    """Every processed frame gets one; boxes only when the frame is flagged.

    `ids`: the track id of each box ('' while tentative); without tracking, the box's
    index in the frame.
    """
    msg = DetectionArray(
        header=header,
        model=model,
        image_score=float(res.score),
        inference_ms=float(res.inference_ms),
        off_surface=bool(res.off_surface),
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
                id=ids[i] if ids is not None else str(i),
            )
        )
    return msg


class DefectStep(Step):
    """Loads (or fits once, for builtin:) the defect model; each call scores one frame."""

    key = 'defects'
    PARAMS = PARAMS
    outputs = (contract.DETECTIONS, contract.DEFECT_EVENTS, contract.HEATMAP)

    def __init__(self, p: dict, log=print):
        super().__init__(p, log)
        self.sensitivity, self.min_area, self.tile = p['sensitivity'], p['min_area'], p['tile']
        # A built-in model is fitted on the shared pass's view when sharing
        model = load_defect_model(p['model'], log=log, shared=p['shared_backbone'])
        extractor = self.shared_pass = None
        if p['shared_backbone']:
            from cnn_perception.core.shared import SharedBackbone, SharedFeatures

            shared = SharedBackbone.for_node(model.backbone, p, ())
            if shared.matches_defect_model(model):
                shared.needs.add('patch')  # else the pass need not compute them
                extractor = SharedFeatures(shared)
                self.shared_pass = shared
            else:
                log(f"{p['model']}: fitted on another view than the shared pass (stage 2 of "
                    f"the whole frame at {shared.input_size} px: `defects fit --input-size "
                    f"{shared.input_size}`); running its own pass")  # fmt: skip
        self.detector = DefectDetector(
            model, p['backend'], p['device'], p['num_threads'], extractor=extractor
        )
        self.model_name = p['model'].rsplit('/', 1)[-1]
        self.describe = self.model_name
        self.inspector = (
            Inspector(p['confirm_frames'], p['end_after_frames']) if p['tracking'] else None
        )
        self.off_surface_frames = 0

    def set(self, name: str, value) -> None:
        if name == 'sensitivity':
            self.sensitivity = float(value)
        elif name == 'min_area':
            self.min_area = int(value)

    def __call__(self, rgb, header, want=frozenset()) -> StepOutput:
        res = self.detector.detect(rgb, self.sensitivity, self.min_area, self.tile)
        self.off_surface_frames += res.off_surface
        ids, events = None, []
        if self.inspector is not None:
            t0 = time.perf_counter()
            ids, events = self.inspector.update(rgb, header, res)
            self.tracking_ms = (time.perf_counter() - t0) * 1000.0
        out = StepOutput(
            [(contract.DETECTIONS, detections_msg(header, res, self.model_name, ids))]
            + [(contract.DEFECT_EVENTS, e) for e in events],
            values={
                'last_inference_ms': round(res.inference_ms, 2),
                'last_score': round(res.score, 3),
                'off_surface_frames': self.off_surface_frames,
            },
        )
        if self.inspector is not None:
            out.values['tracking_ms'] = round(self.tracking_ms, 2)
            out.values['defects_confirmed'] = self.inspector.tracker.next_id - 1
        if contract.HEATMAP in want:
            out.images.append((contract.HEATMAP, draw_defects(rgb, res)))
        return out

    def reset(self) -> None:
        self.off_surface_frames = 0
        if self.inspector is not None:
            self.inspector = Inspector(self.p['confirm_frames'], self.p['end_after_frames'])

    def finish(self, header) -> StepOutput:
        """End every open defect track (the end of a bag): their ENDED events."""
        events = self.inspector.finish(header) if self.inspector is not None else []
        return StepOutput([(contract.DEFECT_EVENTS, e) for e in events])
