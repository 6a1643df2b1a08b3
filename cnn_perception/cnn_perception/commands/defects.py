"""`defects make-dataset | fit | score | eval`: the unsupervised defect detector (D9)."""

import json
from pathlib import Path
import sys

from cnn_perception.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser('defects', help='CNN defect detector: dataset, fit, score, evaluate')
    dsub = p.add_subparsers(dest='defects_command', metavar='STEP', required=True)

    q = dsub.add_parser('make-dataset', help='texture photographs with painted defects')
    q.add_argument('--out', type=Path, required=True)
    q.add_argument('--texture', choices=('brick', 'gravel', 'grass', 'moon'), default='brick')
    q.add_argument('--count', type=int, default=40, help='normal and defect images each')
    q.add_argument('--size', type=int, default=256)
    q.add_argument('--seed', type=int, default=0)
    q.set_defaults(func=cmd_make_dataset)

    q = dsub.add_parser('fit', help='learn normal from defect-free images, then calibrate')
    q.add_argument('--normal', type=Path, required=True, help='folder of defect-free images')
    q.add_argument('--out', type=Path, required=True, metavar='MODEL', help='.npz to write')
    q.add_argument(
        '--val-normal',
        type=Path,
        default=None,
        help='defect-free validation images (default: calibrate on --normal itself, k-fold)',
    )
    q.add_argument(
        '--calibration',
        choices=('kfold', 'holdout'),
        default='kfold',
        help='without --val-normal: score every image against a bank built without its '
        'fold (kfold, default), or hold a fifth back (holdout, the old way)',
    )
    q.add_argument(
        '--val-defect',
        type=Path,
        default=None,
        help='defect examples: calibrate at the F1-optimal threshold',
    )
    q.add_argument(
        '--coreset-ratio',
        type=float,
        default=None,
        help='share of normal patches kept (default 0.05); more is slower to score',
    )
    q.add_argument(
        '--input-size',
        type=int,
        default=None,
        help='short side the images are scaled to for the CNN (default 320)',
    )
    q.add_argument(
        '--centre-crop',
        type=float,
        default=0.0,
        metavar='SHARE',
        help='fit on the centre square of this share of the short side instead of the whole '
        "frame; 0.875 with --input-size 224 is the classifier's own input, which lets "
        "shared_backbone serve both from one pass (the frame's borders go unchecked)",
    )
    q.add_argument(
        '--layers',
        type=int,
        nargs='+',
        default=None,
        metavar='STAGE',
        help='EfficientNet-Lite0 stages for the patch features (default: 2; e.g. 2 4 adds '
        'coarser context, which suits large defects more than thin cracks)',
    )
    q.add_argument('--backend', choices=('onnxruntime', 'torch'), default='onnxruntime')
    q.set_defaults(func=cmd_fit)

    q = dsub.add_parser('score', help='score images with a fitted model')
    q.add_argument('images', nargs='+', type=Path, metavar='IMAGE')
    _use_args(q)
    q.add_argument('--json', action='store_true')
    q.set_defaults(func=cmd_score)

    q = dsub.add_parser('eval', help='AUROC, F1, box hits; ROC plot and heatmap sheet')
    _use_args(q)
    q.add_argument('--normal', type=Path, required=True)
    q.add_argument('--defect', type=Path, required=True)
    q.add_argument('--masks', type=Path, default=None)
    q.add_argument('--json', action='store_true')
    q.add_argument(
        '--plot',
        type=Path,
        default=None,
        metavar='OUT.png',
        help='ROC curve; the heatmap sheet is written beside it (_sheet.png)',
    )
    q.set_defaults(func=cmd_eval)


def _use_args(q) -> None:
    q.add_argument(
        '--model',
        required=True,
        help='.npz from `defects fit`, or builtin:brick|gravel|grass|moon (as the node takes)',
    )
    q.add_argument('--backend', choices=('onnxruntime', 'torch'), default='onnxruntime')
    q.add_argument('--device', default='cpu')
    q.add_argument('--sensitivity', type=float, default=1.0)
    q.add_argument('--min-area', type=int, default=16)
    q.add_argument('--tile', type=int, default=0, help='tile side for large frames (0: off)')


def images_in(folder: Path) -> list[Path]:
    from cnn_perception.io.sources import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise UserError(f'{folder}: no such folder')
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f'{folder}: no images')
    return files


def cmd_make_dataset(args) -> int:
    from cnn_perception.tools.datasets import make_defect_dataset

    out = make_defect_dataset(args.out, args.texture, args.count, args.size, args.seed)
    print(f'wrote {args.count} normal and {args.count} defect images (+ masks) to {out}')
    return 0


