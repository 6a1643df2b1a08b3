"""From detections to an inspection result, live and offline, against a known wall.

The flight (`tools/inspection_flight.py`): a 20 m brick wall with 10 painted defects at known
positions, a camera sweeping along it at 1.6 m/s (80% overlap), a NavSatFix track. The
detector is fitted the way a user would: `defects fit` on a clean baseline flight.
"""

import csv
from datetime import UTC, datetime
import json
import shutil
import subprocess
import sys

from cnn_perception_msgs.msg import DefectEvent, DetectionArray
from conftest import cli_run, run_cli, stop_process, wait_for_line
import cv2
import pytest
import yaml

from cnn_perception import contract
from cnn_perception.tools.inspection_flight import (
    FIX_TOPIC,
    IMAGE_TOPIC,
    TRUTH,
    clean_flight,
    make_inspection_bag,
    score_findings,
)

DOCUMENTED = {
    'id', 'score', 'first_seen', 'last_seen', 'frames', 'seen_centred', 'latitude',
    'longitude', 'altitude', 'east_m', 'north_m',
}  # fmt: skip


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    d = tmp_path_factory.mktemp('inspection')
    # as a real flight goes: take-off over grass, sky, a cup and a cat, then the wall;
    # GNSS at 4 Hz and odometry at 20 Hz, not with the frames
    make_inspection_bag(d / 'flight', takeoff=True, fix_hz=4.0, odom_hz=20.0)
    make_inspection_bag(d / 'clean', defects=0, takeoff=True, fix_hz=4.0)
    (d / 'baseline').mkdir()
    for i, f in enumerate(clean_flight()):
        cv2.imwrite(str(d / 'baseline' / f'{i:03d}.png'), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    r = cli_run('defects', 'fit', '--normal', d / 'baseline', '--out', d / 'wall.npz')
    assert r.returncode == 0, r.stderr
    assert 'calibration: kfold' in r.stdout
    return d


@pytest.fixture(scope='module')
def reports(site):
    out = {}
    for name in ('flight', 'clean'):
        r = cli_run('report', site / name, '--defects', site / 'wall.npz', '--out',
                    site / f'report_{name}')  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        out[name] = r
    return out


def truth(site):
    return json.loads((site / 'flight' / TRUTH).read_text())


def csv_rows(path):
    rows = list(csv.DictReader(open(path)))
    for r in rows:
        for k in ('latitude', 'longitude'):
            r[k] = float(r[k]) if r[k] else None
    return rows


def test_report_finds_each_defect_once_where_it_is(site, reports):
    m = score_findings(csv_rows(site / 'report_flight' / 'defects.csv'), truth(site))
    print('offline report:', m, reports['flight'].stdout.splitlines()[-2])
    assert m['recall'] >= 0.9 and m['precision'] >= 0.9, m
    assert m['duplicates'] == 0 and m['median_position_error_m'] <= 0.5, m


def test_the_take_off_is_not_inspected_and_has_no_defect(site, reports):
    """Grass, sky, a cup and a cat are off the wall: listed apart, never a defect."""
    t = truth(site)['takeoff']
    for name in ('flight', 'clean'):
        stretches = list(csv.DictReader(open(site / f'report_{name}' / 'not_inspected.csv')))
        assert [int(s['frames']) for s in stretches] == [t['frames']], stretches
        assert float(stretches[0]['from_latitude']) < float(stretches[0]['to_latitude'])
        assert f'{t["frames"]} not inspected' in reports[name].stdout
    last_off = datetime.fromtimestamp(t['last_ns'] / 1e9, UTC).isoformat()[:23]
    for r in csv_rows(site / 'report_flight' / 'defects.csv'):  # ISO times sort as text
        assert r['first_seen'] > last_off, r
    html = (site / 'report_flight' / 'report.html').read_text()
    assert f'<b>{t["frames"]}</b>frames not inspected' in html


def test_clean_wall_reports_no_defect(site, reports):
    rows = csv_rows(site / 'report_clean' / 'defects.csv')
    assert rows == [], rows


def test_geojson_is_points_with_the_documented_properties(site, reports):
    g = json.loads((site / 'report_flight' / 'defects.geojson').read_text())
    assert g['type'] == 'FeatureCollection' and len(g['features']) >= 9
    for f in g['features']:
        assert f['type'] == 'Feature' and f['geometry']['type'] == 'Point'
        lon, lat = f['geometry']['coordinates']
        assert set(f['properties']) == DOCUMENTED
        assert (lat, lon) == (f['properties']['latitude'], f['properties']['longitude'])
        assert 47.39 < lat < 47.40 and 8.54 < lon < 8.55


def test_tracking_costs_little_of_the_defect_step(reports):
    line = next(ln for ln in reports['flight'].stdout.splitlines() if 'tracking' in ln)
    share = float(line.rsplit('(', 1)[1].split('%')[0])
    assert share <= 10.0, line


def _browser_reason() -> str | None:
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None:
        return 'no chromium (Debian package chromium; `make setup` installs it as root)'
    try:
        import playwright  # noqa: F401
    except ImportError:
        return 'playwright (Python) is not installed'
    return None


@pytest.mark.skipif(_browser_reason() is not None, reason=str(_browser_reason()))
def test_report_renders_in_a_real_browser(site, reports, tmp_path):
    """Headless Chromium: a screenshot that is not blank, every image loaded, no errors."""
    from playwright.sync_api import sync_playwright

    page_errors = []
    shot = tmp_path / 'report.png'
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=shutil.which('chromium') or shutil.which('chromium-browser'),
            args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-component-update', '--no-first-run'],
        )  # fmt: skip
        page = browser.new_page(viewport={'width': 1200, 'height': 900})
        page.on('console', lambda m: page_errors.append(m.text) if m.type == 'error' else None)
        page.on('pageerror', lambda e: page_errors.append(str(e)))
        page.goto((site / 'report_flight' / 'report.html').as_uri())
        page.wait_for_load_state('load')
        images = page.evaluate(
            '[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])'
        )
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert page_errors == []
    assert len(images) >= 1 + 2 * 9 and all(ok for _, ok in images), images
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[0] > 900 and img.std() > 20  # not blank


