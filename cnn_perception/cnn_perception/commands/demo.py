"""`demo`: an inspection flight, end to end, recorded, reported and checked against its truth.

What a user does on a first site: `defects fit` on a clean baseline flight along the
wall, then the inspection flight -- take-off over grass, sky, a table with a cup and a
cat (real photographs), then a sweep along the brick wall with painted defects at known
places, GNSS at 4 Hz and odometry at 20 Hz -- through the camera, classifier, defect
detector and feature-map nodes in one process, `bag record` of everything, and the
flight's inspection report. demo_output/: demo.mcap, summary.png, summary.md (the
report's defects next to the flight's truth), report/report.html. Any other `--source`
runs the same nodes with the built-in brick model, without the truth.
"""

import math
from pathlib import Path
import shutil
import subprocess
import sys
import time

import yaml

from cnn_perception import contract as c
from cnn_perception.contract import stamp_ns
from cnn_perception.core.defects.builtin import DEFAULT_DEFECT_MODEL
from cnn_perception.errors import UserError
from cnn_perception.platforms import NODES

NS = c.NAMESPACE
IDLE_S = 8.0  # no result for this long once they flow: the flight is over
# What the demo records and summarises: relative topic -> which node publishes it.
TOPICS = {
    t.name: NODES[t.node].title
    for t in (c.CAMERA_IMAGE, c.CLASSIFICATION, c.LABELS, c.CLASSIFIER_OVERLAY,
              c.CLASSIFIER_DETECTIONS, c.DETECTIONS, c.DEFECT_EVENTS, c.HEATMAP, c.MOSAIC,
              c.CAM)
}  # fmt: skip


