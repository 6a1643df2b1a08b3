"""defect_detector_node: the unsupervised CNN defect detector (demo D9) on a live stream.

Subscribes `image`; publishes `defects/detections` (a DetectionArray for every processed
frame -- empty when clean -- with `image_score`, header copied) and `defects/heatmap`
(jet overlay with boxes, only computed while someone subscribes). Latest frame wins.
"""

import sys

from cnn_perception_msgs.msg import DetectionArray
from sensor_msgs.msg import Image

from cnn_perception.core.defects import DefectDetector, load_defect_model
from cnn_perception.core.draw import draw_defects
from cnn_perception.io.images import numpy_to_image, to_rgb8
from cnn_perception.nodes.common import (
    OK,
    OUTPUT_IMAGE_QOS,
    RESULT_QOS,
    Diagnostics,
    FrameNode,
    Param,
    declare_params,
    decode_image,
    overridable,
    run_node,
)
from cnn_perception.results import detections_msg

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
    Param(
        'max_rate_hz',
        0.0,
        'Most frames scored per second (0: as fast as possible)',
        0.0,
        1000.0,
        live=True,
    ),
]


class DefectDetectorNode(FrameNode):
    task = 'defect scoring'

    def __init__(self, **kwargs):
        super().__init__('defect_detector', **kwargs)
        p = declare_params(self, PARAMS)
        self.sensitivity, self.min_area, self.tile = p['sensitivity'], p['min_area'], p['tile']
        self.diag = Diagnostics(self)
        model = load_defect_model(p['model'], log=self.get_logger().info)
        self.detector = DefectDetector(model, p['backend'], p['device'], p['num_threads'])
        self.model_name = p['model'].rsplit('/', 1)[-1]
        self.pub = self.create_publisher(
            DetectionArray, 'defects/detections', RESULT_QOS, qos_overriding_options=overridable()
        )
        self.heatmap_pub = self.create_publisher(Image, 'defects/heatmap', OUTPUT_IMAGE_QOS)
        self.add_post_set_parameters_callback(self._params_changed)
        self.start_frames(self._process, p['max_rate_hz'], 'defects')
        self.diag.set(OK, f'{self.model_name}: waiting for images', model=self.model_name)

    def _params_changed(self, params) -> None:
        for prm in params:
            if prm.name == 'sensitivity':
                self.sensitivity = float(prm.value)
            elif prm.name == 'min_area':
                self.min_area = int(prm.value)
            elif prm.name == 'max_rate_hz':
                self.set_max_rate(float(prm.value))

    def _process(self, raw: bytes) -> None:
        msg = decode_image(raw)
        rgb = to_rgb8(msg)
        res = self.detector.detect(rgb, self.sensitivity, self.min_area, self.tile)
        self.pub.publish(detections_msg(msg.header, res, self.model_name))
        if self.heatmap_pub.get_subscription_count() > 0:
            self.heatmap_pub.publish(numpy_to_image(draw_defects(rgb, res), 'rgb8', msg.header))
        self.frame_done(
            msg.header,
            'scoring',
            last_inference_ms=round(res.inference_ms, 2),
            last_score=round(res.score, 3),
        )


def main(args=None) -> int:
    return run_node(DefectDetectorNode, 'defect_detector_node', args)


if __name__ == '__main__':
    sys.exit(main())
