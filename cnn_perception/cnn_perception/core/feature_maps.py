"""What the CNN "sees" (demo D10): feature maps layer by layer, and where it looks.

After the first layer the numbers are no longer pixels but feature maps, one channel per
learned filter. `FeatureMapModel` returns the class logits and the activations of chosen
layers in one forward pass (forward hooks that clone their output; on ONNX Runtime the
same layers are extra graph outputs). `MosaicBuilder` tiles the most active channels of
each layer with a stable choice and a smoothed robust range, so the live picture does
not flicker. `eigen_cam` (forward only, cheap) and `grad_cam` (torch) show where the
network looks for its top class.
"""

import hashlib
from pathlib import Path

import cv2
import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.errors import UserError

COLORMAPS = {
    'viridis': cv2.COLORMAP_VIRIDIS,
    'magma': cv2.COLORMAP_MAGMA,
    'inferno': cv2.COLORMAP_INFERNO,
    'plasma': cv2.COLORMAP_PLASMA,
    'turbo': cv2.COLORMAP_TURBO,
    'jet': cv2.COLORMAP_JET,
}


def list_layers(model_name: str = DEFAULT_MODEL, input_size: int = 224) -> list[tuple]:
    """(name, module type, [C, H, W]) of every module whose output is a feature map."""
    import torch

    from cnn_perception.core.models import get_model

    net, _ = get_model(model_name)
    found, hooks = [], []
    for name, mod in net.named_modules():
        if not name:
            continue

        def hook(m, i, o, name=name):
            if isinstance(o, torch.Tensor) and o.dim() == 4:
                found.append((name, type(m).__name__, list(o.shape[1:])))

        hooks.append(mod.register_forward_hook(hook))
    with torch.inference_mode():
        net(torch.zeros(1, 3, input_size, input_size))
    for h in hooks:
        h.remove()
    return found


