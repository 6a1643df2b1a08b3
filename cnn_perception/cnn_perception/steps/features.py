"""The feature-map step (demo D10): frame -> layer mosaic and class activation map."""

import numpy as np

from cnn_perception import contract
from cnn_perception.core import feature_maps as fm
from cnn_perception.core.draw import draw_label_panel
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.errors import UserError
from cnn_perception.params import Param
from cnn_perception.steps import Step, StepOutput

PARAMS = [
    Param('model', DEFAULT_MODEL, 'Registry model whose feature maps are shown'),
    Param(
        'layers',
        [''],
        "Layer names to show ([''] : the model's own choice; python -m cnn_perception "
        'features --list-layers)',
    ),
    Param(
        'backend',
        'onnxruntime',
        'Inference backend (gradcam needs torch)',
        choices=('onnxruntime', 'torch'),
    ),
    Param('device', 'cpu', 'cpu or cuda', choices=('cpu', 'cuda')),
    Param('num_threads', 0, 'CPU threads for inference (0: library default)', 0, 64),
    Param('channels_per_layer', 16, 'Most active channels shown per layer', 1, 256),
    Param('colormap', 'viridis', 'Colormap of the mosaic', choices=tuple(fm.COLORMAPS)),
    Param('per_channel', False, 'Scale every channel on its own instead of per layer'),
    Param(
        'cam_method',
        'eigencam',
        'Class activation map: eigencam (forward only) or gradcam (torch backend)',
        choices=('eigencam', 'gradcam'),
    ),
    Param(
        'shared_backbone',
        False,
        'Share one backbone pass per frame with the other heads in this process (same '
        'answers; onnxruntime on the CPU or torch on CUDA): classifier, defect detector, '
        'feature maps',
    ),
    Param('max_rate_hz', 2.0, 'Most frames processed per second', 0.01, 100.0, live=True),
]


class FeatureStep(Step):
    """Feature maps for people: computed only when someone looks (`want` not empty)."""

    key = 'features'
    PARAMS = PARAMS
    outputs = (contract.MOSAIC, contract.CAM)
    needs_watchers = True

    def __init__(self, p: dict, log=print):
        super().__init__(p, log)
        if p['cam_method'] == 'gradcam' and p['backend'] != 'torch':
            raise UserError('feature_map: cam_method gradcam needs backend torch')
        layers = [name for name in p['layers'] if name] or None
        self.shared_pass = None
        if p['shared_backbone'] and layers is None and p['cam_method'] == 'eigencam':
            from cnn_perception.core.shared import SharedBackbone

            self.shared_pass = SharedBackbone.for_node(p['model'], p, ('logits',))
            self.shared_pass.open_acts()
        self.model = (
            None
            if self.shared_pass
            else fm.FeatureMapModel(
                p['model'], layers, p['backend'], p['device'], num_threads=p['num_threads']
            )
        )
        self.cam_method = p['cam_method']
        self.mosaics = fm.MosaicBuilder(p['channels_per_layer'], p['colormap'], p['per_channel'])
        self.inferences = 0
        self.describe = f'{p["model"]} feature maps'

    def set(self, name: str, value) -> None:
        pass  # max_rate_hz is the node's

    def __call__(self, rgb, header, want=frozenset()) -> StepOutput:
        out = StepOutput()
        if not want:
            return out
        if self.shared_pass is not None:  # from the pass the heads share
            res = self.shared_pass.run(rgb, acts=True)
            logits, acts = res['logits'], res
            layers, cam_layer = self.shared_pass.feature_layers, self.shared_pass.cam_layer
            labels = self.shared_pass.labels
        else:
            logits, acts = self.model.run(rgb)
            layers, cam_layer = self.model.layers, self.model.cam_layer
            labels = self.model.labels
        self.inferences += 1
        if contract.MOSAIC in want:
            out.images.append(
                (contract.MOSAIC, self.mosaics.stacked({n: acts[n] for n in layers}))
            )
        if contract.CAM in want:
            top = int(np.argmax(logits))
            cam = (
                self.model.grad_cam(rgb, top)
                if self.cam_method == 'gradcam'
                else fm.eigen_cam(acts[cam_layer])
            )
            h, w = rgb.shape[:2]
            preprocess = (self.shared_pass or self.model).preprocess  # where the pass looked
            full = fm.cam_to_source(cam, preprocess, h, w)
            label = labels[top] if labels else str(top)
            overlay = draw_label_panel(fm.cam_overlay(rgb, full), [f'{label} ({self.cam_method})'])
            out.images.append((contract.CAM, overlay))
        out.values['inferences'] = self.inferences
        return out
