"""Check the CUDA / fp16 path (the Jetson configuration) without ROS, in one short run.

Run it on the Jetson (or any CUDA machine) with the package on PYTHONPATH:

    python cnn_perception/scripts/cuda_check.py [--device cuda] [--json OUT.json]

What it checks, each against the CPU result in the same run:
1. classifier (torch backend) on chelsea and coffee, for each of --models (e.g.
   efficientnet_lite0,efficientnet_lite2): same top-1 on cuda fp32 and cuda fp16 as on
   the CPU, and the largest logit difference;
2. classifier speed at each model's own input size: median network time on cpu, cuda
   fp32, cuda fp16, and a whole 640x480 frame (preprocessing included) on cuda fp16;
3. ONNX Runtime's CUDA provider, when the installed build has one (parity, speed);
4. defect detector: patch features on cuda (fp16) vs cpu, then fit + calibrate + evaluate
   on brick crops (100 normal for fitting and calibration, 40 + 40 to test) on both,
   and scoring time against the classifier at the same input size on cuda;
5. feature maps: EigenCAM and Grad-CAM peaks on cuda inside the cup / the cat;
6. one backbone pass for every head (core/shared.py's SharedBackbone on torch, fp16 on
   cuda): classifier + defect detector per 640x480 frame, own passes and shared, against
   the classifier alone; the shared answers against the own passes'.
A section that fails is reported and the others still run. Nothing here imports rclpy.
"""

import argparse
import json
import statistics
import sys
import time
import traceback

import numpy as np

CUP = (150, 20, 460, 300)  # same regions as test_feature_maps.py
CAT = (150, 0, 451, 300)


def median_ms(fn, runs: int = 100, warm: int = 10) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def photos():
    from skimage import data

    return {'chelsea': data.chelsea(), 'coffee': data.coffee()}


MODELS = ['efficientnet_lite0']


def classifier_parity(dev: str) -> dict:
    """Every model of --models: cuda fp32 / fp16 against the CPU on both photographs."""
    return {m: _parity(dev, m) for m in MODELS}


def _parity(dev: str, model: str) -> dict:
    from cnn_perception.core.classifier import load_classifier

    out = {}
    cpu = load_classifier(model, backend='torch', device='cpu')
    variants = {
        'cuda_fp32': load_classifier(model, backend='torch', device=dev),
        'cuda_fp16': load_classifier(model, backend='torch', device=dev, fp16=True),
    }
    for name, img in photos().items():
        ref = cpu.predict(img, top_k=1)
        row = {'cpu_top1': ref.results[0].label, 'cpu_p': round(ref.results[0].score, 4)}
        for v, clf in variants.items():
            p = clf.predict(img, top_k=1)
            row[f'{v}_top1'] = p.results[0].label
            row[f'{v}_p'] = round(p.results[0].score, 4)
            row[f'{v}_max_abs_logit_diff'] = float(np.abs(p.logits - ref.logits).max())
            row[f'{v}_same_top1'] = p.results[0].class_id == ref.results[0].class_id
        out[name] = row
    return out


def classifier_speed(dev: str) -> dict:
    """Every model of --models at its own input size, side by side in one run."""
    return {m: _speed(dev, m) for m in MODELS}


def _speed(dev: str, model: str) -> dict:
    from cnn_perception.core.classifier import load_classifier

    img = photos()['chelsea']
    frame = np.ascontiguousarray(np.resize(img, (480, 640, 3)))
    res = {}
    for name, kw in (
        ('cpu_fp32', {'device': 'cpu'}),
        ('cuda_fp32', {'device': dev}),
        ('cuda_fp16', {'device': dev, 'fp16': True}),
    ):
        clf = load_classifier(model, backend='torch', **kw)
        x = clf.preprocess(frame)
        res['input_size'] = clf.preprocess.crop
        res[f'{name}_network_ms'] = median_ms(lambda c=clf, x=x: c.backend.run(x))
        if name == 'cuda_fp16':
            res[f'{name}_frame_640x480_ms'] = median_ms(lambda c=clf: c.predict(frame))
    res['cuda_fp16_speedup_vs_cpu'] = res['cpu_fp32_network_ms'] / res['cuda_fp16_network_ms']
    res['cuda_fp16_speedup_vs_fp32'] = res['cuda_fp32_network_ms'] / res['cuda_fp16_network_ms']
    return res


def onnx_cuda(dev: str) -> dict:
    import onnxruntime as ort

    from cnn_perception.core.classifier import load_classifier

    have = ort.get_available_providers()
    res = {'onnxruntime': ort.__version__, 'providers': have}
    if 'CUDAExecutionProvider' not in have:
        res['note'] = 'this onnxruntime build has no CUDA provider (install onnxruntime-gpu)'
        return res
    cpu = load_classifier(backend='onnxruntime', device='cpu')
    gpu = load_classifier(backend='onnxruntime', device=dev)
    res['session_providers'] = gpu.backend.session.get_providers()
    img = photos()['coffee']
    a, b = cpu.predict(img, top_k=1), gpu.predict(img, top_k=1)
    res['same_top1'] = a.results[0].class_id == b.results[0].class_id
    res['max_abs_logit_diff'] = float(np.abs(a.logits - b.logits).max())
    x = gpu.preprocess(img)
    res['cuda_network_ms'] = median_ms(lambda: gpu.backend.run(x))
    return res


