"""Multi-scale training of MDSR-BAM, as in the MDSR paper: one model, each step one scale.

L1 loss, Adam, a linear warm-up then cosine (or step) decay of the learning rate, optional gradient
clipping, bf16 autocast and channels_last. Checkpoints are atomic (temporary file, then rename) and
hold everything a resume needs; batches are a pure function of (seed, rank, step) (see ``data``), so
a run killed at any moment and resumed ends with the same weights as one never interrupted.
Started by ``torchrun``, it trains with DistributedDataParallel; only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import subprocess
import time
from dataclasses import MISSING, asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import torch
import torch.distributed as dist
from torch.nn import functional

from mdsr.data import PatchDataset, list_images, step_generator, warm_lr_cache
from mdsr.files import atomic_path
from mdsr.inference import Mode, autocast, bf16_supported, resolve_precision
from mdsr.model import MDSR, SUPPORTED_SCALES, MdsrConfig
from mdsr.weights import is_file_source, save_weights

log = logging.getLogger(__name__)

PRESETS = {
    "full": MdsrConfig(),
    "tiny": MdsrConfig(n_resblocks=2, n_feats=16, reduction=4),
}


def _option(default: Any, help: str, *, choices: tuple | None = None) -> Any:  # noqa: A002 (argparse's own word)
    """A TrainConfig field with the help (and choices) of its ``mdsr train`` option."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; ``mdsr train`` makes one option of each (the help is each field's ``help``)."""

    data: tuple[str, ...] = _option(MISSING, "folders (or files) of HR training images")
    out: str = _option(MISSING, "run folder: checkpoints, log.jsonl, curve.png, weights.safetensors")
    preset: str = _option("full", "the architecture", choices=tuple(PRESETS))
    scales: tuple[int, ...] = _option(SUPPORTED_SCALES, "scales to train, one drawn per step")
    patch_size: int = _option(48, "LR patch side in pixels")
    batch_size: int = _option(16, "patches per step (per process under torchrun)")
    steps: int = _option(10_000, "optimiser steps in all")
    lr: float = _option(1e-4, "peak learning rate (Adam)")
    warmup: int = _option(0, "steps of linear warm-up")
    schedule: str = _option(
        "cosine", "cosine: to --min-lr at the last step; step: halve every --decay-every", choices=("cosine", "step")
    )
    min_lr: float = _option(1e-6, "the cosine schedule's last learning rate")
    decay_every: int = _option(200_000, "steps between halvings (--schedule step)")
    clip_grad: float | None = _option(None, "clip the gradient norm to this")
    precision: str = _option(
        "auto", "autocast precision (weights stay fp32); auto: bf16 where native", choices=("auto", "fp32", "bf16")
    )
    channels_last: bool = _option(True, "channels-last activations (--no-channels-last turns them off)")
    seed: int = _option(0, "seed of the initialisation and of every batch")
    val_data: str | None = _option(
        None,
        "held-out images to choose best.pt on: a folder with HR/ (LR made with MATLAB bicubic), never a test set you report (scripts/prepare_data.sh makes one)",
    )
    val_every: int = _option(500, "steps between validations")
    checkpoint_every: int = _option(100, "steps between checkpoints (last.pt)")
    log_every: int = _option(10, "steps between log.jsonl records")
    cache_dir: str | None = _option(None, "where LR images are cached (default: memory only)")
    init: str | None = _option(
        None,
        "weights to start from (a file, super-image folder or Hub id load_model accepts), loaded strictly; a "
        "folder or Hub id holds one model per scale, so train one --scales from it",
    )
    max_minutes: float | None = _option(None, "stop cleanly (and save) after this many minutes")
    fit_minutes: float | None = _option(
        None, "set --steps so training ends in about this many minutes (timed on steps 20-120; needs --warmup >= 120)"
    )
    workers: int = _option(1, "processes that make the LR cache (with --cache-dir)")
    fp16_weights: bool = _option(False, "store the final weights in float16")
    hf_dataset: str | None = _option(None, "a Hub dataset id in super-image's layout (needs `datasets`)")
    hf_config: str | None = _option(None, "the Hub dataset's configuration")
    five_crop: bool = _option(False, "super-image's pre-augmentation: 4 corners + centre, half size")

    def __post_init__(self) -> None:
        """Every value checked when the config is made, so that a bad one is refused in one sentence naming
        its option before any work, never as a traceback (or untrained weights) partway through a run."""
        counts = ("patch_size", "batch_size", "steps", "decay_every", "val_every", "checkpoint_every", "log_every")
        for name in (*counts, "workers", "warmup"):
            value, least = getattr(self, name), 0 if name == "warmup" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{_flag(name)} must be a whole number of at least {least}, got {value!r}")
        for name in ("lr", "clip_grad", "max_minutes", "fit_minutes"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise ValueError(f"{_flag(name)} must be a finite number above 0, got {value!r}")
        if not _positive(self.min_lr, zero=True):
            raise ValueError(f"--min-lr must be a finite number of at least 0, got {self.min_lr!r}")
        if not self.scales or any(s not in SUPPORTED_SCALES for s in self.scales):
            raise ValueError(
                f"--scales takes one or more of {', '.join(map(str, SUPPORTED_SCALES))}, got {self.scales}"
            )
        for name, allowed in (("preset", tuple(PRESETS)), ("schedule", ("cosine", "step"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{_flag(name)} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def _flag(name: str) -> str:
    """A TrainConfig field as ``mdsr train`` spells its option."""
    return "--" + name.replace("_", "-")


def _positive(value: object, *, zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


class NonFiniteLossError(RuntimeError):
    pass


class StoppedBySignal(Exception):  # noqa: N818 (not an error: the run saved and can be resumed)
    """SIGINT or SIGTERM stopped the run; everything was saved first (``weights`` and last.pt). Raised so
    that a caller (and ``mdsr train``'s exit status, 128 + the signal) cannot take the run for finished."""

    def __init__(self, signum: int, step: int, weights: Path) -> None:
        self.signum, self.step, self.weights = signum, step, weights
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}, everything saved; --resume continues the run")


# Steps timed to size the schedule for ``fit_minutes``: after cuDNN's first-call tuning, and inside the
# warm-up, whose learning rate does not depend on the total number of steps.
FIT_FROM, FIT_TO = 20, 120


def fit_steps(cfg: TrainConfig, *, step: int, elapsed_s: float, probe_s: float) -> int:
    """The total steps that end the run ``cfg.fit_minutes`` after its start, at the rate of the
    ``FIT_TO - FIT_FROM`` steps that took ``probe_s`` seconds."""
    if cfg.fit_minutes is None:
        raise ValueError("fit_steps sizes a run that has fit_minutes")
    rate = (FIT_TO - FIT_FROM) / max(probe_s, 1e-9)
    return max(step + 1, step + int((cfg.fit_minutes * 60 - elapsed_s) * rate))


def init_from(model: MDSR, start: MDSR, *, source: str) -> None:
    """Copy ``start``'s weights into ``model``, strictly: every shared key must match in shape (weights of
    another width or depth are an error naming the keys). The only keys allowed to differ are whole
    scales: a scale ``model`` has and ``start`` lacks keeps its fresh initialisation, a scale only
    ``start`` has is left out; both are logged."""
    own, theirs = model.state_dict(), start.state_dict()
    mismatched = [k for k in own.keys() & theirs.keys() if own[k].shape != theirs[k].shape]
    if mismatched:
        raise ValueError(
            f"--init {source} does not fit this architecture: {len(mismatched)} tensors differ in shape "
            f"(e.g. {', '.join(sorted(mismatched)[:3])})"
        )

    def scale_of(key: str) -> str | None:
        parts = key.split(".")
        return parts[1] if parts[0] in ("pre_process", "upsample") else None

    def scales_of(keys: set[str]) -> list[str]:
        return sorted({s for s in map(scale_of, keys) if s is not None})

    missing, extra = own.keys() - theirs.keys(), theirs.keys() - own.keys()
    unexplained = [k for k in missing | extra if scale_of(k) is None]
    if unexplained:
        raise ValueError(
            f"--init {source} lacks or adds tensors outside the per-scale parts: {sorted(unexplained)[:3]}"
        )
    if missing:
        log.info("--init: scales %s start from scratch", scales_of(missing))
    if extra:
        log.info("--init: scales %s of %s are not trained here", scales_of(extra), source)
    model.load_state_dict({k: v for k, v in theirs.items() if k in own}, strict=False)


def training_precision(precision: str, device: torch.device) -> Mode:
    """ "auto" trains in bf16 where it is native (~1.9x fp32's speed on an AMX Xeon, the same losses to 3
    decimals; CUDA's tensor cores), else fp32; "fp32" and "bf16" are checked as for inference."""
    if precision == "int8":
        raise ValueError("int8 is an inference mode; train in fp32 or bf16")
    if precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return resolve_precision(precision, device)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Learning rate for ``step`` (0-based)."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "cosine":
        t = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(t, 1.0)))
    if cfg.schedule == "step":
        return cfg.lr * 0.5 ** (step // cfg.decay_every)
    raise ValueError(f"schedule must be 'cosine' or 'step', got {cfg.schedule!r}")


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: a crash leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


CHECKPOINT_FIELDS = {"model": dict, "config": dict, "train_config": str, "step": int, "history": list, "best": dict}


def load_checkpoint(path: Path) -> dict:
    """A checkpoint ``save_checkpoint`` wrote, loaded without running anything in it (``weights_only``).
    Anything else (a weights file, another pickle, one that carries code, not a pickle at all) is one
    ``ValueError`` naming the file; a file that cannot be opened stays an ``OSError``."""
    not_one = ValueError(f"{path} is not a training checkpoint (mdsr train's last.pt/best.pt)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception:  # what torch raises depends on the bytes: UnpicklingError, RuntimeError, KeyError, EOFError...
        raise not_one from None  # torch's own text offers to load the file unsafely: never passed on
    if not isinstance(ckpt, dict) or any(not isinstance(ckpt.get(k), kind) for k, kind in CHECKPOINT_FIELDS.items()):
        raise not_one
    return ckpt


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return Distributed(rank=rank, world=world, device=device)


def git_commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def build_dataset(cfg: TrainConfig, model_scales: tuple[int, ...], files: list[Path]) -> tuple[PatchDataset, int]:
    """The patches of the Hub dataset, or of ``files`` (the run's listing of its data folders)."""
    if cfg.hf_dataset:
        import datasets  # optional dependency, only for Hub datasets

        ds = datasets.load_dataset(cfg.hf_dataset, cfg.hf_config, split="train")
        return PatchDataset.from_hf_dataset(
            ds, scales=model_scales, patch_size=cfg.patch_size, five_crop=cfg.five_crop
        ), len(ds)
    data = PatchDataset.from_files(
        files, scales=model_scales, patch_size=cfg.patch_size, cache_dir=cfg.cache_dir, five_crop=cfg.five_crop
    )
    return data, len(files)


@dataclass
class Run:
    """A training run's state: what every step reads and changes, and what a checkpoint keeps."""

    cfg: TrainConfig
    ctx: Distributed
    model: MDSR
    optimizer: torch.optim.Optimizer
    precision: Mode
    out: Path
    step: int = 0
    best: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    stop_signal: int | None = None
    files: list[Path] = field(default_factory=list)  # the training images, listed once (none for a Hub dataset)

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best": self.best,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "config": self.model.config.to_dict(),
            "train_config": json.dumps(asdict(self.cfg)),
            "world": self.ctx.world,
            "steps": self.cfg.steps,
        }

    def record(self, entry: dict, log_file: IO[str]) -> None:
        self.history.append(entry)
        log_file.write(json.dumps(entry) + "\n")
        log_file.flush()


# What a run writes in its folder: any of them there means the folder holds a run.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "weights.safetensors", "curve.png")


def check_run_folder(cfg: TrainConfig, *, resume: bool) -> None:
    """Before any work: ``--out`` (and ``--cache-dir``) can be folders, and a new run never writes into
    another run's folder (it would replace last.pt and the weights, keep the old best.pt and add to the old
    log); ``--resume`` needs a last.pt beside the run's other files, and where there is none at all, starts
    afresh and says so."""
    from mdsr.export import check_folder

    out = Path(cfg.out)
    for option, folder in (("--out", out), ("--cache-dir", cfg.cache_dir)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            raise ValueError(f"{option} {folder} is a file; mdsr train writes into a folder there")
    found = [name for name in RUN_FILES if (out / name).exists()]
    if found and not resume:
        raise ValueError(
            f"{out} already holds a training run ({', '.join(found)}); --resume continues it, or give another --out"
        )
    if resume and "last.pt" not in found:
        if found:
            raise ValueError(f"{out} holds a training run ({', '.join(found)}) but no last.pt to resume from")
        log.warning("--resume: %s holds no last.pt; starting a new run there", out)
    if int(os.environ.get("RANK", "0")) == 0:
        check_folder(out, writer="mdsr train")


def check_inputs(cfg: TrainConfig) -> list[Path]:
    """Before any work: what the run will read can be read. Returns the training files (none for a Hub
    dataset), listed once for the run; the run's own folder is never among them."""
    files = [] if cfg.hf_dataset else list_images(cfg.data, exclude=[cfg.out])
    if not cfg.hf_dataset and not files:
        raise ValueError(f"no image files in {', '.join(cfg.data)} (by their names: .png, .jpg, ...)")
    if cfg.init and not is_file_source(cfg.init) and len(cfg.scales) > 1:
        raise ValueError(
            f"--init {cfg.init} is a super-image folder or Hub id, which holds one model per scale: train one "
            "scale from it (--scales 2, 3 or 4)"
        )
    from mdsr.evaluate import check_benchmark  # evaluation imports inference, not train

    if cfg.val_data:
        check_benchmark(cfg.val_data, cfg.scales, option="--val-data")
    if cfg.hf_dataset:
        try:
            import datasets  # noqa: F401 (optional dependency, only for Hub datasets)
        except ImportError:
            raise ValueError(
                '--hf-dataset needs the datasets package, which is not installed: pip install -e ".[datasets]"'
            ) from None
    return files


def build(cfg: TrainConfig, *, resume: bool = False) -> Run:
    """Check the config, make the LR cache, set up the device(s), the model (from --init) and Adam."""
    from mdsr.weights import load_model

    if cfg.precision == "int8":
        raise ValueError("int8 is an inference mode; train in fp32 or bf16")
    if cfg.fit_minutes and cfg.warmup < FIT_TO:
        raise ValueError(f"--fit-minutes times steps {FIT_FROM}-{FIT_TO} inside the warm-up: give --warmup >= {FIT_TO}")
    files = check_inputs(cfg)
    check_run_folder(cfg, resume=resume)  # last: it makes the folder
    if cfg.workers > 1 and cfg.cache_dir and not cfg.five_crop and not cfg.hf_dataset:
        # Before anything touches CUDA or starts threads: the workers are forked.
        warm_lr_cache(files, scales=cfg.scales, cache_dir=cfg.cache_dir, workers=cfg.workers)
    ctx = setup_distributed()
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # three input shapes (one per scale), each met thousands of times
    out = Path(cfg.out)  # made by check_run_folder
    torch.manual_seed(cfg.seed)
    model = MDSR(MdsrConfig.from_dict({**PRESETS[cfg.preset].to_dict(), "scales": cfg.scales}))
    if cfg.init:
        # A super-image source holds one model per scale: the one of the (single) scale trained here.
        scale = None if is_file_source(cfg.init) else cfg.scales[0]
        init_from(model, load_model(cfg.init, scale=scale), source=cfg.init)
    model.to(ctx.device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stub lacks it
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    return Run(cfg, ctx, model, optimizer, training_precision(cfg.precision, ctx.device), out, files=files)


def restore(run: Run) -> None:
    """Continue from ``last.pt``: weights, Adam's moments, step, history, best and the RNG."""
    ckpt = load_checkpoint(run.last_path)
    if ckpt["config"] != run.model.config.to_dict():
        raise ValueError(f"{run.last_path} was trained with another architecture: {ckpt['config']}")
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.step, run.best, run.history = ckpt["step"], ckpt["best"], ckpt["history"]
    if run.cfg.fit_minutes and run.step >= FIT_TO:  # the schedule was sized by the first segment: keep it
        run.cfg = replace(run.cfg, steps=ckpt.get("steps", run.cfg.steps))
    torch.set_rng_state(ckpt["torch_rng"])
    if run.ctx.main:
        forget_after(run.out, run.step)
    log.info("resumed from %s at step %d", run.last_path, run.step)


def forget_after(out: Path, step: int) -> None:
    """Resuming at ``step``: log.jsonl's records of later steps go (a crash after the checkpoint left them, and
    those steps run and log again), as does a record cut short by the crash; and so do the temporary files
    of checkpoints the crash interrupted."""
    for name in ("last.pt", "best.pt", "weights.safetensors"):
        for leftover in out.glob(f".{name}.*.tmp*"):
            leftover.unlink(missing_ok=True)
    log_path = out / "log.jsonl"
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines(keepends=True)

    def before(line: str) -> bool:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return False  # cut short
        return not isinstance(record, dict) or record.get("step", 0) <= step

    kept = [line for line in lines if before(line)]
    if kept != lines:
        with atomic_path(log_path) as tmp:
            tmp.write_text("".join(kept))


def train_step(run: Run, net: torch.nn.Module, data: PatchDataset) -> tuple[torch.Tensor, int]:
    """One optimiser step on one scale's batch; returns the loss (a tensor: reading it waits for a GPU)."""
    cfg, ctx = run.cfg, run.ctx
    # Every rank trains the same scale in a step (rank-independent draw), on its own patches.
    pick = step_generator(seed=cfg.seed, rank=0, step=run.step)
    scale = run.model.scales[int(torch.randint(len(run.model.scales), (1,), generator=pick))]
    gen = step_generator(seed=cfg.seed, rank=ctx.rank, step=run.step)
    lr_batch, hr_batch = data.sample(batch_size=cfg.batch_size, scale=scale, generator=gen)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    lr_batch, hr_batch = lr_batch.to(ctx.device, memory_format=fmt), hr_batch.to(ctx.device, memory_format=fmt)
    for group in run.optimizer.param_groups:
        group["lr"] = learning_rate(cfg, run.step)
    with autocast(run.precision, ctx.device):
        sr = net(lr_batch, scale)
    loss = functional.l1_loss(sr.float(), hr_batch)
    # On CUDA the loss is read only at steps that log or save, so the next batch is drawn while the GPU
    # still works (a NaN shows in every later loss, so it is caught all the same).
    step = run.step + 1
    if (ctx.device.type != "cuda" or step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0) and not bool(
        torch.isfinite(loss)
    ):
        raise NonFiniteLossError(
            f"the loss became {loss.item()} at step {run.step}; the last good checkpoint is {run.last_path} "
            "(try a lower --lr or --clip-grad)"
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.clip_grad:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad)
    run.optimizer.step()
    if (step % cfg.checkpoint_every == 0 or step == cfg.steps) and not bool(
        torch.stack([p.isfinite().all() for p in run.model.parameters()]).all()
    ):  # a finite loss can still end in non-finite weights: a checkpoint never keeps them (one sync)
        raise NonFiniteLossError(
            f"the weights became non-finite at step {step}; the last good checkpoint is {run.last_path} "
            "(try a lower --lr or --clip-grad)"
        )
    run.step = step
    return loss, scale


class ScheduleFit:
    """``--fit-minutes``: times steps FIT_FROM..FIT_TO, then sets the total steps (the same on every rank)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.probe_start: float | None = None

    def after_step(self, run: Run) -> bool:
        """True when it has just set ``run.cfg.steps``."""
        if not run.cfg.fit_minutes or run.step not in (FIT_FROM, FIT_TO) or run.step >= run.cfg.steps:
            return False
        if run.ctx.device.type == "cuda":
            torch.cuda.synchronize(run.ctx.device)
        now = time.monotonic()
        if run.step == FIT_FROM:
            self.probe_start = now
            return False
        if self.probe_start is None:
            return False
        # Every rank computes the same figure from its own clock; rank 0's decides for all.
        steps = torch.tensor(
            [fit_steps(run.cfg, step=run.step, elapsed_s=now - self.started, probe_s=now - self.probe_start)]
        )
        if run.ctx.world > 1:
            dist.broadcast(steps, src=0)
        run.cfg = replace(run.cfg, steps=int(steps))
        log.info("--fit-minutes %.1f: %d steps in all", run.cfg.fit_minutes, run.cfg.steps)
        return True


def validate_and_keep_best(run: Run, val_sets: dict, log_file: IO[str]) -> None:
    """PSNR on the held-out images at every scale; ``best.pt`` when their mean is the best so far."""
    from mdsr.evaluate import validate  # evaluation imports inference, not train

    run.model.eval()
    scores = {str(s): round(validate(run.model, pairs, s, precision=run.precision), 4) for s, pairs in val_sets.items()}
    run.model.train()
    run.record({"step": run.step, "val": scores}, log_file)
    log.info("step %d: validation PSNR %s", run.step, scores)
    mean_psnr = sum(scores.values()) / len(scores)
    if mean_psnr > run.best.get("mean_psnr", -1.0):
        run.best = {"step": run.step, "mean_psnr": mean_psnr, "psnr": scores}
        save_checkpoint(run.out / "best.pt", run.state())
    plot_history(run.history, run.out / "curve.png")


def finish(run: Run, data: PatchDataset, n_files: int) -> Path:
    """Save ``last.pt``, the curve and ``weights.safetensors`` with its provenance; compare ranks' weights."""
    cfg, ctx = run.cfg, run.ctx
    final = run.out / "weights.safetensors"
    if ctx.main:
        save_checkpoint(run.last_path, run.state())
        plot_history(run.history, run.out / "curve.png")
        metadata = provenance(cfg, step=run.step, history=run.history, best=run.best, world=ctx.world)
        metadata.update({"images": len(data), "files": n_files, "precision": run.precision})
        dtype = torch.float16 if cfg.fp16_weights else torch.float32
        save_weights(run.model, final, dtype=dtype, metadata=metadata)
    if ctx.world > 1:
        # Every rank reports a hash of its own weights; rank 0 logs them, so a drift would show.
        digests = [None] * ctx.world
        dist.all_gather_object(digests, weights_digest(run.model))
        if ctx.main:
            with open(run.out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": run.step, "ranks": ctx.world, "weights_sha256": digests}) + "\n")
        dist.barrier()
        dist.destroy_process_group()
    return final


def train(cfg: TrainConfig, *, resume: bool = False, show_progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the final weights file. Stopped by SIGINT or SIGTERM,
    it saves as at the end, then raises ``StoppedBySignal``."""
    from mdsr.evaluate import load_benchmark

    run = build(cfg, resume=resume)
    if resume and run.last_path.exists():
        restore(run)
    net: torch.nn.Module = run.model
    if run.ctx.world > 1:
        # Each step uses one scale's pre-process and upsampler; the other scales' stay unused.
        net = torch.nn.parallel.DistributedDataParallel(
            run.model,
            device_ids=[run.ctx.device.index] if run.ctx.device.type == "cuda" else None,
            find_unused_parameters=len(run.model.scales) > 1,
        )
    data, n_files = build_dataset(run.cfg, run.model.scales, run.files)
    main, cfg = run.ctx.main, run.cfg
    val_sets = {s: load_benchmark(cfg.val_data, s) for s in run.model.scales} if (cfg.val_data and main) else {}

    def on_signal(signum: int, _frame: object) -> None:
        run.stop_signal = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    log_file = open(run.out / "log.jsonl", "a") if main else None  # noqa: SIM115 (closed in the finally below)
    bar = tqdm_bar(total=cfg.steps, initial=run.step) if main and show_progress else None
    started = window_start = time.monotonic()
    window_patches, fit = 0, ScheduleFit(started)
    try:
        net.train()
        while run.step < run.cfg.steps and run.stop_signal is None:
            loss, scale = train_step(run, net, data)
            window_patches += run.cfg.batch_size * run.ctx.world
            if fit.after_step(run) and bar is not None:
                bar.total = run.cfg.steps
            if not main or log_file is None:  # only the main process logs, validates and saves
                continue
            cfg, step = run.cfg, run.step
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.monotonic()
                rate = window_patches / max(now - window_start, 1e-9)
                window_patches, window_start = 0, now
                run.record(
                    {"step": step, "scale": scale, "loss": round(loss.item(), 6), "lr": learning_rate(cfg, step - 1),
                     "patches_per_s": round(rate, 2), "elapsed_s": round(now - started, 1)},
                    log_file,
                )  # fmt: skip
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.4f}", scale=scale, patches_s=f"{rate:.1f}")
            if bar is not None:
                bar.update(1)
            if val_sets and (step % cfg.val_every == 0 or step == cfg.steps):
                validate_and_keep_best(run, val_sets, log_file)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(run.last_path, run.state())
            if cfg.max_minutes and time.monotonic() - started > cfg.max_minutes * 60:
                log.info("time limit reached at step %d", step)
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
    final = finish(run, data, n_files)
    if run.stop_signal is not None:
        raise StoppedBySignal(run.stop_signal, run.step, final)
    return final


def tqdm_bar(*, total: int, initial: int) -> Any:  # a tqdm bar
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def export_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, *, fp16: bool = False, note: str | None = None
) -> Path:
    """Turn a training checkpoint (``last.pt``/``best.pt``) into a weights file, with its provenance
    (and ``note``, free text such as how the run was resumed)."""
    ckpt = load_checkpoint(Path(checkpoint))
    model = MDSR(MdsrConfig.from_dict(ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    cfg = TrainConfig(**json.loads(ckpt["train_config"]))
    metadata = provenance(
        cfg, step=ckpt["step"], history=ckpt["history"], best=ckpt["best"], world=ckpt.get("world", 1)
    )
    metadata["checkpoint"] = Path(checkpoint).name
    if note:
        metadata["note"] = note
    return save_weights(model, out, dtype=torch.float16 if fp16 else torch.float32, metadata=metadata)


def provenance(cfg: TrainConfig, *, step: int, history: list[dict], best: dict, world: int) -> dict:
    """What a weights file records about the run that made it."""
    return {
        "data": [cfg.hf_dataset] if cfg.hf_dataset else list(cfg.data),
        "steps": step,
        "scales": list(cfg.scales),
        "patch_size": cfg.patch_size,
        "batch_size": cfg.batch_size * world,
        "lr": cfg.lr,
        "schedule": cfg.schedule,
        "seed": cfg.seed,
        **({"init": cfg.init} if cfg.init else {}),  # fine-tuned from these weights (the source as given)
        "git_commit": git_commit(),
        "validation": cfg.val_data or "none",
        "final_val_psnr": next((h["val"] for h in reversed(history) if "val" in h), None),
        "best": best,
    }


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def plot_history(history: list[dict], path: Path) -> None:
    """Training loss (smoothed) and validation PSNR per scale against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    vals = [(h["step"], h["val"]) for h in history if "val" in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    if losses:
        steps, values = zip(*losses, strict=True)
        k = max(1, len(values) // 50)
        smooth = [
            sum(values[max(0, i - k + 1) : i + 1]) / len(values[max(0, i - k + 1) : i + 1]) for i in range(len(values))
        ]
        ax1.plot(steps, values, alpha=0.3, color="tab:blue")
        ax1.plot(steps, smooth, color="tab:blue")
        ax1.set_yscale("log")
    ax1.set(title="training L1 loss", xlabel="step")
    for scale in sorted({s for _, v in vals for s in v}):
        pts = [(st, v[scale]) for st, v in vals if scale in v]
        ax2.plot(*zip(*pts, strict=True), marker="o", label=f"x{scale}")
    ax2.set(title="validation PSNR (Y, dB)", xlabel="step")
    if vals:
        ax2.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
