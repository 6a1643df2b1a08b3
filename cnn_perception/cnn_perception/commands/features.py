"""`features`: feature maps layer by layer and the class activation map of one image."""

import json
from pathlib import Path

from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser('features', help='what the CNN sees: per-layer mosaics and a CAM')
    p.add_argument('image', nargs='?', type=Path, metavar='IMAGE')
    p.add_argument('--out', type=Path, default=None, help='folder for the PNGs')
    p.add_argument('--model', default=DEFAULT_MODEL)
    p.add_argument('--layers', default=None, help='comma-separated layer names')
    p.add_argument('--channels', type=int, default=16, help='channels shown per layer')
    p.add_argument('--colormap', default='viridis')
    p.add_argument('--per-channel', action='store_true', help='scale each channel on its own')
    p.add_argument('--cam', choices=('eigencam', 'gradcam'), default='eigencam')
    p.add_argument(
        '--backend',
        choices=('onnxruntime', 'torch'),
        default=None,
        help='default: onnxruntime (torch for gradcam)',
    )
    p.add_argument('--list-layers', action='store_true', help='print the valid layer names')
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_features)


def cmd_features(args) -> int:
    from cnn_perception.core import feature_maps as fm
    from cnn_perception.io.images import read_rgb

    if args.list_layers:
        rows = fm.list_layers(args.model)
        if args.json:
            print(json.dumps([{'name': n, 'type': t, 'shape': s} for n, t, s in rows]))
        else:
            for n, t, s in rows:
                print(f'{n:<28} {t:<20} {"x".join(map(str, s))}')
        return 0
    if args.image is None or args.out is None:
        raise UserError('features needs IMAGE and --out DIR (or --list-layers)')
    backend = args.backend or ('torch' if args.cam == 'gradcam' else 'onnxruntime')
    layers = [s.strip() for s in args.layers.split(',')] if args.layers else None
    model = fm.FeatureMapModel(args.model, layers, backend)
    rgb = read_rgb(args.image)
    logits, acts = model.run(rgb)
    top = int(logits.argmax())
    label = model.labels[top] if model.labels else str(top)
    mosaics = fm.MosaicBuilder(args.channels, args.colormap, args.per_channel)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {'layers': [], 'cam': {}}
    shapes = []
    for name in model.layers:
        act = acts[name]
        path = args.out / f'layer_{name.replace(".", "_")}.png'
        fm.save_png(path, mosaics.layer(name, act))
        report['layers'].append({'name': name, 'shape': list(act.shape), 'path': str(path)})
        shapes.append(f'{name}: {act.shape[0]} channels x {act.shape[1]} x {act.shape[2]}')
    if args.cam == 'gradcam':
        cam = model.grad_cam(rgb, top)
    else:
        cam = fm.eigen_cam(acts[model.cam_layer])
    full = fm.cam_to_source(cam, model.preprocess, *rgb.shape[:2])
    import numpy as np

    y, x = np.unravel_index(int(full.argmax()), full.shape)
    cam_path = args.out / 'cam.png'
    fm.save_png(cam_path, fm.cam_overlay(rgb, full))
    report['cam'] = {
        'label': label,
        'method': args.cam,
        'peak_xy': [int(x), int(y)],
        'path': str(cam_path),
    }
    (args.out / 'shapes.txt').write_text(
        f'{args.model} on {args.image} ({rgb.shape[1]}x{rgb.shape[0]}), top class {label}\n'
        + '\n'.join(shapes)
        + '\n'
    )
    if args.json:
        print(json.dumps(report))
    else:
        print('\n'.join(shapes))
        print(f'CAM ({args.cam}) for {label!r}: peak at x={x}, y={y}; PNGs in {args.out}')
    return 0