def defects(dev: str) -> dict:
    from cnn_perception.core.defect_eval import evaluate
    from cnn_perception.core.defects import (
        DefectDetector,
        DefectModel,
        FeatureExtractor,
        calibrate,
        fit,
    )
    from cnn_perception.tools.datasets import make_defect_images

    fit_normal, _, _ = make_defect_images('brick', 100, seed=1, with_defects=False)
    test_normal, test_defect, masks = make_defect_images('brick', 40, seed=2)
    res = {}
    ex = {
        'cpu': FeatureExtractor(backend='torch', device='cpu'),
        'cuda_fp16': FeatureExtractor(backend='torch', device=dev),
    }
    a, b = ex['cpu'](test_defect[0]), ex['cuda_fp16'](test_defect[0])
    res['feature_max_abs_diff'] = float(np.abs(a - b).max())
    res['feature_scale_p99'] = float(np.quantile(np.abs(a), 0.99))
    for name, e in ex.items():
        t0 = time.perf_counter()
        model = DefectModel(fit(fit_normal[:80], extractor=e, progress=False, log=lambda *_: 0))
        det = DefectDetector(model, extractor=e)
        how = calibrate(det, fit_normal[80:])
        fit_s = time.perf_counter() - t0
        rn = [det.detect(i) for i in test_normal]
        rd = [det.detect(i) for i in test_defect]
        m = evaluate(rn, rd, [k > 0 for k in masks])
        res[name] = {
            'fit_and_calibrate_s': round(fit_s, 2),
            'threshold': how['threshold'],
            **{k: m[k] for k in ('image_auroc', 'pixel_auroc', 'box_hit_rate')},
            'false_alarm_rate': m['false_alarm_rate'],
            'detect_ms': median_ms(lambda d=det: d.detect(test_defect[0]), runs=50),
        }
    from cnn_perception.core.classifier import load_classifier

    # the acceptance's comparison: both inference_ms, same input size, same device
    det = DefectDetector(model, extractor=ex['cuda_fp16'])
    clf = load_classifier(backend='torch', device=dev, fp16=True, input_size=model.input_size)
    img = test_defect[0]
    for _ in range(10):
        clf.predict(img)
        det.detect(img)
    c_ms = statistics.median(clf.predict(img).inference_ms for _ in range(100))
    d_ms = statistics.median(det.detect(img).inference_ms for _ in range(100))
    res['same_input_cuda'] = {
        'input_size': model.input_size,
        'classifier_inference_ms': c_ms,
        'defect_inference_ms': d_ms,
        'ratio': d_ms / c_ms,
    }
    return res


def feature_maps(dev: str) -> dict:
    from cnn_perception.core import feature_maps as fm

    model = fm.FeatureMapModel(backend='torch', device=dev)
    res = {}
    for name, img, box in (
        ('coffee', photos()['coffee'], CUP),
        ('chelsea', photos()['chelsea'], CAT),
    ):
        h, w = img.shape[:2]
        logits, acts = model.run(img)
        for method, cam in (
            ('eigencam', fm.eigen_cam(acts[model.cam_layer])),
            ('gradcam', model.grad_cam(img)),
        ):
            full = fm.cam_to_source(cam, model.preprocess, h, w)
            y, x = np.unravel_index(int(full.argmax()), full.shape)
            inside = box[0] <= x <= box[2] and box[1] <= y <= box[3]
            res[f'{name}_{method}'] = {'peak': [int(x), int(y)], 'inside': bool(inside)}
        res[f'{name}_top1'] = model.labels[int(np.argmax(logits))]
        res[f'{name}_layers'] = {k: list(v.shape) for k, v in acts.items()}
    return res


def shared_pass(dev: str) -> dict:
    """Time the classifier alone against classifier + defects, own passes and shared."""
    return {m: _shared(dev, m) for m in MODELS}


