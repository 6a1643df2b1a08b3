"""classifier_node: the CNN image classifier (demo D4) on a live image stream.

Subscribes `image`; publishes `classifier/classification` (top-k, header copied from the
image), `classifier/labels` (LabelMap, transient local, once) and `classifier/overlay`
(only computed while someone subscribes). Inference runs on a worker thread with a
latest-frame-wins slot, so frames the model cannot keep up with are dropped, not queued.
"""

import sys

from cnn_perception_msgs.msg import Classification, LabelMap
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from cnn_perception.core.classifier import load_classifier
from cnn_perception.core.draw import draw_label_panel
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.errors import UserError
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
from cnn_perception.results import classification_msg, overlay_lines

PARAMS = [
    Param(
        'model',
        DEFAULT_MODEL,
        'Registry name (efficientnet_lite0, mobilenet_v3_small, ...), checkpoint .pt from '
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
    Param('num_threads', 0, 'CPU threads for inference (0: library default)', 0, 64),
    Param('top_k', 5, 'Number of classes published per frame', 1, 1000, live=True),
    Param(
        'score_threshold', 0.0, 'Classes scoring below this are not published', 0.0, 1.0, live=True
    ),
    Param(
        'max_rate_hz',
        0.0,
        'Most frames classified per second (0: as fast as possible)',
        0.0,
        1000.0,
        live=True,
    ),
]
LABELS_QOS = QoSProfile(
    depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE
)


class ClassifierNode(FrameNode):
    task = 'inference'

    def __init__(self, **kwargs):
        super().__init__('classifier', **kwargs)
        p = declare_params(self, PARAMS)
        self.top_k, self.threshold = p['top_k'], p['score_threshold']
        self.diag = Diagnostics(self)
        self.clf = load_classifier(
            p['model'],
            weights=p['weights'] or None,
            backend=p['backend'],
            device=p['device'],
            fp16=p['fp16'],
            num_threads=p['num_threads'],
            input_size=p['input_size'] or None,
        )
        try:
            self.clf.warm_up()
        except Exception as exc:  # e.g. an ONNX file exported at another input size
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f'{p["model"]}: a test inference failed at start-up: {first[:200]}'
            ) from exc
        self.model_name = self.clf.info.name
        self.result_pub = self.create_publisher(
            Classification,
            'classifier/classification',
            RESULT_QOS,
            qos_overriding_options=overridable(),
        )
        self.overlay_pub = self.create_publisher(Image, 'classifier/overlay', OUTPUT_IMAGE_QOS)
        labels_pub = self.create_publisher(LabelMap, 'classifier/labels', LABELS_QOS)
        labels = LabelMap(
            model=self.model_name, labels=list(self.clf.labels), threshold=float(self.threshold)
        )
        labels.header.stamp = self.get_clock().now().to_msg()
        labels_pub.publish(labels)
        self.add_post_set_parameters_callback(self._params_changed)
        self.start_frames(self._process, p['max_rate_hz'], 'classifier')
        self.diag.set(
            OK,
            f'{self.model_name} on {p["backend"]}/{p["device"]}: waiting for images',
            model=self.model_name,
            backend=p['backend'],
        )

    def _params_changed(self, params) -> None:
        for prm in params:
            if prm.name == 'top_k':
                self.top_k = prm.value
            elif prm.name == 'score_threshold':
                self.threshold = float(prm.value)
            elif prm.name == 'max_rate_hz':
                self.set_max_rate(float(prm.value))

    def _process(self, raw: bytes) -> None:
        msg = decode_image(raw)
        rgb = to_rgb8(msg)
        pred = self.clf.predict(rgb, self.top_k, self.threshold)
        self.result_pub.publish(classification_msg(msg.header, pred, self.model_name))
        if self.overlay_pub.get_subscription_count() > 0:
            panel = draw_label_panel(rgb, overlay_lines(pred, self.model_name))
            self.overlay_pub.publish(numpy_to_image(panel, 'rgb8', msg.header))
        self.frame_done(msg.header, 'classifying', last_inference_ms=round(pred.inference_ms, 2))


def main(args=None) -> int:
    return run_node(ClassifierNode, 'classifier_node', args)


if __name__ == '__main__':
    sys.exit(main())
