"""MDSR-BAM super-resolution demo (Gradio Blocks). UI only: all image logic lives in the `mdsr` package.

Run locally with `python app.py`; on Hugging Face Spaces this file is the Space's app_file.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import gradio as gr
import numpy as np
from gradio.blocks import Block
from gradio.data_classes import FileData, ListFiles

from demo import clients
from demo.batch import COLUMNS, collect, table, zip_outputs
from demo.gradio_adapter import (
    base_preprocess,
    check_gradio_internals,
    example_inputs,
    is_received,
    jobs_by_client,
    save_inline_upload,
    serialize_admission,
    upload_folder,
)
from demo.views import (
    ZoomView,
    error_map,
    full_size_crop,
    info_markdown,
    metrics_markdown,
    region_markdown,
    region_outline,
    zoom_map,
    zoom_panel,
)
from demo.workspace import Workspace, files_named_in
from mdsr import kernels, serving
from mdsr.compare import Comparison, compare
from mdsr.imaging import preview_rgb, rgb8
from mdsr.inference import (
    PreparedModels,
    on_zerogpu,
    release_freed_memory,
    resolve_precision,
    to_serving_device,
    zerogpu_active,
)
from mdsr.model import SUPPORTED_SCALES
from mdsr.weights import PUBLISHED_ID, LoadedWeights, WeightStore, describe, weights_in_folder

HERE = Path(__file__).parent
EXAMPLES = HERE / "examples"
LIMITS = serving.DEMO_LIMITS  # bytes, pixels, work, memory, batch size, queue share: mdsr.serving
KEEP_RESULTS_S = 900  # what the demo wrote (and Gradio's cached uploads) older than this is deleted
AUTO_LABEL = "auto: published weights where the Hub has them, else bundled"
BUNDLED = "bundled (offline)"
HUB = f"{PUBLISHED_ID} (Hugging Face Hub)"
MINE = "my weights (upload below, or pick from the folder)"
VERSUS_BICUBIC = "bicubic"
# The weights choices, by their UI label and by their API name, and the source each one loads.
WEIGHTS = {AUTO_LABEL: "auto", BUNDLED: None, HUB: PUBLISHED_ID, "auto": "auto", "bundled": None, "published": PUBLISHED_ID}
# A folder of .safetensors files (from mdsr train / mdsr export) offered in the UI, if the host sets it.
WEIGHTS_DIR = os.environ.get("MDSR_WEIGHTS_DIR")
GT_NONE = "none"
GT_UPLOAD = "upload the original (HR) image"
GT_SELF = "use my image as ground truth"
GROUND_TRUTH = {GT_NONE: "none", GT_UPLOAD: "upload", GT_SELF: "self"}

PRECISIONS = [
    ("auto: int8 on CPUs with VNNI/AMX/AVX2, else fp32 (no visible change: docs/performance.md)", "auto"),
    ("fp32 (exact; 1.5-2.8x slower than int8 on a CPU)", "fp32"),
    ("bf16 (misses the bar: up to 0.12 dB on one image)", "bf16"),
    ("int8 (CPU: PSNR within 0.009 dB of fp32 on average, 0.023 dB at most)", "int8"),
]
# Weights are loaded on first use and kept (the bundled ones at start); whether the Hub is reachable is
# asked at the first "auto" request (3 s at most, at once under HF_HUB_OFFLINE). On a ZeroGPU Space the
# models live on CUDA. Their int8 copies are made once per model and kept with them.
STORE = WeightStore(place=to_serving_device)
PREPARED = PreparedModels()


# Uvicorn (under Gradio) would itself replace a loopback peer's address by its X-Forwarded-For before
# client_address sees it, so any local caller could take any address and a queue share with it. Who is
# believed is decided in one place, trusted_proxies; uvicorn believes no one unless told otherwise.
os.environ.setdefault("FORWARDED_ALLOW_IPS", "")


@functools.cache
def trusted_proxies() -> tuple:
    """X-Forwarded-For is believed only from these (MDSR_TRUSTED_PROXIES; the Space's proxy on Hugging Face),
    read once: by ``warm_up`` at start-up, where a malformed variable stops the app with one line naming it
    (where the app was imported without ``warm_up``, at the first request, whose sentence names it)."""
    return clients.trusted_proxies()


@functools.cache
def runner() -> Callable[..., Comparison]:
    """``compare``, with a GPU attached for each call on a ZeroGPU Space (``spaces.GPU``)."""
    return on_zerogpu(compare)


def device() -> str:
    return "cuda" if zerogpu_active() else "cpu"


@functools.cache
def workspace() -> Workspace:
    """Gradio's upload folder (which serves what the demo writes), swept by age at the first request and
    before each one writes: uploads, results and what earlier processes left, all but the examples' files:
    their inputs and the cached results (Gradio's own ``delete_cache`` would delete those too, and break the
    examples a quarter of an hour after start)."""
    folder = upload_folder()
    inputs = example_inputs(examples)  # fixed when the page was built

    def examples_files() -> set[Path]:
        return files_named_in(gr.utils.get_cache_folder(), folder) | inputs

    return Workspace(folder, KEEP_RESULTS_S, keep=examples_files)


def weights_dir() -> str | None:
    """A folder of .safetensors files (from mdsr train / mdsr export) offered in the UI, if the host sets it."""
    return os.environ.get("MDSR_WEIGHTS_DIR")


@dataclass(frozen=True)
class Refused:
    """An upload refused while it was received: the admission check (or the handler) reports it as the
    input's message, which every client shows (an exception there would reach gradio_client as a bare 400)."""

    message: str


def as_sent(_component: gr.components.Component, payload: Any) -> Any:  # Any: whatever the caller sent
    """A value handed to the handler as sent, so that `mdsr` checks it and names what was wrong with it (a
    string, a fraction, NaN, a list) instead of Gradio's conversion failing without a word."""
    return payload


def as_received(
    component: gr.components.Component, payload: FileData | ListFiles | None
) -> str | Refused | list[str | Refused] | None:
    """An upload handed over as the file that came with the request (checked by `received_file`), or a
    list of them for ``file_count="multiple"``; `mdsr` then decodes it and words every error."""
    if payload is None:
        return None
    files = payload.root if hasattr(payload, "root") else [payload]
    if not all(f.path or (f.url or "").startswith("data:") for f in files):
        return base_preprocess(component, payload)
    received = [received_file(f) for f in files]
    return received if hasattr(payload, "root") else received[0]


# Template components: rendered by the frontend's standard ones, with the preprocessing above.
class RawNumber(gr.Number):  # the API's scale
    is_template, preprocess = True, as_sent


class RawText(gr.Textbox):  # the API's precision and weights names
    is_template, preprocess = True, as_sent


class UploadedImage(gr.Image):  # kept as its file: 16-bit colour, EXIF orientation and the first frame survive
    is_template = True
    preprocess = as_received  # type: ignore[assignment]  # deliberate: the file, not Gradio's decoded image


class UploadedFile(gr.File):  # weights files and batch images
    is_template = True
    preprocess = as_received  # type: ignore[assignment]  # deliberate: the file, or why it is refused


class PositionSlider(gr.Slider):  # a point across the picture, 0 to 100 %
    is_template = True

    def preprocess(self, payload: float) -> float:
        """A number typed past an end means that end (Gradio's own slider refuses it with a traceback in the log)."""
        return min(100.0, max(0.0, float(payload)))


def received_file(payload: FileData) -> str | Refused:
    """The path of a file that came with the request, or why it is refused."""
    try:
        if not payload.path:
            url = payload.url
            assert url is not None  # as_received hands over a path or a data: URL
            # Inline data skips the upload limit: check its decoded size before decoding it.
            serving.check_file_size(len(url.partition(",")[2]) * 3 // 4, LIMITS)
            return save_inline_upload(url)
        path = Path(payload.path).resolve()
        # A raw API call can name any path; only files Gradio received (or cached) for a request are
        # opened, and the answer is the same whatever the path is (missing, a folder, elsewhere).
        if not (is_received(path) and path.is_file()):
            return Refused("only files uploaded with the request can be used")
        serving.check_file_size(path.stat().st_size, LIMITS)
        return str(path)
    except serving.RefusedError as refusal:
        return Refused(str(refusal))


def client_address(request: gr.Request) -> str:
    """The caller's address: the peer, or behind a trusted proxy the address it forwarded (mdsr.serving)."""
    peer = request.client.host if request.client else "unknown"
    return clients.client_address(peer, request.headers.get("x-forwarded-for", ""), trusted_proxies())


def admit(request: gr.Request, values: tuple) -> list:
    """Run when a request arrives, before it joins the queue (Gradio's validator): refused uploads and a
    caller with enough requests waiting are answered here, each with its sentence."""
    flat = [w for v in values for w in (v if isinstance(v, list) else [v])]
    refused = next((v.message for v in flat if isinstance(v, Refused)), None)
    verdicts = [gr.validate(True, "") for _ in values]
    jobs = jobs_by_client(demo, client_address)  # exact: admissions are serialized (serialize_admission)
    try:
        clients.check_share(jobs[client_address(request)], sum(jobs.values()), LIMITS)
    except serving.RefusedError as err:
        refused = str(err)
    if refused:
        verdicts[0] = gr.validate(False, refused)
    return verdicts


def admit_api(  # noqa: A002
    image: str | Refused | None,
    scale: object,
    ground_truth: str | Refused | None,
    precision: object,
    weights: object,
    format: object,
    size: object,
    request: gr.Request,
) -> list:
    return admit(request, (image, scale, ground_truth, precision, weights, format, size))


def admit_ui(request: gr.Request, **values: object) -> list:
    """``upscale_ui``'s inputs, by their names (``UI_INPUTS``)."""
    return admit(request, tuple(values.values()))


def admit_batch(
    files: list[str | Refused] | None,
    scale: int,
    truths: list[str | Refused] | None,
    weights: str,
    precision: str,
    request: gr.Request,
) -> list:
    return admit(request, (files, scale, truths, weights, precision))


def load_weights(choice: object, scale: int, mine: str | Refused | None = None) -> LoadedWeights:
    """The weights a request chose; ``mine`` is an uploaded file or a name from MDSR_WEIGHTS_DIR."""
    if choice == MINE:
        if isinstance(mine, Refused):
            raise ValueError(mine.message)
        listed = {p.name: p for p in weights_in_folder(weights_dir())}
        if mine in listed:
            return STORE.get_file(listed[mine], scale, max_bytes=LIMITS.file_bytes)
        if mine and Path(mine).is_file():  # an upload, already checked by received_file
            return STORE.get_file(mine, scale, max_bytes=LIMITS.file_bytes)
        raise ValueError("choose your weights: upload a .safetensors or .pt file, or pick one from the folder")
    if not isinstance(choice, str) or choice not in WEIGHTS:
        raise ValueError(f"weights must be 'auto', 'bundled' or 'published'; got {choice!r}")
    return STORE.get(WEIGHTS[choice], scale)


def parsed(
    items: tuple[serving.Item, ...], *, scale: object, size: object = None, precision: object, truth: str,
    **options: Any,  # Request's other fields, some as the caller sent them (Any: Gradio's payloads)
) -> serving.Request:
    """The typed request from what a caller sent: the size, precision and ground truth parsed once, here,
    and each refusal one sentence."""
    try:
        return serving.Request(
            items, serving.parse_target(scale, size), precision=serving.parse_precision(precision),
            truth=serving.parse_truth(GROUND_TRUTH.get(truth, truth)), **options,
        )  # fmt: skip
    except ValueError as err:
        raise gr.Error(str(err), print_exception=False) from None


def serve(  # noqa: A002
    request: serving.Request,
    *,
    mine: str | Refused | None = None,
    progress: serving.Progress | None = None,
    format: object = "png",
) -> serving.Outcome:
    """Admit and run one request (mdsr.serving), its outputs in a folder of their own; every refusal and
    failure becomes one sentence in the UI and the API. ``ValueError`` covers every sentence the library
    words (``RefusedError``, ``ImageError``, ``WeightsError``); ``OSError`` a file that could not be read
    or written."""
    try:
        admitted = serving.admit(request, LIMITS, device=device())
        if admitted.work >= LONG_RUN_PIXELS:
            gr.Info(f"A long run: {admitted.work / 1e6:.1f} megapixels of network work; the bar shows the time left")
        if progress is not None:
            progress(0, 1, LOADING)
        weights = {s: load_weights(request.weights, s, mine) for s in admitted.scales}
        versus = {s: load_weights(request.versus, s) for s in admitted.scales} if request.versus else None
        outputs = serving.Outputs(workspace().new_folder(), request.items, admitted.tag, format=format)
        return serving.run(
            admitted, weights=weights, versus=versus, prepared=PREPARED, outputs=outputs, progress=progress,
            runner=runner(),
        )  # fmt: skip
    except (ValueError, OSError) as err:
        raise gr.Error(str(err), print_exception=False) from None


def checked(value: str | Refused | None) -> str | None:
    """An upload's path, or its refusal as the run's sentence (reached only where no admission check ran)."""
    if isinstance(value, Refused):
        raise gr.Error(value.message, print_exception=False)
    return value


def uploaded_paths(values: list[str | Refused]) -> list[str]:
    """The uploads' paths, or the first refusal as the run's sentence (``checked``)."""
    return [path for value in values if (path := checked(value)) is not None]


def custom_or(scale: int, custom: str | None) -> dict[str, object]:
    """The UI's size: its custom field where filled (a factor such as 1.5, or a size such as 1920x1080),
    else the scale picked."""
    text = (custom or "").strip() if isinstance(custom, str) else custom
    if not text:
        return {"scale": scale}
    if isinstance(text, str) and re.fullmatch(r"[0-9.]+", text):
        try:
            return {"scale": float(text)}
        except ValueError:  # "1..5", "."
            raise gr.Error(
                f"another size is a factor from 1.1 to 8 (such as 1.5) or a size such as 1920x1080; got {text!r}",
                print_exception=False,
            ) from None
    return {"scale": None, "size": text}


def upload_name(path: str | Refused) -> str:
    """The uploaded file's own name (Gradio keeps it), which names the output: photo.jpg -> photo_x4.png."""
    return Path(path).name if isinstance(path, str) else "image"


class ProgressBar(Protocol):
    """The page's progress bar: a ``gr.Progress``, or a stand-in where no page shows one (the examples)."""

    def __call__(self, progress: tuple[int, int], *, desc: str | None = None, unit: str = "steps") -> object: ...


def ui_progress(progress: ProgressBar) -> serving.Progress:
    """The network's progress as the page shows it: its steps, and the time left at the pace so far."""
    started = time.monotonic()

    def report(done: int, total: int, name: str) -> None:
        if name == LOADING:
            progress((0, 1), desc="Loading the weights")
            return
        elapsed = time.monotonic() - started
        left = f" · about {elapsed * (total - done) / done:.0f} s left" if done and elapsed > 1 else ""
        progress((done, total), desc=f"Upscaling with the network: {done}/{total} steps{left}", unit="steps")

    return report


LOADING = "loading weights"  # what the progress says before the network's steps
LONG_RUN_PIXELS = 4_000_000  # network work (output pixels x passes) from which a run is announced as long


class UiResult(NamedTuple):
    """One run's results; ``view`` is kept (gr.State) for re-zooming without running again."""

    slider: tuple[np.ndarray, np.ndarray]
    download: str
    zoom: np.ndarray
    map: np.ndarray  # the whole output, small, with the zoomed region outlined: a click moves the zoom
    metrics: str | None  # None without a ground truth
    errors: list[tuple[np.ndarray, str]] | None  # the error maps, with a ground truth
    info: str
    region: np.ndarray | None  # the whole photo with the upscaled part outlined, for a photo over the limits
    view: ZoomView

    @property
    def output(self) -> np.ndarray:
        """The MDSR-BAM output as shown (8-bit, full size): the slider's right side."""
        return self.slider[1]

    def shown(self) -> tuple:
        """The page's components as the run fills them (``SHOWN``'s order): each panel visible only where
        it has content, the welcome text gone."""
        names = [name for name, _ in self.view.panels]  # e.g. bicubic | MDSR-BAM (| ground truth): this run's
        return (
            gr.update(value=self.info, visible=True),
            gr.update(value=self.slider, visible=True, label=f"{names[0]} ◀ ▶ {names[1]}"),
            gr.update(visible=False),
            gr.update(visible=True),
            gr.update(value=self.zoom, label=f"Zoom at 2:1: {' | '.join(names)}"),
            gr.update(value=self.map),
            gr.update(value=self.download, visible=True),
            gr.update(value=self.metrics or "", visible=self.metrics is not None),
            gr.update(value=self.errors, visible=self.errors is not None),
            gr.update(value=self.region, visible=self.region is not None),
            self.view,
        )


@dataclass(frozen=True)
class UiAsk:
    """The UI's inputs, by name: the components are wired to these names (``UI_INPUTS``), so each is listed
    here and there only."""

    image: str | Refused | None
    scale: int
    gt_mode: str
    gt_image: str | Refused | None
    # The rest as the page starts them (the components' initial values), with which an example row runs.
    weights: str = AUTO_LABEL
    self_ensemble: bool = False
    precision: str = "auto"
    auto_zoom: bool = True
    zoom_x: float = 50
    zoom_y: float = 50
    my_file: str | Refused | None = None
    my_listed: str | None = None
    versus: str = VERSUS_BICUBIC
    download_format: str = "png"
    custom_size: str = ""
    region_auto: bool = True
    region_x: float = 50
    region_y: float = 50


def upscale_ui(
    progress: ProgressBar = gr.Progress(),  # noqa: B008 (Gradio injects its progress tracker this way)
    **values: Any,  # the UI's values by name (inputs_kwargs; Any: each component's own), typed by UiAsk
) -> UiResult:
    """Upscale with the chosen weights (A) and show it beside bicubic, or beside weights B (A/B mode)."""
    ask = UiAsk(**values)
    if ask.image is None:
        raise gr.Error("Upload an image first.", print_exception=False)
    ab = ask.versus not in (None, VERSUS_BICUBIC)
    uploaded = GROUND_TRUTH.get(ask.gt_mode) == "upload"
    size = custom_or(ask.scale, ask.custom_size)
    region = serving.Region(None if ask.region_auto else (ask.region_x / 100, ask.region_y / 100))
    request = parsed(
        (serving.Item(upload_name(ask.image), checked(ask.image), checked(ask.gt_image) if uploaded else None),),
        **size, precision=ask.precision, truth=ask.gt_mode, weights=ask.weights,
        versus=ask.versus if ab else None, self_ensemble=bool(ask.self_ensemble), bicubic=not ab, views=True,
        region=region,
    )  # fmt: skip
    outcome = serve(
        request, mine=ask.my_file or ask.my_listed, progress=ui_progress(progress), format=ask.download_format
    )
    result = outcome.results[0]
    a, b = result.comparison, result.versus
    assert a is not None  # one item, not a batch, in a fresh folder: serving.run raised any failure
    if ab:
        assert b is not None and outcome.versus is not None  # the request had versus
        left, right_label = (f"B: {outcome.versus.name}", b.output), f"A: {outcome.weights.name}"
    else:
        assert a.bicubic is not None  # the request asked for it (bicubic=not ab)
        left, right_label = ("bicubic", a.bicubic), "MDSR-BAM"
    shown = [(left[0], preview_rgb(left[1])), (right_label, preview_rgb(a.output))]
    maps = None
    if a.truth is not None:
        shown.append(("ground truth", preview_rgb(a.truth)))
        maps = [
            (error_map(left[1], a.truth), f"|{left[0]} − truth| ×4"),
            (error_map(a.output, a.truth), f"|{right_label} − truth| ×4"),
        ]
    view = ZoomView(rgb8(a.lr), tuple(shown))  # kept by the session, in 8 bits, to re-zoom
    outline = None
    if result.region is not None:
        assert result.overview is not None and result.whole is not None  # set with the region (serving.run_item)
        outline = region_outline(result.overview, result.whole, result.region)
    return UiResult(
        slider=(shown[0][1], shown[1][1]),
        download=str(result.path),
        zoom=zoom_of(view, ask.auto_zoom, ask.zoom_x, ask.zoom_y),
        map=zoom_map(view, None if ask.auto_zoom else (ask.zoom_x / 100, ask.zoom_y / 100)),
        metrics=metrics_markdown(a, b, left[0], right_label) if a.metrics is not None else None,
        errors=maps,
        info=info_markdown(a, outcome.weights, result.notes)
        + (f" · **slider:** {left[0]} ◀ ▶ {right_label}" if ab else "")
        + region_markdown(result),
        region=outline,
        view=view,
    )


def zoom_of(view: ZoomView, auto_zoom: bool, zoom_x: float, zoom_y: float) -> np.ndarray:
    center = None if auto_zoom else (zoom_x / 100, zoom_y / 100)
    return zoom_panel(view, center=center)


def show_run(progress: gr.Progress = gr.Progress(), **values: Any) -> tuple:  # noqa: B008 (Gradio's tracker); values: as upscale_ui
    """The Upscale button: ``upscale_ui``'s results as the page shows them."""
    return upscale_ui(progress=progress, **values).shown()


def run_example(image: str, scale: int, gt_mode: str, gt_image: str | None) -> tuple:
    """An example row with the default options (cached when the app starts). The row fills the original
    (HR) image field too, so that Upscale after a click runs what the row shows."""
    no_progress = lambda *args, **kwargs: None  # noqa: E731
    return upscale_ui(
        image=image, scale=scale, gt_mode=gt_mode, gt_image=gt_image, progress=no_progress
    ).shown()


def batch_ui(
    files: list[str | Refused] | None,
    scale: int,
    truths: list[str | Refused] | None,
    weights: str,
    precision: str,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's tracker)
) -> tuple[str | None, list[list]]:
    """Upscale several images (or zips of them): one zip of PNGs and a table, PSNR/SSIM where a ground
    truth of the same name was given; the table alone where no image could be upscaled (no empty zip)."""
    if not files:
        raise gr.Error("Add images (or a zip of images) first.", print_exception=False)
    paths, truth_paths = uploaded_paths(files), uploaded_paths(truths or [])
    try:
        items = collect(
            paths, truths=truth_paths, max_images=LIMITS.batch_images, max_unpacked_bytes=LIMITS.batch_bytes
        )
    except serving.RefusedError as err:
        raise gr.Error(str(err), print_exception=False) from None
    request = parsed(
        items, scale=scale, precision=precision, truth="upload" if truths else "none", weights=weights, each=True
    )
    outcome = serve(request, progress=lambda done, total, name: progress((done, total), desc=f"Upscaling {name}"))
    if not any(r.path is not None and not r.error for r in outcome.results):
        return None, table(outcome)
    archive = zip_outputs(outcome, workspace().new_folder() / f"mdsr_batch_{outcome.tag}.zip")
    return str(archive), table(outcome)


Skip = dict  # what gr.skip() gives: that output stays as it is


def rezoom(
    view: ZoomView | None, auto_zoom: bool, zoom_x: float, zoom_y: float, slider_crop: bool
) -> tuple[np.ndarray | Skip, tuple[np.ndarray, np.ndarray] | Skip, np.ndarray | Skip]:
    """The zoom (and, where asked, the slider) at the region the controls say, from the kept view."""
    if view is None:
        return gr.skip(), gr.skip(), gr.skip()
    center = None if auto_zoom else (zoom_x / 100, zoom_y / 100)
    whole = (view.panels[0][1], view.panels[1][1])
    shown = full_size_crop(view, center) if slider_crop else whole
    return zoom_panel(view, center=center), shown, zoom_map(view, center)


def zoom_at(small: np.ndarray | None, evt: gr.SelectData) -> tuple[bool | Skip, int | Skip, int | Skip]:
    """A click on the small map of the output: the zoom moves there (the controls follow, and rezoom runs)."""
    if small is None or not _is_point(evt.index):
        return gr.skip(), gr.skip(), gr.skip()
    height, width = np.asarray(small).shape[:2]
    return False, _percent(evt.index[0], width), _percent(evt.index[1], height)


def region_at_click(
    overview: np.ndarray | None, evt: gr.SelectData
) -> tuple[bool | Skip, int | Skip, int | Skip]:
    """A click on the region's overview: the next run's region is centred there."""
    if overview is None or not _is_point(evt.index):
        return gr.skip(), gr.skip(), gr.skip()
    height, width = np.asarray(overview).shape[:2]
    return False, _percent(evt.index[0], width), _percent(evt.index[1], height)


def _is_point(index: object) -> bool:
    return isinstance(index, (list, tuple)) and len(index) == 2 and all(isinstance(v, (int, float)) for v in index)


def _percent(value: float, length: int) -> int:
    return min(100, max(0, round(100 * value / max(length, 1))))


def upscale_api(  # noqa: A002
    image: str | Refused | None,
    scale: object,
    ground_truth: str | Refused | None = None,
    precision: object = "auto",
    weights: object = "auto",
    format: object = "png",
    size: object = None,
) -> tuple[str, dict[str, object]]:
    """Upscale `image` by `scale` (2, 3 or 4, or another factor from 1.1 to 8), or to `size` ("1920x1080" to
    fit inside, "1920x" or "x1080"; then `scale` may be null); with `ground_truth` (the HR original, of the
    output's size), also PSNR/SSIM of MDSR-BAM and bicubic. `precision`: "auto" (int8 on CPUs with VNNI/AMX/AVX2, else fp32), "fp32", "bf16"
    or "int8". `weights`: "auto" (the published eugenesiow/mdsr-bam where the Hub
    has them, else the bundled ones), "bundled" or "published". `format`: "png" (exact), "webp" (lossless)
    or "jpeg" (quality 95), each with the input's colour profile and EXIF. Returns the file and a report
    naming the weights that made it."""
    if image is None:
        raise gr.Error("Upload an image first.", print_exception=False)
    request = parsed(
        (serving.Item(upload_name(image), checked(image), checked(ground_truth)),), scale=scale, size=size,
        precision=precision or "auto", truth="upload" if ground_truth is not None else "none", weights=weights or "auto",
    )  # fmt: skip
    outcome = serve(request, format=format or "png")
    result = outcome.results[0]
    assert result.sizes is not None and result.info is not None  # one item in a fresh folder: it ran, or raised
    (width, height), i = result.sizes[1], result.info
    report: dict[str, object] = {
        "scale": i.scale,
        "width": width,
        "height": height,
        "precision": i.precision,
        "device": i.device,
        "tiles": i.tiles,
        "trunk": i.trunk,
        "seconds": round(i.seconds, 3),
        "weights": outcome.weights.name,
        "weights_note": outcome.weights.note,
        "metrics": None if result.metrics is None else asdict(result.metrics),
        "notes": list(result.notes),
    }
    return str(result.path), report




def readme_link() -> str:
    """The README where a visitor can read it: the Space's own page on Hugging Face, else the file."""
    space = os.environ.get("SPACE_ID")
    return f"https://huggingface.co/spaces/{space}/blob/main/README.md" if space else "file=README.md"


ABOUT = (HERE / "demo" / "about.md").read_text().replace("{readme}", readme_link())
# After a run the page brings the run line and the slider into view (on a phone they lie below the input).
SCROLL_TO_RESULT = "() => document.querySelector('#run-info')?.scrollIntoView({block: 'start', behavior: 'instant'})"
WELCOME = (
    "**Upload a photo on the left and press Upscale, or click an example.** The result appears here: "
    "bicubic ◀ ▶ MDSR-BAM in a slider, a 2:1 zoom of the most detailed region, and the file to download."
)
with gr.Blocks(title="MDSR-BAM super-resolution") as demo:
    gr.Markdown(ABOUT, elem_id="about")
    state = gr.State(None, time_to_live=KEEP_RESULTS_S)  # the last run's zoom view, to re-zoom without a run
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=300):
            image = UploadedImage(
                type="filepath", image_mode=None, label="Your photo (low resolution)", sources=["upload", "clipboard"],
                elem_id="input-image", height=260,
            )  # fmt: skip
            with gr.Row():
                scale = gr.Radio(list(SUPPORTED_SCALES), value=4, label="Scale", elem_id="scale", scale=2)
                button = gr.Button("Upscale", variant="primary", elem_id="upscale-button", scale=1)
            examples_here = gr.Column(elem_id="examples")
            custom_size = gr.Textbox(
                "", label="Or another size: a factor from 1.1 to 8 (1.5, 6), or WxH to fit inside (1920x1080), "
                "W x (1920x) or x H (x1080)", placeholder="leave empty for the scale above", elem_id="custom-size",
            )  # fmt: skip
            with gr.Accordion("Ground truth (for PSNR / SSIM)", open=False):
                gt_mode = gr.Radio([GT_NONE, GT_UPLOAD, GT_SELF], value=GT_NONE, label="Ground truth", elem_id="gt-mode")
                gt_image = UploadedImage(
                    type="filepath", image_mode=None, label="Original (HR) image", sources=["upload"], elem_id="gt-image"
                )  # fmt: skip
            with gr.Accordion("Options: weights, A/B, precision, format", open=False):
                weights = gr.Radio(
                    [AUTO_LABEL, BUNDLED, HUB, MINE], value=UiAsk.weights, label="Weights", elem_id="weights"
                )
                my_file = UploadedFile(
                    label="Your weights: a .safetensors file from `mdsr train` / `mdsr export`, or a super-image .pt",
                    file_types=[".safetensors", ".pt"], type="filepath", elem_id="my-weights",
                )  # fmt: skip
                versus = gr.Radio(
                    [VERSUS_BICUBIC, AUTO_LABEL, BUNDLED, HUB], value=VERSUS_BICUBIC, elem_id="versus",
                    label="Compare against (left of the slider): bicubic, or other weights (A/B: A is the choice above)",
                )  # fmt: skip
                my_listed = gr.Dropdown(
                    [(f"{p.name}: {describe(p)}", p.name) for p in weights_in_folder(weights_dir())],
                    value=None, label="or from the host's weights folder (MDSR_WEIGHTS_DIR)",
                    visible=bool(weights_in_folder(weights_dir())),
                )  # fmt: skip
                self_ensemble = gr.Checkbox(
                    UiAsk.self_ensemble, label="Self-ensemble (8 flips/rotations averaged: ~8x slower, sharper)"
                )
                precision = gr.Radio(PRECISIONS, value=UiAsk.precision, label="Precision", elem_id="precision")
                download_format = gr.Radio(
                    [("PNG (exact; 16 bits and alpha kept)", "png"), ("WebP (lossless, smaller)", "webp"),
                     ("JPEG (quality 95, smallest)", "jpeg")],
                    value="png", label="Download as (the colour profile and EXIF of your file are kept)",
                    elem_id="download-format",
                )  # fmt: skip
            with gr.Accordion("Region: for photos over the limits (e.g. a 12-megapixel phone photo)", open=False):
                region_auto = gr.Checkbox(True, label="The most detailed part", elem_id="region-auto")
                region_x = PositionSlider(0, 100, value=50, step=1, label="or centred at x (%)", elem_id="region-x")
                region_y = PositionSlider(0, 100, value=50, step=1, label="and y (%)", elem_id="region-y")
        with gr.Column(scale=2, min_width=320, elem_id="results"):
            welcome = gr.Markdown(WELCOME, elem_id="welcome")
            info = gr.Markdown(elem_id="run-info", visible=False)
            slider = gr.ImageSlider(
                label="Bicubic (or weights B) ◀ ▶ MDSR-BAM", format="png", type="numpy",
                elem_id="slider", visible=False, interactive=False, max_height=460,  # the picture's own shape, no bands
            )  # fmt: skip
            with gr.Row(visible=False, equal_height=False) as zoom_row:
                zoom = gr.Image(
                    label="Zoom at 2:1: bicubic | MDSR-BAM | ground truth", format="png", interactive=False,
                    elem_id="zoom", scale=3, show_label=True,
                )  # fmt: skip
                with gr.Column(scale=1, min_width=160):
                    navigator = gr.Image(
                        label="Click to zoom there", format="png", interactive=False, elem_id="navigator", height=150,
                    )  # fmt: skip
                    auto_zoom = gr.Checkbox(UiAsk.auto_zoom, label="Most detailed region", elem_id="auto-zoom")
                    zoom_x = PositionSlider(0, 100, value=UiAsk.zoom_x, step=1, label="x (%)", elem_id="zoom-x")
                    zoom_y = PositionSlider(0, 100, value=UiAsk.zoom_y, step=1, label="y (%)", elem_id="zoom-y")
                    slider_crop = gr.Checkbox(False, label="Slider: this region at full size", elem_id="slider-crop")
            download = gr.DownloadButton("Download (full resolution)", elem_id="download", visible=False)
            metrics = gr.Markdown(elem_id="metrics", visible=False)
            errors = gr.Gallery(
                label="Error maps against the ground truth", columns=2, format="png", elem_id="errors", visible=False,
                height=260,
            )  # fmt: skip
            region = gr.Image(
                label="Where the upscaled region lies in your photo: click to move it", format="png",
                interactive=False, elem_id="region", visible=False,
            )  # fmt: skip

    ui_inputs: dict[str, Block] = dict(
        image=image, scale=scale, gt_mode=gt_mode, gt_image=gt_image, weights=weights, self_ensemble=self_ensemble,
        precision=precision, auto_zoom=auto_zoom, zoom_x=zoom_x, zoom_y=zoom_y, my_file=my_file, my_listed=my_listed,
        versus=versus, download_format=download_format, custom_size=custom_size, region_auto=region_auto,
        region_x=region_x, region_y=region_y,
    )  # fmt: skip
    shown = [info, slider, welcome, zoom_row, zoom, navigator, download, metrics, errors, region, state]
    button.click(
        show_run,
        inputs_kwargs=ui_inputs,
        outputs=shown,
        # Progress, and a refusal's mark, on the run line (or the welcome before the first run) alone: on every
        # output, a refusal blanked the last result's pictures behind "Error" marks that caught the pointer.
        show_progress_on=[welcome, info],
        api_visibility="private",
        validator=admit_ui,
        concurrency_limit=1,
        concurrency_id="model",
    ).success(None, js=SCROLL_TO_RESULT)
    zoom_controls = [state, auto_zoom, zoom_x, zoom_y, slider_crop]
    for control in (auto_zoom, zoom_x, zoom_y, slider_crop):
        control.change(rezoom, zoom_controls, [zoom, slider, navigator], api_visibility="private", show_progress="hidden")
    # A click on the small map moves the zoom there; one on the region's overview, the next run's region.
    navigator.select(zoom_at, [navigator], [auto_zoom, zoom_x, zoom_y], api_visibility="private", show_progress="hidden")
    region.select(region_at_click, [region], [region_auto, region_x, region_y], api_visibility="private")
    # A new input makes the kept comparison stale: the zoom controls wait for the next run.
    image.change(lambda: None, None, state, api_visibility="private", show_progress="hidden")

    with examples_here:
        examples = gr.Examples(
            examples=[
                [str(EXAMPLES / "astronaut_lr_x4.png"), 4, GT_UPLOAD, str(EXAMPLES / "astronaut.png")],
                [str(EXAMPLES / "coffee_lr_x3.png"), 3, GT_UPLOAD, str(EXAMPLES / "coffee.png")],
                [str(EXAMPLES / "chelsea_lr_x2.png"), 2, GT_UPLOAD, str(EXAMPLES / "chelsea.png")],
                [str(EXAMPLES / "chelsea.png"), 2, GT_SELF, None],
            ],
            inputs=[image, scale, gt_mode, gt_image],
            # Labels rather than a table of four columns, which the column's width cut off (on a phone, all but one).
            example_labels=[
                "Astronaut at 4x, scored against the original",
                "Coffee at 3x, scored against the original",
                "Chelsea the cat at 2x, scored against the original",
                "Chelsea at 2x, the photo as its own ground truth",
            ],
            outputs=shown,
            fn=run_example,
            cache_examples=True,
            cache_mode="eager",  # run once at start-up: no visitor waits, no example runs beside the queue
            label="Examples: one click (public domain / CC0 photos from scikit-image; LR made with MATLAB bicubic)",
            examples_per_page=4,
        )

    with gr.Accordion("Batch: several images, or zips of them", open=False, elem_id="batch"):
        with gr.Row():
            batch_files = UploadedFile(
                label=f"Images or .zip files (at most {LIMITS.batch_images} images)",
                file_count="multiple",
                file_types=["image", ".zip"],
                type="filepath",
                elem_id="batch-files",
            )
            batch_truths = UploadedFile(
                label="Ground truths, named like the images (optional: PSNR/SSIM per image)",
                file_count="multiple",
                file_types=["image", ".zip"],
                type="filepath",
                elem_id="batch-truths",
            )
        with gr.Row():
            batch_scale = gr.Radio(list(SUPPORTED_SCALES), value=2, label="Scale", elem_id="batch-scale")
            batch_weights = gr.Radio([AUTO_LABEL, BUNDLED, HUB], value=AUTO_LABEL, label="Weights")
            batch_precision = gr.Radio(PRECISIONS, value="auto", label="Precision")
        batch_button = gr.Button("Upscale all", elem_id="batch-button")
        batch_zip = gr.File(label="All outputs (zip of full-resolution PNGs)", elem_id="batch-zip")
        batch_table = gr.Dataframe(headers=COLUMNS, label="Per image", elem_id="batch-table")
    batch_button.click(
        batch_ui,
        [batch_files, batch_scale, batch_truths, batch_weights, batch_precision],
        [batch_zip, batch_table],
        api_visibility="private",
        validator=admit_batch,
        concurrency_limit=1,
        concurrency_id="model",
    )

    with gr.Row(visible=False):  # the programmatic endpoint: (image, scale[, ground truth]) -> (PNG, metrics)
        api_image = UploadedImage(type="filepath", image_mode=None)
        api_scale = RawNumber(4)
        api_truth = UploadedImage(type="filepath", image_mode=None)
        api_precision = RawText("auto")  # checked by mdsr, whose message names the choices
        api_weights = RawText("auto")
        api_format = RawText("png")
        api_size = RawText(None)
        api_output = gr.Image(type="filepath", format="png")
        api_report = gr.JSON()
    api_button = gr.Button(visible=False)
    api_button.click(
        upscale_api,
        [api_image, api_scale, api_truth, api_precision, api_weights, api_format, api_size],
        [api_output, api_report],
        api_name="upscale",
        validator=admit_api,
        concurrency_limit=1,
        concurrency_id="model",
    )

# api_open=False: every call goes through the queue (and its admission checks); no REST route skips it.
demo.queue(max_size=LIMITS.jobs, default_concurrency_limit=1, api_open=False)
check_gradio_internals(demo)
serialize_admission(demo)



def warm_up() -> None:
    """Load the bundled weights and make their copy for the "auto" precision now, so that the process's
    resident memory, which admission measures, already holds them, and no first visitor waits. A malformed
    MDSR_TRUSTED_PROXIES raises ValueError first, naming it, before anything is loaded."""
    trusted_proxies()
    bundled = STORE.get(None, 2).model
    PREPARED.get(bundled, resolve_precision("auto", device()))
    kernels.available()  # builds the fused attention kernels (~0.3 s) now, not in the first request
    release_freed_memory()  # the conversion's temporaries go back: the resting memory is the models'


if __name__ == "__main__":
    try:
        warm_up()
    except ValueError as err:  # a setting the app cannot start with: one line, not a traceback
        sys.exit(f"error: {err}")
    demo.launch(max_file_size=LIMITS.file_bytes)
