"""Quantization-aware fine-tuning for INT8 (torch, at export time; never on the Pi path).

Why: post-training quantization of EfficientNet-Lite0 keeps every single tensor at 30 dB
or better, but ~95 of them add up to 16-18 dB of signal-to-noise on the logits, and
frames whose top two classes are close change their answer (docs/benchmarks.md, "INT8").
No calibration method, no layer kept in float fixes a loss spread evenly over the network.

What: the network with its batch norms folded into the convolutions (what the ONNX export
and ONNX Runtime see), ONNX Runtime's QDQ quantization simulated in torch -- per-channel
symmetric int8 weights; uint8 activations over ranges calibrated on the training frames,
at every convolution's input and every activation, block and pooling output -- with
straight-through gradients, fine-tuned (1000 steps by default) to give the original fp32
model's answers (distillation: KL divergence of the softened softmax plus the logits' MSE)
on augmented frames. Measured: top-1 agreement with fp32 90% -> 98.3% on 60 photograph
frames, logit SNR 18.0 -> 21.9 dB (docs/benchmarks.md, "INT8"). The result is a float
model whose INT8 twin agrees with the original; `core/quantize.py` quantizes it as usual,
and its gate compares against the original.

Written by hand because the library routes do not fit: torch.ao's QAT produces torch
quantized modules (its ONNX export is deprecated and its x86 kernels are not what ONNX
Runtime runs), and ONNX Runtime has no training-based quantization.
"""

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cnn_perception.core.quantize import FINETUNE_STEPS as STEPS

LR = 5e-6
TEMPERATURE = 2.0  # softened targets: the runner-up classes' order matters too
LOGIT_WEIGHT = 1.0
BATCH = 16
# timm's residual blocks: their output (after the residual add) is a quantized tensor
_BLOCKS = ('InvertedResidual', 'DepthwiseSeparableConv', 'EdgeResidual')


class AfterNorm(nn.Sequential):
    """What is left of a BatchNormAct2d once its norm is folded: drop + activation."""


def fold_batchnorm(net):
    """Copy of `net` with each Conv2d + following BatchNorm2d fused into one Conv2d.

    timm's BatchNormAct2d keeps its activation (and drop) after the fold; the folded
    network computes what the original does in eval mode, as the ONNX export does.
    """
    net = copy.deepcopy(net).eval()

    def visit(module):
        names = list(module._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                rest = [m for m in (getattr(bn, 'drop', None), getattr(bn, 'act', None)) if m]
                module._modules[b] = AfterNorm(*rest)
        for child in module.children():
            visit(child)

    visit(net)
    return net


class _WeightInt8(nn.Module):
    """Parametrization: the weight through a per-channel int8 round trip while enabled."""

    def __init__(self, owner: 'FakeQuant'):
        super().__init__()
        self.owner = [owner]  # a list: not a submodule

    def forward(self, w):
        return fake_quant_weight(w) if self.owner[0].enabled else w


class FakeQuant:
    """ONNX Runtime's QDQ quantization simulated on a folded network; `remove()` undoes it."""

    def __init__(self, net, calibration):
        self.enabled = True
        self.layers = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
        blocks = [m for m in net.modules() if type(m).__name__ in _BLOCKS]
        pools = [m for m in net.modules() if type(m).__name__ == 'SelectAdaptivePool2d']
        outs = [m for m in net.modules() if isinstance(m, AfterNorm)] + blocks + pools
        self.outputs = outs
        self.in_range, self.out_range = {}, {}
        hooks = [m.register_forward_pre_hook(self._observe_in) for m in self.layers]
        hooks += [m.register_forward_hook(self._observe_out) for m in self.outputs]
        with torch.no_grad():
            for x in calibration:
                net(x)
        for h in hooks:
            h.remove()
        self._hooks = [m.register_forward_pre_hook(self._quant_in) for m in self.layers]
        self._hooks += [m.register_forward_hook(self._quant_out) for m in self.outputs]
        for m in self.layers:
            parametrize.register_parametrization(m, 'weight', _WeightInt8(self))

    @staticmethod
    def _widen(table, m, x):
        lo, hi = float(x.min()), float(x.max())
        old = table.get(m)
        table[m] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)

    def _observe_in(self, m, inp):
        self._widen(self.in_range, m, inp[0].detach())

    def _observe_out(self, m, inp, out):
        self._widen(self.out_range, m, out.detach())

    def _quant_in(self, m, inp):
        return (fake_quant_uint8(inp[0], *self.in_range[m]),) if self.enabled else None

    def _quant_out(self, m, inp, out):
        return fake_quant_uint8(out, *self.out_range[m]) if self.enabled else None

    def remove(self) -> None:
        """Back to a plain float network (the trained float weights kept)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for m in self.layers:
            parametrize.remove_parametrizations(m, 'weight', leave_parametrized=False)


def fake_quant_uint8(x, lo: float, hi: float):
    """Asymmetric uint8 round trip over [lo, hi] (0 always representable), as ORT's QDQ."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-8) / 255.0
    zero = round(-lo / scale)
    q = (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale
    return x + (q - x).detach()


def fake_quant_weight(w):
    """Per-output-channel symmetric int8 round trip (ONNX Runtime's per-channel weights)."""
    dims = tuple(range(1, w.dim()))
    scale = w.detach().abs().amax(dim=dims, keepdim=True).clamp(min=1e-12) / 127.0
    q = torch.clamp(torch.round(w / scale), -127, 127) * scale
    return w + (q - w).detach()


def finetune(
    net,
    preprocess,
    frames_for_step,
    calibration_frames,
    steps: int = STEPS,
    lr: float = LR,
    log=print,
    progress: bool = True,
    device: str | None = None,
):
    """Fine-tune a folded copy of `net` so that its INT8 twin gives `net`'s answers.

    `frames_for_step(i)` returns the i-th batch of HxWx3 uint8 frames; returns the
    fine-tuned float network (batch norms folded) and the distillation loss per step.
    """
    import torch.nn.functional as F  # noqa: N812
    from tqdm import tqdm

    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')

    def tensor(frames):
        return torch.from_numpy(np.concatenate([preprocess(f) for f in frames])).to(device)

    teacher = copy.deepcopy(net).eval().to(device)
    student = fold_batchnorm(net).to(device)
    n = len(calibration_frames)
    calib = [tensor(calibration_frames[i : i + BATCH]) for i in range(0, n, BATCH)]
    fq = FakeQuant(student, calib)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    # decaying to zero: the last steps settle instead of jumping around one batch's loss
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    losses = []
    bar = tqdm(range(steps), desc='INT8 fine-tuning', unit='step', disable=not progress)
    for i in bar:
        x = tensor(frames_for_step(i))
        with torch.no_grad():
            target = teacher(x)
        out = student(x)
        t = TEMPERATURE
        loss = F.kl_div(F.log_softmax(out / t, 1), F.softmax(target / t, 1), reduction='batchmean')
        loss = loss * t * t + LOGIT_WEIGHT * F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f'{np.mean(losses[-20:]):.4f}')
    fq.remove()
    student = student.cpu()
    end = np.mean(losses[-20:])
    log(f'INT8 fine-tuning on {device}: {steps} steps, loss {losses[0]:.4f} -> {end:.4f}')
    return student.eval(), losses


