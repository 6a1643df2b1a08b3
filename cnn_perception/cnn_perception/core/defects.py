"""CNN defect detector (demo D9): learn what normal looks like, flag what differs.

PatchCore-style and unsupervised: patch features from a mid-level stage of the
pretrained EfficientNet-Lite0 (see `feature_nets.PatchFeatureNet`; stage 2, stride 8, by
default, more stages on request) of defect-free images form a memory bank, thinned by
greedy k-center coreset selection. A new image's patches
are scored by the distance to their nearest normal patch; the patch map is upsampled to
the image and Gaussian-smoothed; the image score is its maximum. Positions are not
compared, so images need not be aligned.

Scores are calibrated on defect-free validation images (a high quantile) or, with defect
examples too, at the F1-optimal threshold, and normalised so the threshold is 0.5:
z = (raw - base) / (threshold - base), score = z / (1 + z), with `sensitivity` scaling z.
Boxes use hysteresis: a region is a defect when its peak passes the threshold, and its
box spans the part of it above half its peak height (in z), but not below a low level.
A fitted model is one .npz file (no pickles) holding the memory bank and everything
needed to use it.
"""

from dataclasses import asdict, dataclass, field
import functools
import json
from pathlib import Path
import time
import zipfile

import cv2
import numpy as np

from cnn_perception.core.preprocess import normaliser, to_nchw
from cnn_perception.errors import ModelFileError

FORMAT = 'cnn_perception.defects'
VERSION = 1
# EfficientNet-Lite0 stage 2: stride 8, 40 channels. Chosen on brick and gravel (grass and
# moon held out; docs/defects.md): adding the stride-16 stage 4 blurred thin cracks into
# the stone texture of gravel (crack AUROC 0.69 -> 0.94 without it).
DEFAULT_LAYERS = (2,)
DEFAULT_INPUT_SIZE = 320
DEFAULT_CORESET_RATIO = 0.05


@dataclass
class DefectModel:
    memory: np.ndarray  # (M, D) float32 normal patch features
    backbone: str = 'efficientnet_lite0'
    layers: tuple[int, ...] = DEFAULT_LAYERS
    input_size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    threshold: float = 1.0  # raw anomaly score that normalises to 0.5
    base: float = 0.0  # raw score that normalises to 0 (typical normal patch)
    sigma: float = 5.0  # Gaussian smoothing of the map, in network-input pixels
    metrics: dict = field(default_factory=dict)

    def meta(self) -> dict:
        d = asdict(self)
        d.pop('memory')
        return {'format': FORMAT, 'version': VERSION, **d}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + '.tmp')
        with open(tmp, 'wb') as f:
            np.savez(
                f, memory=self.memory.astype(np.float32), meta=np.array(json.dumps(self.meta()))
            )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> 'DefectModel':
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(
                f'{path}: no such defect model (create one with '
                '`python -m cnn_perception defects fit`)'
            )
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z['meta']))
                memory = np.asarray(z['memory'], np.float32)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as exc:
            raise ModelFileError(
                f'{path}: not a readable defect model (truncated or not '
                f'written by `defects fit`): {type(exc).__name__}'
            ) from exc
        if meta.get('format') != FORMAT:
            raise ModelFileError(f'{path}: not a cnn_perception defect model')
        if meta.get('version') != VERSION:
            raise ModelFileError(
                f'{path}: defect model version {meta.get("version")}, this '
                f'build reads version {VERSION}; fit it again'
            )
        if memory.ndim != 2 or memory.shape[0] == 0:
            raise ModelFileError(f'{path}: empty or malformed memory bank')
        meta.pop('format')
        meta.pop('version')
        meta['layers'] = tuple(meta['layers'])
        meta['mean'], meta['std'] = tuple(meta['mean']), tuple(meta['std'])
        return cls(memory=memory, **meta)


@dataclass
class Box:
    x: int
    y: int
    width: int
    height: int
    score: float


@dataclass
class DefectResult:
    score: float  # normalised image score, 0.5 = threshold
    is_defect: bool
    boxes: list[Box]
    score_map: np.ndarray  # normalised anomaly map at source resolution, float32 0..1
    raw_score: float
    inference_ms: float


