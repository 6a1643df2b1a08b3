"""Transfer learning (the source material's recipe) on an ImageFolder-style directory.

Take the pretrained network, freeze its layers, replace the final layer by one with a
class per folder, and train that new head on a small dataset with augmentation (random
rotations, flips, colour jitter, zoom/crop). Validation images go through exactly the
preprocessing the deployed model uses (`Preprocess`), so the reported accuracy is the
accuracy `classify` and the node will see.
"""

from dataclasses import dataclass, field
from pathlib import Path
import time

import numpy as np

from cnn_perception.core.models import DEFAULT_MODEL, ModelInfo, get_model, save_checkpoint
from cnn_perception.errors import UserError


@dataclass
class TrainConfig:
    data: Path
    out: Path
    arch: str = DEFAULT_MODEL
    weights: str | None = None
    epochs: int = 5
    lr: float = 3e-3
    batch_size: int = 16
    freeze_backbone: bool = True
    augment: bool = True
    val_fraction: float = 0.2
    seed: int = 0
    num_threads: int = 0


@dataclass
class TrainResult:
    checkpoint: Path
    curves: Path
    labels: list[str]
    history: list[dict] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    val_accuracy: float = 0.0
    seconds: float = 0.0


def replace_head(model, arch: str, num_classes: int):
    """Swap the final layer for a fresh one with `num_classes` outputs; return it."""
    from cnn_perception.core.models import model_entry

    swap = model_entry(arch).replace_head
    if swap is None:
        raise UserError(f'no head replacement known for {arch}')
    return swap(model, num_classes)


def _split(targets: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified split: the same share of every class goes to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    targets = np.asarray(targets)
    for c in np.unique(targets):
        idx = rng.permutation(np.flatnonzero(targets == c))
        k = max(1, round(len(idx) * fraction)) if len(idx) > 1 else 0
        val += idx[:k].tolist()
        train += idx[k:].tolist()
    return train, val


def train(cfg: TrainConfig, log=print) -> TrainResult:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms
    from tqdm import tqdm

    if not Path(cfg.data).is_dir():
        raise UserError(f'{cfg.data}: no such dataset folder (one sub-folder per class)')
    torch.manual_seed(cfg.seed)
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    model, info = get_model(cfg.arch, weights=cfg.weights)
    pre = info.preprocess

    def deploy_transform(img):  # PIL -> the exact tensor `classify` feeds the network
        return torch.from_numpy(pre(np.asarray(img.convert('RGB')))[0])

    aug = transforms.Compose(
        [
            transforms.RandomResizedCrop(pre.crop, scale=(0.5, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomRotation(20),
            transforms.ColorJitter(0.3, 0.3, 0.3, 0.02),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    try:
        train_set = datasets.ImageFolder(
            str(cfg.data), transform=aug if cfg.augment else deploy_transform
        )
        val_set = datasets.ImageFolder(str(cfg.data), transform=deploy_transform)
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f'{cfg.data}: {exc}') from exc
    labels = list(train_set.classes)
    if len(labels) < 2:
        raise UserError(f'{cfg.data}: need at least two class folders, found {labels}')
    tr_idx, va_idx = _split(train_set.targets, cfg.val_fraction, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_loader = DataLoader(
        Subset(train_set, tr_idx), batch_size=cfg.batch_size, shuffle=True, generator=gen
    )
    val_loader = DataLoader(Subset(val_set, va_idx), batch_size=32)

    head = replace_head(model, info.arch, len(labels))
    if cfg.freeze_backbone:
        for p in model.parameters():
            p.requires_grad = False
        for p in head.parameters():
            p.requires_grad = True
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.epochs))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    log(
        f'train: {info.arch}, {len(labels)} classes {labels}, {len(tr_idx)} train / '
        f'{len(va_idx)} val images, backbone {"frozen" if cfg.freeze_backbone else "trained"}, '
        f'{sum(p.numel() for p in params):,} trainable parameters'
    )

    history = []
    t0 = time.monotonic()
    y_true: list[int] = []
    y_pred: list[int] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        if cfg.freeze_backbone:
            model.eval()  # frozen BatchNorm statistics: the small set must not move them
            head.train()
        total, correct, loss_sum = 0, 0, 0.0
        for x, y in tqdm(
            train_loader, desc=f'epoch {epoch}/{cfg.epochs}', leave=False, unit='batch'
        ):
            opt.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            loss_sum += float(loss) * len(y)
            correct += int((out.argmax(1) == y).sum())
            total += len(y)
        sched.step()
        model.eval()
        y_true, y_pred, val_loss = [], [], 0.0
        with torch.inference_mode():
            for x, y in val_loader:
                out = model(x)
                val_loss += float(loss_fn(out, y)) * len(y)
                y_true += y.tolist()
                y_pred += out.argmax(1).tolist()
        n_val = max(1, len(y_true))
        row = {
            'epoch': epoch,
            'train_loss': loss_sum / max(1, total),
            'train_acc': correct / max(1, total),
            'val_loss': val_loss / n_val,
            'val_acc': float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if y_true else 0.0,
        }
        history.append(row)
        log(
            f'epoch {epoch}/{cfg.epochs}: train loss {row["train_loss"]:.3f} acc '
            f'{row["train_acc"]:.1%} | val loss {row["val_loss"]:.3f} acc {row["val_acc"]:.1%}'
        )
    seconds = time.monotonic() - t0
    cm = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).tolist()

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metrics = {
        'val_accuracy': history[-1]['val_acc'],
        'confusion_matrix': cm,
        'history': history,
        'train_images': len(tr_idx),
        'val_images': len(va_idx),
        'train_seconds': seconds,
    }
    info = ModelInfo(out.stem, info.arch, labels, pre, out, metrics)
    save_checkpoint(out, model, info)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ep = [h['epoch'] for h in history]
    ax1.plot(ep, [h['train_loss'] for h in history], 'o-', label='train')
    ax1.plot(ep, [h['val_loss'] for h in history], 's-', label='validation')
    ax1.set(xlabel='epoch', ylabel='loss', title='Loss')
    ax2.plot(ep, [h['train_acc'] for h in history], 'o-', label='train')
    ax2.plot(ep, [h['val_acc'] for h in history], 's-', label='validation')
    ax2.set(xlabel='epoch', ylabel='accuracy', title='Accuracy', ylim=(0, 1.02))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f'Transfer learning: {info.arch} -> {len(labels)} classes')
    fig.tight_layout()
    curves = out.with_name(out.stem + '_curves.png')
    fig.savefig(curves, dpi=100)
    plt.close(fig)
    return TrainResult(out, curves, labels, history, cm, history[-1]['val_acc'], seconds)


def format_confusion(labels: list[str], cm: list[list[int]]) -> str:
    w = max(8, *(len(lb) for lb in labels)) + 1
    first = max(w, len('true \\ predicted') + 1)
    lines = ['true \\ predicted'.ljust(first) + ''.join(lb.rjust(w) for lb in labels)]
    for lb, row in zip(labels, cm, strict=True):
        lines.append(lb.ljust(first) + ''.join(str(v).rjust(w) for v in row))
    return '\n'.join(lines)
