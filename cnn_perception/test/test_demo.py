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
    frames = json.loads((out / 'flight' / 'inspection_truth.json').read_text())['frames']
    # every frame classified; a defect array may be dropped under load (sensor-data QoS)
    assert counts['/cnn_perception/classifier/classification'] == frames
    assert counts['/cnn_perception/defects/detections'] >= frames - 3
    seen = re.findall(r'^- (.+): (\d+) frame\(s\)$', md.split('## Objects')[0], re.M)
    assert sum(int(n) for _, n in seen) == frames
    assert any(label == 'espresso' for label, _ in seen)
    # the report against the flight's truth: each painted defect once, the take-off
    # (grass, sky, a cup, a cat) not inspected
    row = re.search(
        r'\| defects on the wall \| (\d+) \| (\d+) found, (\d+) twice, (\d+) false', md
    )
    true, found, twice, false = map(int, row.groups())
    assert true >= 8 and found >= 0.9 * true and twice == 0 and false <= 0.1 * found, md
    err = re.search(r'\| median position error \| 0 m \| ([\d.]+) m \|', md)
    assert float(err.group(1)) <= 0.5
    off = re.search(r'\| take-off frames \(.*\) \| (\d+) not inspected \| (\d+) not inspected', md)
    assert off.group(1) == off.group(2), md
    html = (out / 'report' / 'report.html').read_text()
    assert f'<b>{found}</b>distinct defects' in html
