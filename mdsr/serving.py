"""Serving requests: one path from arrival to result for the demo's single, A/B, batch and API requests
and for the CLI.

An entry point builds a ``Request``, ``admit``s it once against its ``Limits`` (every limit, from the
images' headers, before any pixel is decoded) and ``run``s the admitted request once: each image is
decoded once, its ground truth made or fitted once, bicubic made only where shown or scored, the chosen
weights (and, in an A/B comparison, weights B on the same input) run, scored, and the output written
atomically where the caller's ``Outputs`` say. Framework-free: ``app.py`` (through
``mdsr.gradio_adapter``) and ``mdsr.cli`` are thin callers. Every refusal is a ``RefusedError`` whose
sentence names the limit it hit and the request's own figure.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from mdsr.compare import (
    Comparison,
    Metrics,
    check_ground_truth_size,
    compare,
    crop_region,
    overview_of,
    own_truth_sizes,
    region_at,
)
from mdsr.files import atomic_path, output_names
from mdsr.imaging import (
    OUTPUT_FORMATS,
    ImageError,
    image_size,
    output_format,
    preview_rgb,
    read_image,
    save_picture,
)
from mdsr.inference import Precision, RunInfo, Trunk, on_zerogpu, resolve_precision
from mdsr.limits import OUTPUT_BYTES, describe_passes, request_memory_mb, work_pixels
from mdsr.model import MDSR, SUPPORTED_SCALES
from mdsr.sizing import SizePlan, Target, parse_factor, parse_size
from mdsr.sizing import plan as plan_size
from mdsr.weights import LoadedWeights, WeightsError

Source = str | os.PathLike | io.BytesIO  # a file's path, or the bytes of a zip member
GroundTruth = Literal["none", "upload", "self"]
UNLIMITED = 2**62


class RefusedError(ValueError):
    """A request (or one image of it) refused before any work, with the sentence to show its sender."""


@dataclass(frozen=True)
class Limits:
    """Everything one request may use; ``DEMO_LIMITS`` for the public demo, ``CLI_LIMITS`` for one machine."""

    file_bytes: int  # per file, however it arrives
    input_pixels: int
    output_pixels: int
    work_pixels: int  # output pixels x network passes, over every image and model of the request
    memory_mb: float  # estimated peak memory of the process for one image (``mdsr.limits``)
    base_mb: float  # the process at rest, with its weights loaded (measured; part of every estimate)
    batch_images: int
    batch_bytes: int  # what a batch's zips may unpack to
    jobs_per_client: int  # waiting or running at once, per client address
    jobs: int  # waiting or running at once, in all


# A 2-vCPU Space with a few GB: one request at a time, each bounded in memory and in time (the work limit
# is ~2-3 minutes of int8 inference there); inputs of up to ~2 megapixels.
DEMO_LIMITS = Limits(
    file_bytes=20_000_000, input_pixels=2_100_000, output_pixels=4096 * 4096, work_pixels=4096 * 4096,
    memory_mb=1500, base_mb=550, batch_images=16, batch_bytes=20_000_000, jobs_per_client=2, jobs=16,
)  # fmt: skip
# One's own machine: a 12-megapixel phone photo at x2 within 4 GB (the trunk streamed), nothing else bounded.
CLI_LIMITS = Limits(
    file_bytes=UNLIMITED, input_pixels=50_000_000, output_pixels=200_000_000, work_pixels=UNLIMITED,
    memory_mb=4000, base_mb=350, batch_images=UNLIMITED, batch_bytes=UNLIMITED, jobs_per_client=1, jobs=1,
)  # fmt: skip


def check_file_size(size: int, limits: Limits) -> None:
    if size > limits.file_bytes:
        raise RefusedError(f"the file is {size:,} bytes; the limit is {limits.file_bytes:,} bytes")


# --------------------------------------------------------------------------------------------------
# What a request asks for
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One image of a request: its name (for tables and output names), where it is, and its ground truth
    where one was uploaded. ``problem`` marks an item that could not even be taken out of its archive."""

    name: str
    source: Source | None
    truth: Source | None = None
    problem: str = ""


@dataclass(frozen=True)
class Region:
    """For a photo over the limits (the demo's UI): upscale the largest part of it that fits, keeping its
    aspect ratio, around ``center`` ((x, y) as fractions of the width and height) or, where None, around
    its most detailed part. Only without a ground truth, and for photos of at most REGION_DECODE_PIXELS."""

    center: tuple[float, float] | None = None


REGION_DECODE_PIXELS = 24_000_000  # the largest photo the demo decodes whole to cut a region from (6000x4000)