class FeatureMapModel:
    """Logits plus chosen activations per frame, on torch or ONNX Runtime."""

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        layers: list[str] | None = None,
        backend: str = 'onnxruntime',
        device: str = 'cpu',
        num_threads: int = 0,
        cam_layer: str | None = None,
    ):
        from cnn_perception.core.models import model_entry

        entry = model_entry(model_name)
        if not entry.feature_layers and not layers:
            raise UserError(f'{model_name}: give --layers (see `features --list-layers`)')
        self.layers = list(layers or entry.feature_layers)
        self.cam_layer = cam_layer or entry.cam_layer or self.layers[-1]
        self.outputs = list(dict.fromkeys(self.layers + [self.cam_layer]))
        self.backend_name = backend
        self.model_name = model_name
        self.torch_net = None
        self.preprocess = entry.preprocess
        self.labels: list[str] = []
        if backend == 'onnxruntime':
            self._init_onnx(model_name, device, num_threads)
        elif backend == 'torch':
            from cnn_perception.core.backends import TorchBackend
            from cnn_perception.core.feature_nets import MultiOutputNet
            from cnn_perception.core.models import get_model

            net, info = get_model(model_name)
            self.preprocess, self.labels = info.preprocess, info.labels
            self.torch_net = MultiOutputNet(net, self.outputs)
            self.backend = TorchBackend(self.torch_net, device, False, num_threads)
        else:
            raise UserError(f'unknown backend {backend!r}: use onnxruntime or torch')

    def _init_onnx(self, model_name: str, device: str, num_threads: int) -> None:
        from cnn_perception.core.backends import OnnxBackend, cached_export, info_from_onnx

        def build():
            from cnn_perception.core.feature_nets import MultiOutputNet
            from cnn_perception.core.models import get_model

            net, info = get_model(model_name)
            return MultiOutputNet(net, self.outputs), info

        tag = 'fm' + hashlib.sha256('|'.join(self.outputs).encode()).hexdigest()[:8]
        names = ('logits', *[f'act{i}' for i in range(len(self.outputs))])
        path = cached_export(model_name, self.preprocess.crop, tag, build, output_names=names)
        onnx = OnnxBackend(path, device=device, num_threads=num_threads)
        info = info_from_onnx(onnx)
        self.preprocess, self.labels = info.preprocess, info.labels
        self.backend = onnx

    def run(self, rgb: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        x = self.preprocess(rgb)
        if self.backend_name == 'onnxruntime':
            outs = self.backend.run_outputs(x)
        else:
            import torch

            with torch.inference_mode():
                outs = [
                    o.float().cpu().numpy()
                    for o in self.torch_net(torch.from_numpy(x).to(self.backend.device))
                ]
        return outs[0][0], {name: outs[1 + i][0] for i, name in enumerate(self.outputs)}

    def grad_cam(self, rgb: np.ndarray, class_id: int | None = None) -> np.ndarray:
        """Grad-CAM on the torch backend: gradient-weighted channels of the CAM layer."""
        if self.torch_net is None:
            raise UserError('gradcam needs the torch backend (eigencam runs on both)')
        import torch

        x = torch.from_numpy(self.preprocess(rgb)).to(self.backend.device)
        with torch.enable_grad():
            outs = self.torch_net(x)
            act = outs[1 + self.outputs.index(self.cam_layer)]
            logits = outs[0][0]
            cid = int(logits.argmax()) if class_id is None else class_id
            logits[cid].backward()
        weights = self.torch_net.grads[self.cam_layer][0].mean(dim=(1, 2))
        cam = torch.relu((weights[:, None, None] * act[0]).sum(0))
        return _unit(cam.detach().cpu().numpy())


def _unit(a: np.ndarray) -> np.ndarray:
    a = a - a.min()
    m = a.max()
    return (a / m if m > 0 else a).astype(np.float32)


def eigen_cam(act: np.ndarray) -> np.ndarray:
    """EigenCAM: activations projected on their first principal component (C,H,W -> H,W).

    Forward-only and class-agnostic: it shows the dominant pattern the last layer
    responds to, which for a confident prediction is the object that decided it. The
    component's sign is chosen to agree with the mean activation.
    """
    c, h, w = act.shape
    flat = act.reshape(c, h * w).T.astype(np.float64)  # (HW, C)
    centred = flat - flat.mean(0)
    # The first right singular vector from the smaller of the two Gram matrices (HW x HW
    # or C x C): the direction a full SVD of the HW x C matrix gives, at a fraction of the
    # cost (the SVD took 11 ms of the feature-map node's 34 ms per frame).
    if h * w <= c:
        _, vecs = np.linalg.eigh(centred @ centred.T)
        direction = centred.T @ vecs[:, -1]
    else:
        _, vecs = np.linalg.eigh(centred.T @ centred)
        direction = vecs[:, -1]
    proj = flat @ (direction / (np.linalg.norm(direction) or 1.0))
    if np.corrcoef(proj, flat.mean(1))[0, 1] < 0:
        proj = -proj
    return _unit(np.maximum(proj, 0).reshape(h, w))


def cam_to_source(cam: np.ndarray, preprocess, height: int, width: int) -> np.ndarray:
    """Place a CAM over the network's input (centre crop or whole frame) onto the frame."""
    x0, y0, vw, vh, _, _ = preprocess.view(height, width)
    out = np.zeros((height, width), np.float32)
    xa, ya = int(round(x0)), int(round(y0))
    xb, yb = min(width, int(round(x0 + vw))), min(height, int(round(y0 + vh)))
    out[ya:yb, xa:xb] = cv2.resize(cam, (xb - xa, yb - ya), interpolation=cv2.INTER_CUBIC)
    return np.clip(out, 0, 1)


def cam_overlay(
    rgb: np.ndarray, cam_full: np.ndarray, colormap: str = 'jet', alpha: float = 0.5
) -> np.ndarray:
    heat = cv2.applyColorMap((cam_full * 255).astype(np.uint8), COLORMAPS[colormap])
    return cv2.addWeighted(rgb, 1 - alpha, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), alpha, 0)


