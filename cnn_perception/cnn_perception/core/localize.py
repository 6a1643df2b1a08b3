"""Presence -> detection: boxes around what the classifier recognises, from its own activations.

A network that ends in global average pooling and one dense layer (EfficientNet-Lite,
ResNet) scores class c as the mean over positions of its last feature maps A weighted by
that class's dense-layer weights, plus a bias: logit_c = mean_xy(sum_k w_ck A_k(x, y)) + b_c.
Kept per position instead of averaged, that weighted sum is the class activation map
(CAM, Zhou et al. 2016): exact, and nearly free given the maps the classifier computed
anyway. `Localizer` checks the identity on the model's own first frame (so a model added
through `register_model` is trusted only where it holds), then per frame and class:

1. the map over the classifier's view, negative parts dropped, scaled to its peak and
   upsampled to the view's pixels (bilinear, cell centres kept);
2. cut at a fraction of the peak and moved by the model's measured grid offset (both
   calibrated per model, `CALIBRATION`), connected regions (OpenCV; parts a grid cell
   apart joined), each at least `MIN_AREA` of the view;
3. one box per region, in source-image pixels; score = class probability x the region's
   share of the map's mass, so a second instance of a class gets its own, weaker box.

A model whose head is not pooling + one dense layer (MobileNetV3 and AlexNet have two)
has no exact map: EigenCAM (the maps' first principal component) stands in, which says
where the network looked but not for which class, so only the top-1 class gets boxes.
No rclpy, no torch: the maps and the head's weights come from the backend.
"""

from dataclasses import dataclass

import cv2
import numpy as np

# Per model: the cut (fraction of the map's peak) and where its maps lie off the objects,
# in view units (x, y): an object's map peaks this far right / down of its centre (a
# padding convention, TF "same" vs symmetric, moves the grid; Lite0 is off by nearly a
# cell). Measured on a calibration set apart from the bench's (`python -m cnn_perception
# bench --localize --calibrate`, 2026-12-04): the cut that localises best, near objects
# (whole photographs) and far ones (pasted at 10-60%) counting half each. A model not
# listed (one added with `register_model`) gets FRACTION and no shift. The third value
# is the (square) input the shift was measured at: on another input (the shared pass's
# whole frame) the maps lie off by the same network pixels.
CALIBRATION = {
    'efficientnet_lite0': (0.25, (0.137, 0.117), 224),
    'efficientnet_lite1': (0.2, (0.090, 0.072), 240),
    'efficientnet_lite2': (0.15, (0.034, 0.005), 260),
}
FRACTION = 0.2  # the CAM paper's cut, for models without a calibration
MIN_AREA = 0.005  # of the view's area: smaller regions are noise of the upsampling
VIEW_PIXELS = 56  # the map is cut at this resolution (boxes to 4 pixels of 224)


@dataclass
class ObjectBox:
    """One localised object: x, y the top-left corner, in source-image pixels."""

    class_id: int
    label: str
    score: float
    x: float
    y: float
    width: float
    height: float

    def to_dict(self) -> dict:
        return {
            'label': self.label,
            'class_id': self.class_id,
            'score': round(self.score, 4),
            'x': round(self.x, 1),
            'y': round(self.y, 1),
            'width': round(self.width, 1),
            'height': round(self.height, 1),
        }


@dataclass
class DenseHead:
    """The final dense layer: weight (classes, channels), bias (classes,)."""

    weight: np.ndarray
    bias: np.ndarray


def head_from_torch(net, channels: int | None = None) -> DenseHead | None:
    """Return the last nn.Linear of `net` (reading `channels` features, if given), or None.

    Whether it is the whole head is checked on a frame (`head_is_exact`).
    """
    from torch import nn

    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears or channels not in (None, linears[-1].in_features):
        return None
    last = linears[-1]
    bias = last.bias if last.bias is not None else None
    return DenseHead(
        last.weight.detach().float().cpu().numpy(),
        bias.detach().float().cpu().numpy()
        if bias is not None
        else np.zeros(last.out_features, np.float32),
    )