def greedy_coreset(
    features: np.ndarray, n: int, seed: int = 0, proj_dim: int = 128, progress=None
) -> np.ndarray:
    """Pick n points by greedy k-center (farthest point) selection; return indices.

    Distances are computed in a random projection to `proj_dim` dimensions (as in
    PatchCore): it keeps the selection nearly the same at a fraction of the cost.
    """
    n_all = len(features)
    n = min(n, n_all)
    rng = np.random.default_rng(seed)
    x = features
    if features.shape[1] > proj_dim:
        proj = rng.standard_normal((features.shape[1], proj_dim)).astype(np.float32)
        x = features @ (proj / np.sqrt(proj_dim))
    x = np.ascontiguousarray(x, np.float32)
    sq = np.einsum('ij,ij->i', x, x)
    chosen = np.empty(n, np.int64)
    chosen[0] = int(rng.integers(n_all))
    min_d = np.full(n_all, np.inf, np.float32)
    for i in range(1, n + 1):
        c = x[chosen[i - 1]]
        d = sq - 2.0 * (x @ c) + float(c @ c)
        np.minimum(min_d, d, out=min_d)
        if i < n:
            chosen[i] = int(np.argmax(min_d))
        if progress is not None:
            progress(1)
    return chosen


def nearest_distance(
    feats: np.ndarray,
    memory: np.ndarray,
    mem_sq: np.ndarray,
    chunk: int = 4096,
    neg2_memory_t: np.ndarray | None = None,
) -> np.ndarray:
    """Return the Euclidean distance of each row of feats to its nearest memory row.

    min_j |f - m_j|^2 = |f|^2 + min_j (|m_j|^2 - 2 f.m_j): one matrix product, one
    in-place add and one min per chunk; |f|^2 is added after the min.
    """
    if neg2_memory_t is None:
        neg2_memory_t = np.ascontiguousarray(-2.0 * memory.T, np.float32)
    best = None
    for s in range(0, len(memory), chunk):
        d = feats @ neg2_memory_t[:, s : s + chunk]
        d += mem_sq[None, s : s + chunk]
        part = d.min(axis=1)
        best = part if best is None else np.minimum(best, part)
    return _add_feature_norms(best, feats)


def _add_feature_norms(partial: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """sqrt(|f|^2 + min_j (|m_j|^2 - 2 f.m_j)): the distance from the partial minimum."""
    partial = partial + np.einsum('ij,ij->i', feats, feats)
    return np.sqrt(np.maximum(partial, 0.0))


def nearest_search_session(memory: np.ndarray, num_threads: int = 0):
    """ONNX Runtime graph for min_j (|m_j|^2 - 2 f.m_j), the memory bank built in.

    `nearest_distance` in ONNX Runtime's own kernels: for 1600 patches against 6400 bank
    entries of 40 features it takes 6.1 ms here against 9.7 ms for numpy's matrix product
    and min, the largest part of scoring on the CPU. |f|^2 and the square root are left
    to the caller (cheap per patch).
    """
    from onnx import TensorProto, helper, numpy_helper

    from cnn_perception.core.backends import make_session

    neg2_t = np.ascontiguousarray(-2.0 * memory.T, np.float32)
    sq = np.einsum('ij,ij->i', memory, memory).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node('MatMul', ['features', 'neg2_memory_t'], ['cross']),
            helper.make_node('Add', ['cross', 'memory_sq'], ['partial']),
            helper.make_node('ReduceMin', ['partial', 'axis'], ['nearest'], keepdims=0),
        ],
        'nearest_patch',
        [helper.make_tensor_value_info('features', TensorProto.FLOAT, ['n', memory.shape[1]])],
        [helper.make_tensor_value_info('nearest', TensorProto.FLOAT, ['n'])],
        [
            numpy_helper.from_array(neg2_t, 'neg2_memory_t'),
            numpy_helper.from_array(sq, 'memory_sq'),
            numpy_helper.from_array(np.array([1], np.int64), 'axis'),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 18)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    return make_session(model.SerializeToString(), 'cpu', num_threads)


