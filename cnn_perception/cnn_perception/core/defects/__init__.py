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

from cnn_perception.core.defects.builtin import (
    BUILTIN_PREFIX,
    builtin_model_path,
    load_defect_model,
)
from cnn_perception.core.defects.detector import DefectDetector, boxes_from_map, normalise
from cnn_perception.core.defects.extractor import FeatureExtractor
from cnn_perception.core.defects.fitting import apply_calibration, calibrate, fit, fit_kfold
from cnn_perception.core.defects.model import (
    DEFAULT_CORESET_RATIO,
    DEFAULT_INPUT_SIZE,
    DEFAULT_LAYERS,
    FORMAT,
    VERSION,
    Box,
    DefectModel,
    DefectResult,
)
from cnn_perception.core.defects.search import (
    greedy_coreset,
    nearest_distance,
    nearest_search_session,
)

__all__ = [
    'apply_calibration',
    'BUILTIN_PREFIX',
    'DEFAULT_CORESET_RATIO',
    'DEFAULT_INPUT_SIZE',
    'DEFAULT_LAYERS',
    'FORMAT',
    'VERSION',
    'Box',
    'DefectDetector',
    'DefectModel',
    'DefectResult',
    'FeatureExtractor',
    'boxes_from_map',
    'builtin_model_path',
    'calibrate',
    'fit',
    'fit_kfold',
    'greedy_coreset',
    'load_defect_model',
    'nearest_distance',
    'nearest_search_session',
    'normalise',
]
