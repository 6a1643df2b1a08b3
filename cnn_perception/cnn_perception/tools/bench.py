"""Benchmarks as ratios measured side by side in one run.

Absolute times on a shared 2-core machine are noise; ratios are not.

1. model alone per backend: `Classifier.predict` on a 640x480 frame (preprocessing,
   model call, softmax), throughput and latency p50/p99;
2. the pipeline: camera (`test:` source, faster than the model) -> classifier node ->
   a probe in another OS process over DDS: results/s delivered and end-to-end latency
   (image stamp -> result received) under that overload;
3. with all four nodes running: the classifier's results/s against its solo figure;
   2 and 3 and the whole frame without ROS take turns of a second in the same minute
   (`sliced_runs`), repeated;
4. peak RSS of the pipeline process: classifier alone / all nodes, with torch loaded and
   on the ONNX Runtime-only path (cached .onnx files, torch never imported);
5. growth: model alone at 160/224/320 input, pipeline at 640x480 and 1280x720 frames.
"""

import contextlib
import json
import os
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from cnn_perception import contract
from cnn_perception.tools.bench_report import machine_info, markdown, write_section


def percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float('nan')


def _bench_photo() -> np.ndarray:
    from skimage import data

    return data.chelsea()


def model_only(
    backend: str, size: int, seconds: float, model: str = 'efficientnet_lite0', frame=(480, 640)
) -> dict:
    """One backend alone: the network call, then the whole frame (`models_alone`)."""
    return models_alone((backend,), size, seconds, model, frame)[backend]