class FeatureExtractor:
    """Patch features of an image on torch or ONNX Runtime (same numbers, 1e-4)."""

    def __init__(
        self,
        backbone: str = 'efficientnet_lite0',
        layers: tuple[int, ...] = DEFAULT_LAYERS,
        input_size: int = DEFAULT_INPUT_SIZE,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        backend: str = 'onnxruntime',
        device: str = 'cpu',
        num_threads: int = 0,
    ):
        self.input_size = input_size
        self._scale, self._offset = normaliser(mean, std)
        self.backend_name = backend
        tag = 'patch' + ''.join(map(str, layers))
        if backend == 'onnxruntime':
            from cnn_perception.core.backends import OnnxBackend

            path = self._cached_onnx(backbone, tag)
            if path is None or not path.is_file():
                net, info = _build(backbone, layers)
                from cnn_perception.core.backends import export_onnx, onnx_cache_path

                path = onnx_cache_path(info, input_size, tag)
                export_onnx(
                    net, info, path, input_size, spatial_dynamic=True, output_names=('features',)
                )
            self.backend = OnnxBackend(path, device=device, num_threads=num_threads)
        elif backend == 'torch':
            from cnn_perception.core.backends import TorchBackend

            net, _ = _build(backbone, layers)
            self.backend = TorchBackend(net, device, device.startswith('cuda'), num_threads)
        else:
            raise ModelFileError(f'unknown backend {backend!r}: use onnxruntime or torch')

    def _cached_onnx(self, backbone: str, tag: str) -> Path | None:
        from cnn_perception.core.backends import registry_onnx_path

        return registry_onnx_path(backbone, self.input_size, tag)

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Short side to input_size (aspect kept, sides multiples of 16), normalised NCHW."""
        h, w = rgb.shape[:2]
        s = self.input_size / min(h, w)
        nh, nw = (max(16, round(h * s / 16) * 16), max(16, round(w * s / 16) * 16))
        img = cv2.resize(
            rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        )
        return to_nchw(img, self._scale, self._offset)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(h, w, D) patch features of one RGB image."""
        out = self.backend.run(self.prepare(rgb))[0]
        return np.ascontiguousarray(out.transpose(1, 2, 0), np.float32)


def _build(backbone: str, layers):
    from cnn_perception.core.feature_nets import build_patch_net

    return build_patch_net(backbone, tuple(layers))


def normalise(raw, base: float, threshold: float, sensitivity: float = 1.0):
    """Raw distance -> 0..1 with the threshold at 0.5; sensitivity > 1 flags more."""
    z = np.maximum(np.asarray(raw, np.float32) - base, 0.0) / max(threshold - base, 1e-6)
    z = z * sensitivity
    return z / (1.0 + z)