def head_from_onnx(path) -> DenseHead | None:
    """Return the dense layer making an ONNX graph's first output (Gemm, or MatMul + Add).

    Read from the file's weights (the `onnx` package, no torch): the Pi path. None when
    the logits are not one dense layer over initializers.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: t for t in graph.initializer}
    made_by = {out: node for node in graph.node for out in node.output}
    node = made_by.get(graph.output[0].name)
    while node is not None and node.op_type in ('Identity', 'Flatten', 'Reshape'):
        node = made_by.get(node.input[0])
    if node is None:
        return None

    def init(name):
        return numpy_helper.to_array(inits[name]).astype(np.float32) if name in inits else None

    if node.op_type == 'Gemm':
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        w = init(node.input[1])
        if w is None or attrs.get('transA', 0) or attrs.get('alpha', 1.0) != 1.0:
            return None
        w = w if attrs.get('transB', 0) else w.T
        b = init(node.input[2]) if len(node.input) > 2 else None
        return DenseHead(w, b if b is not None else np.zeros(w.shape[0], np.float32))
    if node.op_type == 'Add':
        mm = made_by.get(node.input[0])
        b = init(node.input[1])
        if mm is not None and mm.op_type == 'MatMul' and b is not None:
            w = init(mm.input[1])
            return DenseHead(w.T, b) if w is not None else None
    return None


def head_is_exact(head: DenseHead | None, features: np.ndarray, logits: np.ndarray) -> bool:
    """Whether pooling + `head` over `features` (C, h, w) gives `logits`: CAM is exact."""
    if head is None or head.weight.shape[1] != features.shape[0]:
        return False
    est = head.weight @ features.reshape(features.shape[0], -1).mean(1) + head.bias
    return bool(np.abs(est - logits).max() <= 1e-3 * (1.0 + np.abs(logits).max()))


def class_maps(features: np.ndarray, head: DenseHead, class_ids) -> np.ndarray:
    """CAM of each class in `class_ids`: (k, h, w) from features (C, h, w)."""
    c, h, w = features.shape
    flat = features.reshape(c, h * w).astype(np.float32, copy=False)
    return (head.weight[list(class_ids)] @ flat).reshape(len(class_ids), h, w)


def view_map(cam: np.ndarray, size: int = VIEW_PIXELS) -> np.ndarray:
    """Return the map's positive part over the view, 0..1 of its peak, `size` pixels square."""
    cam = np.maximum(cam.astype(np.float32), 0.0)
    peak = float(cam.max())
    if peak <= 0.0:
        return np.zeros((size, size), np.float32)
    # cv2's bilinear resize keeps cell centres (half-pixel), as the network's grid lies
    return cv2.resize(cam / peak, (size, size), interpolation=cv2.INTER_LINEAR)


def regions(up: np.ndarray, fraction: float, min_area: float = MIN_AREA, gap: float = 0.0):
    """Return the regions of `up` >= fraction: (x0, y0, x1, y1, mass share), view units.

    Parts closer than `gap` (view units; a grid cell) are one region: a large object's
    map breaks up at a high cut, two objects a cell apart stay two. Largest share
    first; regions under `min_area` of the view are left out.
    """
    mask = (up >= fraction).astype(np.uint8)
    size = up.shape[0]
    k = int(round(gap * size))
    joined = cv2.dilate(mask, np.ones((k, k), np.uint8)) if k > 1 else mask
    n, labels = cv2.connectedComponents(joined, connectivity=8)
    if n <= 1:
        return []
    labels = labels * mask  # the merged groups' own pixels only
    total = float(up.sum()) or 1.0
    mass = np.bincount(labels.ravel(), weights=up.ravel(), minlength=n)
    area = np.bincount(labels.ravel(), minlength=n)
    out = []
    for i in range(1, n):
        if area[i] < max(1.0, min_area * up.size):
            continue
        ys, xs = np.nonzero(labels == i)
        out.append(
            (xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size,
             float(mass[i] / total))
        )  # fmt: skip
    return sorted(out, key=lambda r: -r[4])


def eigen_map(features: np.ndarray) -> np.ndarray:
    """EigenCAM: the maps projected on their first principal component (sign: positive mass)."""
    c, h, w = features.shape
    flat = features.reshape(c, h * w).T.astype(np.float64)
    flat = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(flat, full_matrices=False)
    proj = (flat @ vt[0]).reshape(h, w)
    return (proj if proj.sum() >= 0 else -proj).astype(np.float32)


