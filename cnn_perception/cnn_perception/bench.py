"""Benchmarks as ratios measured side by side in one run.

Absolute times on a shared 2-core machine are noise; ratios are not.

1. model alone per backend: `Classifier.predict` on a 640x480 frame (preprocessing,
   model call, softmax), throughput and latency p50/p99;
2. the pipeline: camera (`test:` source, faster than the model) -> classifier node ->
   a probe in another OS process over DDS: results/s delivered and end-to-end latency
   (image stamp -> result received) under that overload;
3. with all four nodes running: the classifier's results/s against its solo figure;
4. peak RSS of the pipeline process: classifier alone / all nodes, with torch loaded and
   on the ONNX Runtime-only path (cached .onnx files, torch never imported);
5. growth: model alone at 160/224/320 input, pipeline at 640x480 and 1280x720 frames.
"""

import contextlib
import json
import os
from pathlib import Path
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

NS = '/cnn_perception'


def _percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float('nan')


def model_only(
    backend: str, size: int, seconds: float, model: str = 'efficientnet_lite0', frame=(480, 640)
) -> dict:
    from skimage import data

    from cnn_perception.core.classifier import load_classifier

    clf = load_classifier(model, backend=backend, input_size=size)
    rgb = np.ascontiguousarray(np.resize(data.chelsea(), (*frame, 3)).astype(np.uint8))
    clf.warm_up(3)

    def timed(fn, arg, budget):
        times = []
        t_end = time.perf_counter() + budget
        while time.perf_counter() < t_end or len(times) < 5:
            t0 = time.perf_counter()
            fn(arg)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    # The network call alone (model throughput), then a whole frame as the node does it
    # without ROS: preprocessing (resize, crop, normalise) + network + softmax/top-k.
    net = timed(clf.backend.run, clf.preprocess(rgb), seconds / 2)
    frame = timed(clf.predict, rgb, seconds / 2)
    return {
        'fps': 1000.0 / statistics.mean(net),
        'p50_ms': _percentile(net, 50),
        'p99_ms': _percentile(net, 99),
        'frame_fps': 1000.0 / statistics.mean(frame),
        'frame_p50_ms': _percentile(frame, 50),
        'runs': len(net) + len(frame),
    }


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
    from cnn_perception.datasets import make_defect_images

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