class DefectDetector:
    """A fitted DefectModel ready to score frames."""

    def __init__(
        self,
        model: DefectModel,
        backend: str = 'onnxruntime',
        device: str = 'cpu',
        num_threads: int = 0,
        extractor: FeatureExtractor | None = None,
    ):
        self.model = model
        self.extractor = extractor or FeatureExtractor(
            model.backbone,
            model.layers,
            model.input_size,
            model.mean,
            model.std,
            backend,
            device,
            num_threads,
        )
        self.memory = np.ascontiguousarray(model.memory, np.float32)
        self._nearest = self._nearest_search(num_threads)
        self._thresholds: dict[int, float] = {}

    def _nearest_search(self, num_threads: int):
        """Nearest-patch distances where the features are, chosen once at start-up.

        ONNX Runtime features: a small ONNX graph with the bank built in (6.1 vs 9.7 ms in
        numpy here); CUDA features: `torch.cdist` on the GPU (0.26 vs 6.3 ms on an H100,
        docs/benchmarks.md); otherwise numpy.
        """
        backend = getattr(self.extractor, 'backend', None)
        name = getattr(backend, 'name', '')
        if name == 'onnxruntime':
            session = nearest_search_session(self.memory, num_threads)
            return lambda f: _add_feature_norms(session.run(None, {'features': f})[0], f)
        if name == 'torch' and backend.device.startswith('cuda'):
            import torch

            bank = torch.from_numpy(self.memory).to(backend.device)

            def on_gpu(f: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    t = torch.from_numpy(np.ascontiguousarray(f)).to(bank.device)
                    return torch.cdist(t, bank).amin(dim=1).cpu().numpy().astype(np.float32)

            return on_gpu
        sq = np.einsum('ij,ij->i', self.memory, self.memory)
        neg2_t = np.ascontiguousarray(-2.0 * self.memory.T, np.float32)
        return lambda f: nearest_distance(f, self.memory, sq, neg2_memory_t=neg2_t)

    def raw_map(self, rgb: np.ndarray, tile: int = 0) -> np.ndarray:
        """Raw anomaly map at the source resolution; `tile` > 0 scores overlapping tiles."""
        ys, xs, _ = self.tile_grid(*rgb.shape[:2], tile)
        if len(ys) * len(xs) > 1:
            return self._tiled(rgb, tile)
        h, w = rgb.shape[:2]
        feats = self.extractor(rgb)
        fh, fw, d = feats.shape
        grid = self._nearest(feats.reshape(-1, d)).reshape(fh, fw)
        # sigma is in network-input pixels; convert to source pixels
        sigma = self.model.sigma * min(h, w) / self.model.input_size
        # Feature cell u of a stride-s CNN is centred on input pixel s*u (convolutions
        # padded by k//2), not s*u + s/2 - 0.5 as cv2.resize assumes: map it explicitly.
        sx, sy = w / fw, h / fh
        affine = np.float32([[sx, 0, 0], [0, sy, 0]])
        up = cv2.warpAffine(
            grid, affine, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return cv2.GaussianBlur(up, (0, 0), sigmaX=max(sigma, 0.5))

    @staticmethod
    def tile_grid(h: int, w: int, tile: int) -> tuple[list[int], list[int], int]:
        """Top-left corners (ys, xs) and side of the overlapping tiles of an h x w frame.

        One tile (the whole frame) when tiling is off or the frame is not much larger.
        """
        if not tile or max(h, w) <= tile * 1.25:
            return [0], [0], 0
        tile = min(tile, h, w)
        step = max(1, int(tile * 0.75))
        ys = sorted({*range(0, h - tile + 1, step), h - tile})
        xs = sorted({*range(0, w - tile + 1, step), w - tile})
        return ys, xs, tile

    def _tiled(self, rgb: np.ndarray, tile: int) -> np.ndarray:
        """Stitch tile maps, each pixel taken from the tile whose centre is nearest.

        A CNN sees a tile's edges through zero padding, so scores near them run high;
        taking the maximum over overlapping tiles turned every seam into a faint false
        alarm. Nearest-centre stitching uses each tile only where it is interior.
        """
        h, w = rgb.shape[:2]
        ys, xs, tile = self.tile_grid(h, w, tile)
        out = np.zeros((h, w), np.float32)
        best = np.full((h, w), np.inf, np.float32)
        dist = _centre_distance(tile)
        for y in ys:
            for x in xs:
                m = self.raw_map(rgb[y : y + tile, x : x + tile])
                o, b = out[y : y + tile, x : x + tile], best[y : y + tile, x : x + tile]
                nearer = dist < b
                o[nearer], b[nearer] = m[nearer], dist[nearer]
        return out

    def threshold_for(self, tiles: int) -> float:
        """Raw threshold for a frame scored as `tiles` tiles (its maximum over them).

        The calibrated threshold lets a defect-free image pass with probability 1 - a;
        the maximum over n tiles passes with about (1 - a)^n, so a 15-tile 1280x720 frame
        would raise about 15 times as many false alarms. With the normal fit of the
        validation scores stored by `calibrate`, the threshold moves to the point where
        the fit leaves a / n (Bonferroni; the tiles overlap, so this errs on the safe side).
        """
        if tiles not in self._thresholds:  # frame sizes rarely change: once per size
            m = self.model
            cal = m.metrics.get('calibration', {}) if m.metrics else {}
            mean, sd = cal.get('val_mean'), cal.get('val_sd')
            threshold = m.threshold
            if tiles > 1 and mean and sd:
                from statistics import NormalDist

                nd = NormalDist()
                a = 1.0 - nd.cdf((m.threshold - mean) / sd)
                z = nd.inv_cdf(max(1.0 - a / tiles, 1e-12))
                threshold = max(m.threshold, mean + z * sd)
            self._thresholds[tiles] = threshold
        return self._thresholds[tiles]

    def detect(
        self, rgb: np.ndarray, sensitivity: float = 1.0, min_area: int = 16, tile: int = 0
    ) -> DefectResult:
        t0 = time.perf_counter()
        raw = self.raw_map(rgb, tile)
        ms = (time.perf_counter() - t0) * 1000.0
        ys, xs, _ = self.tile_grid(*rgb.shape[:2], tile)
        threshold = self.threshold_for(len(ys) * len(xs))
        norm = normalise(raw, self.model.base, threshold, sensitivity).astype(np.float32)
        score = float(norm.max())
        boxes = boxes_from_map(norm, min_area)
        return DefectResult(score, score >= 0.5, boxes, norm, float(raw.max()), ms)


@functools.lru_cache(maxsize=4)
def _centre_distance(tile: int) -> np.ndarray:
    """Chebyshev distance of each pixel of a tile to its centre (read-only, shared)."""
    ramp = np.abs(np.arange(tile, dtype=np.float32) - (tile - 1) / 2)
    dist = np.maximum(ramp[:, None], ramp[None, :])
    dist.flags.writeable = False
    return dist


def boxes_from_map(
    norm: np.ndarray,
    min_area: int = 16,
    level: float = 0.5,
    low: float = 0.35,
    rel_height: float = 0.5,
) -> list[Box]:
    """Box the regions whose peak reaches `level`, largest peak first.

    Hysteresis, as in edge detection: a region is the connected part of the map above
    `low` around a peak over `level`; its box spans the pixels above `rel_height` of the
    peak's height in z = n / (1 - n) (the un-squashed score), but not below `low`. A
    single cut at `level` boxes only the tip of a faint, long defect (a crack that is
    visible where it crosses bright stones), while a strong stain's blob, widened by the
    smoothing, gets a box close to the stain itself.
    """
    if not (norm >= level).any():
        return []
    z = norm / np.maximum(1.0 - norm, 1e-6)
    z_low = low / (1.0 - low)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        (norm >= low).astype(np.uint8), connectivity=8
    )
    boxes = []
    for i in np.unique(labels[norm >= level]):
        x, y, w, h, _ = (int(v) for v in stats[i])
        zs = z[y : y + h, x : x + w]
        inside = labels[y : y + h, x : x + w] == i
        peak = float(zs[inside].max())
        keep = inside & (zs >= max(z_low, rel_height * peak))
        if int(keep.sum()) < min_area:
            continue
        ys, xs = np.nonzero(keep)
        boxes.append(
            Box(
                x + int(xs.min()),
                y + int(ys.min()),
                int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1),
                peak / (1.0 + peak),
            )
        )
    boxes.sort(key=lambda b: -b.score)
    return boxes


