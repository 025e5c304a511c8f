"""Serving requests: one path from arrival to result for the demo's single, A/B, batch and API requests
and for the CLI.

An entry point parses what it was sent into a typed ``Request`` (``parse_target``, ``parse_precision``),
``admit``s it once against its ``Limits`` and ``run``s what was admitted. Admission decides everything,
from the images' headers, before any pixel is decoded: each item's network input, its stages, tiles,
trunk and exact output size (``inference.RunPlan``), its ground truth's size (an uploaded original's
crop, or the image's own), the region of a photo over the limits, the precision, and the work and memory
it is admitted with. ``run`` carries the plans out and decides nothing: each image is decoded once, its
ground truth made or fitted once, bicubic made only where shown or scored, weights A (and B, on A's
input and truth) run, scored, and the output written atomically where the caller's ``Outputs`` say.
Every refusal is a ``RefusedError`` whose sentence names the limit it hit and the request's own figure.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image

from mdsr.compare import (
    Comparison,
    Metrics,
    compare,
    crop_region,
    overview_of,
    own_truth,
    own_truth_sizes,
    region_at,
    truth_fits,
)
from mdsr.files import atomic_path, output_names
from mdsr.imaging import (
    OUTPUT_FORMATS,
    ImageError,
    crop_picture,
    image_size,
    output_format,
    preview_rgb,
    read_image,
    save_picture,
)
from mdsr.inference import (
    Mode,
    Precision,
    PreparedModels,
    RunInfo,
    RunPlan,
    check_output_pixels,
    plan_run,
    release_freed_memory,
    resolve_precision,
)
from mdsr.limits import DECODE_BYTES, OUTPUT_BYTES, Trunk, describe_passes, request_memory_mb, resident_mb, work_pixels
from mdsr.model import MDSR, shown
from mdsr.sizing import SizePlan, Target, parse_factor, parse_size
from mdsr.sizing import plan as plan_size
from mdsr.weights import LoadedWeights

Source = str | os.PathLike | io.BytesIO  # a file's path, or the bytes of a zip member
GroundTruth = Literal["none", "upload", "self"]
UNLIMITED = 2**62


class RefusedError(ValueError):
    """A request (or one image of it) refused before any work, with the sentence to show its sender."""


class OverLimitError(RefusedError):
    """Refused for its size against a limit (input or output pixels, work, memory): what a smaller part of
    the photo can cure (``plan_item``'s region), unlike a refused factor, size or file."""


@dataclass(frozen=True)
class Limits:
    """Everything one request may use; ``DEMO_LIMITS`` for the public demo, ``CLI_LIMITS`` for one machine."""

    file_bytes: int  # per file, however it arrives
    input_pixels: int
    output_pixels: int
    work_pixels: int  # output pixels x network passes, over every image and model of the request
    memory_mb: float  # the process's peak while one image runs: its resident memory at admission + the estimate
    batch_images: int
    batch_bytes: int  # what a batch's zips may unpack to
    jobs_per_client: int  # waiting or running at once, per client address
    jobs: int  # waiting or running at once, in all
    # Where the limits are options (the CLI's), the one that raises ``memory_mb``: a refusal names it, as the
    # default admits ~12 megapixels however large ``input_pixels`` is. Without one (the demo's), the refusal
    # says to ask for less.
    memory_option: str = ""


# A 2-vCPU Space with a few GB: one request at a time, each bounded in memory and in time (the work limit
# is ~2-3 minutes of int8 inference there); inputs of up to ~2 megapixels.
DEMO_LIMITS = Limits(
    file_bytes=20_000_000, input_pixels=2_100_000, output_pixels=4096 * 4096, work_pixels=4096 * 4096,
    memory_mb=1500, batch_images=16, batch_bytes=20_000_000, jobs_per_client=2, jobs=16,
)  # fmt: skip
# One's own machine, nothing else bounded: a 12-megapixel phone photo at x2 with its trunk streamed (4032x3024:
# estimated at ~4,120 MB with the process at rest; 4000x3000 peaked at 3,873 MB, measured).
CLI_LIMITS = Limits(
    file_bytes=UNLIMITED, input_pixels=50_000_000, output_pixels=200_000_000, work_pixels=UNLIMITED,
    memory_mb=4200, batch_images=UNLIMITED, batch_bytes=UNLIMITED, jobs_per_client=1, jobs=1,
    memory_option="--max-memory-mb",
)  # fmt: skip


def check_file_size(size: int, limits: Limits) -> None:
    if size > limits.file_bytes:
        raise RefusedError(f"the file is {size:,} bytes; the limit is {limits.file_bytes:,} bytes")


# --------------------------------------------------------------------------------------------------
# What a request asks for, parsed at the edge
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
    """What to do: ``items`` (one, or a batch), the output size (``target``), the weights (a name the
    caller's loader knows), ``versus`` (weights B: an A/B comparison), the precision, the ground truth
    ("upload": each item's ``truth``; "self": the image itself, downscaled), self-ensemble, whether the
    bicubic picture is kept, and whether the caller makes ``views`` of the results (the demo's previews,
    zoom and error maps: they count towards its memory). With ``each``, items stand alone (a batch, the
    CLI): one item's refusal or failure is its own row."""

    items: tuple[Item, ...]
    target: Target
    weights: str = "auto"
    versus: str | None = None
    precision: Precision = "auto"
    truth: GroundTruth = "none"
    self_ensemble: bool = False
    bicubic: bool = False
    views: bool = False
    each: bool = False
    region: Region | None = None  # the demo: a photo over the limits gives its largest part that fits

    @property
    def models(self) -> int:
        return 2 if self.versus else 1


def parse_target(scale: object, size: object = None) -> Target:
    """The output size asked for, from an untrusted caller: ``scale`` (2, 3 or 4: the network alone; another
    factor from 1.1 to 8) or ``size`` (a ``sizing.Target``, or text such as "1920x1080"), not both."""
    given = size is not None and size != ""
    if given and scale is not None and scale != "":
        raise ValueError("give a scale or a size, not both")
    if given:
        return size if isinstance(size, Target) else parse_size(size)
    if scale is None or scale == "":
        raise ValueError("the scale must be given (a factor from 1.1 to 8), or a size such as 1920x1080")
    return Target(factor=parse_factor(scale))


def parse_precision(value: object) -> Precision:
    if value not in get_args(Precision):
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'int8'; got {shown(value)}")
    return value  # type: ignore[return-value]


def parse_truth(value: object) -> GroundTruth:
    if value not in get_args(GroundTruth):
        raise ValueError(f"ground truth must be 'none', 'upload' or 'self'; got {shown(value)}")
    return value  # type: ignore[return-value]


def tag_of(target: Target) -> str:
    """What output names say of the size, each ask its own name (a kept file is never one made for another
    ask): x2, x1.5, x2.0000001, w1920, h1080, 1920x1080 (that exact size) or fit1920x1080."""
    if target.factor is not None:
        return f"x{target.factor:.15g}"
    if target.fit is not None:
        return f"fit{target.fit[0]}x{target.fit[1]}"
    if target.width and target.height:
        return f"{target.width}x{target.height}"
    return f"w{target.width}" if target.width else f"h{target.height}"


# --------------------------------------------------------------------------------------------------
# Admission: every decision, once
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TruthPlan:
    """An item's ground truth as admitted: "upload" (the original's ``declared`` size from its header,
    cropped to ``size``) or "self" (the image cropped to ``size`` is the truth, the network sees its bicubic
    downscale to the run's input size)."""

    kind: Literal["upload", "self"]
    size: tuple[int, int]
    declared: tuple[int, int] | None = None


@dataclass(frozen=True)
class Plan:
    """An item as admitted: its size as decoded (from the header), the region of it that is upscaled
    (a photo over the limits), the network's run, the ground truth, and what it was admitted with; or why
    it was refused, or (``run`` None, no refusal) a header that could not be read: decoding will say why."""

    item: Item
    decoded: tuple[int, int] | None = None
    max_pixels: int = 0  # what decoding it may cost
    run: RunPlan | None = None
    truth: TruthPlan | None = None
    region: tuple[int, int] | None = None  # the part's (width, height), where the whole is over the limits
    over: str = ""  # then: the limit the whole passed
    work: int = 0
    memory_mb: float = 0.0
    refusal: str = ""


@dataclass(frozen=True)
class Admitted:
    request: Request
    precision: Mode
    plans: tuple[Plan, ...]
    limits: Limits
    work: int
    memory_mb: float  # the largest item's estimated peak, the process's resident memory included

    @property
    def tag(self) -> str:
        return tag_of(self.request.target)

    @property
    def scales(self) -> tuple[int, ...]:
        """The network's scales every admitted item needs: whose weights to load."""
        return tuple(sorted({s for p in self.plans if p.run for s in p.run.scales})) or (2,)


def admit(request: Request, limits: Limits, *, device: str = "cpu", resident: float | None = None) -> Admitted:
    """Check every limit of ``request`` from the images' headers and plan each item; raise ``RefusedError``
    for the request, or (with ``request.each``) mark each refused item with its sentence. ``resident`` is
    the process's memory (MB) the estimates stand on: measured now where not given."""
    try:
        precision = resolve_precision(request.precision, device)
    except ValueError as err:
        raise RefusedError(str(err)) from None
    if request.truth == "self" and request.target.factor is None:
        raise RefusedError("as its own ground truth, an image is measured at a factor (such as 2 or 1.5), not a size")
    if not request.items:
        raise RefusedError("the request holds no image")
    if len(request.items) > limits.batch_images:
        raise RefusedError(f"a batch holds at most {limits.batch_images} images; this one has {len(request.items)}")
    if resident is None:
        release_freed_memory()  # what earlier requests freed goes back first: the process as it now is
        resident = resident_mb()
    budget = Budget(limits, resident, precision, device)
    plans = []
    for item in request.items:
        try:
            plans.append(plan_item(item, request, budget))
        except RefusedError as refusal:
            if not request.each:
                raise
            plans.append(Plan(item, refusal=str(refusal)))
    work = sum(p.work for p in plans if not p.refusal)
    if work > limits.work_pixels:
        passes = describe_passes(request.self_ensemble, request.models)
        raise RefusedError(
            f"this batch is {work:,} output pixels{passes}; the limit per request is {limits.work_pixels:,}"
        )
    return Admitted(request, precision, tuple(plans), limits, work, max((p.memory_mb for p in plans), default=0.0))


@dataclass(frozen=True)
class Budget:
    """What every item is planned within: the limits, the process's resident memory, the precision."""

    limits: Limits
    resident_mb: float
    precision: Mode
    device: str


def plan_item(item: Item, request: Request, budget: Budget) -> Plan:
    """One item's plan from its header (``RefusedError`` where a limit is passed). With a
    ``request.region``, a photo over the limits gives its largest region (of its aspect ratio) that fits
    every limit instead, or the whole photo's refusal where none does."""
    if item.problem or item.source is None:  # no source is a problem taking it out of its archive
        raise RefusedError(item.problem or "the item has no image")
    size = image_size(item.source)
    if size is None:
        return Plan(item, max_pixels=budget.limits.input_pixels)  # the decoder will name what is wrong with it
    try:
        return _plan_at(item, request, budget, size, size)
    except OverLimitError as refusal:  # only a limit: a refused factor or size is refused for any part too
        if request.region is None or request.truth != "none" or size[0] * size[1] > REGION_DECODE_PIXELS:
            raise
        over = str(refusal)
    low, high, best = 0.0, 1.0, None  # the region's side over the image's
    while high - low > 0.005:
        k = (low + high) / 2
        part = (min(size[0], max(16, int(size[0] * k))), min(size[1], max(16, int(size[1] * k))))
        try:
            best, low = replace(_plan_at(item, request, budget, size, part), region=part, over=over), k
        except RefusedError:
            high = k
    if best is None:
        raise OverLimitError(over)
    return best


def _plan_at(item: Item, request: Request, budget: Budget, decoded: tuple[int, int], size: tuple[int, int]) -> Plan:
    """The plan for the ``size`` (width, height) part of an image ``decoded`` at that size or larger."""
    limits, target = budget.limits, request.target
    w, h = size
    max_pixels = decoded[0] * decoded[1] if size != decoded else limits.input_pixels
    truth = None
    if request.truth == "self":  # the image is the truth; the network sees its downscale
        factor = target.factor
        assert factor is not None  # ``admit`` refuses "self" without a factor
        if w * h > limits.input_pixels * factor * factor:
            raise RefusedError(
                f"the image is {w}x{h} = {w * h:,} pixels; as its own ground truth at {factor:g}x the limit is "
                f"{int(limits.input_pixels * factor * factor):,} pixels"
            )
        max_pixels = max(max_pixels, w * h)
        try:
            (w, h), truth_size = own_truth_sizes((w, h), factor)
        except ImageError as err:
            raise RefusedError(str(err)) from None
        truth = TruthPlan("self", truth_size)
        target = Target(width=truth_size[0], height=truth_size[1])
    if w * h > limits.input_pixels:
        raise OverLimitError(f"the image is {w}x{h} = {w * h:,} pixels; the limit is {limits.input_pixels:,} pixels")
    try:
        sizing = plan_size((w, h), target)
    except ValueError as err:  # ImageError too
        raise RefusedError(str(err)) from None
    try:
        check_output_pixels((w, h), sizing, limits.output_pixels)
    except ValueError as err:
        raise OverLimitError(str(err)) from None
    try:
        run = plan_run(
            (w, h), sizing, precision=budget.precision, self_ensemble=request.self_ensemble, device=budget.device
        )
    except ValueError as err:
        raise RefusedError(str(err)) from None
    if request.truth == "upload":
        truth = _uploaded_truth(item, request, (w, h), sizing)
    work = sum(
        work_pixels(stage.input_size, stage.scale, self_ensemble=request.self_ensemble, models=request.models)
        for stage in run.stages
    )
    if work > limits.work_pixels:
        (ow, oh), stages = sizing.size, sizing.stages
        network = "" if len(stages) == 1 else f" (the network's {' then '.join(f'{s}x' for s in stages)})"
        passes = describe_passes(request.self_ensemble, request.models)
        raise OverLimitError(
            f"this request is {ow}x{oh} output pixels{network}{passes} = {work:,}; the limit per request is "
            f"{limits.work_pixels:,}"
        )
    decoding = DECODE_BYTES * decoded[0] * decoded[1] / 1e6  # the whole photo, decoded before it is cut or sized
    for trunk in ("whole", "lean", "streamed"):  # the fastest trunk that fits
        memory = budget.resident_mb + max(decoding, _memory(run, trunk, request))
        if memory <= limits.memory_mb:
            return Plan(item, decoded, max_pixels, run.with_trunk(trunk), truth, work=work, memory_mb=memory)
    views = [v for v, on in (("its views", request.views), ("ground-truth scores", request.truth != "none")) if on]
    also = f" with {' and '.join(views)}" if views else ""
    ab = " for two models (A/B)" if request.models > 1 else ""
    at = f"{request.target.factor:g}x" if request.target.factor else f"{sizing.size[0]}x{sizing.size[1]}"
    how = f": {limits.memory_option} raises it" if limits.memory_option else " (use a smaller image or scale)"
    raise OverLimitError(
        f"a {w}x{h} image at {at}{also}{ab} needs about {memory:,.0f} MB; the limit "
        f"per request is {limits.memory_mb:,.0f} MB{how}"
    )


def _uploaded_truth(item: Item, request: Request, lr_size: tuple[int, int], sizing: SizePlan) -> TruthPlan | None:
    if item.truth is None:
        if not request.each:
            raise RefusedError("upload the original (HR) image, or choose another ground-truth option")
        return None  # in a batch: no scores for it
    declared = image_size(item.truth)
    if declared is None:  # decoding will say why
        return TruthPlan("upload", sizing.size, None)
    try:
        return TruthPlan("upload", truth_fits(lr_size, declared, sizing), declared)
    except ImageError as err:
        raise RefusedError(str(err)) from None


def _memory(run: RunPlan, trunk: Trunk, request: Request) -> float:
    """The last (largest) stage's estimate beyond the resident process, with the stage before it kept."""
    last = run.stages[-1]
    kept = OUTPUT_BYTES * last.input_size[0] * last.input_size[1] / 1e6 if len(run.stages) > 1 else 0.0
    return kept + request_memory_mb(
        last.input_size, last.scale, trunk=trunk, views=request.views, truth=request.truth != "none",
        models=request.models,
    )  # fmt: skip


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
    ``NAME_compare.png``: bicubic | MDSR-BAM. ``separator`` joins name and tag (``files.output_names``)."""

    def __init__(
        self,
        folder: str | os.PathLike,
        items: Sequence[Item],
        tag: str,
        *,
        overwrite: bool = False,
        side_by_side: bool = False,
        format: object = "png",  # noqa: A002 (the option's name); as a caller wrote it: output_format checks it
        separator: str = "_",
    ) -> None:
        try:
            self.format = output_format(format)
        except ValueError as err:
            raise RefusedError(str(err)) from None
        self.folder, self.overwrite, self.side_by_side = Path(folder), overwrite, side_by_side
        names = output_names([i.name for i in items], tag, OUTPUT_FORMATS[self.format], separator=separator)
        self.names: dict[Item, str] = dict(zip(items, names, strict=True))

    def target(self, item: Item) -> Path:
        return self.folder / self.names[item]

    def check_writable(self) -> None:
        """Fail now, before any work, where the folder cannot be made or written to."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as err:
            raise OSError(f"cannot write to {self.folder} ({err.strerror or err})") from None

    def compare_path(self, item: Item) -> Path:
        target = self.target(item)
        return target.with_name(f"{target.stem}_compare.png")

    def paths(self, item: Item) -> list[Path]:
        """Every file the item's output writes: the output, and with ``side_by_side`` its comparison."""
        return [self.target(item), *([self.compare_path(item)] if self.side_by_side else [])]

    def keeps(self, item: Item) -> bool:
        return not self.overwrite and self.target(item).exists()

    def write(self, item: Item, comparison: Comparison) -> tuple[Path, tuple[str, ...]]:
        """Write the item's output; returns its path and notes on what the format could not hold."""
        target = self.target(item)
        with atomic_path(target) as tmp:
            notes = save_picture(comparison.output, tmp, format=self.format)
        if self.side_by_side and comparison.bicubic is not None:
            side = np.hstack([preview_rgb(comparison.bicubic), preview_rgb(comparison.output)])
            with atomic_path(self.compare_path(item)) as tmp:
                Image.fromarray(side).save(tmp, format="PNG")
        return target, notes


Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is being done)
Weights = Mapping[int, LoadedWeights]  # a model per scale (one shared where a file holds every scale)
DECODE_ERRORS = (ImageError, OSError)  # a file that cannot be used: its own row in a batch, never the batch's end


