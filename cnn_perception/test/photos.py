"""Real photographs for tests (scikit-image's data module ships them; no network)."""

import numpy as np
from skimage import data

# ImageNet class ids of the domestic cats: tabby, tiger cat, Persian, Siamese, Egyptian cat.
CAT_IDS = {281, 282, 283, 284, 285}
COFFEE_LABELS = {'espresso', 'cup'}


def chelsea() -> np.ndarray:
    return data.chelsea()


def coffee() -> np.ndarray:
    return data.coffee()