def add_parser(sub) -> None:
    p = sub.add_parser('demo', help='run all four nodes on a sample flight; record; summarise')
    p.add_argument('--out', type=Path, default=Path('demo_output'))
    p.add_argument('--source', default=None, help='camera source (default: the sample flight)')
    p.add_argument(
        '--frames',
        type=int,
        default=0,
        help='frames to process (default: the whole sample flight, or 30)',
    )
    p.add_argument('--fps', type=float, default=5.0, help='camera rate')
    p.add_argument('--timeout', type=float, default=150.0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from cnn_perception import platforms

    t_start = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in ('demo', 'flight', 'report', 'baseline'):
        shutil.rmtree(out / old, ignore_errors=True)
    for old in ('demo.mcap', 'summary.png', 'summary.md', 'demo_params.yaml', 'wall.npz'):
        (out / old).unlink(missing_ok=True)
    truth, model = None, DEFAULT_DEFECT_MODEL
    if args.source:
        source, frames = args.source, args.frames or 30
    else:
        truth, model = _site(out, args.fps)
        source = f'bag:{out / "flight"}:{truth["image_topic"]}'
        frames = args.frames or truth['frames']

    params = yaml.safe_load(platforms.params_file(platforms.DEFAULT_PLATFORM).read_text())
    params['/**/camera']['ros__parameters'].update(
        source=source, fps=float(args.fps), width=0, height=0, loop=False, wait_for_subscribers=4
    )  # the three processing nodes and the recorder
    # every frame of the flight scored (the desktop's 5 Hz cap would drop some at 5 fps)
    params['/**/defect_detector']['ros__parameters'].update(model=str(model), max_rate_hz=0.0)
    # boxes around what the classifier recognises, drawn on its overlay too
    params['/**/classifier']['ros__parameters']['localize'] = True
    (out / 'demo_params.yaml').write_text(yaml.safe_dump(params))
    topics = [f'{NS}/{t}' for t in TOPICS]
    env_py = [sys.executable, '-m', 'cnn_perception']
    rec = subprocess.Popen(
        env_py + ['bag', 'record', '--out', str(out / 'demo'), '--topics', *topics],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pipe = subprocess.Popen(
        env_py + ['run', '--params-file', str(out / 'demo_params.yaml')],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    print(
        f'demo: pipeline (camera, classifier, defects, features) on {source}; '
        f'recording to {out / "demo"}'
    )
    try:
        _wait_for_results(frames, args.timeout, pipe)
    finally:
        for proc in (rec, pipe):
            if proc.poll() is None:
                proc.send_signal(2)
        logs = [proc.communicate(timeout=30)[0] for proc in (rec, pipe)]
    if rec.returncode != 0 or 'bag record: closed' not in logs[0]:
        raise UserError('demo: the recorder failed:\n' + logs[0][-2000:])
    mcap = out / 'demo' / 'demo.mcap'
    (out / 'demo.mcap').hardlink_to(mcap)
    from cnn_perception import report

    # the operator's view of the flight: each distinct defect once, geotagged from the
    # flight's own GNSS; the recorded frames when the source was another one
    bag = out / 'flight' if truth else out / 'demo'
    topic = truth['image_topic'] if truth else c.CAMERA_IMAGE.full()
    res = report.run(bag, str(model), topic, log=lambda *_: None)
    paths = report.write(res, out / 'report', bag)
    summary = summarise(out / 'demo', out, time.monotonic() - t_start, res, truth)
    print(summary)
    print(
        f'\ndemo: wrote {out / "demo.mcap"} (bag directory {out / "demo"}), '
        f'{out / "summary.png"}, {out / "summary.md"}, {paths["html"]} '
        f'({len(res.findings)} distinct defect(s))'
    )
    return 0


def _site(out: Path, fps: float) -> tuple[dict, Path]:
    """Write the baseline and inspection flights, fit the wall; return (truth, model path)."""
    import cv2

    from cnn_perception.tools.inspection_flight import clean_flight, make_inspection_bag

    (out / 'baseline').mkdir(parents=True)
    for i, f in enumerate(clean_flight()):
        cv2.imwrite(str(out / 'baseline' / f'{i:03d}.png'), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    cmd = ['defects', 'fit', '--normal', str(out / 'baseline'), '--out', str(out / 'wall.npz')]
    print(f'demo: fitting the wall on a clean baseline flight: {" ".join(cmd)}')
    fit = subprocess.run([sys.executable, '-m', 'cnn_perception', *cmd], capture_output=True,
                         text=True)  # fmt: skip
    if fit.returncode != 0:
        raise UserError('demo: defects fit failed:\n' + fit.stderr[-2000:])
    print('  ' + fit.stdout.strip().splitlines()[-2])
    print('demo: writing the inspection flight (take-off over grass, sky, a cup and a cat; '
          'then the brick wall with painted defects; GNSS 4 Hz, odometry 20 Hz)')  # fmt: skip
    truth = make_inspection_bag(out / 'flight', fps=fps, takeoff=True, fix_hz=4.0,
                                odom_hz=20.0)  # fmt: skip
    return truth, out / 'wall.npz'


def _wait_for_results(frames: int, timeout: float, pipe) -> None:
    """Count results as a subscriber until every frame has both answers.

    Or until nothing has come for IDLE_S after the first results (a frame dropped on
    the way: sensor-data QoS keeps the newest), or the timeout.
    """
    from cnn_perception_msgs.msg import Classification, DetectionArray
    import rclpy

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('demo_watch', context=ctx)
    n = {'c': 0, 'd': 0}
    last = [math.inf]

    def count(key):
        def got(_):
            n[key] += 1
            last[0] = time.monotonic()

        return got

    node.create_subscription(Classification, c.CLASSIFICATION.full(), count('c'), 10)
    node.create_subscription(DetectionArray, c.DETECTIONS.full(), count('d'), 10)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while (time.monotonic() < deadline and min(n.values()) < frames
               and time.monotonic() - last[0] < IDLE_S):  # fmt: skip
            if pipe.poll() is not None:
                raise UserError('demo: the pipeline stopped:\n' + pipe.stdout.read()[-2000:])
            ex.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 2.0  # the last frame's images
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    if min(n.values()) < frames:
        print(
            f'demo: {n["c"]} classifications and {n["d"]} detection arrays of {frames} '
            'frames (a frame dropped on the way is not waited for: sensor-data QoS keeps '
            'the newest)',
            file=sys.stderr,
        )


def summarise(bag: Path, out: Path, seconds: float, res=None, truth=None) -> str:
    """Write summary.md and summary.png from the bag's contents; return the markdown.

    `res`: the flight's inspection report (`report.run`); `truth`: the flight's truth,
    printed next to what the report found.
    """
    import numpy as np
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from cnn_perception.contract import message_class

    msgs: dict[str, list] = {}
    with Reader(bag) as reader:
        wanted = [x for x in reader.connections if x.topic[len(NS) + 1 :] in TOPICS]
        for conn, t, raw in reader.messages(connections=wanted):
            m = deserialize_message(bytes(raw), message_class(conn.msgtype))
            msgs.setdefault(conn.topic[len(NS) + 1 :], []).append((t, m))

    def stamp(m) -> int:
        return stamp_ns(m.header)

    rows = []
    for topic, node in TOPICS.items():
        items = msgs.get(topic, [])
        if topic == c.LABELS.name or not items:
            rows.append((node, topic, len(items), '', '', ''))
            continue
        st = sorted(stamp(m) for _, m in items)
        rate = (len(st) - 1) / ((st[-1] - st[0]) / 1e9) if len(st) > 1 and st[-1] > st[0] else 0
        lat = np.array([(t - stamp(m)) / 1e6 for t, m in items])
        rows.append(
            (
                node,
                topic,
                len(items),
                f'{rate:.2f}',
                f'{np.median(lat):.0f}',
                f'{np.percentile(lat, 95):.0f}',
            )
        )
    classes: dict[str, int] = {}
    for _, m in msgs.get(c.CLASSIFICATION.name, []):
        if m.results:
            classes[m.results[0].label] = classes.get(m.results[0].label, 0) + 1
    objects: dict[str, tuple[set, set]] = {}  # label -> (frames boxed, track ids)
    boxes = msgs.get(c.CLASSIFIER_DETECTIONS.name, [])
    for _, m in boxes:
        for d in m.detections:
            frames_, ids = objects.setdefault(d.hypothesis.label, (set(), set()))
            frames_.add(stamp(m))
            ids.update([d.id] if d.id else [])
    dets = msgs.get(c.DETECTIONS.name, [])
    flagged = [m for _, m in dets if m.detections]
    md = [
        '# cnn_perception demo',
        '',
        f'Whole run {seconds:.0f} s. Bag: `demo.mcap` ({sum(len(v) for v in msgs.values())} '
        'messages). Latency = time the recorder received the result - capture stamp of '
        'its image.',
        '',
        '| node | topic | messages | rate (Hz) | latency p50 (ms) | latency p95 (ms) |',
        '|---|---|---|---|---|---|',
    ]
    md += [f'| {a} | `{NS}/{b}` | {c} | {d} | {e} | {f} |' for a, b, c, d, e, f in rows]
    md += ['', '## Classes seen (top-1)', '']
    md += [f'- {label}: {n} frame(s)' for label, n in sorted(classes.items(), key=lambda x: -x[1])]
    md += ['', "## Objects boxed (from the classifier's activations)", '']
    md += [
        f'{sum(bool(m.detections) for _, m in boxes)} of {len(boxes)} frames with boxes '
        '(classes of p >= 0.1); a track id (o1, o2, ...) once an object is seen in 2 frames:'
    ]
    md += [
        f'- {label}: boxed in {len(f)} frame(s), {len(ids)} track(s)'
        for label, (f, ids) in sorted(objects.items(), key=lambda x: -len(x[1][0]))
    ]
    md += [
        '',
        '## Defects (live)',
        '',
        f'{len(flagged)} of {len(dets)} frames flagged, '
        f'{sum(len(m.detections) for m in flagged)} defect box(es); '
        f'{sum(m.off_surface for _, m in dets)} frames off the surface (not inspected).',
    ]
    if res is not None:
        md += ['', *_inspection_md(res, truth)]
    text = '\n'.join(md) + '\n'
    (out / 'summary.md').write_text(text)
    _contact_sheet(msgs, out / 'summary.png')
    return text


def _inspection_md(res, truth) -> list[str]:
    """Return the report's defects and not-inspected stretches beside the flight's truth."""
    from cnn_perception.report import not_inspected_frames

    md = [
        '## Inspection report (report/report.html)',
        '',
        f'{len(res.findings)} distinct defect(s) in {res.frames} frames, '
        f'{sum(r["latitude"] is not None for r in res.rows)} geotagged; '
        f'{not_inspected_frames(res)} frames not inspected (off the surface) in '
        f'{len(res.not_inspected)} stretch(es).',
    ]
    if truth is None:
        return md
    from cnn_perception.tools.inspection_flight import score_findings

    m = score_findings(res.rows, truth)
    err = m['median_position_error_m']
    t = truth['takeoff']
    md += [
        '',
        "The flight's truth next to what the report found:",
        '',
        '| | truth | found |',
        '|---|---|---|',
        f'| defects on the wall | {m["true_defects"]} | {m["found"]} found, '
        f'{m["duplicates"]} twice, {m["false_positives"]} false |',
        f'| recall / precision | 1.00 / 1.00 | {m["recall"]:.2f} / {m["precision"]:.2f} |',
        f'| median position error | 0 m | {"-" if err is None else f"{err:.2f} m"} |',
        f'| take-off frames ({", ".join(t["sceneries"])}) | {t["frames"]} not inspected | '
        f'{not_inspected_frames(res)} not inspected |',
    ]
    return md


def _contact_sheet(msgs: dict, path: Path) -> None:
    """Rows of frames; columns: classifier overlay, defect heatmap, feature maps, CAM."""
    import cv2
    import numpy as np

    from cnn_perception.io.images import to_rgb8

    def stamp(m) -> int:
        return stamp_ns(m.header)

    def nearest(topic: str, s: int):
        items = msgs.get(topic, [])
        return min(items, key=lambda tm: abs(stamp(tm[1]) - s))[1] if items else None

    def tile(msg, w=300, h=225, title=''):
        canvas = np.full((h + 24, w, 3), 24, np.uint8)
        if msg is not None:
            img = to_rgb8(msg)
            s = min(w / img.shape[1], h / img.shape[0])
            img = cv2.resize(
                img,
                (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                interpolation=cv2.INTER_AREA,
            )
            y, x = 24 + (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
            canvas[y : y + img.shape[0], x : x + img.shape[1]] = img
        cv2.putText(
            canvas, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA
        )
        return canvas

    dets = {stamp(m): m for _, m in msgs.get(c.DETECTIONS.name, [])}
    sizes = {stamp(m): m.width * m.height for _, m in msgs.get(c.CAMERA_IMAGE.name, [])}
    tops = {
        stamp(m): m.results[0].score for _, m in msgs.get(c.CLASSIFICATION.name, []) if m.results
    }
    # Two confident classifications and two localised defects (a box much smaller than
    # the frame); a photo of a cat is "anomalous" everywhere to a brick-wall model.
    local = [
        s
        for s, m in sorted(dets.items())
        if any(d.bbox.size_x * d.bbox.size_y < 0.25 * sizes.get(s, 1 << 30) for d in m.detections)
    ]
    labels = {
        stamp(m): m.results[0].label for _, m in msgs.get(c.CLASSIFICATION.name, []) if m.results
    }
    confident, seen = [], set()
    for s in sorted((s for s in tops if s not in local), key=lambda s: -tops[s]):
        if labels[s] not in seen:  # two different classes, not the same photo twice
            seen.add(labels[s])
            confident.append(s)
    picks = sorted(confident[:2] + local[:2]) or sorted(tops)[:4]
    rows = []
    for s in picks:
        rows.append(
            np.concatenate(
                [
                    tile(nearest(c.CLASSIFIER_OVERLAY.name, s), title='classifier overlay'),
                    tile(nearest(c.HEATMAP.name, s), title='defect heatmap + boxes'),
                    tile(nearest(c.MOSAIC.name, s), title='feature maps (layer by layer)'),
                    tile(nearest(c.CAM.name, s), title='where the CNN looks (CAM)'),
                ],
                1,
            )
        )
    if not rows:
        rows = [tile(None, title='no frames recorded')]
    sheet = np.concatenate(rows, 0)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