def _shared(dev: str, model: str) -> dict:
    """Per frame, as the nodes run them (preprocessing and the defect head included).

    Own passes: the classifier's (224 px centre crop) and the defect detector's (whole
    frame, 320 px, built-in brick model). Shared: core/shared.py's SharedBackbone on torch
    (fp16 on CUDA) serving the classifier and the built-in model fitted on its view.
    """
    from cnn_perception.core.classifier import SharedClassifier, load_classifier
    from cnn_perception.core.defects import DefectDetector, FeatureExtractor, load_defect_model
    from cnn_perception.core.defects.builtin import SHARED_GEOMETRY
    from cnn_perception.core.shared import SharedBackbone, SharedFeatures
    from cnn_perception.tools.bench_shared import median_ms_per_frame

    fp16 = dev.startswith('cuda')
    rng = np.random.default_rng(0)
    frames = []
    for img in photos().values():
        base = np.ascontiguousarray(np.resize(img, (480, 640, 3)))
        for _ in range(10):
            gain = rng.uniform(0.7, 1.3)
            f = np.clip(base * gain, 0, 255).astype(np.uint8)
            frames.append(f[:, ::-1] if rng.random() < 0.5 else f)
    clf = load_classifier(model, backend='torch', device=dev, fp16=fp16)
    sb = SharedBackbone.get(model, backend='torch', device=dev)
    sclf = SharedClassifier(sb)
    res = {'frames': len(frames), 'fp16': fp16}
    heads = {'alone': [clf.predict]}
    if model == 'efficientnet_lite0':  # the built-in defect models' backbone
        own_det = DefectDetector(load_defect_model('builtin:brick'), 'torch', dev)
        shared_model = load_defect_model('builtin:brick', shared=True)
        sh_det = DefectDetector(shared_model, extractor=SharedFeatures(sb))
        crop_det = DefectDetector(shared_model, 'torch', dev)
        heads['own_passes'] = [clf.predict, own_det.detect]
        heads['shared_pass'] = [sclf.predict, sh_det.detect]
        own_feats = FeatureExtractor(backend='torch', device=dev, **SHARED_GEOMETRY)
        f = frames[0]
        shared_feats = SharedFeatures(sb)(f.copy())
        if not isinstance(shared_feats, np.ndarray):  # a CUDA tensor
            shared_feats = shared_feats.cpu().numpy()
        res['defect_features_max_abs_diff'] = float(np.abs(own_feats(f) - shared_feats).max())
        res['defect_score_max_abs_diff_vs_own_crop_pass'] = max(
            abs(crop_det.detect(f).score - sh_det.detect(f.copy()).score) for f in frames[::5]
        )
        backend = sh_det.extractor.backend
        on_gpu = backend.name == 'torch' and backend.device.startswith('cuda')
        res['defect_search_on'] = 'gpu (torch.cdist)' if on_gpu else 'cpu'

    def per_frame(fns) -> float:
        return median_ms_per_frame(frames, fns, warm=5, rounds=3)

    for _ in range(2):  # interleaved: the second round is reported
        ms = {name: per_frame(fns) for name, fns in heads.items()}
    res.update({f'{k}_ms': v for k, v in ms.items()})
    for k in ('own_passes', 'shared_pass'):
        if k in ms:
            res[f'{k}_over_classifier'] = ms[k] / ms['alone']
    a = [clf.predict(f, top_k=1) for f in frames]
    b = [sclf.predict(f.copy(), top_k=1) for f in frames]
    res['top1_agreement'] = float(
        np.mean(
            [x.results[0].class_id == y.results[0].class_id for x, y in zip(a, b, strict=True)]
        )
    )
    res['max_abs_logit_diff'] = max(
        float(np.abs(x.logits - y.logits).max()) for x, y in zip(a, b, strict=True)
    )
    return res


def environment(dev: str) -> dict:
    import cv2
    import timm
    import torch

    env = {
        'python': sys.version.split()[0],
        'torch': torch.__version__,
        'timm': timm.__version__,
        'numpy': np.__version__,
        'opencv': cv2.__version__,
        'cuda_available': torch.cuda.is_available(),
    }
    if dev.startswith('cuda') and torch.cuda.is_available():
        env['gpu'] = torch.cuda.get_device_name(0)
        env['capability'] = list(torch.cuda.get_device_capability(0))
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--json', default=None, help='write the results here too')
    ap.add_argument(
        '--models',
        default=','.join(MODELS),
        help='comma-separated registry models for the classifier sections',
    )
    ap.add_argument('--sections', default='', help='comma-separated sections (default: all)')
    args = ap.parse_args()
    MODELS[:] = [m for m in args.models.split(',') if m]
    only = {x for x in args.sections.split(',') if x}
    report = {}
    ok = True
    for name, fn in (
        ('environment', environment),
        ('classifier_parity', classifier_parity),
        ('classifier_speed', classifier_speed),
        ('onnxruntime_cuda', onnx_cuda),
        ('defects', defects),
        ('feature_maps', feature_maps),
        ('shared_pass', shared_pass),
    ):
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        try:
            report[name] = fn(args.device)
        except Exception as exc:  # a broken section must not hide the others
            ok = False
            report[name] = {'error': f'{type(exc).__name__}: {exc}'}
            traceback.print_exc()
        print(f'== {name} ({time.perf_counter() - t0:.1f} s)', flush=True)
        print(json.dumps(report[name], default=str), flush=True)
    report['rclpy_imported'] = sys.modules.get('rclpy') is not None
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