def fit(
    normal: list[np.ndarray],
    *,
    extractor: FeatureExtractor,
    coreset_ratio: float = DEFAULT_CORESET_RATIO,
    max_memory: int = 20000,
    seed: int = 0,
    progress: bool = True,
    log=print,
) -> np.ndarray:
    """Memory bank of normal patch features, thinned by the greedy coreset."""
    from tqdm import tqdm

    feats = []
    for img in tqdm(normal, desc='features', unit='img', disable=not progress):
        f = extractor(img)
        feats.append(f.reshape(-1, f.shape[-1]))
    bank = np.concatenate(feats)
    n = int(min(max_memory, max(1, round(len(bank) * coreset_ratio))))
    with tqdm(total=n, desc='coreset', unit='patch', disable=not progress) as bar:
        idx = greedy_coreset(bank, n, seed, progress=bar.update)
    log(
        f'memory bank: {n} of {len(bank)} normal patches ({n / len(bank):.1%}), '
        f'{bank.shape[1]} features each'
    )
    return np.ascontiguousarray(bank[idx])


def calibrate(
    detector: DefectDetector,
    val_normal: list[np.ndarray],
    val_defect: list[np.ndarray] | None = None,
    sigmas: float = 2.5,
) -> dict:
    """Choose threshold and base from validation images; returns what was chosen and why.

    Normal images only: a high quantile of their image scores, estimated from a normal
    fit, mean + `sigmas` standard deviations (2.5: the 99.4% point), never below the
    highest of them. Twenty-odd validation images cannot estimate a 99% quantile on
    their own: the empirical one is simply their maximum, which moved the false-alarm /
    recall trade-off by a lot from one validation draw to the next while tuning.
    """
    normal_maps = [detector.raw_map(img) for img in val_normal]
    normal_scores = np.array([m.max() for m in normal_maps])
    base = float(np.median(np.concatenate([m.ravel()[::97] for m in normal_maps])))
    if val_defect:
        from sklearn.metrics import precision_recall_curve, roc_auc_score

        defect_scores = np.array([detector.raw_map(img).max() for img in val_defect])
        y = np.r_[np.zeros(len(normal_scores)), np.ones(len(defect_scores))]
        s = np.r_[normal_scores, defect_scores]
        prec, rec, thr = precision_recall_curve(y, s)
        f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-9)
        best = int(np.argmax(f1))
        # midway between the chosen score and the next lower one: robust to new data
        lower = s[s < thr[best]]
        threshold = float((thr[best] + lower.max()) / 2) if lower.size else float(thr[best])
        how = {'method': 'f1', 'f1': float(f1[best]), 'image_auroc': float(roc_auc_score(y, s))}
    elif len(normal_scores) >= 3:
        fitted = normal_scores.mean() + sigmas * normal_scores.std(ddof=1)
        threshold = float(max(fitted, normal_scores.max()))
        how = {'method': 'quantile', 'estimate': f'mean + {sigmas:g} sd', 'sigmas': sigmas}
    else:
        threshold = float(normal_scores.max() * 1.1)
        how = {'method': 'quantile', 'estimate': 'max x 1.1 (under 3 validation images)'}
    how.update(
        # the normal fit of the validation scores, for `threshold_for` (tiled frames)
        val_mean=float(normal_scores.mean()),
        val_sd=float(normal_scores.std(ddof=1)) if len(normal_scores) > 2 else 0.0,
        threshold=threshold,
        base=base,
        val_normal=len(val_normal),
        val_defect=len(val_defect or []),
        val_false_alarms=float(np.mean(normal_scores >= threshold)),
    )
    detector.model.threshold, detector.model.base = threshold, base
    return how