def models_alone(
    backends, size: int, seconds: float, model: str = 'efficientnet_lite0', frame=(480, 640)
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
    seconds: float = 6.0, backend: str = 'onnxruntime', model: str = 'builtin:brick'
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
    clf = load_classifier('efficientnet_lite0', backend=backend, input_size=size)
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


def params_file_for(
    tmp: Path,
    backend: str,
    fps: float,
    width: int,
    height: int,
    onnx_only: bool,
    extra: dict | None = None,
) -> Path:
    import yaml

    from cnn_perception import platforms

    params = yaml.safe_load(platforms.params_file('desktop').read_text())
    params['/**/camera']['ros__parameters'].update(
        source='test:', fps=float(fps), width=width, height=height
    )
    clf = params['/**/classifier']['ros__parameters']
    clf.update(backend=backend, max_rate_hz=0.0)
    if onnx_only:
        for key in ('/**/classifier', '/**/defect_detector', '/**/feature_map'):
            params[key]['ros__parameters']['backend'] = 'onnxruntime'
    for key, values in (extra or {}).items():  # e.g. {'/**/defect_detector': {...}}
        params[key]['ros__parameters'].update(values)
    path = tmp / f'bench_{backend}_{width}x{height}_{fps:.0f}_{len(extra or {})}.yaml'
    path.write_text(yaml.safe_dump(params))
    return path


class Results(list):
    """(receive time, image stamp) per classification; `defects`: detection receive times."""

    def __init__(self):
        super().__init__()
        self.defects: list[float] = []


@contextlib.contextmanager
def pipeline_and_probe(
    params_file: Path,
    run_seconds: float,
    nodes: str | None = None,
    platform: str | None = None,
    domain_id: int | None = None,
):
    """`run` in its own OS process, a probe node here counting its classifications.

    Yields (process, probe node, executor, results) where results collects
    (receive time, image stamp in ns) per Classification, and `results.defects` the
    receive times of the defect detector's DetectionArrays; on exit the probe is destroyed
    and the pipeline stopped with SIGINT; its output is left in `process.log`. With
    `domain_id` both the pipeline and the probe use that ROS domain, so that two
    pipelines can run side by side without hearing each other.
    """
    from cnn_perception_msgs.msg import Classification, DetectionArray
    import rclpy

    cmd = [
        sys.executable,
        '-m',
        'cnn_perception',
        'run',
        '--params-file',
        str(params_file),
        '--duration',
        str(run_seconds),
    ]
    if nodes:
        cmd += ['--nodes', nodes]
    if platform:
        cmd += ['--platform', platform]
    env = dict(os.environ)
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node(f'bench_probe_{domain_id or 0}', context=ctx)
    got = Results()
    node.create_subscription(
        Classification,
        contract.CLASSIFICATION.full(),
        lambda m: got.append((time.time(), contract.stamp_ns(m.header))),
        10,
    )
    node.create_subscription(
        DetectionArray, contract.DETECTIONS.full(), lambda m: got.defects.append(time.time()), 10
    )
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        yield proc, node, ex, got
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        if proc.poll() is None:
            proc.send_signal(2)
        proc.log = proc.communicate(timeout=60)[0]


def _watch_images(node) -> None:
    """Subscribe the probe to every output image, so that the nodes draw and send them."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    for t in contract.OUTPUT_IMAGES:
        node.create_subscription(Image, t.full(), lambda m: None, qos_profile_sensor_data)


def _wait_for_results(entries) -> None:
    """Wait until every process gave a result (start-up), then 2 s more (transients).

    `entries`: (process, probe or None, results list); probes are spun meanwhile.
    """
    probes = [probe for _, probe, _ in entries if probe is not None]

    def spin(seconds: float) -> None:
        for _, _, ex, _ in probes:
            ex.spin_once(timeout_sec=seconds / len(probes))
        if not probes:
            time.sleep(seconds)

    deadline = time.monotonic() + 120
    while not all(got for _, _, got in entries) and time.monotonic() < deadline:
        if any(proc.poll() is not None for proc, _, _ in entries):
            break
        spin(0.1)
    t_warm = time.monotonic() + 2.0
    while time.monotonic() < t_warm:
        spin(0.05)


def _rss_mb(pid: int) -> float:
    import psutil

    try:
        return _vm_hwm_mb(pid) or psutil.Process(pid).memory_info().rss / 1e6
    except psutil.Error:
        return float('nan')


def _summary(nodes, window, defects: int, elapsed: float, rss: float, log: str) -> dict:
    if not window:
        raise RuntimeError(
            f'bench: no results from `run --nodes {nodes}` in {elapsed:.0f} s; '
            'its output ended with:\n' + log[-3000:]
        )
    lat = [(t - s / 1e9) * 1000 for t, s in window]
    half = len(lat) // 2
    return {
        'fps': len(window) / elapsed if elapsed > 0 else 0.0,
        'defect_fps': defects / elapsed if elapsed > 0 else 0.0,
        'latency_ms': {
            'p50': percentile(lat, 50),
            'p99': percentile(lat, 99),
            'p99_first_half': percentile(lat[:half], 99),
            'p99_second_half': percentile(lat[half:], 99),
        },
        'rss_mb': rss,
        'torch_loaded': 'torch loaded' in log,
        'results': len(window),
    }


def pipeline_run(
    nodes: str,
    backend: str,
    camera_fps: float,
    seconds: float,
    width: int = 640,
    height: int = 480,
    watch_images: bool = False,
    extra: dict | None = None,
    params_file: Path | None = None,
    platform: str | None = None,
) -> dict:
    """Start `run` in its own process, measure from a probe in this one."""
    with tempfile.TemporaryDirectory() as tmp:
        pfile = params_file or params_file_for(
            Path(tmp), backend, camera_fps, width, height, backend == 'onnxruntime', extra
        )
        with pipeline_and_probe(pfile, seconds + 90, nodes, platform) as probe:
            proc, node, ex, got = probe
            if watch_images:
                _watch_images(node)
            _wait_for_results([(proc, probe, got)])
            start, n_defects = len(got), len(got.defects)
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                ex.spin_once(timeout_sec=0.05)
            window = got[start:]
            defects = len(got.defects) - n_defects
            elapsed = time.monotonic() - t0
            rss = _rss_mb(proc.pid)
    return _summary(nodes, window, defects, elapsed, rss, proc.log)


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
def _model_loop_process(backend: str, size: int, model: str):
    """Yield (process, per-frame ms as they come): `model_loop` in its own process."""
    import threading

    code = (
        'from cnn_perception.tools.bench import model_loop; '
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


def sliced_runs(
    runs: list[tuple[str, bool]],
    backend: str,
    camera_fps: float,
    seconds: float,
    slice_s: float = 1.0,
    settle_s: float = 0.3,
    extra: dict | None = None,
    model: str = 'efficientnet_lite0',
    size: int = 224,
) -> list[dict]:
    """Measure several pipelines in the same minute: (nodes, watch images) each.

    Each runs in its own process and ROS domain, all started together; then they take
    turns of `slice_s`, the others stopped (SIGSTOP: they cost no CPU), until each ran
    `seconds`. Results count from `settle_s` after a process resumes (it first finishes
    the frame it was stopped in). Ratios between them do not see this machine's speed
    drifting by tens of percent within a minute, which sequential 10 s runs did
    (all four nodes / classifier alone: 0.67-0.98 for the same code, read in one hour).
    `nodes` MODEL_ALONE takes turns as the whole frame without ROS (`model_loop`).
    Returns `pipeline_run`'s figures per pipeline, RSS the peak of the whole run, and
    for the model `frame_fps`, `frame_p50_ms`; `extra` as in `params_file_for`.
    """
    import signal

    base = int(os.environ.get('ROS_DOMAIN_ID', '0'))
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        pfile = params_file_for(
            Path(tmp), backend, camera_fps, 640, 480, backend == 'onnxruntime', extra
        )
        entries = []  # (process, probe or None, results list)
        for i, (nodes, watch) in enumerate(runs):
            if nodes == MODEL_ALONE:
                proc, ms = stack.enter_context(_model_loop_process(backend, size, model))
                entries.append((proc, None, ms))
                continue
            probe = stack.enter_context(
                pipeline_and_probe(
                    pfile, len(runs) * seconds * 2 + 150, nodes, domain_id=(base + 1 + i) % 100
                )
            )
            if watch:
                _watch_images(probe[1])
            entries.append((probe[0], probe, probe[3]))
        pids = [proc.pid for proc, _, _ in entries]

        def spin(k: int, until: float) -> None:
            probe = entries[k][1]
            while time.monotonic() < until:
                if probe is None:
                    time.sleep(min(0.05, max(0.0, until - time.monotonic())))
                else:
                    probe[2].spin_once(timeout_sec=0.01)

        windows: list[list] = [[] for _ in runs]
        try:
            _wait_for_results(entries)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            # A first round is not counted: each process's first turn read 30-55% low
            # (all of them had started at once), settling or not.
            turn = -len(runs)
            while min(sum(w[3] for w in ws) for ws in windows) < seconds:
                k = turn % len(runs)
                proc, _, got = entries[k]
                if proc.poll() is not None:
                    break
                os.kill(pids[k], signal.SIGCONT)
                spin(k, time.monotonic() + settle_s)
                d0 = len(getattr(got, 'defects', ()))
                n0, t0 = len(got), time.monotonic()
                spin(k, t0 + slice_s)
                n1, t1 = len(got), time.monotonic()
                if turn >= 0:
                    windows[k].append((n0, n1, len(getattr(got, 'defects', ())) - d0, t1 - t0))
                os.kill(pids[k], signal.SIGSTOP)
                turn += 1
        finally:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        rss = [_rss_mb(pid) for pid in pids]
    out = []
    for (nodes, _), (proc, _, got), ws, peak in zip(runs, entries, windows, rss, strict=True):
        window = [r for a, b, _, _ in ws for r in got[a:b]]
        if nodes == MODEL_ALONE:
            if not window:
                raise RuntimeError('bench: the model loop gave no frames:\n' + proc.log[-3000:])
            summary = {
                'frame_fps': len(window) / sum(w[3] for w in ws),
                'frame_p50_ms': percentile(window, 50),
            }
        else:
            summary = _summary(
                nodes, window, sum(w[2] for w in ws), sum(w[3] for w in ws), peak, proc.log
            )
        summary['slice_fps'] = [(b - a) / t for a, b, _, t in ws]
        out.append(summary)
    return out


def one_process_cost() -> dict:
    """Classifier + defect detector on every frame over the classifier alone, per frame.

    One process, the 60 photograph frames, 3 interleaved repeats (`tools/shared.py`): with
    one shared backbone pass (desktop.yaml) and with each head's own pass.
    """
    from cnn_perception.tools.shared import heads, per_frame_costs
    from cnn_perception.tools.zoo import labelled_frames

    runs = per_frame_costs([f for f, _ in labelled_frames()], *heads())
    ratios = [b / a for a, b in zip(runs['alone'], runs['both_shared'], strict=True)]
    own = [b / a for a, b in zip(runs['alone'], runs['both_own'], strict=True)]
    return {
        'classifier_ms': statistics.median(runs['alone']),
        'shared_ratio': statistics.median(ratios),
        'shared_ratios': ratios,
        'own_passes_ratio': statistics.median(own),
    }


def pi_path(seconds: float, log=print) -> dict:
    """Measure the Pi configuration as shipped (pi.yaml), INT8 classifier, test scene.

    All four nodes in one process on ONNX Runtime, the output images watched (their
    drawing is the most memory the nodes use). The INT8 model is quantized here with the
    gate off: this measures memory and the torch-free path, `bench --int8` the answers.
    """
    import yaml

    from cnn_perception import platforms
    from cnn_perception.core.classifier import load_classifier
    from cnn_perception.core.quantize import default_calibration_frames, quantize

    clf = load_classifier()
    with tempfile.TemporaryDirectory() as tmp:
        log('bench: Pi configuration: quantizing the classifier (gate off) ...')
        q = quantize(clf.backend.path, Path(tmp) / 'classifier.int8.onnx',
                     default_calibration_frames(), clf.preprocess, min_agreement=0.0,
                     log=lambda *_: None)  # fmt: skip
        params = yaml.safe_load(platforms.params_file('pi').read_text())
        params['/**/camera']['ros__parameters'].update(source='test:')
        params['/**/classifier']['ros__parameters'].update(model=str(q.path), precision='int8')
        pfile = Path(tmp) / 'pi_bench.yaml'
        pfile.write_text(yaml.safe_dump(params))
        fps = params['/**/camera']['ros__parameters']['fps']
        r = pipeline_run(
            'camera,classifier,defects,features', 'onnxruntime', fps, seconds,
            watch_images=True, params_file=pfile, platform='pi',
        )  # fmt: skip
    return {'rss_mb': r['rss_mb'], 'torch_loaded': r['torch_loaded'], 'fps': r['fps']}


def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_bench(
    model: str = 'efficientnet_lite0',
    size: int = 224,
    seconds: float = 10.0,
    backends=('torch', 'onnxruntime'),
    growth: bool = True,
    log=print,
    overload: float = 1.25,
    repeats: int = 3,
) -> dict:
    from cnn_perception.core.classifier import load_classifier

    # Make sure every ONNX file the torch-free path needs exists before measuring it.
    load_classifier(model, backend='onnxruntime', input_size=size)
    from cnn_perception.core import feature_maps as fm
    from cnn_perception.core.defects import FeatureExtractor, load_defect_model

    load_defect_model('builtin:brick', log=log)
    FeatureExtractor()
    fm.FeatureMapModel()
    # desktop.yaml shares one backbone pass: its two graphs and the crop's defect model
    from cnn_perception.core.shared import SharedBackbone

    load_defect_model('builtin:brick', log=log, shared=True)
    SharedBackbone.get(model).run(np.zeros((240, 320, 3), np.uint8), acts=True)

    res: dict = {
        'machine': machine_info(),
        'model': {},
        'settings': {
            'model': model,
            'size': size,
            'seconds': seconds,
            'camera_overload': overload,
            'repeats': repeats,
        },
    }
    log(f'bench: model alone, {" and ".join(backends)} taking turns ...')
    res['model'].update(models_alone(tuple(backends), size, seconds, model))
    ort = res['model']['onnxruntime']
    res['model']['onnxruntime_vs_torch'] = (
        ort['fps'] / res['model']['torch']['fps'] if 'torch' in res['model'] else None
    )
    # Overload: a camera 25% faster than the model can keep up with. Every camera frame
    # costs CPU in the same process (render, serialise, publish), so a harsher overload
    # measures the camera more than the ROS overhead (1.5x: ratio about 0.77 here).
    log('bench: defect scoring vs classifier at the same input size ...')
    res['defects'] = defect_cost(seconds, 'onnxruntime')
    log('bench: classifier + defects on every frame, one shared pass vs the classifier ...')
    res['one_process'] = one_process_cost()
    cam_fps = max(30.0, overload * ort['frame_fps'])
    # The ROS-side ratios swing from run to run, and the machine's own speed drifts by
    # tens of percent within a minute: the whole frame without ROS, the classifier
    # pipeline and all four nodes take 1 s turns in the same minute (`sliced_runs`), and
    # that is repeated `repeats` times, reported as median and min..max. (Sequential
    # 10 s runs, the model alone measured before and after each pipeline, read 0.56..0.86
    # for the pipeline ratio and 0.67..0.98 for the four nodes' within an hour.)
    from cnn_perception.params import params_from_file
    from cnn_perception.platforms import params_file
    from cnn_perception.steps import node_params, step_class

    defect_params = node_params(step_class('defects'))
    desktop = params_from_file(params_file('desktop'), 'defect_detector', defect_params)
    defect_hz, shared = desktop['max_rate_hz'], desktop['shared_backbone']
    runs = []
    for i in range(repeats):
        log(f'bench: repeat {i + 1}/{repeats}: model alone, classifier pipeline, all nodes, '
            'taking 1 s turns ...')  # fmt: skip
        alone, solo, full = sliced_runs(
            [(MODEL_ALONE, False), ('camera,classifier', False),
             ('camera,classifier,defects,features', True)],
            'onnxruntime', cam_fps, seconds, model=model, size=size,
        )  # fmt: skip
        ref_fps, ref_p50 = alone['frame_fps'], alone['frame_p50_ms']
        ratio, all_over = solo['fps'] / ref_fps, full['fps'] / solo['fps']
        log(f'bench:   whole frame {ref_fps:.1f} fps, pipeline {solo["fps"]:.1f} results/s '
            f'({ratio:.2f}), all four nodes {full["fps"]:.1f} ({all_over:.2f}); per turn: '
            + '; '.join(' '.join(f'{v:.0f}' for v in r['slice_fps'])
                        for r in (alone, solo, full)))  # fmt: skip
        runs.append(
            {
                'model_frame_fps': ref_fps,
                'model_frame_p50_ms': ref_p50,
                'pipeline_fps': solo['fps'],
                'ratio': ratio,
                'p99_ms': solo['latency_ms']['p99'],
                'p99_ok': solo['latency_ms']['p99'] <= 3 * ref_p50,
                'all_nodes_fps': full['fps'],
                'all_over_solo': all_over,
                'ratio_ok': ratio >= 0.85,
                'all_ok': all_over >= 0.8,
                'all_nodes_defect_fps': full['defect_fps'],
                'slice_fps': {
                    'model_frame': alone['slice_fps'],
                    'pipeline': solo['slice_fps'],
                    'all_nodes': full['slice_fps'],
                },
                'solo': solo,
                'full': full,
            }
        )
    # Each figure from the repeat that is its median: the pipeline rows from the median
    # pipeline ratio, the four-node rows from the median four-node ratio.
    mid = sorted(runs, key=lambda r: r['ratio'])[len(runs) // 2]
    mid_all = sorted(runs, key=lambda r: r['all_over_solo'])[len(runs) // 2]
    solo, full = mid['solo'], mid_all['full']
    res['repeats'] = [{k: v for k, v in r.items() if k not in ('solo', 'full')} for r in runs]
    res['pipeline'] = {
        'fps': solo['fps'],
        'model_fps': mid['model_frame_fps'],
        'ratio': mid['ratio'],
        'camera_fps': cam_fps,
        'latency_ms': solo['latency_ms'],
        'latency_p99_over_model_p50': solo['latency_ms']['p99'] / mid['model_frame_p50_ms'],
        'model_frame_p50_ms': mid['model_frame_p50_ms'],
    }
    res['all_nodes'] = {
        'classifier_fps': full['fps'],
        'ratio_to_solo': mid_all['all_over_solo'],
        'solo_fps': mid_all['pipeline_fps'],
        'latency_ms': full['latency_ms'],
        'defect_fps': full['defect_fps'],
        'defect_max_rate_hz': defect_hz,
        'shared_backbone': shared,
    }
    log('bench: memory with torch loaded ...')
    torch_solo = pipeline_run('camera,classifier', 'torch', cam_fps, min(seconds, 5))
    torch_all = pipeline_run(
        'camera,classifier,defects,features', 'torch', cam_fps, min(seconds, 5)
    )
    res['rss_mb'] = {
        'classifier_torch': torch_solo['rss_mb'],
        'classifier_onnxruntime': solo['rss_mb'],
        'all_nodes_torch': torch_all['rss_mb'],
        'all_nodes_onnxruntime': full['rss_mb'],
    }
    res['torch_loaded'] = {
        'onnxruntime_path': solo['torch_loaded'] or full['torch_loaded'],
        'torch_path': torch_solo['torch_loaded'],
    }
    log('bench: the Pi configuration, INT8 ...')
    res['pi'] = pi_path(seconds, log)
    if growth:
        res['growth'] = {'input_size': {}, 'camera': {}}
        for s in (160, 224, 320):
            log(f'bench: model alone at {s}x{s} ...')
            res['growth']['input_size'][str(s)] = model_only('onnxruntime', s, seconds / 2, model)
        for w, h in ((640, 480), (1280, 720)):
            log(f'bench: pipeline with {w}x{h} frames ...')
            r = pipeline_run('camera,classifier', 'onnxruntime', cam_fps, seconds / 2, w, h)
            res['growth']['camera'][f'{w}x{h}'] = {'fps': r['fps'], 'latency_ms': r['latency_ms']}
    return res


def main_bench(args) -> int:
    res = run_bench(
        args.model,
        args.size,
        args.duration,
        tuple(args.backend or ('torch', 'onnxruntime')),
        not args.no_growth,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        repeats=args.repeats,
    )
    md = markdown(res)
    if args.out:
        write_section(Path(args.out), 'bench', md, '# Benchmarks')
    if args.json:
        print(json.dumps(res))
    else:
        print(md)
    return 0
