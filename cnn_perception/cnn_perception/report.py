"""The flight report: every distinct defect of a flight, where it was, what it looked like.

`python -m cnn_perception report BAG --defects MODEL --out DIR` runs the defect node's step
(tracking and geotags included: `steps/defects.py`, `steps/inspection.py`) over the bag's
camera frames, with the drone's positions from the bag (NavSatFix, PoseStamped or
Odometry topics, found by type), and writes:
- report.html: self-contained (images inline), one card per defect -- best crop, heatmap
  crop, score, first/last seen, frames, position -- a flight-path plot with the defects
  marked (local metres from lat/lon), counts and settings;
- defects.geojson: a FeatureCollection of Points (lon, lat) with the same properties
  (opens in QGIS or geojson.io); defects without a fix have a null geometry;
- defects.csv: one row per defect;
- not_inspected.csv: the stretches of the flight off the surface the model knows (the
  model's gate: take-off over grass, sky, a roof edge), with time, frames and where; the
  report lists them apart from the defects: not looked at is not "no defect".
"""

import base64
import csv
from dataclasses import dataclass, field
import html
import io
import json
from pathlib import Path
import time

import cv2
import numpy as np

from cnn_perception.errors import UserError


@dataclass
class ReportResult:
    findings: list = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    frames: int = 0
    skipped: list[str] = field(default_factory=list)
    image_topic: str = ''
    position_topics: dict[str, str] = field(default_factory=dict)
    path: list[tuple[float, float]] = field(default_factory=list)  # east, north
    detect_ms: float = 0.0  # median per frame, defect scoring
    tracking_ms: float = 0.0  # median per frame, tracks + geotags + events
    settings: dict = field(default_factory=dict)
    quirks: list[str] = field(default_factory=list)  # what was unusual in the bag
    not_inspected: list[dict] = field(default_factory=list)  # off-surface stretches
    gated: bool = True  # the model has an off-surface gate


def _iso(ns: int) -> str:
    return (
        time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ns / 1e9)) + f'.{ns % 10**9 // 10**6:03d}Z'
    )


def run(
    bag: Path,
    defects: str,
    image_topic: str | None = None,
    params_file: Path | None = None,
    log=print,
    step=None,
) -> ReportResult:
    """Process the bag with the defect step and tracking; returns the findings.

    `step`: a defect step built before (`build_steps`, tracking on) to reuse, its model
    loaded once for many bags (`fleet.py`); it is reset first.
    """
    from cnn_perception.bagtools.offline import build_steps, drive
    from cnn_perception.io.bags import BagReader, norm_topic
    from cnn_perception.steps.inspection import POSITION_TYPES

    with BagReader(bag) as reader:
        conns = reader.image_connections(image_topic)
        if step is None:
            (step,) = build_steps({'defects': defects}, params_file, {'tracking': True}, log)
        step.reset()
        p = step.p
        res = ReportResult(settings={k: p[k] for k in (
            'model', 'backend', 'tile', 'sensitivity', 'min_area', 'confirm_frames',
            'end_after_frames')})  # fmt: skip
        insp = step.inspector
        pos = [c for c in reader.connections if c.msgtype in POSITION_TYPES]
        for c in pos:
            kind = POSITION_TYPES[c.msgtype].removesuffix('_topic')
            res.position_topics.setdefault(kind, norm_topic(c.topic))
        for conn, _, raw in reader.messages(pos):
            try:
                insp.add_position(conn.msgtype, reader.deserialize(raw, conn.msgtype))
            except Exception:  # a bad position message is skipped like a bad frame
                continue
        detect, track = [], []

        def timed(frame, outs) -> None:
            for _, _, ms in outs:
                if ms is not None:  # not the end-of-bag `finish`
                    detect.append(ms - step.tracking_ms)
                    track.append(step.tracking_ms)

        run = drive(reader, conns, [step], timed, desc='report')
    res.image_topic, res.frames, res.quirks = run.image_topic, run.frames, run.quirks
    res.skipped = run.skipped + [f'{f} (step failed)' for f in run.failed]
    if res.frames == 0:
        raise UserError(f'{bag}: not one frame of {res.image_topic} could be read')
    res.detect_ms, res.tracking_ms = float(np.median(detect)), float(np.median(track))
    res.findings = insp.findings
    res.path = insp.positions.path()
    res.rows = [_row(f) for f in res.findings]
    res.not_inspected = [_stretch_row(s, insp) for s in insp.not_inspected]
    res.gated = step.detector.model.gate > 0
    return res


STRETCH_FIELDS = ('first', 'last', 'seconds', 'frames', 'from_east_m', 'from_north_m',
                  'to_east_m', 'to_north_m', 'from_latitude', 'from_longitude',
                  'to_latitude', 'to_longitude')  # fmt: skip