@dataclass(frozen=True)
class Request:
    """What to do: ``items`` (one, or a batch), the scale, the weights (a name the caller's loader knows),
    ``versus`` (weights B: an A/B comparison), the precision, the ground truth ("upload": each item's
    ``truth``; "self": the image itself, downscaled), self-ensemble, whether the bicubic picture is kept, and
    whether the caller makes ``views`` of the results (the demo's previews, zoom and error maps: they count
    towards its memory). With ``each``, items stand alone (a batch, the CLI): one item's refusal or failure
    is its own row."""

    items: tuple[Item, ...]
    scale: object  # as sent: 2, 3, 4 or another factor, checked by ``admit``
    weights: str = "auto"
    versus: str | None = None
    precision: object = "auto"
    truth: GroundTruth = "none"
    self_ensemble: bool = False
    bicubic: bool = False
    views: bool = False
    each: bool = False
    size: object = None  # instead of a scale: a sizing.Target, or text such as "1920x1080" (fit inside)
    region: Region | None = None  # the demo: a photo over the limits gives its largest part that fits

    @property
    def models(self) -> int:
        return 2 if self.versus else 1


@dataclass(frozen=True)
class Plan:
    """An item as admitted: its network input's size from the header (None where unreadable: decoding will
    say why), the stages and exact size of its output (``sizing``), the trunk it will run with, or why it
    was refused."""

    item: Item
    size: tuple[int, int] | None = None
    sizing: SizePlan | None = None
    trunk: Trunk = "whole"
    refusal: str = ""
    crop: tuple[int, int] | None = None  # the region's size, where the whole image is over the limits
    whole: tuple[int, int] | None = None  # the whole image's size, then
    over: str = ""  # why the whole image was not taken, then


@dataclass(frozen=True)
class Admitted:
    request: Request
    target: int | Target  # a trained scale, or another factor or size
    precision: Precision
    plans: tuple[Plan, ...]
    limits: Limits
    work: int
    memory_mb: float

    @property
    def tag(self) -> str:
        return tag_of(self.target)


def tag_of(target: int | Target) -> str:
    """What output names say of the size, each ask its own name (a kept file is never one made for another
    ask): x2, x1.5, x2.0000001, w1920, h1080, 1920x1080 (that exact size) or fit1920x1080."""
    if not isinstance(target, Target):
        return f"x{target}"
    if target.factor is not None:
        return f"x{target.factor:.15g}"
    if target.fit is not None:
        return f"fit{target.fit[0]}x{target.fit[1]}"
    if target.width and target.height:
        return f"{target.width}x{target.height}"
    return f"w{target.width}" if target.width else f"h{target.height}"


def parse_target(scale: object, size: object = None) -> int | Target:
    """The output size asked for: ``size`` (a ``sizing.Target`` or text such as "1920x1080") where given,
    else ``scale``: 2, 3 or 4 (the network alone), or another factor from 1.1 to 8."""
    if size is not None and size != "":
        return size if isinstance(size, Target) else parse_size(size)
    if scale is None or scale == "":
        raise ValueError("the scale must be given (a factor from 1.1 to 8), or a size such as 1920x1080")
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale in SUPPORTED_SCALES:
        return int(scale)
    return Target(factor=parse_factor(scale))


def admit(request: Request, limits: Limits, *, device: str = "cpu") -> Admitted:
    """Check every limit of ``request`` from its arguments and the images' headers; raise ``RefusedError``
    for the request, or (with ``request.each``) mark each refused item with its sentence."""
    try:
        target = parse_target(request.scale, request.size)
        precision = resolve_precision(request.precision, device) if request.precision != "auto" else "auto"
    except ValueError as err:
        raise RefusedError(str(err)) from None
    if request.truth not in ("none", "upload", "self"):
        raise RefusedError(f"ground truth must be 'none', 'upload' or 'self', got {request.truth!r}")
    if request.truth == "self" and isinstance(target, Target) and target.factor is None:
        raise RefusedError("as its own ground truth, an image is measured at a factor (such as 2 or 1.5), not a size")
    if not request.items:
        raise RefusedError("the request holds no image")
    if len(request.items) > limits.batch_images:
        raise RefusedError(f"a batch holds at most {limits.batch_images} images; this one has {len(request.items)}")
    plans = []
    for item in request.items:
        try:
            plans.append(plan_item(item, request, target, limits))
        except RefusedError as refusal:
            if not request.each:
                raise
            plans.append(Plan(item, refusal=str(refusal)))
    admitted = [p for p in plans if p.size is not None and not p.refusal]
    work = sum(_work(p, request) for p in admitted)
    if work > limits.work_pixels:
        passes = describe_passes(request.self_ensemble, request.models)
        if len(plans) > 1:
            what = f"this batch is {work:,} output pixels{passes}"
        else:
            (w, h), stages = plans[0].sizing.size, plans[0].sizing.stages
            network = "" if len(stages) == 1 else f" (the network's {' then '.join(f'{s}x' for s in stages)})"
            what = f"this request is {w}x{h} output pixels{network}{passes} = {work:,}"
        raise RefusedError(f"{what}; the limit per request is {limits.work_pixels:,}")
    memory = max((_memory(p, request, limits) for p in admitted), default=0.0)
    return Admitted(request, target, precision, tuple(plans), limits, work, memory)


