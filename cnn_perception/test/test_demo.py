"""`demo` (what `make demo` runs) writes its three files, and the summary tells the truth."""

import json
import re
import subprocess
import sys

import cv2


def test_demo_outputs_match_the_bag(tmp_path):
    out = tmp_path / 'demo_output'
    res = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', 'demo', '--out', str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for name in ('demo.mcap', 'summary.png', 'summary.md'):
        assert (out / name).is_file(), name
    sheet = cv2.imread(str(out / 'summary.png'))
    assert sheet is not None and sheet.shape[1] == 1200 and sheet.std() > 20
    info = subprocess.run(
        [sys.executable, '-m', 'cnn_perception', 'bag', 'info', str(out / 'demo'), '--json'],
        capture_output=True,
        text=True,
    )
    counts = {t: v['count'] for t, v in json.loads(info.stdout)['topics'].items()}
    md = (out / 'summary.md').read_text()
    table = dict(re.findall(r'\| `(/cnn_perception/[^`]+)` \| (\d+) \|', md))
    assert table and {t: int(n) for t, n in table.items()} == {t: counts.get(t, 0) for t in table}
    assert counts['/cnn_perception/classifier/classification'] == 12  # every frame
    assert counts['/cnn_perception/defects/detections'] == 12
    seen = re.findall(r'^- (.+): (\d+) frame', md, re.M)
    assert sum(int(n) for _, n in seen) == 12
    assert any(label == 'espresso' for label, _ in seen)