def _params_file(
    tmp: Path, backend: str, fps: float, width: int, height: int, onnx_only: bool
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
    path = tmp / f'bench_{backend}_{width}x{height}_{fps:.0f}.yaml'
    path.write_text(yaml.safe_dump(params))
    return path


@contextlib.contextmanager
def _pipeline_and_probe(params_file: Path, run_seconds: float, nodes: str | None = None):
    """`run` in its own OS process, a probe node here counting its classifications.

    Yields (process, probe node, executor, results) where results collects
    (receive time, image stamp in ns) per Classification; on exit the probe is destroyed
    and the pipeline stopped with SIGINT; its output is left in `process.log`.
    """
    from cnn_perception_msgs.msg import Classification
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
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('bench_probe', context=ctx)
    got: list[tuple[float, int]] = []
    node.create_subscription(
        Classification,
        f'{NS}/classifier/classification',
        lambda m: got.append((time.time(), m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)),
        10,
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


def pipeline_run(
    nodes: str,
    backend: str,
    camera_fps: float,
    seconds: float,
    width: int = 640,
    height: int = 480,
    watch_images: bool = False,
) -> dict:
    """Start `run` in its own process, measure from a probe in this one."""
    import psutil
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    with tempfile.TemporaryDirectory() as tmp:
        pfile = _params_file(
            Path(tmp), backend, camera_fps, width, height, backend == 'onnxruntime'
        )
        with _pipeline_and_probe(pfile, seconds + 90, nodes) as (proc, node, ex, got):
            if watch_images:  # make the image-producing nodes do their work
                for t in (
                    'classifier/overlay',
                    'defects/heatmap',
                    'feature_maps/mosaic',
                    'feature_maps/cam',
                ):
                    node.create_subscription(
                        Image, f'{NS}/{t}', lambda m: None, qos_profile_sensor_data
                    )
            deadline = time.monotonic() + 120
            while not got and time.monotonic() < deadline and proc.poll() is None:
                ex.spin_once(timeout_sec=0.1)
            t_warm = time.monotonic() + 2.0  # skip start-up transients
            while time.monotonic() < t_warm:
                ex.spin_once(timeout_sec=0.05)
            start = len(got)
            t0 = time.monotonic()
            while time.monotonic() - t0 < seconds:
                ex.spin_once(timeout_sec=0.05)
            window = got[start:]
            elapsed = time.monotonic() - t0
            try:
                rss = psutil.Process(proc.pid).memory_info().rss / 1e6
                hwm = _vm_hwm_mb(proc.pid) or rss
            except psutil.Error:
                hwm = float('nan')
    log = proc.log
    if not window:
        raise RuntimeError(
            f'bench: no results from `run --nodes {nodes}` in {seconds:.0f} s; '
            'its output ended with:\n' + log[-3000:]
        )
    lat = [(t - s / 1e9) * 1000 for t, s in window]
    half = len(lat) // 2
    return {
        'fps': len(window) / elapsed if elapsed > 0 else 0.0,
        'latency_ms': {
            'p50': _percentile(lat, 50),
            'p99': _percentile(lat, 99),
            'p99_first_half': _percentile(lat[:half], 99),
            'p99_second_half': _percentile(lat[half:], 99),
        },
        'rss_mb': hwm,
        'torch_loaded': 'torch loaded' in log,
        'results': len(window),
    }


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
) -> dict:
    from cnn_perception.core.classifier import load_classifier

    # Make sure every ONNX file the torch-free path needs exists before measuring it.
    load_classifier(model, backend='onnxruntime', input_size=size)
    from cnn_perception.core import feature_maps as fm
    from cnn_perception.core.defects import FeatureExtractor, load_defect_model

    load_defect_model('builtin:brick', log=log)
    FeatureExtractor()
    fm.FeatureMapModel()

    res: dict = {
        'machine': _machine(),
        'model': {},
        'settings': {
            'model': model,
            'size': size,
            'seconds': seconds,
            'camera_overload': overload,
        },
    }
    for b in backends:
        log(f'bench: model alone, {b} ...')
        res['model'][b] = model_only(b, size, seconds, model)
    ort = res['model']['onnxruntime']
    res['model']['onnxruntime_vs_torch'] = (
        ort['fps'] / res['model']['torch']['fps'] if 'torch' in res['model'] else None
    )
    # Overload: a camera 25% faster than the model can keep up with. Every camera frame
    # costs CPU in the same process (render, serialise, publish), so a harsher overload
    # measures the camera more than the ROS overhead (1.5x: ratio about 0.77 here).
    log('bench: defect scoring vs classifier at the same input size ...')
    res['defects'] = defect_cost(seconds, 'onnxruntime')
    cam_fps = max(30.0, overload * ort['frame_fps'])
    log(f'bench: pipeline, classifier alone, camera at {cam_fps:.0f} fps ...')
    solo = pipeline_run('camera,classifier', 'onnxruntime', cam_fps, seconds)
    res['pipeline'] = {
        'fps': solo['fps'],
        'model_fps': ort['frame_fps'],
        'ratio': solo['fps'] / ort['frame_fps'],
        'camera_fps': cam_fps,
        'latency_ms': solo['latency_ms'],
        'latency_p99_over_model_p50': solo['latency_ms']['p99'] / ort['frame_p50_ms'],
    }
    log('bench: pipeline, all four nodes (images watched) ...')
    full = pipeline_run(
        'camera,classifier,defects,features', 'onnxruntime', cam_fps, seconds, watch_images=True
    )
    res['all_nodes'] = {
        'classifier_fps': full['fps'],
        'ratio_to_solo': full['fps'] / solo['fps'],
        'latency_ms': full['latency_ms'],
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


def _machine() -> dict:
    import onnxruntime

    return {
        'cpu': platform.processor() or platform.machine(),
        'cores': os.cpu_count(),
        'python': platform.python_version(),
        'onnxruntime': onnxruntime.__version__,
        'date': time.strftime('%Y-%m-%d'),
    }


def markdown(res: dict) -> str:
    m, p, a, r = res['model'], res['pipeline'], res['all_nodes'], res['rss_mb']
    t = m.get('torch', {})
    o = m['onnxruntime']
    mc = res['machine']
    nan = float('nan')

    def ok(cond) -> str:
        return 'met' if cond else '**not met**'

    lines = [
        f'Machine: {mc["cores"]} cores ({mc["cpu"]}), Python {mc["python"]}, ONNX Runtime '
        f'{mc["onnxruntime"]}, {mc["date"]}. Model {res["settings"]["model"]} at '
        f'{res["settings"]["size"]}x{res["settings"]["size"]}, {res["settings"]["seconds"]:.0f} s '
        'per measurement. All figures from one run of `python -m cnn_perception bench`.',
        '',
        '| measurement | value | target | |',
        '|---|---|---|---|',
        f'| model alone, torch eager (network call) | {t.get("fps", nan):.1f} fps, p50 '
        f'{t.get("p50_ms", nan):.1f} ms, p99 {t.get("p99_ms", nan):.1f} ms | | |',
        f'| model alone, ONNX Runtime (network call) | {o["fps"]:.1f} fps, p50 '
        f'{o["p50_ms"]:.1f} ms, p99 {o["p99_ms"]:.1f} ms | | |',
        f'| ONNX Runtime / torch throughput | {m["onnxruntime_vs_torch"] or 0:.2f}x | >= 3x | '
        f'{ok((m["onnxruntime_vs_torch"] or 0) >= 3)} |',
        f'| a whole 640x480 frame without ROS, ONNX Runtime (preprocess + network + top-k) | '
        f'{o["frame_fps"]:.1f} fps, p50 {o["frame_p50_ms"]:.1f} ms | | |',
        f'| pipeline (camera {p["camera_fps"]:.0f} fps -> classifier -> probe process) | '
        f'{p["fps"]:.1f} results/s | | |',
        f'| pipeline / whole frame without ROS | {p["ratio"]:.2f} | >= 0.85 | '
        f'{ok(p["ratio"] >= 0.85)} |',
        f'| pipeline / network call alone | {p["fps"] / o["fps"]:.2f} | (stricter reading) | |',
        f'| end-to-end latency under overload | p50 {p["latency_ms"]["p50"]:.1f} ms, p99 '
        f'{p["latency_ms"]["p99"]:.1f} ms | p99 <= 3 x frame p50 = {3 * o["frame_p50_ms"]:.1f} '
        f'ms (3 x network p50 = {3 * o["p50_ms"]:.1f} ms) | '
        f'{ok(p["latency_ms"]["p99"] <= 3 * o["frame_p50_ms"])} |',
        f'| latency p99, first half / second half of the run | '
        f'{p["latency_ms"]["p99_first_half"]:.1f} / {p["latency_ms"]["p99_second_half"]:.1f} ms'
        ' | constant (no backlog) | |',
        f'| classifier with all four nodes running | {a["classifier_fps"]:.1f} results/s, '
        f'{a["ratio_to_solo"]:.2f} x solo | >= 0.5 x solo | {ok(a["ratio_to_solo"] >= 0.5)} |',
        f'| peak RSS, classifier alone: torch / ONNX-only | {r["classifier_torch"]:.0f} / '
        f'{r["classifier_onnxruntime"]:.0f} MB | | |',
        f'| peak RSS, all four nodes: torch / ONNX-only | {r["all_nodes_torch"]:.0f} / '
        f'{r["all_nodes_onnxruntime"]:.0f} MB | ONNX-only <= 600 MB | '
        f'{ok(r["all_nodes_onnxruntime"] <= 600)} |',
        f'| torch imported on the ONNX Runtime path | '
        f'{"yes" if res["torch_loaded"]["onnxruntime_path"] else "no"} | no | '
        f'{ok(not res["torch_loaded"]["onnxruntime_path"])} |',
    ]
    if 'defects' in res:
        d = res['defects']
        lines.append(
            f'| defect scoring vs classifier inference_ms, both at {d["input_size"]} px, '
            f'{d["backend"]} | {d["defects_ms"]:.1f} vs {d["classifier_ms"]:.1f} ms = '
            f'{d["ratio"]:.2f}x | <= 2.5x | {ok(d["ratio"] <= 2.5)} |'
        )
    if 'growth' in res:
        lines += [
            '',
            '### How cost grows',
            '',
            '| setting | throughput | latency |',
            '|---|---|---|',
        ]
        for s, v in res['growth']['input_size'].items():
            lines.append(
                f'| model alone, input {s}x{s} | {v["fps"]:.1f} fps | p50 {v["p50_ms"]:.1f} ms |'
            )
        for s, v in res['growth']['camera'].items():
            lines.append(
                f'| pipeline, camera {s} | {v["fps"]:.1f} results/s | p50 '
                f'{v["latency_ms"]["p50"]:.1f} ms, p99 {v["latency_ms"]["p99"]:.1f} ms |'
            )
    return '\n'.join(lines) + '\n'


def write_section(path: Path, tag: str, md: str, title: str) -> None:
    """Replace what lies between `<!-- tag -->` and `<!-- /tag -->` in a markdown file.

    The generated figures go there; the hand-written explanations around them stay.
    """
    start, end = f'<!-- {tag} -->', f'<!-- /{tag} -->'
    text = path.read_text() if path.is_file() else f'{title}\n\n{start}\n'
    if start not in text:
        text = f'{text.rstrip()}\n\n{start}\n'
    head = text.split(start)[0]
    tail = text.split(end)[1] if end in text else '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{head}{start}\n{md}{end}{tail}')


def main_bench(args) -> int:
    res = run_bench(
        args.model,
        args.size,
        args.duration,
        tuple(args.backend or ('torch', 'onnxruntime')),
        not args.no_growth,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    md = markdown(res)
    if args.out:
        write_section(Path(args.out), 'bench', md, '# Benchmarks')
    if args.json:
        print(json.dumps(res))
    else:
        print(md)
    return 0


def soak(seconds: float = 600.0, overload: float = 1.25, sample_s: float = 5.0, log=print) -> dict:
    """All four nodes, camera above capacity, for `seconds`: RSS, latency, exceptions."""
    from diagnostic_msgs.msg import DiagnosticArray
    import psutil

    ort = model_only('onnxruntime', 224, 3.0)
    cam_fps = max(30.0, overload * ort['frame_fps'])
    errors: dict[str, int] = {}

    def on_diag(m):
        for s in m.status:
            for kv in s.values:
                if kv.key in ('inference_errors', 'bad_frames'):
                    errors[f'{s.name}:{kv.key}'] = int(kv.value)

    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        pfile = _params_file(Path(tmp), 'onnxruntime', cam_fps, 640, 480, True)
        with _pipeline_and_probe(pfile, seconds + 120) as (proc, node, ex, results):
            node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
            while not results and proc.poll() is None:
                ex.spin_once(timeout_sec=0.1)
            t0 = time.monotonic()
            next_sample = t0
            ps = psutil.Process(proc.pid)
            while time.monotonic() - t0 < seconds and proc.poll() is None:
                ex.spin_once(timeout_sec=0.05)
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - t0, ps.memory_info().rss / 1e6))
                    next_sample += sample_s
                    if len(samples) % 12 == 0:
                        log(
                            f'soak: {samples[-1][0]:.0f} s, RSS {samples[-1][1]:.0f} MB, '
                            f'{len(results)} results'
                        )
            alive = proc.poll() is None
    out = proc.log
    got = [(t, (t - ns / 1e9) * 1000) for t, ns in results]
    t_start = got[0][0] if got else 0
    per_min: dict[int, list[float]] = {}
    for t, lat in got:
        per_min.setdefault(int((t - t_start) // 60), []).append(lat)
    after_first = [r for t, r in samples if t >= 60]
    growth = (max(after_first) / after_first[0] - 1) if len(after_first) > 1 else float('nan')
    return {
        'seconds': seconds,
        'camera_fps': cam_fps,
        'results': len(got),
        'results_per_s': len(got) / seconds,
        'alive_at_end': alive,
        'tracebacks': out.count('Traceback'),
        'error_counters': errors,
        'rss_mb': {
            'at_60s': after_first[0] if after_first else float('nan'),
            'max_after_60s': max(after_first) if after_first else float('nan'),
            'end': samples[-1][1] if samples else float('nan'),
            'growth_after_first_minute': growth,
        },
        'latency_p99_per_minute_ms': {m: _percentile(v, 99) for m, v in sorted(per_min.items())},
        'latency_p50_ms': _percentile([lat for _, lat in got], 50),
    }


def soak_markdown(r: dict) -> str:
    mins = r['latency_p99_per_minute_ms']
    lines = [
        f'Run: `make soak` (all four nodes, desktop configuration, ONNX Runtime, camera `test:` '
        f'640x480 at {r["camera_fps"]:.0f} fps = 1.25x what the classifier can do), '
        f'{r["seconds"] / 60:.0f} minutes, {time.strftime("%Y-%m-%d")}.',
        '',
        '| figure | value | target |',
        '|---|---|---|',
        f'| results received | {r["results"]} ({r["results_per_s"]:.1f}/s) | |',
        f'| pipeline alive at the end | {"yes" if r["alive_at_end"] else "NO"} | yes |',
        f'| tracebacks in the log | {r["tracebacks"]} | 0 |',
        f'| error counters on /diagnostics | {r["error_counters"] or "none"} | none |',
        f'| RSS at 60 s / max after / at the end | {r["rss_mb"]["at_60s"]:.0f} / '
        f'{r["rss_mb"]["max_after_60s"]:.0f} / {r["rss_mb"]["end"]:.0f} MB | |',
        f'| RSS growth after the first minute | '
        f'{100 * r["rss_mb"]["growth_after_first_minute"]:.1f} % | < 5 % |',
        f'| latency p50 over the run | {r["latency_p50_ms"]:.1f} ms | |',
        '| latency p99 per minute | '
        + ', '.join(f'{v:.0f}' for v in mins.values())
        + ' ms | stable |',
    ]
    return '\n'.join(lines) + '\n'


def main_soak(args) -> int:
    res = soak(args.duration, log=lambda s: print(s, file=sys.stderr, flush=True))
    md = soak_markdown(res)
    if args.out:
        write_section(Path(args.out), 'soak', md, '# Reliability')
    print(json.dumps(res) if args.json else md)
    return 0
