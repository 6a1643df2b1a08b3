"""Benchmarks of the model alone: the network call and the whole frame without ROS.

Parts of `make bench` (tools/bench.py); ratios measured side by side in one run.
"""

import contextlib
import statistics
import subprocess
import sys
import time

import numpy as np

from cnn_perception.core.defects.builtin import DEFAULT_DEFECT_MODEL
from cnn_perception.core.models import DEFAULT_MODEL


def percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float('nan')


def _bench_photo() -> np.ndarray:
    from skimage import data

    return data.chelsea()


def model_only(
    backend: str, size: int, seconds: float, model: str = DEFAULT_MODEL, frame=(480, 640)
) -> dict:
    """One backend alone: the network call, then the whole frame (`models_alone`)."""
    return models_alone((backend,), size, seconds, model, frame)[backend]


def models_alone(
    backends, size: int, seconds: float, model: str = DEFAULT_MODEL, frame=(480, 640)
) -> dict:
    """Time each backend's network call alone and a whole frame without ROS.

    The whole frame as the node does it: preprocessing (resize, crop, normalise),
    network, softmax/top-k. Several backends take turns in blocks of about a second, so
    that their ratio does not see the machine's speed drift (sequential 10 s runs read
    ONNX Runtime / torch 2.5x and 3.3x an hour apart); the first calls of each block,
    after the other backend's thread pool, are not counted.
    """
    from cnn_perception.core.classifier import load_classifier

    rgb = np.ascontiguousarray(np.resize(_bench_photo(), (*frame, 3)).astype(np.uint8))
    clfs = {b: load_classifier(model, backend=b, input_size=size) for b in backends}
    calls = {}
    for b, clf in clfs.items():
        clf.warm_up(3)
        x = clf.preprocess(rgb)
        calls[b] = {'net': (clf.backend.run, x), 'frame': (clf.predict, rgb)}
    times = {b: {'net': [], 'frame': []} for b in backends}
    spent = {b: {'net': 0.0, 'frame': 0.0} for b in backends}
    block = min(1.0, seconds / 4)
    while min(t for per in spent.values() for t in per.values()) < seconds / 2:
        for b in backends:
            for kind in ('net', 'frame'):
                fn, arg = calls[b][kind]
                for _ in range(2):  # the other pool's threads may still be spinning
                    fn(arg)
                t_end = time.perf_counter() + block
                while time.perf_counter() < t_end:
                    t0 = time.perf_counter()
                    fn(arg)
                    dt = time.perf_counter() - t0
                    times[b][kind].append(dt * 1000)
                    spent[b][kind] += dt
    out = {}
    for b in backends:
        net, whole = times[b]['net'], times[b]['frame']
        out[b] = {
            'fps': 1000.0 / statistics.mean(net),
            'p50_ms': percentile(net, 50),
            'p99_ms': percentile(net, 99),
            'frame_fps': 1000.0 / statistics.mean(whole),
            'frame_p50_ms': percentile(whole, 50),
            'runs': len(net) + len(whole),
        }
    return out


def defect_cost(
    seconds: float = 6.0, backend: str = 'onnxruntime', model: str = DEFAULT_DEFECT_MODEL
) -> dict:
    """Defect scoring vs the classifier's inference_ms, same input size and backend.

    Blocks of calls on one 256x256 brick crop with a painted defect. The classifier's
    inference_ms is its network call; the detector's covers everything `detect` does
    before thresholding (resize, network, nearest-patch search, upsampling, smoothing).
    """
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.defects import DefectDetector, load_defect_model
    from cnn_perception.tools.datasets import make_defect_images

    det = DefectDetector(load_defect_model(model, log=lambda *_: None), backend)
    size = det.model.input_size
    clf = load_classifier(DEFAULT_MODEL, backend=backend, input_size=size)
    img = make_defect_images('brick', 1, seed=5)[1][0]
    for _ in range(3):
        clf.predict(img)
        det.detect(img)
    # Short blocks of each in turn: alternating single calls would make each evict the
    # other's weights from the caches, blocks share any drift in machine load.
    c_ms, d_ms = [], []
    for _ in range(4):
        for fn, out in ((lambda: clf.predict(img), c_ms), (lambda: det.detect(img), d_ms)):
            t_end = time.perf_counter() + seconds / 8
            while time.perf_counter() < t_end:
                out.append(fn().inference_ms)
    c, d = statistics.median(c_ms), statistics.median(d_ms)
    return {
        'backend': backend,
        'input_size': size,
        'image': '256x256',
        'memory_bank': len(det.memory),
        'classifier_ms': c,
        'defects_ms': d,
        'ratio': d / c,
        'runs': len(c_ms),
    }


MODEL_ALONE = 'model alone'  # an entry of `sliced_runs`: the whole-frame loop, no ROS


def model_loop(backend: str, size: int, model: str) -> None:
    """`Classifier.predict` on a 640x480 frame forever, one line per frame: its ms.

    The whole frame without ROS (`model_only`'s frame figure), in a process of its own
    for `sliced_runs`.
    """
    from cnn_perception.core.classifier import load_classifier

    clf = load_classifier(model, backend=backend, input_size=size)
    rgb = np.ascontiguousarray(np.resize(_bench_photo(), (480, 640, 3)).astype(np.uint8))
    clf.warm_up(3)
    while True:
        t0 = time.perf_counter()
        clf.predict(rgb)
        print(f'{(time.perf_counter() - t0) * 1000:.3f}', flush=True)


@contextlib.contextmanager
def model_loop_process(backend: str, size: int, model: str):
    """Yield (process, per-frame ms as they come): `model_loop` in its own process."""
    import threading

    code = (
        'from cnn_perception.tools.bench_models import model_loop; '
        f'model_loop({backend!r}, {size}, {model!r})'
    )
    proc = subprocess.Popen(
        [sys.executable, '-c', code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    ms: list[float] = []

    def read() -> None:
        for line in proc.stdout:
            try:
                ms.append(float(line))
            except ValueError:  # a library's stray output line
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield proc, ms
    finally:
        proc.kill()
        proc.log = proc.communicate(timeout=60)[1] or ''
        reader.join(5)