def _stage_sizes(plan: Plan) -> list[tuple[tuple[int, int], int]]:
    """(input size, scale) of each network stage."""
    sizes, (w, h) = [], plan.size
    for scale in plan.sizing.stages:
        sizes.append(((w, h), scale))
        w, h = w * scale, h * scale
    return sizes


def _work(plan: Plan, request: Request) -> int:
    return sum(
        work_pixels(size, scale, self_ensemble=request.self_ensemble, models=request.models)
        for size, scale in _stage_sizes(plan)
    )


def _memory(plan: Plan, request: Request, limits: Limits) -> float:
    """The last (largest) stage's estimate, with the stage before it kept, where there is one."""
    (size, scale), before = _stage_sizes(plan)[-1], plan.size
    kept = OUTPUT_BYTES * size[0] * size[1] / 1e6 if size != before else 0.0
    return kept + request_memory_mb(
        size, scale, trunk=plan.trunk, base_mb=limits.base_mb, views=request.views,
        truth=request.truth != "none", models=request.models,
    )  # fmt: skip


def plan_item(item: Item, request: Request, target: int | Target, limits: Limits) -> Plan:
    """One item's checks: it could be unpacked, its pixels, its output's, its ground truth's size, and the
    memory it needs with the faster trunk that fits (``RefusedError`` otherwise). With a ``request.region``,
    an image over the limits gives its largest region (of its aspect ratio) within them instead."""
    if item.problem:
        raise RefusedError(item.problem)
    size = image_size(item.source)
    if size is None:
        return Plan(item)  # the decoder will name what is wrong with it
    try:
        return _plan_at(item, request, target, limits, size)
    except RefusedError as refusal:
        if request.region is None or request.truth != "none" or size[0] * size[1] > REGION_DECODE_PIXELS:
            raise
        over = str(refusal)
    low, high = 0.0, 1.0  # the region's side over the image's
    best = None
    while high - low > 0.005:
        k = (low + high) / 2
        crop = (max(16, int(size[0] * k)), max(16, int(size[1] * k)))
        try:
            best = replace(_plan_at(item, request, target, limits, crop), crop=crop, whole=size, over=over)
            low = k
        except RefusedError:
            high = k
    if best is None:
        raise RefusedError(over)
    return best


def _plan_at(item: Item, request: Request, target: int | Target, limits: Limits, size: tuple[int, int]) -> Plan:
    w, h = size
    factor = target if not isinstance(target, Target) else target.factor
    if request.truth == "self":  # the image is the truth; the network sees its downscale
        if w * h > limits.input_pixels * factor * factor:
            raise RefusedError(
                f"the image is {w}x{h} = {w * h:,} pixels; as its own ground truth at {factor:g}x the limit is "
                f"{int(limits.input_pixels * factor * factor):,} pixels"
            )
        (w, h), truth_size = own_truth_sizes((w, h), factor)
        target = target if isinstance(target, int) else Target(width=truth_size[0], height=truth_size[1])
    if w * h > limits.input_pixels:
        raise RefusedError(f"the image is {w}x{h} = {w * h:,} pixels; the limit is {limits.input_pixels:,} pixels")
    try:
        sizing = SizePlan((target,), (w * target, h * target)) if isinstance(target, int) else plan_size((w, h), target)
    except ValueError as err:
        raise RefusedError(str(err)) from None
    largest = max(sizing.size[0] * sizing.size[1], w * h * sizing.scale * sizing.scale)
    if largest > limits.output_pixels:
        (ow, oh), made = sizing.size, ("" if not sizing.resized((w, h)) else f" (the network makes {w * sizing.scale}x{h * sizing.scale} first)")
        raise RefusedError(
            f"a {w}x{h} image upscaled to {ow}x{oh}{made} would be {largest:,} pixels; the output limit is "
            f"{limits.output_pixels:,} pixels"
        )
    if request.truth == "upload" and item.truth is None and not request.each:  # in a batch: no scores for it
        raise RefusedError("upload the original (HR) image, or choose another ground-truth option")
    if request.truth == "upload" and item.truth is not None:
        declared = image_size(item.truth)
        if declared is not None:  # a wrong size is refused from the header, before decoding
            try:
                if isinstance(target, int):
                    check_ground_truth_size((w, h), declared, target)
                elif declared != sizing.size:
                    raise ImageError(
                        f"the ground truth is {declared[0]}x{declared[1]}; the output is {sizing.size[0]}x"
                        f"{sizing.size[1]} and the truth must be that size"
                    )
            except ImageError as err:
                raise RefusedError(str(err)) from None
    for trunk in ("whole", "lean"):  # the fastest trunk that fits
        plan = Plan(item, (w, h), sizing, trunk)
        if _memory(plan, request, limits) <= limits.memory_mb:
            return plan
    plan = Plan(item, (w, h), sizing, "streamed")
    need = _memory(plan, request, limits)
    if need > limits.memory_mb:
        views = [v for v, on in (("its views", request.views), ("ground-truth scores", request.truth != "none")) if on]
        also = f" with {' and '.join(views)}" if views else ""
        ab = " for two models (A/B)" if request.models > 1 else ""
        at = f"{target}x" if isinstance(target, int) else f"{sizing.size[0]}x{sizing.size[1]}"
        raise RefusedError(
            f"a {w}x{h} image at {at}{also}{ab} needs about {need:,.0f} MB; the limit per request is "
            f"{limits.memory_mb:,.0f} MB (use a smaller image or scale)"
        )
    return plan


# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    """One item's outcome: where its output was written, its scores and run information, and for a request
    of one image the comparisons themselves (A, and B in an A/B comparison), which the demo shows; or why
    there is none (``error``; ``skipped`` where an existing output was kept)."""

    name: str
    path: Path | None = None
    metrics: Metrics | None = None
    info: RunInfo | None = None
    sizes: tuple[tuple[int, int], tuple[int, int]] | None = None  # (input, output) as (width, height)
    notes: tuple[str, ...] = ()  # what decoding changed (an animation's first frame, ...)
    region: tuple[int, int, int, int] | None = None  # (x, y, width, height) upscaled of a photo over the limits
    overview: np.ndarray | None = None  # then: the whole photo, small (``compare.overview_of``)
    whole: tuple[int, int] | None = None  # then: the whole photo's size
    over: str = ""  # then: the limit the whole photo passed
    comparison: Comparison | None = None
    versus: Comparison | None = None
    error: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class Outcome:
    results: tuple[ItemResult, ...]
    tag: str  # the size asked for, as output names say it (x2, x1.5, 1920x1080)
    weights: LoadedWeights
    versus: LoadedWeights | None = None


class Outputs:
    """Where a request's outputs are written: ``folder``, one name per item by the one naming rule
    (``files.output_names``), each file written atomically; an existing file is kept (its item skipped)
    unless ``overwrite``. ``format``: "png" (exact), "webp" (lossless) or "jpeg" (quality 95), each with the
    input's colour profile and EXIF (``imaging.save_picture``). ``side_by_side`` also writes
    ``NAME_compare.png``: bicubic | MDSR-BAM."""

    def __init__(
        self,
        folder: str | os.PathLike,
        items: Sequence[Item],
        tag: str,
        *,
        overwrite: bool = False,
        side_by_side: bool = False,
        format: str = "png",  # noqa: A002 (the option's name)
    ) -> None:
        try:
            self.format = output_format(format)
        except ValueError as err:
            raise RefusedError(str(err)) from None
        self.folder, self.overwrite, self.side_by_side = Path(folder), overwrite, side_by_side
        names = output_names([i.name for i in items], tag, OUTPUT_FORMATS[self.format])
        self.names = {id(item): name for item, name in zip(items, names, strict=True)}

    def target(self, item: Item) -> Path:
        return self.folder / self.names[id(item)]

    def check_writable(self) -> None:
        """Fail now, before any work, where the folder cannot be made or written to."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as err:
            raise OSError(f"cannot write to {self.folder} ({err.strerror or err})") from None

    def keeps(self, item: Item) -> bool:
        return not self.overwrite and self.target(item).exists()

    def write(self, item: Item, comparison: Comparison) -> tuple[Path, tuple[str, ...]]:
        """Write the item's output; returns its path and notes on what the format could not hold."""
        target = self.target(item)
        with atomic_path(target) as tmp:
            notes = save_picture(comparison.output, tmp, format=self.format)
        if self.side_by_side and comparison.bicubic is not None:
            side = np.hstack([preview_rgb(comparison.bicubic), preview_rgb(comparison.output)])
            with atomic_path(target.with_name(f"{target.stem}_compare.png")) as tmp:
                Image.fromarray(side).save(tmp, format="PNG")
        return target, notes