BUILTIN_PREFIX = 'builtin:'
# Bumped when the built-in models' recipe (layers, input size, coreset) changes, so a
# model cached by an older build is fitted again instead of silently reused.
BUILTIN_RECIPE = 3


def builtin_model_path(texture: str) -> Path:
    import os

    base = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    return (
        base / 'cnn_perception' / 'defects' / f'builtin_{texture}_v{VERSION}r{BUILTIN_RECIPE}.npz'
    )


def load_defect_model(name: str, log=print) -> DefectModel:
    """Load a .npz file, or a `builtin:<texture>` model.

    Built-in models are fitted once on a scikit-image texture photograph (brick wall,
    gravel, grass) and cached, so demos and tests need no dataset.
    """
    if not name.startswith(BUILTIN_PREFIX):
        return DefectModel.load(Path(name))
    from cnn_perception.datasets import SURFACES, make_defect_images

    texture = name[len(BUILTIN_PREFIX) :]
    if texture not in SURFACES:
        raise ModelFileError(
            f'{name}: unknown built-in defect model (use builtin:'
            + ', builtin:'.join(SURFACES)
            + ', or a .npz file)'
        )
    path = builtin_model_path(texture)
    if path.is_file():
        return DefectModel.load(path)
    log(
        f'fitting built-in defect model {name} on the scikit-image {texture} photograph '
        f'(once; cached in {path})'
    )
    # 160 crops cover the photograph well and a 1.25% coreset keeps the bank (3200
    # patches) as cheap to search as a 5% one of 40 crops; 40 validation crops give the
    # normal fit of the calibration a steadier spread than 12 did (measured on the replay
    # test's clean frames: highest score 0.447 instead of 0.515).
    normal, _, _ = make_defect_images(texture, 200, seed=100, with_defects=False)
    ex = FeatureExtractor()
    model = DefectModel(
        fit(normal[:160], extractor=ex, coreset_ratio=0.0125, progress=False, log=log)
    )
    how = calibrate(DefectDetector(model, extractor=ex), normal[160:])
    model.metrics = {'calibration': how, 'fit_images': 160, 'builtin': texture}
    model.save(path)
    return model
