"""INT8 for the CPU boards: ONNX Runtime static quantization with a quality gate (no torch).

The fp32 ONNX export is quantized with ONNX Runtime's `quantize_static`: QDQ format,
per-channel int8 weights, uint8 activations. EfficientNet-Lite was made to quantize well
(ReLU6 instead of swish, no squeeze-excite): every ReLU6 output is quantized over its true
range [0, 6] (a tensor override), the unbounded tensors (projection convs, residual adds)
over the range the calibration frames produce (MinMax). Tried and measured on this
project's photographs (docs/benchmarks.md, "INT8"): percentile and entropy calibration,
and keeping the head, the first/last layers, the projection convs or the depthwise convs
in float -- none agreed better with fp32, most were slower. `keep_float` still names
layers a user's own model may need in float.

Calibration frames are split: three quarters set the ranges, the held-out quarter is the
gate -- a model whose top-1 agrees with fp32 on fewer than `min_agreement` of them is
refused in one line, and nothing is cached.

Only onnx and onnxruntime are used, so a Pi can quantize its own cached fp32 export.
"""

from dataclasses import dataclass
import json
import os
from pathlib import Path
import tempfile

import numpy as np

from cnn_perception.core.backends import ONNX_META_KEY, make_session
from cnn_perception.errors import UserError

DEFAULT_MIN_AGREEMENT = 0.97
# quantization-aware fine-tuning steps of `export --int8` (core/qat.py)
FINETUNE_STEPS = 1000


def _relu6_ranges(model_path: Path) -> dict:
    """Tensor overrides: each Clip's output is quantized over its own [min, max] (ReLU6)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == 'Clip' and len(n.input) == 3 and {*n.input[1:]} <= consts.keys():
            lo, hi = (np.asarray(consts[i], np.float32).reshape(()) for i in n.input[1:])
            out[n.output[0]] = [{'rmin': lo, 'rmax': hi}]
    return out


class QualityGateError(UserError):
    """The INT8 model's answers drift too far from fp32's: refused, nothing cached."""


@dataclass
class QuantReport:
    path: Path
    agreement: float  # top-1 agreement with fp32 on the held-out frames
    held_out: int
    calibration: int
    kept_float: tuple[str, ...]


class _Frames:
    """CalibrationDataReader over preprocessed frames."""

    def __init__(self, tensors, input_name: str):
        self._it = iter([{input_name: x} for x in tensors])

    def get_next(self):
        return next(self._it, None)


def default_calibration_frames(count: int = 160, seed: int = 0) -> list[np.ndarray]:
    """Real colour photographs that ship with scikit-image and scikit-learn, varied.

    Random crops (half to whole), mirrored or not, brighter or darker, of the astronaut
    (scikit-image) and the China temple and flower (scikit-learn), plus the surface
    photographs. None of the photographs the benchmarks measure agreement on (chelsea,
    coffee, rocket, the motorcycle, Grace Hopper) is among them, so the gate is not
    flattered. A user's own frames (`export --int8 --calibration DIR`) are better: the
    activation ranges should come from what the camera sees.
    """
    import cv2

    images = photos(('astronaut', 'china', 'flower', 'brick', 'gravel'))
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        img = images[i % len(images)]
        h, w = img.shape[:2]
        keep = rng.uniform(0.5, 1.0)
        ch, cw = int(h * keep), int(w * keep)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.ascontiguousarray(cv2.convertScaleAbs(crop, alpha=rng.uniform(0.6, 1.2))))
    return out


# Photographs for INT8 fine-tuning (core/qat.py) and the photographs its gate checks on,
# never trained on; neither holds a photograph the benchmarks measure agreement on.
FINETUNE_PHOTOS = (
    'flower', 'hubble_deep_field', 'immunohistochemistry', 'retina', 'colorwheel', 'logo',
    'minduka', 'camera', 'coins', 'moon', 'cell', 'grass', 'brick', 'gravel',
)  # fmt: skip
GATE_PHOTOS = ('astronaut', 'china')


def photos(names) -> list[np.ndarray]:
    """HxWx3 uint8 RGB photographs shipped with scikit-image, scikit-learn, matplotlib."""
    import os

    import cv2
    import matplotlib
    from skimage import data
    from sklearn.datasets import load_sample_images

    out = []
    for name in names:
        if name in ('china', 'flower'):
            img = load_sample_images().images[0 if name == 'china' else 1]
        elif name == 'minduka':
            path = os.path.join(
                os.path.dirname(matplotlib.__file__), 'mpl-data', 'sample_data',
                'Minduka_Present_Blue_Pack.png',
            )  # fmt: skip
            img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        else:
            img = getattr(data, name)()
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        out.append(np.ascontiguousarray(img[..., :3]))
    return out


def augmented_frames(images, count: int, seed: int) -> list[np.ndarray]:
    """Random crops (a fifth to all of a side), mirrored, brighter or darker, some in pairs.

    Pairs side by side give frames with two scenes in them, as a camera panning sees.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        tiles = []
        for _ in range(2 if rng.random() < 0.3 else 1):
            img = images[int(rng.integers(len(images)))]
            h, w = img.shape[:2]
            keep = rng.uniform(0.2, 1.0)
            ch, cw = max(16, int(h * keep)), max(16, int(w * keep))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = img[y : y + ch, x : x + cw]
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = cv2.resize(np.ascontiguousarray(crop), (320, 320))
            alpha, beta = rng.uniform(0.6, 1.3), rng.uniform(-20, 20)
            tiles.append(cv2.convertScaleAbs(crop, alpha=alpha, beta=beta))
        out.append(np.ascontiguousarray(np.concatenate(tiles, 1)))
    return out