def cmd_fit(args) -> int:
    import numpy as np

    from cnn_perception.core.defects import (
        DEFAULT_CORESET_RATIO,
        DEFAULT_INPUT_SIZE,
        DEFAULT_LAYERS,
        DefectDetector,
        DefectModel,
        FeatureExtractor,
        apply_calibration,
        calibrate,
        fit,
        fit_kfold,
    )
    from cnn_perception.io.images import read_rgb

    files = images_in(args.normal)
    kfold = not args.val_normal and not args.val_defect and args.calibration == 'kfold'
    if args.val_normal:
        fit_files, val_files = files, images_in(args.val_normal)
    elif kfold:
        fit_files, val_files = files, []
    else:
        rng = np.random.default_rng(0)
        order = rng.permutation(len(files))
        k = max(1, len(files) // 5)
        val_files = [files[i] for i in sorted(order[:k])]
        fit_files = [files[i] for i in sorted(order[k:])]
    input_size = args.input_size or DEFAULT_INPUT_SIZE
    layers = tuple(sorted(set(args.layers))) if args.layers else DEFAULT_LAYERS
    if not all(0 <= i <= 6 for i in layers):
        raise UserError(f'--layers {args.layers}: EfficientNet-Lite0 has stages 0 to 6')
    if not 0.0 <= args.centre_crop <= 1.0:
        raise UserError(f'--centre-crop {args.centre_crop}: a share of the short side, 0 to 1')
    geometry = dict(layers=layers, input_size=input_size, centre_crop=args.centre_crop)
    ex = FeatureExtractor(backend=args.backend, **geometry)
    ratio = args.coreset_ratio or DEFAULT_CORESET_RATIO
    if kfold:
        memory, how = fit_kfold(
            [read_rgb(f) for f in fit_files], extractor=ex, coreset_ratio=ratio
        )
        model = DefectModel(memory, **geometry)
        apply_calibration(model, how)
    else:
        memory = fit([read_rgb(f) for f in fit_files], extractor=ex, coreset_ratio=ratio)
        model = DefectModel(memory, **geometry)
        det = DefectDetector(model, extractor=ex)
        val_defect = [read_rgb(f) for f in images_in(args.val_defect)] if args.val_defect else None
        how = calibrate(det, [read_rgb(f) for f in val_files], val_defect)
    model.metrics = {'calibration': how, 'fit_images': len(fit_files)}
    model.save(args.out)
    print(
        f'calibration: {how["method"]} threshold {how["threshold"]:.3f} (raw distance'
        + (f', {how["estimate"]} of the normal validation scores' if 'estimate' in how else '')
        + f'), '
        f'base {how["base"]:.3f}; {how["val_normal"]} normal / {how["val_defect"]} defect '
        f'validation images, false alarms on them {how["val_false_alarms"]:.0%}'
        + (f', F1 {how["f1"]:.3f}' if 'f1' in how else '')
    )
    print(f'wrote {args.out}')
    return 0


def _detector(args):
    from cnn_perception.core.defects import DefectDetector, load_defect_model

    model = load_defect_model(str(args.model), log=lambda m: print(m, file=sys.stderr))
    return DefectDetector(model, backend=args.backend, device=args.device)


def cmd_score(args) -> int:
    from cnn_perception.io.images import read_rgb

    det = _detector(args)
    det.detect(read_rgb(args.images[0]))  # warm-up: inference_ms excludes first-call cost
    for path in args.images:
        r = det.detect(read_rgb(path), args.sensitivity, args.min_area, args.tile)
        row = {
            'image': str(path),
            'score': round(r.score, 4),
            'is_defect': r.is_defect,
            'boxes': [
                {
                    'x': b.x,
                    'y': b.y,
                    'width': b.width,
                    'height': b.height,
                    'score': round(b.score, 4),
                }
                for b in r.boxes
            ],
            'inference_ms': round(r.inference_ms, 3),
        }
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            flag = 'DEFECT' if r.is_defect else 'ok'
            print(
                f'{path}: {flag} score {r.score:.3f}, {len(r.boxes)} box(es), '
                f'{r.inference_ms:.1f} ms'
            )
    return 0


def cmd_eval(args) -> int:
    import cv2

    from cnn_perception.core.defect_eval import evaluate
    from cnn_perception.io.images import read_rgb

    det = _detector(args)
    normal, defect = images_in(args.normal), images_in(args.defect)
    masks = None
    if args.masks:
        masks = []
        for f in defect:
            m = cv2.imread(str(args.masks / f.name), cv2.IMREAD_GRAYSCALE)
            if m is None:
                raise UserError(f'{args.masks / f.name}: missing mask for {f.name}')
            masks.append(m > 127)
    from tqdm import tqdm

    run = lambda files: [  # noqa: E731
        det.detect(read_rgb(f), args.sensitivity, args.min_area, args.tile)
        for f in tqdm(files, unit='img', leave=False)
    ]
    nres, dres = run(normal), run(defect)
    metrics = evaluate(nres, dres, masks)
    metrics['model'] = str(args.model)
    if args.plot:
        _plots(args.plot, nres, dres, normal, defect, masks, metrics)
        metrics['plot'], metrics['sheet'] = str(args.plot), str(_sheet_path(args.plot))
    if args.json:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f'{k:>18}: {v:.3f}' if isinstance(v, float) else f'{k:>18}: {v}')
    return 0


def _sheet_path(plot: Path) -> Path:
    return plot.with_name(plot.stem + '_sheet.png')


def _plots(plot: Path, nres, dres, normal, defect, masks, metrics) -> None:
    import cv2
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import roc_curve

    from cnn_perception.core.draw import draw_defects
    from cnn_perception.io.images import read_rgb

    y = np.r_[np.zeros(len(nres)), np.ones(len(dres))]
    s = np.array([r.score for r in nres + dres])
    fpr, tpr, _ = roc_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=f'image AUROC {metrics["image_auroc"]:.3f}')
    ax.plot([0, 1], [0, 1], '--', color='grey')
    ax.set(xlabel='false positive rate', ylabel='true positive rate', title='Defect detector ROC')
    ax.legend(loc='lower right')
    ax.grid(alpha=0.3)
    plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(plot, dpi=100)
    plt.close(fig)
    tiles = []
    step = max(1, len(defect) // 8)  # spread over the defect kinds, which come in turn
    picks = list(zip(defect[::step][:8], dres[::step][:8], strict=False))
    picks += list(zip(normal[:4], nres[:4], strict=False))
    for f, r in picks:
        tile = draw_defects(read_rgb(f), r)
        tiles.append(cv2.resize(tile, (192, 192), interpolation=cv2.INTER_AREA))
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + 4], 1) for i in range(0, len(tiles), 4)]
    cv2.imwrite(str(_sheet_path(plot)), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
