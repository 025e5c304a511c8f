"""One request of one kind, at the largest size the demo's admission lets through, in this fresh process:
``python tests/memory_child.py KIND FOLDER HEADROOM_MB``. Prints JSON: the process's resident memory at
admission, the budget (that plus HEADROOM_MB), the admitted estimate, the input's size and the peak
resident memory while the request ran.

The budget is the measured resident memory plus a headroom, so that the largest admitted request is as
small as proves the bound (a quarter of a megapixel or so), and the output and work limits are scaled with
it; the photos are scikit-image's (public domain), resized.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

import app
from mdsr import serving
from mdsr.imaging import bicubic_downscale
from mdsr.inference import release_freed_memory
from mdsr.limits import resident_mb

# kind: (scale, ground truth, A/B, images, region of a 12 MP photo)
KINDS = {
    "ui_with_truth_x4": (4, "upload", False, 1, False),
    "api": (2, "none", False, 1, False),
    "x8": (8, "none", False, 1, False),
    "ab_with_truth": (2, "upload", True, 1, False),
    "batch_with_truths": (2, "upload", False, 2, False),
    "region_of_12_mp": (2, "none", False, 1, True),
    "api_transparent": (2, "none", False, 1, False),  # an RGBA photo, transparent around a disc
}


def peak_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM"))


def photo(size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize(size, Image.LANCZOS))


def declared(folder: Path, name: str, size: tuple[int, int]) -> str:
    """A small file of ``size``: admission reads headers only."""
    path = folder / name
    Image.new("1", size).save(path, optimize=True)
    return str(path)


def request_for(kind: str, folder: Path, side: int, whole: str | None = None) -> serving.Request:
    scale, truth, ab, count, region = KINDS[kind]
    if region:
        return serving.Request((serving.Item("photo.jpg", whole),), serving.parse_target(scale), views=True,
                               region=serving.Region())  # fmt: skip
    net = 4 if scale == 8 else scale
    lr = declared(folder, f"lr{side}.png", (side, side))
    hr = declared(folder, f"hr{side}.png", (side * net, side * net)) if truth == "upload" else None
    items = tuple(serving.Item(f"{n}.png", lr, hr) for n in range(count))
    views = kind.startswith(("ui", "ab"))
    return serving.Request(
        items, serving.parse_target(scale), truth=truth, versus="bundled" if ab else None, bicubic=views and not ab,
        views=views, each=count > 1,
    )  # fmt: skip


def largest(kind: str, folder: Path, limits: serving.Limits, resident: float) -> int:
    """The largest square side admitted for ``kind`` (the last that fits, by bisection)."""
    low, high = 16, 4096
    while high - low > 4:
        mid = (low + high) // 2
        try:
            admitted = serving.admit(request_for(kind, folder, mid), limits, resident=resident)
            fits = not any(p.refusal for p in admitted.plans)
        except serving.RefusedError:
            fits = False
        low, high = (mid, high) if fits else (low, mid)
    return low


def real_files(kind: str, folder: Path, side: int) -> serving.Request:
    """The same request with real photos of that size (and their originals)."""
    scale, truth, _, count, _ = KINDS[kind]
    net = 4 if scale == 8 else scale
    request = request_for(kind, folder, side)
    items = []
    for n, item in enumerate(request.items):
        hr = photo((side * net, side * net))
        lr_path, hr_path = folder / f"real_lr{n}.png", folder / f"real_hr{n}.png"
        lr = Image.fromarray(bicubic_downscale(hr, net))
        if kind == "api_transparent":  # its hidden colour is filled before the network (imaging.fill_hidden_colour)
            disc = Image.new("L", lr.size, 0)
            ImageDraw.Draw(disc).ellipse((side // 8, side // 8, side - side // 8, side - side // 8), fill=255)
            lr.putalpha(disc)
        lr.save(lr_path)
        if truth == "upload":
            Image.fromarray(hr).save(hr_path)
        items.append(dataclasses.replace(item, source=str(lr_path), truth=str(hr_path) if item.truth else None))
    return dataclasses.replace(request, items=tuple(items))


def call_the_demo(kind: str, request: serving.Request) -> None:
    """The request through the demo's own handler, views and all."""
    scale, truth, ab, _, region = KINDS[kind]
    item = request.items[0]
    none = lambda *a, **k: None  # noqa: E731 (no progress bar)
    ui = dict(weights=app.BUNDLED, self_ensemble=False, precision="auto", auto_zoom=True, zoom_x=50, zoom_y=50)
    if kind == "batch_with_truths":
        app.batch_ui([i.source for i in request.items], scale, [i.truth for i in request.items], app.BUNDLED, "auto",
                     progress=none)  # fmt: skip
    elif kind in ("api", "x8", "api_transparent"):
        app.upscale_api(item.source, scale, weights="bundled")
    else:
        gt = app.GT_UPLOAD if truth == "upload" else app.GT_NONE
        app.upscale_ui(image=item.source, scale=scale if scale in (2, 3, 4) else 2, gt_mode=gt, gt_image=item.truth,
                       versus=app.BUNDLED if ab else app.VERSUS_BICUBIC, progress=none, **ui)  # fmt: skip


def main(kind: str, folder: Path, headroom_mb: float) -> None:
    app.warm_up()  # the demo's start: the bundled weights and their int8 copy
    for s in (2, 3, 4):
        app.STORE.get(None, s)
    resident = resident_mb()
    share = headroom_mb / 1000  # the demo's limits (about 1 GB over its resting memory), scaled to the headroom
    limits = dataclasses.replace(
        serving.DEMO_LIMITS, memory_mb=resident + headroom_mb, work_pixels=serving.UNLIMITED,
        output_pixels=int(serving.DEMO_LIMITS.output_pixels * share / 4),
        input_pixels=int(serving.DEMO_LIMITS.input_pixels * share),
    )  # fmt: skip
    app.LIMITS = limits
    if KINDS[kind][4]:
        whole = str(folder / "photo.jpg")
        Image.fromarray(photo((4000, 3000))).save(whole, quality=90)
        request = request_for(kind, folder, 0, whole)
    else:
        side = largest(kind, folder, limits, resident)
        for _ in range(3):  # making the files moved the process's memory: the largest side as it now is
            request = real_files(kind, folder, side)
            gc.collect()
            release_freed_memory()
            resident = resident_mb()
            if largest(kind, folder, limits, resident) == side:
                break
            side = largest(kind, folder, limits, resident)
    release_freed_memory()
    resident = resident_mb()
    plan = serving.admit(request, limits, resident=resident).plans[0]
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    call_the_demo(kind, request)
    print(json.dumps({
        "resident_mb": round(resident), "budget_mb": round(limits.memory_mb), "estimate_mb": round(plan.memory_mb),
        "input": plan.run.input_size, "output": plan.run.size, "trunk": plan.run.stages[-1].trunk,
        "region": plan.region, "peak_mb": round(peak_mb()),
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]))
