"""`report BAG --defects MODEL --out DIR`: the inspection result of a flight."""

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        'report', help='distinct defects of a flight: report.html, defects.geojson, defects.csv'
    )
    p.add_argument(
        'bags',
        type=Path,
        nargs='+',
        metavar='BAG_OR_FOLDER',
        help='rosbag2 directory or ROS 1 .bag; several, or folders of them: one report per '
        "flight in OUT/<flight>/ and the fleet's index.html, run on Ray",
    )
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
    add_fleet_flags(p)
    p.set_defaults(func=_report)


def add_fleet_flags(p) -> None:
    """--workers, --ray-address, --force: many bags at once (`fleet.py`)."""
    g = p.add_argument_group('many bags (Ray)')
    g.add_argument(
        '--workers', type=int, default=0, help="local Ray workers (0: the machine's cores)"
    )
    g.add_argument(
        '--ray-address',
        default=None,
        metavar='ADDR',
        help='join this Ray cluster (auto, ray://host:10001; default RAY_ADDRESS, else a local '
        'instance started and stopped here)',
    )
    g.add_argument(
        '--force', action='store_true', help='redo flights complete from an earlier run'
    )


def run_fleet_cli(args, bags, out: Path, job: dict) -> int:
    """Run the fleet, print what failed and why; exit 0, 3 (some failed) or 130."""
    from cnn_perception.fleet import EXIT_SOME_FAILED, run_fleet

    res = run_fleet(bags, out, job, args.workers, args.ray_address, args.force)
    print(
        f'fleet: {len(res.done)} of {len(res.bags)} flight(s) done ({len(res.kept)} kept), '
        f'{len(res.failed)} failed, {res.frames} frames in {res.seconds:.1f} s'
        + (f' (Ray start-up {res.ray_start_s:.1f} s)' if res.ray_start_s else '')
        + f'; wrote {out / "index.html"}'
    )
    for flight, why in sorted(res.failed.items()):
        print(f'  failed {flight} ({res.bags[flight]}): {why}')
    if res.interrupted:
        return 130
    return EXIT_SOME_FAILED if res.failed else 0


def _report(args) -> int:
    from cnn_perception import report
    from cnn_perception.fleet import find_bags, is_bag

    if len(args.bags) > 1 or not is_bag(args.bags[0]):
        job = {'kind': 'report', 'defects': str(args.defects), 'image_topic': args.image_topic,
               'params_file': str(args.params_file) if args.params_file else None}  # fmt: skip
        return run_fleet_cli(args, find_bags(args.bags), args.out, job)
    bag = args.bags[0]
    res = report.run(bag, args.defects, args.image_topic, args.params_file)
    paths = report.write(res, args.out, bag)
    geo = sum(r['latitude'] is not None for r in res.rows)
    print(
        f'report: {len(res.findings)} distinct defect(s) in {res.frames} frames of '
        f'{res.image_topic} ({len(res.skipped)} skipped, '
        f'{report.not_inspected_frames(res)} not inspected: off the surface), {geo} geotagged; '
        'positions from '
        f'{", ".join(res.position_topics.values()) or "nothing (times only)"}; scoring '
        f'{res.detect_ms:.1f} ms/frame, tracking + geotags {res.tracking_ms:.2f} ms/frame '
        f'({res.tracking_ms / max(res.detect_ms, 1e-9):.1%})'
    )
    for s in res.skipped[:20]:
        print(f'  skipped {s}')
    print('wrote ' + ', '.join(str(p) for p in paths.values()))
    return 0