def run(
    admitted: Admitted,
    *,
    weights: Weights,
    versus: Weights | None = None,
    prepared: PreparedModels,
    outputs: Outputs | None = None,
    progress: Progress | None = None,
    runner: Callable[..., Comparison] = compare,
) -> Outcome:
    """Run an admitted request with the weights loaded for ``admitted.scales`` (A, and B where the
    request has ``versus``), each model prepared for the admitted precision once by ``prepared``; outputs
    written where ``outputs`` say. Without ``request.each`` the first failure is raised; with it, each
    failure becomes that item's ``error``. ``runner`` is ``compare`` (wrapped, on a ZeroGPU Space, so
    that a GPU is attached for each call)."""
    request, mode = admitted.request, admitted.precision
    a_models = {s: prepared.get(w.model, mode) for s, w in weights.items()}
    b_models = {s: prepared.get(w.model, mode) for s, w in versus.items()} if versus else None
    results = []
    for n, plan in enumerate(admitted.plans):

        def report(done: int, total: int, n: int = n, name: str = plan.item.name) -> None:
            if progress is not None:
                progress(n * total + done, len(admitted.plans) * total, name)

        if plan.refusal:
            results.append(ItemResult(plan.item.name, error=plan.refusal))
        elif outputs is not None and outputs.keeps(plan.item):
            results.append(ItemResult(plan.item.name, path=outputs.target(plan.item), skipped=True))
        else:
            try:
                results.append(run_item(request, plan, (a_models, b_models), outputs, report, runner))
            except DECODE_ERRORS as err:
                if not request.each:
                    raise
                results.append(ItemResult(plan.item.name, error=str(err)))
    last = admitted.scales[-1]
    return Outcome(tuple(results), admitted.tag, weights[last], versus[last] if versus else None)


