"""`train`: transfer learning on a folder of images, one sub-folder per class."""

import argparse
from pathlib import Path

from cnn_perception.core.models import DEFAULT_MODEL


def add_parser(sub) -> None:
    p = sub.add_parser('train', help='transfer learning: new final layer on a small dataset')
    p.add_argument('--data', type=Path, required=True, help='folder with one folder per class')
    p.add_argument('--out', type=Path, required=True, metavar='CKPT', help='checkpoint to write')
    p.add_argument('--arch', default=DEFAULT_MODEL)
    p.add_argument('--weights', default=None, help='pretrained weights for --arch')
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--val-fraction', type=float, default=0.2)
    p.add_argument(
        '--freeze-backbone',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='train only the new final layer (default) or the whole network',
    )
    p.add_argument(
        '--augment',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='random rotations, flips, colour jitter and zoom/crop',
    )
    p.add_argument('--seed', type=int, default=0)
    p.set_defaults(func=_train)


def _train(args) -> int:
    from cnn_perception.core.training import TrainConfig, format_confusion, train

    res = train(
        TrainConfig(
            data=args.data,
            out=args.out,
            arch=args.arch,
            weights=args.weights,
            epochs=args.epochs,
            lr=args.lr,
            batch_size=args.batch_size,
            freeze_backbone=args.freeze_backbone,
            augment=args.augment,
            val_fraction=args.val_fraction,
            seed=args.seed,
        )
    )
    print(f'\nvalidation accuracy {res.val_accuracy:.1%} after {res.seconds:.0f} s')
    print(format_confusion(res.labels, res.confusion))
    print(f'\ncheckpoint: {res.checkpoint}\ncurves:     {res.curves}')
    return 0
