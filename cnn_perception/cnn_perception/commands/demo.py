"""`demo`: the whole system on a sample flight, recorded, summarised in a picture.

Camera (a bag of real photographs and brick-wall frames with painted defects, or any
`--source`) -> classifier, defect detector and feature-map nodes in one process ->
`bag record` of everything -> demo_output/demo.mcap, summary.png, summary.md.
"""

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
    p.add_argument('--fps', type=float, default=2.0, help='camera rate')
    p.add_argument('--timeout', type=float, default=150.0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from cnn_perception import platforms
    from cnn_perception.tools.flight import SEQUENCE, TOPIC, make_flight_bag

    t_start = time.monotonic()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in ('demo', 'flight', 'report'):
        shutil.rmtree(out / old, ignore_errors=True)
    for old in ('demo.mcap', 'summary.png', 'summary.md', 'demo_params.yaml'):
        (out / old).unlink(missing_ok=True)
    if args.source:
        source, frames = args.source, args.frames or 30
    else:
        print('demo: writing the sample flight (real photographs, brick wall with defects)')
        make_flight_bag(out / 'flight', fps=args.fps)
        source, frames = f'bag:{out / "flight"}:{TOPIC}', args.frames or len(SEQUENCE)

    params = yaml.safe_load(platforms.params_file(platforms.DEFAULT_PLATFORM).read_text())
    params['/**/camera']['ros__parameters'].update(
        source=source, fps=float(args.fps), width=0, height=0, loop=False, wait_for_subscribers=4
    )  # the three processing nodes and the recorder
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
    summary = summarise(out / 'demo', out, time.monotonic() - t_start)
    print(summary)
    from cnn_perception import report

    # the operator's view of the flight: each distinct defect once (no GPS in this flight)
    res = report.run(
        out / 'demo', DEFAULT_DEFECT_MODEL, c.CAMERA_IMAGE.full(), log=lambda *_: None
    )
    paths = report.write(res, out / 'report', out / 'demo')
    print(
        f'\ndemo: wrote {out / "demo.mcap"} (bag directory {out / "demo"}), '
        f'{out / "summary.png"}, {out / "summary.md"}, {paths["html"]} '
        f'({len(res.findings)} distinct defect(s))'
    )
    return 0


def _wait_for_results(frames: int, timeout: float, pipe) -> None:
    """Count results as a subscriber until every frame has both answers (or timeout)."""
    from cnn_perception_msgs.msg import Classification, DetectionArray
    import rclpy

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('demo_watch', context=ctx)
    n = {'c': 0, 'd': 0}
    node.create_subscription(
        Classification,
        c.CLASSIFICATION.full(),
        lambda m: n.__setitem__('c', n['c'] + 1),
        10,
    )
    node.create_subscription(
        DetectionArray, c.DETECTIONS.full(), lambda m: n.__setitem__('d', n['d'] + 1), 10
    )
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and min(n.values()) < frames:
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
            f'demo: timed out after {timeout:.0f} s with {n["c"]} classifications and '
            f'{n["d"]} detection arrays of {frames} frames',
            file=sys.stderr,
        )


def summarise(bag: Path, out: Path, seconds: float) -> str:
    """Write summary.md and summary.png from the bag's contents; return the markdown."""
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
        '## Defects',
        '',
        f'{len(flagged)} of {len(dets)} frames flagged, '
        f'{sum(len(m.detections) for m in flagged)} defect box(es); '
        f'highest image score {max((m.image_score for _, m in dets), default=0):.2f} '
        '(0.5 = threshold).',
    ]
    text = '\n'.join(md) + '\n'
    (out / 'summary.md').write_text(text)
    _contact_sheet(msgs, out / 'summary.png')
    return text


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
