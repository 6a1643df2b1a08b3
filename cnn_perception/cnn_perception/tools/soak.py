"""`soak`: all four nodes above capacity for a long run; RSS, latency, errors per minute."""

import json
from pathlib import Path
import sys
import tempfile
import time

from cnn_perception.tools.bench_models import model_only, percentile
from cnn_perception.tools.bench_pipeline import params_file_for, pipeline_and_probe
from cnn_perception.tools.bench_report import write_section


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
        pfile = params_file_for(Path(tmp), 'onnxruntime', cam_fps, 640, 480, True)
        with pipeline_and_probe(pfile, seconds + 120) as (proc, node, ex, results):
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
        'latency_p99_per_minute_ms': {m: percentile(v, 99) for m, v in sorted(per_min.items())},
        'latency_p50_ms': percentile([lat for _, lat in got], 50),
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