def quantize_finetuned(
    net,
    info,
    fp32_path,
    out_path,
    steps: int = STEPS,
    frames: list[np.ndarray] | None = None,
    min_agreement: float | None = None,
    log=print,
    progress: bool = True,
    device: str | None = None,
):
    """Fine-tune, export, quantize; the gate compares with the original export `fp32_path`.

    Frames: a user's own (`export --int8 --calibration DIR`, in file order: the last
    quarter is the gate's, never trained on) or the built-in photographs (fine-tuning on
    `FINETUNE_PHOTOS`, the gate on `GATE_PHOTOS`). Returns `quantize`'s report.
    """
    from pathlib import Path
    import tempfile

    from cnn_perception.core.backends import export_onnx
    from cnn_perception.core.quantize import (
        DEFAULT_MIN_AGREEMENT,
        FINETUNE_PHOTOS,
        GATE_PHOTOS,
        augmented_frames,
        photos,
        quantize,
    )
    from cnn_perception.errors import UserError

    if frames is not None:
        if len(frames) < 8:
            raise UserError(f'INT8 fine-tuning needs at least 8 frames, got {len(frames)}')
        cut = len(frames) - max(2, len(frames) // 4)
        train, gate = list(frames[:cut]), list(frames[cut:])
    else:
        train = photos(FINETUNE_PHOTOS)
        gate = augmented_frames(photos(GATE_PHOTOS), 40, seed=7)
    calibration = augmented_frames(train, 128, seed=0)
    pre = info.preprocess
    student, _ = finetune(
        net,
        pre,
        lambda i: augmented_frames(train, BATCH, seed=1000 + i),
        calibration,
        steps=steps,
        log=log,
        progress=progress,
        device=device,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tuned = Path(tmp) / 'finetuned.onnx'
        export_onnx(student, info, tuned, pre.crop)
        return quantize(
            tuned,
            out_path,
            calibration,
            pre,
            min_agreement if min_agreement is not None else DEFAULT_MIN_AGREEMENT,
            log=log,
            reference=fp32_path,
            held_out=gate,
            meta={'int8_finetune_steps': steps},
        )
