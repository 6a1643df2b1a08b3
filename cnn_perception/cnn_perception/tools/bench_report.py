"""Markdown for docs/benchmarks.md and docs/reliability.md from bench and soak results."""

import os
from pathlib import Path
import platform
import time


def machine_info() -> dict:
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

    reps = res.get('repeats', [])

    def spread(key: str, unit: str = '') -> str:
        """' (min..max of N)' over the repeats of this run."""
        if len(reps) < 2:
            return ''
        vals = [r[key] for r in reps]
        return f' (min..max {min(vals):.2f}..{max(vals):.2f}{unit} of {len(vals)})'

    def met(key: str) -> str:
        return f'{sum(bool(r.get(key)) for r in reps)} of {len(reps)} repeats'

    shared = ' (one shared backbone pass)' if a.get('shared_backbone') else ''

    lines = [
        f'Machine: {mc["cores"]} cores ({mc["cpu"]}), Python {mc["python"]}, ONNX Runtime '
        f'{mc["onnxruntime"]}, {mc["date"]}. Model {res["settings"]["model"]} at '
        f'{res["settings"]["size"]}x{res["settings"]["size"]}, {res["settings"]["seconds"]:.0f} s '
        'per measurement. All figures from one run of `python -m cnn_perception bench`. '
        'The pipeline rows: the whole frame without ROS, the classifier pipeline and all four '
        'nodes, each in its own process, take 1 s turns in the same minute (the others '
        'stopped), repeated within the run; each such figure from its median repeat, with '
        'min..max.',
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
        f'| pipeline / whole frame without ROS (in turns: {p["model_fps"]:.1f} fps) | '
        f'{p["ratio"]:.2f}{spread("ratio")} | '
        f'>= 0.85; met in {met("ratio_ok")} | {ok(p["ratio"] >= 0.85)} |',
        f'| pipeline / network call alone | {p["fps"] / o["fps"]:.2f} | (stricter reading) | |',
        f'| end-to-end latency under overload | p50 {p["latency_ms"]["p50"]:.1f} ms, p99 '
        f'{p["latency_ms"]["p99"]:.1f} ms{spread("p99_ms", " ms")} | p99 <= 3 x frame p50 = '
        f'{3 * p["model_frame_p50_ms"]:.1f} ms; met in {met("p99_ok")} | '
        f'{ok(p["latency_ms"]["p99"] <= 3 * p["model_frame_p50_ms"])} |',
        f'| latency p99, first half / second half of the run | '
        f'{p["latency_ms"]["p99_first_half"]:.1f} / {p["latency_ms"]["p99_second_half"]:.1f} ms'
        ' | constant (no backlog) | |',
        f'| classifier with all four nodes running{shared} (in turns: the classifier alone '
        f'{a.get("solo_fps", nan):.1f} results/s) | {a["classifier_fps"]:.1f} results/s, '
        f'{a["ratio_to_solo"]:.2f} x solo{spread("all_over_solo")} | >= 0.8 x solo; met in '
        f'{met("all_ok")} | {ok(a["ratio_to_solo"] >= 0.8)} |',
        f'| ... the defect detector meanwhile (its max_rate_hz: '
        f'{a.get("defect_max_rate_hz", nan):.0f}) | {a.get("defect_fps", nan):.1f} results/s '
        '| | |',
        f'| peak RSS, classifier alone: torch / ONNX-only | {r["classifier_torch"]:.0f} / '
        f'{r["classifier_onnxruntime"]:.0f} MB | | |',
        f'| peak RSS, all four nodes: torch / ONNX-only | {r["all_nodes_torch"]:.0f} / '
        f'{r["all_nodes_onnxruntime"]:.0f} MB | ONNX-only <= 600 MB | '
        f'{ok(r["all_nodes_onnxruntime"] <= 600)} |',
        f'| torch imported on the ONNX Runtime path | '
        f'{"yes" if res["torch_loaded"]["onnxruntime_path"] else "no"} | no | '
        f'{ok(not res["torch_loaded"]["onnxruntime_path"])} |',
    ]
    if 'pi' in res:
        pi = res['pi']
        lines += [
            f'| Pi configuration (pi.yaml, INT8 classifier, all four nodes, ONNX Runtime): '
            f'peak RSS | {pi["rss_mb"]:.0f} MB | <= 450 MB | {ok(pi["rss_mb"] <= 450)} |',
            f'| torch imported on the Pi path | {"yes" if pi["torch_loaded"] else "no"} | no | '
            f'{ok(not pi["torch_loaded"])} |',
        ]
    if 'defects' in res:
        d = res['defects']
        lines.append(
            f'| defect scoring vs classifier inference_ms, both at {d["input_size"]} px, '
            f'{d["backend"]} | {d["defects_ms"]:.1f} vs {d["classifier_ms"]:.1f} ms = '
            f'{d["ratio"]:.2f}x | <= 2.5x | {ok(d["ratio"] <= 2.5)} |'
        )
    if 'one_process' in res:
        c = res['one_process']
        rs = c['shared_ratios']
        lines.append(
            f'| classifier + defects on every frame, one shared pass / classifier alone '
            f'({c["classifier_ms"]:.1f} ms; photograph frames, one process) | '
            f'{c["shared_ratio"]:.2f}x (min..max {min(rs):.2f}..{max(rs):.2f} of {len(rs)}); '
            f'own passes {c["own_passes_ratio"]:.2f}x | <= 1.3x | {ok(c["shared_ratio"] <= 1.3)} |'
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
