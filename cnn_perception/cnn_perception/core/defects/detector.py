"""Scoring a frame: nearest-patch map, tiling, calibrated threshold, hysteresis boxes."""

import functools
import time

import cv2
import numpy as np

from cnn_perception.core.defects.extractor import FeatureExtractor
from cnn_perception.core.defects.model import Box, DefectModel, DefectResult
from cnn_perception.core.defects.search import (
    add_feature_norms,
    nearest_distance,
    nearest_search_session,
)

# The map is boxed at half the network's resolution: four map pixels per stride-8 patch,
# whose scores it interpolates bilinearly, so it has no finer detail; the boxes' connected
# components and placing the map cost a quarter of what they did at the network's full
# resolution (0.13 against 0.42 ms on a flagged 224 px crop), with the same image, pixel
# and box metrics on brick, gravel and moon (docs/defects.md, commit 7036d22).
MAP_STEP = 2.0


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
            model.centre_crop,
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
            return lambda f: add_feature_norms(session.run(None, {'features': f})[0], f)
        if name == 'torch' and backend.device.startswith('cuda'):
            import torch

            bank = torch.from_numpy(self.memory).to(backend.device)

            def on_gpu(f) -> np.ndarray:
                with torch.inference_mode():
                    if isinstance(f, np.ndarray):
                        f = torch.from_numpy(np.ascontiguousarray(f)).to(bank.device)
                    # (the shared pass hands its features over on the GPU already)
                    return torch.cdist(f.float(), bank).amin(dim=1).cpu().numpy()

            return on_gpu
        sq = np.einsum('ij,ij->i', self.memory, self.memory)
        neg2_t = np.ascontiguousarray(-2.0 * self.memory.T, np.float32)
        return lambda f: nearest_distance(f, self.memory, sq, neg2_memory_t=neg2_t)

    def raw_map(self, rgb: np.ndarray, tile: int = 0) -> np.ndarray:
        """Raw anomaly map at the source resolution; `tile` > 0 scores overlapping tiles."""
        ys, xs, _ = self.tile_grid(*rgb.shape[:2], tile)
        if len(ys) * len(xs) > 1:
            return self._tiled(rgb, tile)
        return self.map_from_features(self.extractor(rgb), *rgb.shape[:2])

    def map_from_features(self, feats: np.ndarray, h: int, w: int) -> np.ndarray:
        """Raw anomaly map of an h x w image from its (fh, fw, D) patch features.

        Where the network saw only a centre crop, the rest of the frame gets `base`
        (normalised score 0).
        """
        geometry, region, scale = self.region(h, w, full=True)
        out = np.full((h, w), self.model.base, np.float32)
        self._place(self.smoothed_grid(feats, geometry), geometry, region, scale, out)
        return out

    def smoothed_grid(self, feats: np.ndarray, geometry) -> np.ndarray:
        """Nearest-normal distance per patch, Gaussian-smoothed on the patch grid.

        Blurring the upsampled map at source resolution cost 5.8 ms of a 640x480 frame's
        scoring here; on the grid it costs microseconds (both are linear filters; the
        maps differ by the blur's sampling on the coarse grid, docs/defects.md).
        """
        fh, fw, d = feats.shape
        grid = self._nearest(feats.reshape(-1, d)).reshape(fh, fw)
        cell = geometry[5] / fw  # network-input pixels per patch (the stride)
        return cv2.GaussianBlur(grid, (0, 0), sigmaX=max(self.model.sigma / cell, 0.3))

    def region(self, h: int, w: int, full: bool = False):
        """Return (geometry, (x, y, rw, rh), scale) of the network's view of a frame.

        `geometry` is the extractor's; (x, y, rw, rh) the part of the h x w frame the
        network saw; `scale` the source pixels per map pixel (1 with `full`; else
        MAP_STEP times the network's or the frame's resolution, the coarser).
        """
        geometry = self.extractor.geometry(h, w)
        x0, y0, sx, sy, nh, nw = geometry
        rx0, ry0 = max(0, round(x0)), max(0, round(y0))
        rw, rh = min(w - rx0, round(nw * sx)), min(h - ry0, round(nh * sy))
        return geometry, (rx0, ry0, rw, rh), 1.0 if full else MAP_STEP * max(1.0, min(sx, sy))

    @staticmethod
    def _place(grid, geometry, region, scale, out=None) -> np.ndarray:
        """Upsample the grid over `region` at `scale` source pixels per map pixel."""
        x0, y0, sx, sy, nh, nw = geometry
        rx0, ry0, rw, rh = region
        fh, fw = grid.shape
        # Feature cell u of a stride-s CNN is centred on input pixel s*u (convolutions
        # padded by k//2), not s*u + s/2 - 0.5 as cv2.resize assumes: map it explicitly.
        affine = np.float32(
            [[sx * nw / fw / scale, 0, (x0 - rx0) / scale],
             [0, sy * nh / fh / scale, (y0 - ry0) / scale]]
        )  # fmt: skip
        size = (max(1, round(rw / scale)), max(1, round(rh / scale)))
        up = cv2.warpAffine(
            grid, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        if out is not None:
            out[ry0 : ry0 + rh, rx0 : rx0 + rw] = up
        return up

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
        """Score one frame: image score, boxes (source pixels) and the normalised map.

        Untiled, the map is normalised and boxed at half the network's resolution, or
        of the frame's where that is coarser (a 640x480 frame: 213x160; the shared
        pass's centre crop: 112x112 for 420x420), and scaled to the frame only when
        something reads `score_map`: the boxes were most of the scoring's time at source
        resolution, and the map has no finer detail than the network's stride-8 patches.
        """
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        ys, xs, _ = self.tile_grid(h, w, tile)
        threshold = self.threshold_for(len(ys) * len(xs))
        if len(ys) * len(xs) > 1:
            raw = self._tiled(rgb, tile)
            ms = (time.perf_counter() - t0) * 1000.0
            norm = normalise(raw, self.model.base, threshold, sensitivity).astype(np.float32)
            surface = self.surface(raw)
            score = float(norm.max())
            boxes = [] if surface >= 1.0 else boxes_from_map(norm, min_area)
            return DefectResult(score, score >= 0.5 and surface < 1.0, boxes, norm,
                                float(raw.max()), ms, surface >= 1.0, surface)  # fmt: skip
        geometry, region, scale = self.region(h, w)
        grid = self.smoothed_grid(self.extractor(rgb), geometry)
        ms = (time.perf_counter() - t0) * 1000.0
        norm_grid = normalise(grid, self.model.base, threshold, sensitivity).astype(np.float32)
        small = self._place(norm_grid, geometry, region, scale)
        rx0, ry0, rw, rh = region
        surface = self.surface(grid)
        off = surface >= 1.0
        boxes = [] if off else [
            _scaled(b, scale, rx0, ry0, w, h)
            for b in boxes_from_map(small, max(1, round(min_area / scale**2)))
        ]  # fmt: skip

        def score_map() -> np.ndarray:
            out = np.zeros((h, w), np.float32)
            if scale == 1.0:
                out[ry0 : ry0 + rh, rx0 : rx0 + rw] = small
            else:
                cv2.resize(small, (rw, rh), out[ry0 : ry0 + rh, rx0 : rx0 + rw],
                           interpolation=cv2.INTER_LINEAR)  # fmt: skip
            return out

        # the bilinear map's maximum is a grid value: the image score at any resolution
        score = float(norm_grid.max())
        return DefectResult(score, score >= 0.5 and not off, boxes, score_map, float(grid.max()),
                            ms, off, surface)  # fmt: skip

    def surface(self, raw: np.ndarray) -> float:
        """Return the frame's gate statistic over the model's gate (>= 1: off the surface).

        The `gate_quantile` (0.25) of the patch distances: a defect is a small part of
        the frame, so a frame passes as long as a quarter of it looks like the surface
        (a wall half out of view, under other light); grass, sky, a cup or a blank frame
        score beyond the defect threshold almost everywhere (docs/defects.md). 0 when
        the model has no gate.
        """
        m = self.model
        if m.gate <= 0:
            return 0.0
        flat = raw.ravel()
        k = int(m.gate_quantile * (flat.size - 1))
        return float(np.partition(flat, k)[k]) / m.gate


def _scaled(b: Box, scale: float, x0: int, y0: int, w: int, h: int) -> Box:
    """Return a box found at `scale` source pixels per map pixel in source pixels."""
    if scale == 1.0:
        return Box(b.x + x0, b.y + y0, b.width, b.height, b.score)
    left, top = x0 + int(b.x * scale), y0 + int(b.y * scale)
    right = min(w, x0 + int(np.ceil((b.x + b.width) * scale)))
    bottom = min(h, y0 + int(np.ceil((b.y + b.height) * scale)))
    return Box(left, top, right - left, bottom - top, b.score)


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
    high = norm >= level
    if not high.any():
        return []
    # z = n / (1 - n) is increasing in n: thresholds in z are compared in n instead
    # (no z map: this ran on every flagged frame)
    z_low = low / (1.0 - low)
    h, w = norm.shape
    # 16-bit labels where they cannot overflow (8-connected: at most one region per 2x2)
    ltype = cv2.CV_16U if ((h + 1) // 2) * ((w + 1) // 2) < 65535 else cv2.CV_32S
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        (norm >= low).view(np.uint8), connectivity=8, ltype=ltype
    )
    # One region (a flagged frame's usual case) holds the high pixels: no gather needed
    ids = [1] if n == 2 else np.flatnonzero(np.bincount(labels[high], minlength=n))
    boxes = []
    for i in ids:  # bincount above: np.unique there was 3x slower
        x, y, bw, bh, area = (int(v) for v in stats[i])
        window = norm[y : y + bh, x : x + bw]
        # Alone in its box, the region is every pixel there >= low: no label mask
        inside = None if n == 2 or area == bw * bh else labels[y : y + bh, x : x + bw] == i
        peak_n = float(window.max() if inside is None else window[inside].max())
        peak = peak_n / max(1.0 - peak_n, 1e-6)
        cut = max(z_low, rel_height * peak)
        keep = window >= cut / (1.0 + cut)  # cut >= z_low: only region pixels pass
        if inside is not None:
            keep &= inside
        if int(np.count_nonzero(keep)) < min_area:
            continue
        rows, cols = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
        boxes.append(
            Box(
                x + int(cols[0]),
                y + int(rows[0]),
                int(cols[-1] - cols[0] + 1),
                int(rows[-1] - rows[0] + 1),
                peak / (1.0 + peak),
            )
        )
    boxes.sort(key=lambda b: -b.score)
    return boxes
