"""feature_map_node: what the CNN sees (demo D10), live in rviz.

Publishes `feature_maps/mosaic` (the chosen layers stacked, each labelled with its name
and shape) and `feature_maps/cam` (class activation map over the frame). Nothing is
computed while nobody subscribes; with a subscriber, at most `max_rate_hz` frames/s.
"""

import sys

import numpy as np
from sensor_msgs.msg import Image

from cnn_perception.core import feature_maps as fm
from cnn_perception.core.draw import draw_label_panel
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.errors import UserError
from cnn_perception.io.images import numpy_to_image, to_rgb8
from cnn_perception.nodes.common import (
    OK,
    OUTPUT_IMAGE_QOS,
    Diagnostics,
    FrameNode,
    Param,
    declare_params,
    decode_image,
    run_node,
)

PARAMS = [
    Param('model', DEFAULT_MODEL, 'Registry model whose feature maps are shown'),
    Param(
        'layers',
        list(fm.DEFAULT_LAYERS[DEFAULT_MODEL]),
        'Layer names to show (python -m cnn_perception features --list-layers)',
    ),
    Param(
        'backend',
        'onnxruntime',
        'Inference backend (gradcam needs torch)',
        choices=('onnxruntime', 'torch'),
    ),
    Param('device', 'cpu', 'cpu or cuda', choices=('cpu', 'cuda')),
    Param('channels_per_layer', 16, 'Most active channels shown per layer', 1, 256),
    Param('colormap', 'viridis', 'Colormap of the mosaic', choices=tuple(fm.COLORMAPS)),
    Param('per_channel', False, 'Scale every channel on its own instead of per layer'),
    Param(
        'cam_method',
        'eigencam',
        'Class activation map: eigencam (forward only) or gradcam (torch backend)',
        choices=('eigencam', 'gradcam'),
    ),
    Param('max_rate_hz', 2.0, 'Most frames processed per second', 0.01, 100.0, live=True),
]


class FeatureMapNode(FrameNode):
    task = 'feature maps'

    def __init__(self, **kwargs):
        super().__init__('feature_map', **kwargs)
        p = declare_params(self, PARAMS)
        if p['cam_method'] == 'gradcam' and p['backend'] != 'torch':
            raise UserError('feature_map: cam_method gradcam needs backend torch')
        self.diag = Diagnostics(self)
        self.model = fm.FeatureMapModel(p['model'], list(p['layers']), p['backend'], p['device'])
        self.cam_method = p['cam_method']
        self.mosaics = fm.MosaicBuilder(p['channels_per_layer'], p['colormap'], p['per_channel'])
        self.mosaic_pub = self.create_publisher(Image, 'feature_maps/mosaic', OUTPUT_IMAGE_QOS)
        self.cam_pub = self.create_publisher(Image, 'feature_maps/cam', OUTPUT_IMAGE_QOS)
        self.inferences = 0
        self.skipped = 0
        self.add_post_set_parameters_callback(self._params_changed)
        self.start_frames(self._process, p['max_rate_hz'], 'feature_maps', self._on_image)
        self.diag.set(OK, 'idle: no subscriber to feature_maps/*', inferences=0)

    def _params_changed(self, params) -> None:
        for prm in params:
            if prm.name == 'max_rate_hz':
                self.set_max_rate(float(prm.value))

    def _watched(self) -> bool:
        return (
            self.mosaic_pub.get_subscription_count() > 0
            or self.cam_pub.get_subscription_count() > 0
        )

    def _on_image(self, raw: bytes) -> None:
        # Visualisation is for people: without a viewer it costs nothing.
        if not self._watched():
            self.skipped += 1
            return
        self.worker.submit(raw)

    def _process(self, raw: bytes) -> None:
        msg = decode_image(raw)
        rgb = to_rgb8(msg)
        logits, acts = self.model.run(rgb)
        self.inferences += 1
        if self.mosaic_pub.get_subscription_count() > 0:
            mosaic = self.mosaics.stacked({n: acts[n] for n in self.model.layers})
            self.mosaic_pub.publish(numpy_to_image(mosaic, 'rgb8', msg.header))
        if self.cam_pub.get_subscription_count() > 0:
            top = int(np.argmax(logits))
            cam = (
                self.model.grad_cam(rgb, top)
                if self.cam_method == 'gradcam'
                else fm.eigen_cam(acts[self.model.cam_layer])
            )
            full = fm.cam_to_source(cam, self.model.preprocess, *rgb.shape[:2])
            label = self.model.labels[top] if self.model.labels else str(top)
            overlay = draw_label_panel(fm.cam_overlay(rgb, full), [f'{label} ({self.cam_method})'])
            self.cam_pub.publish(numpy_to_image(overlay, 'rgb8', msg.header))
        self.frame_done(
            msg.header,
            'publishing feature maps',
            inferences=self.inferences,
            skipped_unwatched=self.skipped,
        )


def main(args=None) -> int:
    return run_node(FeatureMapNode, 'feature_map_node', args)


if __name__ == '__main__':
    sys.exit(main())