def run_item(
    request: Request,
    plan: Plan,
    models: tuple[dict[int, MDSR], dict[int, MDSR] | None],
    outputs: Outputs | None,
    report: Callable[[int, int], None],
    runner: Callable[..., Comparison],
) -> ItemResult:
    """One admitted item: decoded, cut to its region, made its own truth or given its original, compared."""
    item = plan.item
    assert item.source is not None  # admitted: ``_plan`` refuses an item without one
    pic = read_image(item.source, max_pixels=plan.max_pixels)
    if plan.run is None or pic.size != plan.decoded:  # the header could not be read, or told another size
        raise ImageError(f"the image's header does not give the {_wxh(pic.size)} it decoded as; re-save the file")
    result = ItemResult(item.name)  # the region's fields stay empty unless a region is upscaled
    if plan.region is not None:
        x0, y0 = region_at(pic, plan.region, request.region.center if request.region is not None else None)
        result = replace(
            result, region=(x0, y0, *plan.region), overview=overview_of(pic), whole=pic.size, over=plan.over
        )
        pic = crop_region(pic, (x0, y0), plan.region)  # the whole photo goes
    truth = None
    if plan.truth is not None and plan.truth.kind == "self":
        pic, truth = own_truth(pic, plan.run.input_size, plan.truth.size)
    elif plan.truth is not None:
        assert item.truth is not None  # an uploaded truth was planned from its file
        truth = read_image(item.truth, max_pixels=_pixels(plan.truth.declared or plan.truth.size))
        if truth.size != plan.truth.declared:
            raise ImageError(
                f"the ground truth's header declared another size than the {_wxh(truth.size)} it decoded as"
            )
        (tw, th) = plan.truth.size
        truth = crop_picture(truth, (th, tw))
    a_models, b_models = models
    a = runner(a_models, pic, plan.run, truth=truth, bicubic=request.bicubic, progress=report)
    del pic, truth  # what B needs is in A's comparison: the network's input and the fitted truth
    b = None
    if b_models is not None:
        scores = a.metrics.bicubic if a.metrics is not None else False
        b = runner(b_models, a.lr, plan.run, truth=a.truth, bicubic=scores, progress=report)
    path, written = outputs.write(item, a) if outputs is not None else (None, ())
    return replace(
        result, path=path, metrics=a.metrics, info=a.info, sizes=(a.lr.size, a.output.size),
        notes=a.output.notes + written,
        # a batch keeps its rows, not its pictures
        comparison=None if request.each else a, versus=None if request.each else b,
    )  # fmt: skip


def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