def _stretch_row(s, insp) -> dict:
    """One off-surface stretch: when, how many frames, from where to where."""
    row = {'first': _iso(s.first_ns), 'last': _iso(s.last_ns),
           'seconds': round((s.last_ns - s.first_ns) / 1e9, 3), 'frames': s.frames}  # fmt: skip
    for end, ns in (('from', s.first_ns), ('to', s.last_ns)):
        p = insp.position_at(ns)
        row[f'{end}_east_m'] = round(p.east_m, 3) if p else None
        row[f'{end}_north_m'] = round(p.north_m, 3) if p else None
        row[f'{end}_latitude'] = p.latitude if p and p.has_fix else None
        row[f'{end}_longitude'] = p.longitude if p and p.has_fix else None
    return row


def not_inspected_frames(res: ReportResult) -> int:
    return sum(r['frames'] for r in res.not_inspected)


FIELDS = (
    'id', 'score', 'first_seen', 'last_seen', 'frames', 'seen_centred', 'latitude',
    'longitude', 'altitude', 'east_m', 'north_m',
)  # fmt: skip


def _row(f) -> dict:
    p = f.position
    return {
        'id': f.id,
        'score': round(f.score, 4),
        'first_seen': _iso(f.first_ns),
        'last_seen': _iso(f.last_ns),
        'frames': f.frames,
        'seen_centred': _iso(f.centre_ns),
        'latitude': p.latitude if p and p.has_fix else None,
        'longitude': p.longitude if p and p.has_fix else None,
        'altitude': p.altitude if p and p.has_fix else None,
        'east_m': round(p.east_m, 3) if p else None,
        'north_m': round(p.north_m, 3) if p else None,
    }


def geojson_text(rows: list[dict]) -> str:
    """Return the rows as a FeatureCollection: Points (lon, lat), null without a fix."""
    features = [
        {
            'type': 'Feature',
            'geometry': {'type': 'Point', 'coordinates': [r['longitude'], r['latitude']]}
            if r['latitude'] is not None
            else None,
            'properties': r,
        }
        for r in rows
    ]
    return json.dumps({'type': 'FeatureCollection', 'features': features}, indent=1)