def test_live_path_gives_the_same_defects(site, probe, tmp_path):
    """Bag play -> the defect node with tracking -> DefectEvents, over DDS."""
    events = probe.listen(DefectEvent, contract.DEFECT_EVENTS.full(), 100)
    dets = probe.listen(DetectionArray, contract.DETECTIONS.full(), 100)
    params = tmp_path / 'p.yaml'
    params.write_text(
        yaml.safe_dump(
            {
                '/**/defect_detector': {
                    'ros__parameters': {
                        'model': str(site / 'wall.npz'),
                        'fix_topic': FIX_TOPIC,
                        'max_rate_hz': 0.0,
                    }
                }
            }
        )
    )
    pipe = run_cli('run', '--nodes', 'defects', '--params-file', str(params), '--image-topic',
                   IMAGE_TOPIC, '--duration', '300')  # fmt: skip
    try:
        assert wait_for_line(pipe, 'pipeline: running', 120), ''.join(pipe.lines)
        play = subprocess.run(
            [sys.executable, '-m', 'cnn_perception', 'bag', 'play', str(site / 'flight')],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert play.returncode == 0, play.stderr
        ended = lambda: [m for _, m in events if m.event == DefectEvent.ENDED]  # noqa: E731
        assert probe.spin_until(lambda: len(dets) >= 79 and len(ended()) >= 9, 60), (
            len(dets), len(events), ''.join(pipe.lines[-20:]))  # fmt: skip
        # a last track ends a few frames after it was last seen: wait for its ENDED event
        # (a fixed 2 s was too short on a loaded machine: 9 of 10 in one full-suite run)
        confirmed_now = lambda: [m for _, m in events if m.event == DefectEvent.CONFIRMED]  # noqa: E731
        probe.spin_until(lambda: len(ended()) >= len(confirmed_now()), 15)
    finally:
        log = stop_process(pipe)
    assert 'Traceback' not in log
    rows = [
        {'latitude': m.fix.latitude, 'longitude': m.fix.longitude} for m in ended() if m.has_fix
    ]
    m = score_findings(rows, truth(site))
    confirmed = [e for _, e in events if e.event == DefectEvent.CONFIRMED]
    print('live path:', m, f'{len(confirmed)} confirmed, {len(dets)} frames scored')
    assert m['recall'] >= 0.9 and m['precision'] >= 0.9, m
    assert m['duplicates'] == 0 and m['median_position_error_m'] <= 0.5, m
    assert len(confirmed) == len(ended())
    # the take-off frames arrive flagged off the surface, without boxes
    off = [a for _, a in dets if a.off_surface]
    assert 20 <= len(off) <= truth(site)['takeoff']['frames'] and not any(
        a.detections for a in off
    )
    ev = ended()[0]
    assert ev.crop.format.startswith('rgb8; jpeg') and 0 < len(ev.crop.data) < 20000
    ids = {d.id for _, a in dets for d in a.detections}
    assert {e.track_id for e in confirmed} <= ids  # the boxes carry the track ids


def test_bag_process_writes_annotations_foxglove_decodes(site, tmp_path):
    """The annotation channel as Foxglove reads it: mcap + mcap-ros2-support."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out = tmp_path / 'out'
    r = cli_run('bag', 'process', site / 'flight', out, '--defects', site / 'wall.npz',
                '--classifier')  # fmt: skip
    assert r.returncode == 0, r.stderr
    ann_topic = contract.DEFECT_ANNOTATIONS.full()
    got, images, schemas = [], set(), {}
    with open(next(out.glob('*.mcap')), 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, _, decoded in reader.iter_decoded_messages():
            schemas[channel.topic] = schema.name
            if channel.topic == ann_topic:
                got.append(decoded)
            elif channel.topic == IMAGE_TOPIC:
                images.add((decoded.header.stamp.sec, decoded.header.stamp.nanosec))
    assert schemas[ann_topic] == 'foxglove_msgs/msg/ImageAnnotations'
    assert schemas[contract.CLASSIFIER_ANNOTATIONS.full()] == 'foxglove_msgs/msg/ImageAnnotations'
    assert len(got) == 84
    boxed = [a for a in got if a.points]
    assert len(boxed) >= 30
    for a in boxed:
        p = a.points[0]
        assert p.type == 2 and len(p.points) == 4  # a closed box
        assert (p.timestamp.sec, p.timestamp.nanosec) in images  # the image's stamp
        assert a.texts and a.texts[0].text.startswith('d')  # its track id
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(
        contract.DEFECT_EVENTS.full()))  # fmt: skip
    assert int(line.rsplit(':', 1)[1]) == 20  # 10 defects, confirmed and ended
