"""The ``mdsr`` command: upscale, downscale, train, evaluate.

Errors a user can cause (a missing file, a bad image, a wrong scale) end in one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train MDSR-BAM on folders of HR images")
    p.add_argument("data", nargs="*", help="folders (or files) of HR training images")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, curve.png, weights.safetensors")
    p.add_argument("--preset", choices=["full", "tiny"], default="full")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4], choices=[2, 3, 4])
    p.add_argument("--patch-size", type=int, default=48, help="LR patch side in pixels")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--schedule", choices=["cosine", "step"], default="cosine")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--decay-every", type=int, default=200_000)
    p.add_argument("--clip-grad", type=float, default=None)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-data", default=None, help="benchmark folder (HR/ ...); default ../shared/data/benchmark/Set5 if present")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--cache-dir", default=None, help="where LR images are cached (default: memory only)")
    p.add_argument("--init", default=None, help="weights to start from")
    p.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this many minutes")
    p.add_argument("--fp16-weights", action="store_true", help="store the final weights in float16")
    p.add_argument("--hf-dataset", default=None, help="a Hub dataset id in super-image's layout (needs `datasets`)")
    p.add_argument("--hf-config", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from mdsr.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.data and not args.hf_dataset:
        raise ValueError("give at least one folder of training images (or --hf-dataset)")
    val = args.val_data
    if val is None:
        default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "benchmark" / "Set5"
        val = str(default) if default.is_dir() else None
    cfg = TrainConfig(
        data=tuple(args.data), out=args.out, preset=args.preset, scales=tuple(args.scales), patch_size=args.patch_size,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, warmup=args.warmup, schedule=args.schedule,
        min_lr=args.min_lr, decay_every=args.decay_every, clip_grad=args.clip_grad, precision=args.precision,
        channels_last=not args.no_channels_last, seed=args.seed, val_data=val, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, cache_dir=args.cache_dir, init=args.init,
        max_minutes=args.max_minutes, fp16_weights=args.fp16_weights, hf_dataset=args.hf_dataset, hf_config=args.hf_config,
    )
    final = train(cfg, resume=args.resume)
    print(f"weights: {final}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdsr", description="MDSR-BAM super-resolution")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
