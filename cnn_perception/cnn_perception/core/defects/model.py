"""The defect model file (one .npz, no pickles) and the result of scoring a frame."""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
import json
from pathlib import Path
import zipfile

import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL
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
    backbone: str = DEFAULT_MODEL
    layers: tuple[int, ...] = DEFAULT_LAYERS
    input_size: int = DEFAULT_INPUT_SIZE
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    threshold: float = 1.0  # raw anomaly score that normalises to 0.5
    base: float = 0.0  # raw score that normalises to 0 (typical normal patch)
    sigma: float = 5.0  # Gaussian smoothing of the map, in network-input pixels
    # 0: the network sees the whole frame (short side to input_size); else the centre
    # square of this share of the short side, scaled to input_size -- the classifier's
    # own input at 0.875 / 224, so the two can share one backbone pass (core/shared.py).
    # Files written before it existed load as 0 (what they were fitted with).
    centre_crop: float = 0.0
    # The off-surface gate: a frame whose `gate_quantile` patch distance (its 25th
    # percentile: three quarters of it unlike the surface) reaches `gate` was not looking
    # at the surface the model knows -- not inspected, not a defect. 0: no gate (files
    # written before it existed; fit them again to get one).
    gate: float = 0.0
    gate_quantile: float = 0.25
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
    # the score map (below), or a function making it on first use: most frames are
    # never drawn, and scaling the map to the frame was ~0.15 ms of each frame's scoring
    map_or_maker: np.ndarray | Callable[[], np.ndarray]
    raw_score: float
    inference_ms: float
    # the frame did not look like the surface (the model's gate): no boxes, not a defect
    off_surface: bool = False
    # the frame's gate statistic over the gate level (>= 1: off the surface; 0: no gate)
    surface: float = 0.0

    @property
    def score_map(self) -> np.ndarray:
        """The normalised anomaly map at source resolution, float32 0..1."""
        if callable(self.map_or_maker):
            self.map_or_maker = self.map_or_maker()
        return self.map_or_maker