class Localizer:
    """Boxes for the top classes of a frame from the classifier's last feature maps."""

    def __init__(self, head: DenseHead | None, arch: str = '', log=print):
        self.head, self.log = head, log
        self.fraction, self.shift, self.input_size = CALIBRATION.get(
            arch, (FRACTION, (0.0, 0.0), 224)
        )
        self.exact: bool | None = None  # decided on the first frame (`check`)

    def check(self, features: np.ndarray, logits: np.ndarray, model: str = 'this model') -> bool:
        """Decide once whether the exact CAM holds for this model; say so if it does not."""
        if self.exact is None:
            self.exact = head_is_exact(self.head, features, logits)
            if not self.exact:
                self.log(
                    f'{model}: its head is not global pooling + one dense layer, so class '
                    'activation maps are not exact; boxes come from EigenCAM (where the '
                    'network looked), for the top-1 class only'
                )
        return self.exact

    def maps(self, features: np.ndarray, class_ids) -> np.ndarray:
        """(k, h, w) maps for `class_ids`: CAM, or EigenCAM repeated (not class-specific)."""
        if self.exact:
            return class_maps(features, self.head, class_ids)
        return np.repeat(eigen_map(features)[None], len(class_ids), 0)

    def __call__(
        self,
        hypotheses,
        features: np.ndarray,
        logits: np.ndarray,
        preprocess,
        height: int,
        width: int,
        min_score: float = 0.0,
    ) -> list[ObjectBox]:
        """Boxes for `hypotheses` (class_id, label, score; best first) in source pixels.

        Classes under `min_score` get none; best box first.
        """
        self.check(features, logits)
        chosen = [h for h in hypotheses if h.score >= min_score]
        if not self.exact:
            chosen = chosen[:1]
        if not chosen:
            return []
        view = preprocess.view(height, width)
        out = []
        for h, cam in zip(chosen, self.maps(features, [h.class_id for h in chosen]), strict=True):
            gap = 1.0 / cam.shape[0]
            for *box, share in regions(view_map(cam), self.fraction, gap=gap):
                x, y, w, hh = self.to_source(box, view)
                out.append(ObjectBox(h.class_id, h.label, float(h.score) * share, x, y, w, hh))
        return sorted(out, key=lambda o: -o.score)

    def view_shift(self, nw: int, nh: int) -> tuple[float, float]:
        """Return the grid offset in units of an nw x nh input (calibrated in its own)."""
        return self.shift[0] * self.input_size / nw, self.shift[1] * self.input_size / nh

    def to_source(self, box, view):
        """(x, y, w, h) in source pixels of a (x0, y0, x1, y1) view-unit box, shift undone."""
        x0, y0, vw, vh, nw, nh = view
        sx, sy = self.view_shift(nw, nh)
        a, c = min(max(box[0] - sx, 0.0), 1.0), min(max(box[2] - sx, 0.0), 1.0)
        b, d = min(max(box[1] - sy, 0.0), 1.0), min(max(box[3] - sy, 0.0), 1.0)
        return x0 + a * vw, y0 + b * vh, (c - a) * vw, (d - b) * vh


def source_map(localizer: Localizer, cam: np.ndarray, preprocess, h: int, w: int) -> np.ndarray:
    """Return a map as an h x w image (0..1 of its peak; the model's shift undone)."""
    x0, y0, vw, vh, nw, nh = preprocess.view(h, w)
    sx, sy = localizer.view_shift(nw, nh)
    x0, y0 = x0 - sx * vw, y0 - sy * vh
    up = cv2.resize(view_map(cam), (max(1, round(vw)), max(1, round(vh))))
    out = np.zeros((h, w), np.float32)
    xa, ya = max(0, round(x0)), max(0, round(y0))
    xb, yb = min(w, round(x0) + up.shape[1]), min(h, round(y0) + up.shape[0])
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = up[ya - round(y0) : yb - round(y0), xa - round(x0) : xb - round(x0)]
    return out


def iou(a, b) -> float:
    """Intersection over union of two (x, y, width, height) boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
