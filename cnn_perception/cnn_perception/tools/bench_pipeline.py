"""Benchmarks through the ROS graph: the pipeline in its own process, a probe over DDS.

Parts of `make bench` (tools/bench.py): the pipeline's results/s and latency, the nodes
taking turns of a second (`sliced_runs`), its memory, the Pi configuration.
"""

import contextlib
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from cnn_perception import contract
from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.tools.bench_models import MODEL_ALONE, model_loop_process, percentile


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

    params = yaml.safe_load(platforms.params_file(platforms.DEFAULT_PLATFORM).read_text())
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
        return vm_hwm_mb(pid) or psutil.Process(pid).memory_info().rss / 1e6
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


def sliced_runs(
    runs: list[tuple[str, bool]],
    backend: str,
    camera_fps: float,
    seconds: float,
    slice_s: float = 1.0,
    settle_s: float = 0.3,
    extra: dict | None = None,
    model: str = DEFAULT_MODEL,
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
                proc, ms = stack.enter_context(model_loop_process(backend, size, model))
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


def vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
