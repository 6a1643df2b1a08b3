"""`report BAG --defects MODEL --out DIR`: the inspection result of a flight."""

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        'report', help='distinct defects of a flight: report.html, defects.geojson, defects.csv'
    )
    p.add_argument('bag', type=Path, help='rosbag2 directory or ROS 1 .bag')
    p.add_argument(
        '--defects', required=True, metavar='MODEL', help='defect model (.npz or builtin:brick)'
    )
    p.add_argument('--out', type=Path, required=True, help='folder for the report files')
    p.add_argument(
        '--image-topic', default=None, help="camera topic (default: the bag's only one)"
    )
    p.add_argument(
        '--params-file',
        type=Path,
        default=None,
        help='node parameters YAML (defect_detector section; default config/desktop.yaml)',
    )
    p.set_defaults(func=_report)


def _report(args) -> int:
    from cnn_perception import report

    res = report.run(args.bag, args.defects, args.image_topic, args.params_file)
    paths = report.write(res, args.out, args.bag)
    geo = sum(r['latitude'] is not None for r in res.rows)
    print(
        f'report: {len(res.findings)} distinct defect(s) in {res.frames} frames of '
        f'{res.image_topic} ({len(res.skipped)} skipped), {geo} geotagged; positions from '
        f'{", ".join(res.position_topics.values()) or "nothing (times only)"}; scoring '
        f'{res.detect_ms:.1f} ms/frame, tracking + geotags {res.tracking_ms:.2f} ms/frame '
        f'({res.tracking_ms / max(res.detect_ms, 1e-9):.1%})'
    )
    for s in res.skipped[:20]:
        print(f'  skipped {s}')
    print('wrote ' + ', '.join(str(p) for p in paths.values()))
    return 0