Loader = Callable[[str, int], LoadedWeights]
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is being done)
compare_on_device = on_zerogpu(compare)  # compare() itself everywhere but on a ZeroGPU Space


def run(
    admitted: Admitted,
    *,
    load: Loader,
    outputs: Outputs | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Run an admitted request: weights A (and B) loaded once, every item decoded once and compared, its
    output written where ``outputs`` say. Without ``request.each`` the first failure is raised; with it,
    each failure becomes that item's ``error``."""
    request = admitted.request
    stages = sorted({s for p in admitted.plans if p.sizing for s in p.sizing.stages}) or [2]
    weights = {s: load(request.weights, s) for s in stages}  # one source; a model per scale where it has one per scale
    versus = {s: load(request.versus, s) for s in stages} if request.versus else None
    results = []
    for n, plan in enumerate(admitted.plans):
        item = plan.item

        def report(done: int, total: int, n: int = n, name: str = item.name) -> None:
            if progress is not None:
                progress(n * total + done, len(admitted.plans) * total, name)

        if plan.refusal:
            results.append(ItemResult(item.name, error=plan.refusal))
            continue
        if outputs is not None and outputs.keeps(item):
            results.append(ItemResult(item.name, path=outputs.target(item), skipped=True))
            continue
        try:
            results.append(run_item(admitted, plan, weights, versus, outputs, report))
        except (ImageError, WeightsError, ValueError, OSError) as err:
            if not request.each:
                raise
            results.append(ItemResult(item.name, error=str(err)))
    last = stages[-1]
    return Outcome(tuple(results), admitted.tag, weights[last], versus[last] if versus else None)


def run_item(
    admitted: Admitted,
    plan: Plan,
    weights: dict[int, LoadedWeights],
    versus: dict[int, LoadedWeights] | None,
    outputs: Outputs | None,
    report: Callable[[int, int], None],
) -> ItemResult:
    request, target, limits = admitted.request, admitted.target, admitted.limits
    item = plan.item
    factor = target if not isinstance(target, Target) else (target.factor or 1)
    decode_limit = int(limits.input_pixels * (factor * factor if request.truth == "self" else 1))
    pic = read_image(item.source, max_pixels=REGION_DECODE_PIXELS if plan.crop else decode_limit)
    region = overview = None
    if plan.crop:
        x0, y0 = region_at(pic, plan.crop, request.region.center)
        region = (x0, y0, *plan.crop)
        overview = overview_of(pic)
        pic = crop_region(pic, (x0, y0), plan.crop)  # the whole photo goes
    truth = None
    if request.truth == "upload" and item.truth is not None:
        s = (plan.sizing or SizePlan((2,), (0, 0))).scale
        largest = max((pic.size[0] + 1) * s * (pic.size[1] + 1) * s, 1)  # compare checks the size exactly
        truth = read_image(item.truth, max_pixels=largest)
    options = dict(self_ensemble=request.self_ensemble, trunk=plan.trunk, max_output_pixels=limits.output_pixels)

    def models(chosen: dict[int, LoadedWeights]) -> tuple[dict[int, MDSR], str]:
        runs = {s: w.model_for(admitted.precision) for s, w in chosen.items()}
        return {s: m for s, (m, _) in runs.items()}, next(iter(runs.values()))[1]

    a_models, mode = models(weights)
    a = compare_on_device(
        a_models, pic, target, truth=truth, self_truth=request.truth == "self", with_bicubic=request.bicubic,
        progress=report, precision=mode, **options,
    )  # fmt: skip
    del pic, truth  # what B needs is in A's comparison: the network's input and the fitted truth
    b = None
    if versus is not None:
        bicubic_scores = a.metrics.bicubic if a.metrics is not None else None
        same_size = target if not isinstance(target, Target) else Target(width=a.output.size[0], height=a.output.size[1])
        b_models, mode = models(versus)
        b = compare_on_device(
            b_models, a.lr, same_size, truth=a.truth, with_bicubic=False, bicubic_scores=bicubic_scores,
            precision=mode, **options,
        )  # fmt: skip
    path, written = outputs.write(item, a) if outputs is not None else (None, ())
    kept = {} if request.each else {"comparison": a, "versus": b}  # a batch keeps its rows, not its pictures
    notes = a.output.notes + written
    sizes = (a.lr.size, a.output.size)
    return ItemResult(item.name, path, a.metrics, a.info, sizes, notes, region, overview, plan.whole, plan.over, **kept)
