"""`classify`, `export` and `explain`: the classifier from the command line."""

import argparse
import json
from pathlib import Path
import statistics
import sys

from cnn_perception.core.models import DEFAULT_MODEL
from cnn_perception.core.quantize import FINETUNE_STEPS
from cnn_perception.io.images import read_rgb


def add_parser(sub) -> None:
    p = sub.add_parser('classify', help='classify image files (top-k ImageNet or custom classes)')
    p.add_argument('images', nargs='+', type=Path, metavar='IMAGE')
    _model_args(p)
    p.add_argument('--top-k', type=int, default=5)
    p.add_argument(
        '--repeat',
        type=int,
        default=5,
        help='timed runs per image after a warm-up; inference_ms is their median',
    )
    p.add_argument('--json', action='store_true', help='one JSON object per image and line')
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser(
        'localize',
        help='boxes around what the classifier recognises, from its own activations (CAM)',
    )
    p.add_argument('images', nargs='+', type=Path, metavar='IMAGE')
    _model_args(p)
    p.add_argument('--top-k', type=int, default=5, help='classes considered per image')
    p.add_argument(
        '--min-score', type=float, default=0.1, help='smallest class probability given boxes'
    )
    p.add_argument('--json', action='store_true', help='one JSON object per image and line')
    p.add_argument(
        '--out', type=Path, default=None, metavar='DIR', help='write each image with its boxes'
    )
    p.set_defaults(func=cmd_localize)

    p = sub.add_parser('export', help='export a model to ONNX, with a parity check')
    p.add_argument('model', metavar='MODEL', help='registry name or checkpoint (.pt)')
    p.add_argument('--weights', default=None, help='weights file for a registry model')
    p.add_argument('--onnx', type=Path, required=True, metavar='OUT', help='ONNX file to write')
    p.add_argument('--input-size', type=int, default=None)
    p.add_argument(
        '--int8',
        action='store_true',
        help='also write the INT8 twin (OUT.int8.onnx, and the cache the nodes read) '
        'with ONNX Runtime static quantization',
    )
    p.add_argument(
        '--calibration',
        type=Path,
        default=None,
        metavar='DIR',
        help='real frames of your camera for the INT8 ranges (default: built-in photos); '
        'a quarter is held out for the quality gate',
    )
    p.add_argument(
        '--min-agreement',
        type=float,
        default=0.97,
        help='INT8 is refused below this top-1 agreement with fp32 on the held-out frames',
    )
    p.add_argument(
        '--finetune-steps',
        type=int,
        default=FINETUNE_STEPS,
        metavar='N',
        help='quantization-aware fine-tuning steps before quantizing (core/qat.py; about 2 s '
        'each on a 2-core CPU), so that INT8 keeps the fp32 answers; 0: quantize the weights '
        'as they are',
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser('explain', help='the CNN layer by layer: F, S, P, sizes, RF, params, MACs')
    p.add_argument('--model', default=DEFAULT_MODEL)
    p.add_argument('--weights', default=None)
    p.add_argument(
        '--input-size', type=int, default=None, help="pixels (default: the model's own)"
    )
    p.add_argument('--json', action='store_true')
    p.set_defaults(func=cmd_explain)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        '--model',
        default=DEFAULT_MODEL,
        help='registry name, checkpoint (.pt) from `train`, or exported .onnx',
    )
    p.add_argument('--weights', default=None, help='weights file for a registry model')
    p.add_argument('--backend', choices=('torch', 'onnxruntime'), default='onnxruntime')
    p.add_argument('--device', default='cpu', help='cpu or cuda')
    p.add_argument('--fp16', action='store_true', help='half precision (torch on cuda)')
    p.add_argument('--input-size', type=int, default=None)
    p.add_argument('--num-threads', type=int, default=0, help='0: library default')
    p.add_argument(
        '--precision', choices=('fp32', 'int8'), default='fp32', help='int8: onnxruntime only'
    )


def _load(args, **kw):
    """Load and warm up the classifier that `_model_args` describe."""
    from cnn_perception.core.classifier import load_classifier

    clf = load_classifier(
        args.model,
        weights=args.weights,
        backend=args.backend,
        device=args.device,
        fp16=args.fp16,
        num_threads=args.num_threads,
        input_size=args.input_size,
        precision=args.precision,
        **kw,
    )
    clf.warm_up()
    return clf


def cmd_classify(args) -> int:
    clf = _load(args)
    for path in args.images:
        rgb = read_rgb(path)
        preds = [clf.predict(rgb, args.top_k) for _ in range(max(1, args.repeat))]
        ms = statistics.median(p.inference_ms for p in preds)
        pred = preds[0]
        if args.json:
            print(
                json.dumps(
                    {
                        'image': str(path),
                        'results': [
                            {'class_id': h.class_id, 'label': h.label, 'score': round(h.score, 6)}
                            for h in pred.results
                        ],
                        'model': clf.info.name,
                        'backend': args.backend,
                        'inference_ms': round(ms, 3),
                    }
                ),
                flush=True,
            )
        else:
            print(f'{path}  ({clf.info.name}, {args.backend}, {ms:.1f} ms)')
            for h in pred.results:
                print(f'  {h.score:6.1%}  {h.label} [{h.class_id}]')
    return 0