class MosaicBuilder:
    """Per-layer channel mosaics that stay steady over a live stream.

    The N most active channels are chosen on the first `choose_frames` frames and then
    kept; each layer has one robust range (1st-99th percentile) smoothed over frames,
    shared by its channels so their brightness can be compared (per-channel scaling is
    an option). Tiles keep the layer's own resolution, enlarged by whole factors only
    up to `min_tile` pixels, so a 112x112 layer looks bigger than a 7x7 one.
    """

    def __init__(
        self,
        channels: int = 16,
        colormap: str = 'viridis',
        per_channel: bool = False,
        choose_frames: int = 3,
        smoothing: float = 0.2,
        min_tile: int = 28,
        pad: int = 2,
    ):
        if colormap not in COLORMAPS:
            raise UserError(f'unknown colormap {colormap!r}: use {", ".join(COLORMAPS)}')
        self.channels, self.colormap, self.per_channel = channels, colormap, per_channel
        self.choose_frames, self.smoothing = choose_frames, smoothing
        self.min_tile, self.pad = min_tile, pad
        self._energy: dict[str, np.ndarray] = {}
        self._seen: dict[str, int] = {}
        self._chosen: dict[str, np.ndarray] = {}
        self._range: dict[str, tuple[float, float]] = {}

    def chosen(self, name: str, act: np.ndarray) -> np.ndarray:
        if name in self._chosen:
            return self._chosen[name]
        energy = np.abs(act).mean(axis=(1, 2))
        self._energy[name] = self._energy.get(name, 0) + energy
        self._seen[name] = self._seen.get(name, 0) + 1
        order = np.argsort(-self._energy[name])[: self.channels]
        if self._seen[name] >= self.choose_frames:
            self._chosen[name] = order
        return order

    def layer(self, name: str, act: np.ndarray) -> np.ndarray:
        """RGB mosaic of one layer's chosen channels."""
        idx = self.chosen(name, act)
        sel = act[idx].astype(np.float32)
        lo, hi = np.percentile(sel, [1, 99])
        if name in self._range:
            a = self.smoothing
            plo, phi = self._range[name]
            lo, hi = (1 - a) * plo + a * lo, (1 - a) * phi + a * hi
        self._range[name] = (float(lo), float(hi))
        h, w = sel.shape[1:]
        k = max(1, -(-self.min_tile // max(h, w)))  # whole-number enlargement
        cols = int(np.ceil(np.sqrt(len(idx))))
        rows = int(np.ceil(len(idx) / cols))
        th, tw = h * k, w * k
        p = self.pad
        out = np.zeros((rows * (th + p) + p, cols * (tw + p) + p), np.uint8)
        grid = np.zeros_like(out, bool)
        for i, ch in enumerate(sel):
            clo, chi = np.percentile(ch, [1, 99]) if self.per_channel else (lo, hi)
            u8 = np.clip((ch - clo) / max(chi - clo, 1e-6) * 255, 0, 255).astype(np.uint8)
            if k > 1:
                u8 = cv2.resize(u8, (tw, th), interpolation=cv2.INTER_NEAREST)
            r, c = divmod(i, cols)
            y0, x0 = p + r * (th + p), p + c * (tw + p)
            out[y0 : y0 + th, x0 : x0 + tw] = u8
            grid[y0 : y0 + th, x0 : x0 + tw] = True
        rgb = cv2.cvtColor(cv2.applyColorMap(out, COLORMAPS[self.colormap]), cv2.COLOR_BGR2RGB)
        rgb[~grid] = 32  # padding stays dark grey, not a colormap value
        return rgb

    def stacked(self, acts: dict[str, np.ndarray], width: int | None = None) -> np.ndarray:
        """All layers, each under a caption with its name and shape, one above the other."""
        blocks = []
        for name, act in acts.items():
            m = self.layer(name, act)
            cap = f'{name}  {act.shape[0]}x{act.shape[1]}x{act.shape[2]}'
            blocks.append((cap, m))
        width = width or max(m.shape[1] for _, m in blocks)
        out = []
        for cap, m in blocks:
            if m.shape[1] > width:
                m = cv2.resize(
                    m,
                    (width, round(m.shape[0] * width / m.shape[1])),
                    interpolation=cv2.INTER_AREA,
                )
            header = np.full((22, width, 3), 16, np.uint8)
            cv2.putText(
                header,
                cap,
                (4, 16),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                (235, 235, 235),
                1,
                cv2.LINE_AA,
            )
            body = np.full((m.shape[0], width, 3), 16, np.uint8)
            body[:, : m.shape[1]] = m
            out += [header, body]
        return np.concatenate(out, 0)


def save_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise UserError(f'{path}: cannot write PNG')