def top1_agreement(a, b, tensors) -> float:
    """Share of preprocessed inputs on which two ONNX Runtime sessions give the same top-1."""
    name = a.get_inputs()[0].name
    same = [
        a.run(None, {name: x})[0].argmax() == b.run(None, {name: x})[0].argmax() for x in tensors
    ]
    return float(np.mean(same))


def quantize(
    fp32_path: Path,
    out_path: Path,
    frames: list[np.ndarray],
    preprocess,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    keep_float: tuple[str, ...] = (),
    log=print,
    reference: Path | None = None,
    held_out: list[np.ndarray] | None = None,
    meta: dict | None = None,
) -> QuantReport:
    """Quantize an exported classifier; UserError (one line) when the gate refuses it.

    `reference`: the fp32 model the gate compares with (default: `fp32_path` itself; the
    original when `fp32_path` is a fine-tuned twin). `held_out`: the gate's frames (default:
    a quarter of `frames`, then not used for the ranges). `meta`: added to the metadata.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(frames) < 8:
        raise UserError(f'INT8 calibration needs at least 8 frames, got {len(frames)}')
    if held_out is None:
        order = np.random.default_rng(0).permutation(len(frames))
        n_held = max(4, len(frames) // 4)
        held = [preprocess(frames[i]) for i in order[:n_held]]
        calib = [preprocess(frames[i]) for i in order[n_held:]]
    else:
        held = [preprocess(f) for f in held_out]
        calib = [preprocess(f) for f in frames]
    fp32 = make_session(str(reference or fp32_path))
    input_name = fp32.get_inputs()[0].name
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / 'pre.onnx'
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        q = Path(tmp) / 'int8.onnx'
        quantize_static(
            str(pre),
            str(q),
            _Frames(calib, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=list(keep_float),
            extra_options={'TensorQuantOverrides': _relu6_ranges(pre)},
        )
        agree = top1_agreement(fp32, make_session(str(q)), held)
        if agree < min_agreement:
            raise QualityGateError(
                f'INT8 export refused: top-1 agrees with fp32 on {agree:.1%} of {len(held)} '
                f'held-out calibration frames (needs {min_agreement:.0%}); keep precision '
                'fp32, or calibrate on more frames of your own camera'
            )
        proto = onnx.load(str(q))
        # Clip bounds the QDQ ranges made redundant: unused, and ONNX Runtime would warn
        # about each of them every time a node loads the model
        used = {i for n in proto.graph.node for i in n.input}
        keep = [t for t in proto.graph.initializer if t.name in used]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(keep)
        info = json.loads(
            next(
                p.value for p in onnx.load(str(fp32_path)).metadata_props if p.key == ONNX_META_KEY
            )
        )
        info.update(precision='int8', int8_agreement=agree, int8_held_out=len(held))
        info.update(meta or {})
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_META_KEY, json.dumps(info)
        tmp_out = out_path.with_suffix(f'.{os.getpid()}.tmp')
        onnx.save(proto, str(tmp_out))
        tmp_out.replace(out_path)  # atomic: never a half-written cache entry
    log(
        f'INT8: top-1 agrees with fp32 on {agree:.1%} of {len(held)} held-out frames '
        f'(calibrated on {len(calib)}); wrote {out_path}'
    )
    return QuantReport(out_path, agree, len(held), len(calib), tuple(keep_float))