def write(res: ReportResult, out: Path, bag: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        'csv': out / 'defects.csv',
        'geojson': out / 'defects.geojson',
        'html': out / 'report.html',
        'not_inspected': out / 'not_inspected.csv',
    }
    for path, fields, rows in (
        (paths['csv'], FIELDS, res.rows),
        (paths['not_inspected'], STRETCH_FIELDS, res.not_inspected),
    ):
        with open(path, 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    paths['geojson'].write_text(geojson_text(res.rows))
    paths['html'].write_text(_html(res, bag))
    return paths


CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin-bottom: 4px; } .sub { color: #666; margin-top: 0; }
.counts { display: flex; gap: 16px; margin: 16px 0; }
.counts div { background: #fff; border: 1px solid #ddd; border-radius: 6px;
  padding: 8px 14px; }
.counts b { display: block; font-size: 24px; }
.cards { display: flex; flex-wrap: wrap; gap: 14px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px;
  width: 300px; }
.card h3 { margin: 0 0 6px; font-size: 16px; } .card h3 span { color: #b22; }
.pair { display: flex; gap: 6px; }
.pair img { width: 144px; height: 144px; object-fit: contain; background: #222; }
dl { display: grid; grid-template-columns: 90px 1fr; margin: 8px 0 0; font-size: 13px; }
dt { color: #666; } dd { margin: 0; }
table { border-collapse: collapse; font-size: 13px; }
td { border: 1px solid #ddd; padding: 3px 8px; }
"""


def _data_uri(rgb: np.ndarray, fmt: str = '.jpg') -> str:
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    mime = 'image/jpeg' if fmt == '.jpg' else 'image/png'
    return f'data:{mime};base64,' + base64.b64encode(buf.tobytes()).decode()


def flight_plot(res: ReportResult) -> str:
    """Plot the flight path (local metres) with the defects marked; a PNG data URI."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    if res.path:
        e, n = zip(*res.path, strict=True)
        ax.plot(e, n, '-', color='#4a7bd0', lw=1.5, label='flight path')
        ax.plot(e[0], n[0], 'o', color='#4a7bd0', ms=5)
    for i, r in enumerate(res.not_inspected):
        if r['from_east_m'] is not None and r['to_east_m'] is not None:
            ax.plot([r['from_east_m'], r['to_east_m']], [r['from_north_m'], r['to_north_m']],
                    '-', color='#999999', lw=7, alpha=0.45, solid_capstyle='round',
                    label='not inspected (off the surface)' if i == 0 else None)  # fmt: skip
    for r in res.rows:
        if r['east_m'] is not None:
            ax.plot(r['east_m'], r['north_m'], 'X', color='#d03030', ms=9)
            ax.annotate(r['id'], (r['east_m'], r['north_m']), textcoords='offset points',
                        xytext=(4, 6), fontsize=8)  # fmt: skip
    if not res.path and not any(r['east_m'] is not None for r in res.rows):
        ax.text(0.5, 0.5, 'no position source in this bag', ha='center', transform=ax.transAxes)
    if res.not_inspected:
        ax.legend(loc='best', fontsize=8)
    ax.set_xlabel('east (m)')
    ax.set_ylabel('north (m)')
    ax.set_aspect('equal', adjustable='datalim')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png')
    plt.close(fig)
    return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode()


def _stretches_html(res: ReportResult) -> str:
    """Return the off-surface stretches as an HTML table (or say why there are none)."""
    esc = html.escape
    if not res.gated:
        return ('<p>This defect model has no off-surface gate (fitted before it existed): '
                'every frame was inspected.</p>')  # fmt: skip
    if not res.not_inspected:
        return '<p>Every frame looked like the surface the model was fitted on.</p>'

    def where(r, end):
        if r[f'{end}_latitude'] is not None:
            return f'{r[f"{end}_latitude"]:.7f}, {r[f"{end}_longitude"]:.7f}'
        if r[f'{end}_east_m'] is not None:
            return f'{r[f"{end}_east_m"]:.2f} m E, {r[f"{end}_north_m"]:.2f} m N'
        return 'no position'

    rows = ''.join(
        f'<tr><td>{esc(r["first"][11:23])}-{esc(r["last"][11:23])}</td><td>{r["frames"]}</td>'
        f'<td>{esc(where(r, "from"))} to {esc(where(r, "to"))}</td></tr>'
        for r in res.not_inspected
    )
    return (
        f'<p>{not_inspected_frames(res)} frames in {len(res.not_inspected)} stretch(es) did '
        'not look like the surface the model was fitted on (ground, sky, objects): no '
        'defect was looked for there.</p><table><tr><td>time (UTC)</td><td>frames</td>'
        f'<td>where</td></tr>{rows}</table>'
    )


def _html(res: ReportResult, bag: Path) -> str:
    esc = html.escape
    cards = []
    for f, r in zip(res.findings, res.rows, strict=True):
        where = (
            f'{r["latitude"]:.7f}, {r["longitude"]:.7f} ({r["east_m"]:.2f} m E, '
            f'{r["north_m"]:.2f} m N)'
            if r['latitude'] is not None
            else (f'{r["east_m"]:.2f} m E, {r["north_m"]:.2f} m N'
                  if r['east_m'] is not None else 'no position')
        )  # fmt: skip
        cards.append(
            f'<div class="card" id="{esc(f.id)}"><h3>{esc(f.id)} <span>score '
            f'{f.score:.2f}</span></h3><div class="pair"><img alt="{esc(f.id)} crop" '
            f'src="{_data_uri(f.crop)}"><img alt="{esc(f.id)} heatmap" '
            f'src="{_data_uri(f.heat_crop)}"></div><dl><dt>first seen</dt><dd>'
            f'{r["first_seen"]}</dd><dt>last seen</dt><dd>{r["last_seen"]}</dd><dt>frames</dt>'
            f'<dd>{r["frames"]}</dd><dt>position</dt><dd>{esc(where)}</dd></dl></div>'
        )
    settings = ''.join(
        f'<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>' for k, v in res.settings.items()
    )
    sources = ', '.join(f'{k}: {v}' for k, v in res.position_topics.items()) or 'none'
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>Inspection report: {esc(Path(bag).name)}</title><style>{CSS}</style></head>'
        '<body><h1>Inspection report</h1>'
        f'<p class="sub">{esc(str(bag))} &middot; camera {esc(res.image_topic)} &middot; '
        f'positions: {esc(sources)}</p>'
        f'<div class="counts"><div><b>{len(res.findings)}</b>distinct defects</div>'
        f'<div><b>{res.frames}</b>frames processed</div>'
        f'<div><b>{len(res.skipped)}</b>frames skipped</div>'
        f'<div><b>{not_inspected_frames(res)}</b>frames not inspected</div>'
        f'<div><b>{sum(r["latitude"] is not None for r in res.rows)}</b>geotagged</div></div>'
        f'<h2>Flight path</h2><img alt="flight path with defects" src="{flight_plot(res)}">'
        f'<h2>Defects</h2><div class="cards">{"".join(cards) or "<p>No defect found.</p>"}'
        f'</div><h2>Not inspected</h2>{_stretches_html(res)}'
        f'<h2>Settings</h2><table>{settings}</table>'
        + (
            '<h2>About the bag</h2><ul>'
            + ''.join(f'<li>{esc(q)}</li>' for q in res.quirks)
            + '</ul>'
            if res.quirks
            else ''
        )
        + f'<p class="sub">Defect scoring {res.detect_ms:.1f} ms per frame (median), tracking '
        f'and geotags {res.tracking_ms:.2f} ms. Written by cnn_perception report; '
        'defects.geojson and defects.csv beside this file hold the same list.</p>'
        '</body></html>\n'
    )
