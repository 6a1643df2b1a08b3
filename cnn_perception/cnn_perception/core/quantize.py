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
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), *load_sample_images().images]
    photos += [cv2.cvtColor(g, cv2.COLOR_GRAY2RGB) for g in (data.brick(), data.gravel())]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        keep = rng.uniform(0.5, 1.0)
        ch, cw = int(h * keep), int(w * keep)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(np.ascontiguousarray(cv2.convertScaleAbs(crop, alpha=rng.uniform(0.6, 1.2))))
    return out


def quantize(
    fp32_path: Path,
    out_path: Path,
    frames: list[np.ndarray],
    preprocess,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    keep_float: tuple[str, ...] = (),
    log=print,
) -> QuantReport:
    """Quantize an exported classifier; UserError (one line) when the gate refuses it."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(frames) < 8:
        raise UserError(f'INT8 calibration needs at least 8 frames, got {len(frames)}')
    order = np.random.default_rng(0).permutation(len(frames))
    n_held = max(4, len(frames) // 4)
    held = [preprocess(frames[i]) for i in order[:n_held]]
    calib = [preprocess(frames[i]) for i in order[n_held:]]
    fp32 = make_session(str(fp32_path))
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
        int8 = make_session(str(q))
        agree = float(
            np.mean(
                [
                    fp32.run(None, {input_name: x})[0].argmax()
                    == int8.run(None, {input_name: x})[0].argmax()
                    for x in held
                ]
            )
        )
        if agree < min_agreement:
            raise QualityGateError(
                f'INT8 export refused: top-1 agrees with fp32 on {agree:.1%} of {len(held)} '
                f'held-out calibration frames (needs {min_agreement:.0%}); keep precision '
                'fp32, or calibrate on more frames of your own camera'
            )
        proto = onnx.load(str(q))
        meta = json.loads(
            next(
                p.value for p in onnx.load(str(fp32_path)).metadata_props if p.key == ONNX_META_KEY
            )
        )
        meta.update(precision='int8', int8_agreement=agree, int8_held_out=len(held))
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
        tmp_out = out_path.with_suffix(f'.{os.getpid()}.tmp')
        onnx.save(proto, str(tmp_out))
        tmp_out.replace(out_path)  # atomic: never a half-written cache entry
    log(
        f'INT8: top-1 agrees with fp32 on {agree:.1%} of {len(held)} held-out frames '
        f'(calibrated on {len(calib)}); wrote {out_path}'
    )
    return QuantReport(out_path, agree, len(held), len(calib), tuple(keep_float))
