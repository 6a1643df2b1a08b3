"""The benchmark harness runs end to end on a tiny setting (figures: docs/benchmarks.md)."""

import json
import subprocess
import sys

KEYS = [
    ('model', 'torch', 'fps'),
    ('model', 'torch', 'p50_ms'),
    ('model', 'torch', 'p99_ms'),
    ('model', 'onnxruntime', 'fps'),
    ('model', 'onnxruntime', 'p50_ms'),
    ('model', 'onnxruntime', 'p99_ms'),
    ('pipeline', 'fps'),
    ('pipeline', 'model_fps'),
    ('pipeline', 'ratio'),
    ('pipeline', 'latency_ms', 'p50'),
    ('pipeline', 'latency_ms', 'p99'),
    ('all_nodes', 'classifier_fps'),
    ('all_nodes', 'ratio_to_solo'),
    ('all_nodes', 'solo_fps'),
    ('all_nodes', 'defect_fps'),
    ('all_nodes', 'defect_max_rate_hz'),
    ('rss_mb', 'classifier_torch'),
    ('rss_mb', 'classifier_onnxruntime'),
    ('rss_mb', 'all_nodes_torch'),
    ('rss_mb', 'all_nodes_onnxruntime'),
    ('defects', 'classifier_ms'),
    ('defects', 'defects_ms'),
    ('defects', 'ratio'),
    ('pi', 'rss_mb'),
    ('one_process', 'shared_ratio'),
    ('one_process', 'own_passes_ratio'),
]


def test_bench_json_has_every_figure(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            '-m',
            'cnn_perception',
            'bench',
            '--duration',
            '2',
            '--no-growth',
            '--repeats',
            '2',
            '--json',
            '--out',
            str(tmp_path / 'b.md'),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    for key in KEYS:
        v = out
        for k in key:
            v = v[k]
        assert isinstance(v, float | int) and v == v, key  # a number, not NaN
    assert out['pipeline']['fps'] > 0 and out['rss_mb']['all_nodes_onnxruntime'] > 50
    assert out['torch_loaded'] == {'onnxruntime_path': False, 'torch_path': True}
    assert out['pi']['torch_loaded'] is False and out['pi']['fps'] > 0  # INT8, pi.yaml
    md = (tmp_path / 'b.md').read_text()
    assert '| pipeline / whole frame without ROS (in turns' in md and '| defect scoring vs' in md
    assert '| Pi configuration (pi.yaml, INT8 classifier' in md
    assert len(out['repeats']) == 2 and 'min..max' in md  # ratios repeated within the run
    # the whole frame without ROS, the classifier pipeline and all four nodes took turns
    for r in out['repeats']:
        assert all(len(v) >= 2 and min(v) > 0 for v in r['slice_fps'].values()), r
    assert out['all_nodes']['defect_fps'] > 0, 'the defect detector ran beside the classifier'
    assert md.startswith('# Benchmarks') and '<!-- /bench -->' in md


def test_bench_and_soak_keep_the_hand_written_notes(tmp_path):
    from cnn_perception.tools.bench_report import write_section

    doc = tmp_path / 'b.md'
    doc.write_text('# B\n\nintro\n\n<!-- bench -->\nold figures\n<!-- /bench -->\n\n## Notes\n')
    write_section(doc, 'bench', 'new figures\n', '# B')
    assert doc.read_text() == (
        '# B\n\nintro\n\n<!-- bench -->\nnew figures\n<!-- /bench -->\n\n## Notes\n'
    )
