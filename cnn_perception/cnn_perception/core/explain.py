"""The CNN algorithm in numbers (demo D4b): every layer's shape arithmetic.

For each leaf layer: type, kernel F, stride S, padding P, input and output size, the
output size checked against floor((W - F + 2P) / S) + 1, the receptive field of one
output pixel in input pixels, its parameters and its multiply-adds. Shapes are recorded
with forward hooks during one real forward pass, so nothing is guessed.
"""

from dataclasses import asdict, dataclass


@dataclass
class LayerRow:
    name: str
    type: str
    kernel: int | None
    stride: int | None
    padding: int | None
    in_shape: list[int]
    out_shape: list[int]
    formula_size: int | None  # floor((W - F + 2P) / S) + 1, None where it does not apply
    formula_ok: bool | None
    receptive_field: int
    jump: int  # distance in input pixels between neighbouring output pixels
    params: int
    macs: int


def conv_output_size(w: int, f: int, p: int, s: int, dilation: int = 1) -> int:
    """floor((W - F + 2P) / S) + 1, with the dilated kernel size as F."""
    f_eff = dilation * (f - 1) + 1
    return (w - f_eff + 2 * p) // s + 1


def _first(v):
    return v[0] if isinstance(v, tuple | list) else v


def explain_model(model, input_size: int = 224) -> dict:
    import torch
    from torch import nn

    rows: list[LayerRow] = []
    rf, jump = 1, 1  # receptive field and jump, along the main (spatial) path
    hooks = []

    def hook(name):
        def fn(mod, inputs, output):
            nonlocal rf, jump
            x = inputs[0]
            if not isinstance(x, torch.Tensor) or not isinstance(output, torch.Tensor):
                return
            in_shape, out_shape = list(x.shape[1:]), list(output.shape[1:])
            params = sum(p.numel() for p in mod.parameters(recurse=False))
            k = s = p = formula = ok = None
            macs = 0
            if isinstance(mod, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
                k, s = _first(mod.kernel_size), _first(mod.stride)
                pad = mod.padding
                p = 0 if isinstance(pad, str) else _first(pad)
                dil = _first(getattr(mod, 'dilation', 1))
                if isinstance(pad, str):  # 'same' padding: solve for the P actually used
                    p = ((out_shape[-1] - 1) * s + dil * (k - 1) + 1 - in_shape[-1] + 1) // 2
                formula = conv_output_size(in_shape[-1], k, p, s, dil)
                ok = formula == out_shape[-1]
                # Only layers with a spatial window change the receptive field.
                if in_shape[-1] > 1:
                    rf += (dil * (k - 1)) * jump
                    jump *= s
                if isinstance(mod, nn.Conv2d):
                    per_out = (mod.in_channels // mod.groups) * k * _first(mod.kernel_size[1:])
                    macs = per_out * out_shape[0] * out_shape[1] * out_shape[2]
            elif isinstance(mod, nn.Linear):
                macs = mod.in_features * mod.out_features
            elif isinstance(mod, nn.AdaptiveAvgPool2d) and len(in_shape) == 3:
                rf += (in_shape[-1] - 1) * jump
            elif isinstance(mod, nn.BatchNorm2d):
                macs = out_shape[0] * out_shape[1] * out_shape[2]
            rows.append(
                LayerRow(
                    name,
                    type(mod).__name__,
                    k,
                    s,
                    p,
                    in_shape,
                    out_shape,
                    formula,
                    ok,
                    rf,
                    jump,
                    params,
                    macs,
                )
            )

        return fn

    for name, mod in model.named_modules():
        # Leaves, plus containers that own parameters themselves (timm's BatchNormAct2d
        # holds the BN weights and wraps its activation as a child).
        if not list(mod.children()) or any(True for _ in mod.parameters(recurse=False)):
            hooks.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    leaf_params = sum(r.params for r in rows)
    model_params = sum(p.numel() for p in model.parameters())
    return {
        'input_size': input_size,
        'layers': [asdict(r) for r in rows],
        'totals': {
            'params': leaf_params,
            'model_params': model_params,
            'macs': sum(r.macs for r in rows),
            'layers': len(rows),
            'formula_checked': sum(r.formula_ok is not None for r in rows),
            'formula_failed': sum(r.formula_ok is False for r in rows),
        },
    }


def format_table(report: dict) -> str:
    head = f'{"layer":<34} {"type":<18} {"F":>2} {"S":>2} {"P":>2} {"in":>14} {"out":>14} '
    head += f'{"check":>6} {"RF":>4} {"params":>9} {"MACs":>11}'
    lines = [head, '-' * len(head)]

    def shape(s):
        return 'x'.join(str(v) for v in s)

    for r in report['layers']:
        check = '' if r['formula_ok'] is None else ('ok' if r['formula_ok'] else 'FAIL')
        lines.append(
            f'{r["name"][:34]:<34} {r["type"][:18]:<18} {r["kernel"] or "":>2} '
            f'{r["stride"] or "":>2} {"" if r["padding"] is None else r["padding"]:>2} '
            f'{shape(r["in_shape"]):>14} {shape(r["out_shape"]):>14} {check:>6} '
            f'{r["receptive_field"]:>4} {r["params"]:>9,} {r["macs"]:>11,}'
        )
    t = report['totals']
    lines.append('-' * len(head))
    lines.append(
        f'{t["layers"]} layers, {t["params"]:,} parameters (model: {t["model_params"]:,}), '
        f'{t["macs"] / 1e6:,.1f} M multiply-adds at {report["input_size"]}x'
        f'{report["input_size"]}; output size formula checked on {t["formula_checked"]} '
        f'layers, {t["formula_failed"]} mismatches'
    )
    return '\n'.join(lines)