def cmd_localize(args) -> int:
    """Boxes per image: JSON lines (x, y: top-left corner in source pixels, best first)."""
    clf = _load(args, localize=True, log=lambda m: print(m, file=sys.stderr))
    for path in args.images:
        rgb = read_rgb(path)
        pred, boxes, _ = clf.localize(rgb, args.top_k, 0.0, args.min_score)
        if args.json:
            dets = [b.to_dict() for b in boxes]
            print(json.dumps({'image': str(path), 'detections': dets}), flush=True)
        else:
            print(f'{path}  ({clf.info.name}, {args.backend}, {pred.inference_ms:.1f} ms)')
            for b in boxes:
                print(f'  {b.score:5.2f}  {b.label} [{b.class_id}]  x={b.x:.0f} y={b.y:.0f} '
                      f'w={b.width:.0f} h={b.height:.0f}')  # fmt: skip
            if not boxes:
                print(f'  nothing recognised with p >= {args.min_score}')
        if args.out:
            _write_localized(args.out, path, rgb, clf, pred, boxes)
    return 0


def _write_localized(out_dir: Path, path: Path, rgb, clf, pred, boxes) -> None:
    """Write the image with the top class's map and every box (`DIR/<name>.boxes.png`)."""
    import cv2

    from cnn_perception.core.draw import draw_objects, heatmap_overlay
    from cnn_perception.core.localize import source_map

    out = rgb
    if pred.results:
        logits, features = clf._pass(rgb)
        cam = clf.localizer.maps(features, [pred.results[0].class_id])[0]
        out = heatmap_overlay(rgb, source_map(clf.localizer, cam, clf.preprocess, *rgb.shape[:2]))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f'{Path(path).stem}.boxes.png'
    cv2.imwrite(str(target), cv2.cvtColor(draw_objects(out, boxes), cv2.COLOR_RGB2BGR))
    print(f'wrote {target}', file=sys.stderr)


def cmd_export(args) -> int:
    import numpy as np

    from cnn_perception.core.backends import OnnxBackend, TorchBackend, export_onnx
    from cnn_perception.core.models import get_model

    net, info = get_model(args.model, weights=args.weights)
    if args.input_size:
        info.preprocess = info.preprocess.with_size(args.input_size)
    size = info.preprocess.crop
    out = export_onnx(net, info, args.onnx, size)
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    ref = TorchBackend(net).run(x)
    got = OnnxBackend(out).run(x)
    diff = float(np.abs(ref - got).max())
    same_top1 = bool((ref.argmax(1) == got.argmax(1)).all())
    print(
        f'wrote {out} ({out.stat().st_size / 1e6:.1f} MB, input 3x{size}x{size}); parity: '
        f'max |logit diff| {diff:.2e}, same top-1: {same_top1}'
    )
    if diff >= 1e-3 or not same_top1:
        print('error: ONNX export does not match the torch model', file=sys.stderr)
        return 1
    if args.int8:
        _export_int8(args, net, info, out)
    return 0


def _export_int8(args, net, info, out: Path) -> None:
    """INT8 twins of the export: beside OUT, and in the cache the nodes load from."""
    import shutil

    from cnn_perception.core.backends import export_onnx, onnx_cache_path
    from cnn_perception.core.classifier import ensure_int8, int8_path

    frames = None
    if args.calibration:
        files = sorted(
            p for p in Path(args.calibration).iterdir()
            if p.suffix.lower() in ('.png', '.jpg', '.jpeg', '.bmp')
        )  # fmt: skip
        frames = [read_rgb(p) for p in files]
    if args.finetune_steps > 0:
        from cnn_perception.core.qat import quantize_finetuned

        path = int8_path(out)
        quantize_finetuned(net, info, out, path, args.finetune_steps, frames, args.min_agreement)
        path.with_suffix('.refused.txt').unlink(missing_ok=True)
    else:
        path = ensure_int8(out, info.preprocess, frames or _default_frames(), args.min_agreement)
    cached = onnx_cache_path(info, info.preprocess.crop)
    if not cached.is_file():
        export_onnx(net, info, cached, info.preprocess.crop)
    shutil.copyfile(path, int8_path(cached))
    print(f'wrote {path} and the cached {int8_path(cached)}')


def _default_frames():
    from cnn_perception.core.quantize import default_calibration_frames

    return default_calibration_frames()


def cmd_explain(args) -> int:
    from cnn_perception.core.explain import explain_model, format_table
    from cnn_perception.core.models import get_model

    net, info = get_model(args.model, weights=args.weights)
    report = explain_model(net, args.input_size or info.preprocess.crop)
    report['model'] = info.name
    if args.json:
        print(json.dumps(report))
    else:
        print(f'{info.name}: pixels -> convolutions -> feature maps -> dense -> softmax\n')
        print(format_table(report))
    return 0
