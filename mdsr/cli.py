"""The ``mdsr`` command: upscale, downscale, train, evaluate.

Errors a user can cause (a missing file, a bad image, a wrong scale) end in one line on stderr and a
non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast, get_args

from mdsr.inference import Precision
from mdsr.model import SUPPORTED_SCALES

if TYPE_CHECKING:
    from mdsr.serving import Item, Outputs
    from mdsr.sizing import Target

PRECISIONS = get_args(Precision)


def add_train(sub: argparse._SubParsersAction) -> None:
    """One option per ``TrainConfig`` field, with its type, default, choices and help from the field."""
    from dataclasses import MISSING, fields

    from mdsr.train import TrainConfig

    p = sub.add_parser("train", help="train MDSR-BAM on folders of HR images")
    for f in fields(TrainConfig):
        flag, help_, choices = "--" + f.name.replace("_", "-"), f.metadata["help"], f.metadata["choices"]
        if f.name == "data":
            p.add_argument("data", nargs="*", help=help_)
        elif f.name == "scales":
            help_ += " (default: %(default)s)"
            default = cast(tuple, f.default)  # TrainConfig's scales default to a tuple
            p.add_argument(flag, type=int, nargs="+", default=list(default), choices=SUPPORTED_SCALES, help=help_)
        elif f.type == "bool":
            flag = f"--no-{f.name.replace('_', '-')}" if f.default else flag
            p.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true", help=help_)
        else:
            kind = {"int": int, "float": float}.get(f.type.split(" |")[0], str)
            required = f.default is MISSING
            if not required and f.default is not None and "default" not in help_:
                help_ += " (default: %(default)s)"
            p.add_argument(
                flag, type=kind, choices=choices, required=required, default=None if required else f.default, help=help_
            )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt (without it, a folder that already holds a run is refused; where OUT holds "
        "nothing of a run, a new one starts there and says so)",
    )
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    import torch

    from mdsr.train import StoppedBySignal, TrainConfig, train

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a whole number of at least 1, got {args.threads}")
    if not args.data and not args.hf_dataset:
        raise ValueError("give at least one folder of training images (or --hf-dataset)")
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    values.update(data=tuple(args.data), scales=tuple(args.scales))
    if values["val_data"] == "none":
        values["val_data"] = None
    cfg = TrainConfig(**values)  # checks every value before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        final = train(cfg, resume=args.resume)
    except StoppedBySignal as stopped:
        # Saved, but not finished: the shell's status for the signal, so `mdsr train ... && next` stops here.
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"weights: {stopped.weights}")
            print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"weights: {final}")
    return 0


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[Path]]:
    """The files to process and the broken links skipped. Files as given, folders as their image files
    (sorted); a missing path is an error. A file given twice, however spelled (``a.png`` and ``./a.png``,
    or itself and its folder), is processed once, where it first comes and as it is first spelled: twice,
    it would name two outputs alike and be computed twice. In a folder, a symbolic link with an image's name
    whose target is missing is skipped, for the caller to say so (``report_broken_link``)."""
    from mdsr.files import is_image_name

    files: dict[Path, Path] = {}  # resolved path -> the path as first given
    broken: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            names = sorted(p for p in path.iterdir() if is_image_name(p))
            found = [p for p in names if p.is_file()]
            links = [p for p in names if p.is_symlink() and not p.exists()]
            if not found:
                also = f" (only {len(links)} broken symbolic link{'s' if len(links) > 1 else ''})" if links else ""
                raise FileNotFoundError(f"{path} holds no images{also}")
            broken += links
        elif path.is_file():
            found = [path]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for file in found:
            files.setdefault(file.resolve(), file)
    return list(files.values()), list(dict.fromkeys(broken))


def report_broken_link(path: Path) -> None:
    """A link skipped in a folder, said as a kept output is (one line, stdout): nothing of it is counted."""
    print(f"{path}: skipped (a broken symbolic link to {os.readlink(path)})")


UPSCALE_EPILOG = """\
A file that cannot be upscaled (undecodable, over a limit) is reported in one line, "error: FILE: why",
and the other files are still written; at the end "error: K of N images failed". No output is ever written
over one of the run's inputs (-o the inputs' folder, a.png beside a_x2.png): it is kept, or with
--overwrite, that image fails.

exit status: 0 when every image was written or kept; 1 when any image failed; 2 when nothing could be
started (a bad option, weights, an output folder that cannot be written).

Under torchrun (several processes sharing the files), every process exits 0 once its files are done, even
when some failed: the launcher can pass a failure on only as a ChildFailedError traceback for each
process. The first process prints the summary, "N images in P processes: W written, K kept, F failed"
(stdout), and "error: F of N images failed" (stderr); a script that needs the failures reads those lines,
or runs one process, whose exit status is 1.
"""


def add_upscale(sub: argparse._SubParsersAction) -> None:
    from mdsr.serving import CLI_LIMITS

    p = sub.add_parser(
        "upscale",
        help="super-resolve images",
        epilog=UPSCALE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument(
        "-s", "--scale", type=number, default=None,
        help="2, 3 or 4 (the network alone), or another factor from 1.1 to 8 (the network at the next scale up, "
        "or two stages above 4x, then MATLAB's bicubic to the exact size)",
    )  # fmt: skip
    p.add_argument("--width", type=int, default=None, help="instead of a scale: this output width (aspect kept)")
    p.add_argument("--height", type=int, default=None, help="instead of a scale: this output height (aspect kept)")
    p.add_argument("--fit", default=None, metavar="WxH", help="instead of a scale: the largest size inside WxH")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--weights",
        default=None,
        help="weights file, super-image folder, Hub id, or 'auto' (the published eugenesiow/mdsr-bam where the "
        "Hub or its local cache has them, else bundled); default: bundled",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: int8 on CPUs with VNNI/AMX (2.3-2.5x fp32's speed on a Zen 5 EPYC; PSNR within 0.003 dB of fp32 on average "
        "over each of Set5/Set14/BSD100 at each scale, 0.012 dB at most on one image) or AVX2 (7-bit weights: "
        "1.5-1.7x fp32 on a Zen 3 EPYC; within 0.009 dB on average, 0.023 dB on one image), fp32 elsewhere",
    )
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower, +0.1 dB)")
    p.add_argument("--compare", action="store_true", help="also write OUTPUT_compare.png (e.g. photo_x2_compare.png): bicubic | MDSR")
    p.add_argument(
        "--format", default="png",
        help="png: exact (16 bits and alpha kept); webp: lossless, smaller; jpeg: quality 95, smallest (8 bits, no "
        "alpha). Each keeps the input's colour profile and EXIF",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=CLI_LIMITS.input_pixels,
        help=f"refuse larger inputs (default {CLI_LIMITS.input_pixels:,}; by default --max-memory-mb refuses "
        "inputs above ~12 megapixels first)",
    )
    p.add_argument(
        "--max-output-pixels",
        type=positive_int,
        default=CLI_LIMITS.output_pixels,
        help=f"refuse larger outputs (default {CLI_LIMITS.output_pixels:,})",
    )
    p.add_argument(
        "--max-memory-mb",
        type=positive_float,
        default=CLI_LIMITS.memory_mb,
        help=f"the memory one image may use (default {CLI_LIMITS.memory_mb:,.0f} MB: a 12-megapixel photo at x2); "
        "larger images stream the network's trunk (the same result, slower) or are refused",
    )
    p.set_defaults(run=run_upscale)


def run_upscale(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import torch
    from tqdm import tqdm

    from mdsr import serving
    from mdsr.inference import PreparedModels
    from mdsr.weights import WeightStore

    check_weights_file(args.weights)
    shard = Shard.from_environment()  # under torchrun: this process's share of the files
    files, broken = expand_inputs(args.inputs)
    for link in broken if shard.rank == 0 else ():
        report_broken_link(link)
    items = tuple(serving.Item(str(path), path) for path in files)
    device = f"cuda:{shard.local_rank}" if torch.cuda.is_available() else "cpu"
    target = output_target(args)
    # Every process names every file, so that the outputs of all of them are those of one run.
    outputs = serving.Outputs(
        args.out, items, serving.tag_of(target), overwrite=args.overwrite, side_by_side=args.compare,
        format=args.format,
    )  # fmt: skip
    share = items[shard.rank :: shard.world]
    onto = onto_inputs(outputs, share, files)  # settled here, never run
    mine = tuple(item for item in share if item not in onto)
    request = serving.Request(
        mine, target, weights=args.weights or "bundled", precision=serving.parse_precision(args.precision),
        self_ensemble=args.self_ensemble, bicubic=args.compare, each=True,
    )  # fmt: skip
    limits = replace(
        serving.CLI_LIMITS, input_pixels=args.max_pixels, output_pixels=args.max_output_pixels,
        memory_mb=args.max_memory_mb,
    )  # fmt: skip
    admitted = serving.admit(request, limits, device="cuda" if device != "cpu" else "cpu") if mine else None
    outputs.check_writable()  # before any work
    store = WeightStore(place=lambda model: model.to(device, memory_format=torch.channels_last))  # type: ignore[call-overload]  # torch's stub lacks it

    counts = {"written": 0, "kept": 0, "failed": 0}
    for item, path in onto.items():
        report_onto_input(item, path, outputs, counts)
    if admitted is not None:
        source = None if request.weights == "bundled" else request.weights
        weights = {scale: store.get(source, scale) for scale in admitted.scales}
        loaded = weights[admitted.scales[-1]]
        if request.weights == "auto" and shard.rank == 0:
            print(f"weights: {loaded.name}" + (f" ({loaded.note})" if loaded.note else ""), file=sys.stderr)
        with tqdm(total=None, unit="step", disable=None if shard.rank == 0 else True, dynamic_ncols=True) as bar:

            def progress(done: int, total: int, name: str) -> None:
                bar.total, bar.desc = total, Path(name).name
                bar.update(done - bar.n)

            outcome = serving.run(
                admitted, weights=weights, prepared=PreparedModels(), outputs=outputs, progress=progress
            )
        for item, result in zip(mine, outcome.results, strict=True):
            if result.error:
                report_failed(item, result.error, counts)
            elif result.skipped:
                report_kept(item, result.path, counts)
            else:
                counts["written"] += 1
                i = result.info
                assert i is not None  # every written result has its run's information
                trunk = ", streamed" if i.trunk == "streamed" else ""
                notes = "".join(f" ({n})" for n in result.notes)
                print(
                    f"{item.source} -> {result.path} [{i.precision}, {i.tiles} tile(s){trunk}, {i.seconds:.1f} s]{notes}"
                )
    counts = shard.total(counts)
    if shard.world > 1 and shard.rank == 0:
        print(f"{len(items)} images in {shard.world} processes: {counts['written']} written, {counts['kept']} kept, "
              f"{counts['failed']} failed")  # fmt: skip
    if counts["failed"] and shard.rank == 0:
        print(f"error: {counts['failed']} of {len(items)} images failed", file=sys.stderr)
    # Under torchrun a failed file is reported above, not by the exit status (UPSCALE_EPILOG).
    return 1 if counts["failed"] and shard.world == 1 else 0


def positive_int(text: str) -> int:
    """An argparse type: a whole number above 0 (a limit of -1 or 0 would refuse every image)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def check_weights_file(weights: str | None) -> None:
    """Before any work: ``--weights`` naming a file that is not there is said with the path as given (the
    library names the file alone, as the demo shows its words; a typo may be in a folder's name), as is a
    missing folder written as a path (``./dir``), which would otherwise be looked for on the Hub."""
    from mdsr.weights import looks_like_path

    if not weights or Path(weights).exists():
        return
    if Path(weights).suffix in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"--weights {weights}: no such file")
    if looks_like_path(weights):
        raise ValueError(f"--weights {weights}: no such file or folder")


def report_failed(item: Item, why: object, counts: dict[str, int]) -> None:
    counts["failed"] += 1
    print(f"error: {item.source}: {why}", file=sys.stderr)


def report_kept(item: Item, path: Path | None, counts: dict[str, int]) -> None:
    counts["kept"] += 1
    print(f"{item.source}: kept {path} (exists; --overwrite replaces it)")


def file_id(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` as the system knows it, the same for every spelling of it (relative or absolute,
    with ``..``, through a symlink, a hard link, another case on a case-insensitive disk); None where
    there is none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def onto_inputs(outputs: Outputs, items: Sequence[Item], inputs: Sequence[Path]) -> dict[Item, Path]:
    """The items whose output would be one of the run's ``inputs`` (``a.png``'s ``a_x2.png`` beside it,
    with -o the inputs' folder), each with that path: an input is never written over, --overwrite or not
    (``report_onto_input``). An item whose existing output is kept writes nothing, so only its output
    counts, not its --compare picture."""
    ids = {file_id(path) for path in inputs} - {None}
    found = {}
    for item in items:
        written = outputs.paths(item)[: 1 if outputs.keeps(item) else None]
        if hit := next((path for path in written if file_id(path) in ids), None):
            found[item] = hit
    return found


def report_onto_input(item: Item, path: Path, outputs: Outputs, counts: dict[str, int]) -> None:
    """An item whose output ``path`` is an input of the run: kept where it exists and --overwrite is not
    given, as any existing output; with --overwrite, a failure (the user asked for a file they cannot
    have), since the input is never replaced."""
    if outputs.keeps(item):
        counts["kept"] += 1
        print(f"{item.source}: kept {path} (an input of this run, never replaced)")
    else:
        why = f"its output {path} is an input of this run, never replaced; write to another folder (-o)"
        report_failed(item, why, counts)


def number(text: str) -> int | float | str:
    """--scale as written: 2 stays 2, 1.5 is 1.5; anything else is checked (and worded) by mdsr.serving,
    text with an underscore too (int() and float() read "1_5" as 15, "0_2" as 0.2)."""
    if "_" in text:
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def output_target(args: argparse.Namespace) -> Target:
    """The size asked for: --scale, or one of --width, --height (both: that exact size), --fit."""
    from mdsr.serving import parse_target
    from mdsr.sizing import Target, parse_size

    sizes = [v for v in (args.width, args.height, args.fit) if v is not None]
    if (args.scale is None) == (not sizes) or (args.fit is not None and len(sizes) > 1):
        raise ValueError("give --scale, or --width and/or --height, or --fit WxH")
    if args.fit is not None:
        target = parse_size(args.fit)
        if target.fit is None:
            raise ValueError(f"--fit takes WIDTHxHEIGHT, e.g. 1920x1080; got {args.fit!r}")
        return target
    if sizes:
        if any(v < 1 for v in sizes):
            raise ValueError("--width and --height are numbers of pixels, at least 1")
        return Target(width=args.width, height=args.height)
    return parse_target(args.scale)


@dataclass(frozen=True)
class Shard:
    """This process's place among those torchrun started (one process, without torchrun): files are dealt
    out in turn, so each process takes its own and none is done twice."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Shard:
        shard = cls(
            int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
        )
        if shard.world > 1:
            import torch
            import torch.distributed as dist

            if torch.cuda.is_available():
                torch.cuda.set_device(shard.local_rank)  # each process its own GPU
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return shard

    def total(self, counts: dict[str, int]) -> dict[str, int]:
        """The counts summed over every process (each waits for the others to finish)."""
        if self.world == 1:
            return counts
        import torch.distributed as dist

        every: list[dict[str, int] | None] = [None] * self.world
        dist.all_gather_object(every, counts)
        dist.destroy_process_group()
        return {key: sum(c[key] for c in every if c is not None) for key in counts}


DOWNSCALE_EPILOG = """\
Outputs follow upscale's rules: an existing file is kept (--overwrite replaces it), inputs that share a
name get distinct outputs (a.png and a.jpg: a_pngx2.png and a_jpgx2.png), and no input is ever written
over. A file that cannot be downscaled is reported in one line, "error: FILE: why", and the others are
still written.

exit status: 0 when every image was written or kept; 1 when any image failed; 2 when nothing could be
started.
"""


def add_downscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downscale",
        help="make LR images with MATLAB's bicubic, as the benchmarks do",
        epilog=DOWNSCALE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("-s", "--scale", type=int, choices=SUPPORTED_SCALES, required=True)
    p.add_argument("-o", "--out", required=True, help="output folder: OUT/{name}x{s}.png")
    p.add_argument("--border", choices=["symmetric", "replicate"], default="symmetric")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.set_defaults(run=run_downscale)


def run_downscale(args: argparse.Namespace) -> int:
    from PIL import Image

    from mdsr import serving
    from mdsr.files import atomic_path
    from mdsr.imaging import ImageError, bicubic_downscale, read_rgb8

    files, broken = expand_inputs(args.inputs)
    for link in broken:
        report_broken_link(link)
    items = tuple(serving.Item(str(path), path) for path in files)
    outputs = benchmark_outputs(args.out, items, args.scale, overwrite=args.overwrite)
    outputs.check_writable()  # before any work
    onto = onto_inputs(outputs, items, files)
    counts = {"written": 0, "kept": 0, "failed": 0}
    for item in items:
        target = outputs.target(item)
        if item in onto:
            report_onto_input(item, onto[item], outputs, counts)
        elif outputs.keeps(item):
            report_kept(item, target, counts)
        else:
            try:
                assert item.source is not None  # the CLI's items are files
                lr = bicubic_downscale(read_rgb8(item.source), args.scale, border=args.border)
                with atomic_path(target) as tmp:
                    Image.fromarray(lr).save(tmp, format="PNG")
            except (ImageError, OSError, ValueError) as err:
                report_failed(item, err, counts)
                continue
            counts["written"] += 1
            print(f"{item.source} -> {target}")
    if counts["failed"]:
        print(f"error: {counts['failed']} of {len(items)} images failed", file=sys.stderr)
    return 1 if counts["failed"] else 0


def benchmark_outputs(folder: str, items: Sequence[Item], scale: int, *, overwrite: bool) -> Outputs:
    """upscale's outputs (one naming rule, kept unless ``overwrite``, written atomically) under the names
    the benchmarks give their LR files, ``{name}x{s}.png``."""
    from mdsr.serving import Outputs

    return Outputs(folder, items, f"x{scale}", overwrite=overwrite, separator="")


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="PSNR/SSIM table on benchmark folders (HR/ and optional LR_bicubic*/)")
    p.add_argument("--data", nargs="+", required=True, help="benchmark folders")
    p.add_argument("--scales", type=int, nargs="+", default=list(SUPPORTED_SCALES), choices=SUPPORTED_SCALES)
    p.add_argument("--weights", default=None, help="weights file, super-image folder or Hub id (default: bundled)")
    p.add_argument("--protocol", choices=["standard", "super-image"], default="standard")
    p.add_argument("--self-ensemble", action="store_true")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--json", default=None, help="write the results (with per-image scores) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from mdsr.evaluate import benchmark_files, check_benchmark, evaluate, markdown_table, write_json
    from mdsr.export import check_outputs  # --json is written at the end: checked as any output, before any work
    from mdsr.weights import BUNDLED_PATH, load_for_scales

    for folder in args.data:
        check_benchmark(folder, tuple(args.scales))
    if args.json:
        if any(Path(args.json).resolve() in benchmark_files(folder) for folder in args.data):
            raise ValueError(f"--json {args.json} is a file of the benchmark it evaluates, never replaced")
        check_outputs([args.json], overwrite=args.overwrite, writer="--json", named="--json ")
    check_weights_file(args.weights)
    models = load_for_scales(args.weights, args.scales)
    name = args.weights or BUNDLED_PATH.name
    results = [
        result
        for folder in args.data
        for scale, model in models.items()
        for result in evaluate(
            model,
            [folder],
            [scale],
            protocol=args.protocol,
            self_ensemble=args.self_ensemble,
            precision=args.precision,
            weights=name,
        )
    ]
    print(markdown_table(results))
    if args.json:
        write_json(results, args.json)
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="a training checkpoint (last.pt/best.pt) as a .safetensors weights file; or, with --onnx, weights as "
        "ONNX files (one per scale) for ONNX Runtime, OpenVINO or chaiNNer",
    )
    p.add_argument("paths", nargs="+", help="CHECKPOINT OUT.safetensors, or with --onnx: OUT_FOLDER")
    p.add_argument("--onnx", action="store_true", help="write OUT_FOLDER/mdsr_x{s}.onnx for each scale")
    p.add_argument(
        "--weights", default=None, help="with --onnx: weights file, super-image folder or Hub id (default: bundled)"
    )
    p.add_argument("--scales", type=int, nargs="+", default=None, choices=SUPPORTED_SCALES, help="with --onnx")
    p.add_argument("--fp16", action="store_true", help="store float16 (half the size)")
    p.add_argument("--note", default=None, help="free text to keep in the file's metadata")
    p.add_argument("--overwrite", action="store_true", help="replace export files that already exist")
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Existing files, and outputs that could not be written, are refused before any model is loaded."""
    from mdsr.export import check_outputs

    if args.onnx:
        from mdsr.export import export_onnx, onnx_path
        from mdsr.weights import load_for_scales

        if len(args.paths) != 1:
            raise ValueError("mdsr export --onnx takes one output folder (the weights come with --weights)")
        if args.fp16 or args.note is not None:
            raise ValueError(
                "--fp16 and --note are for .safetensors weights; an ONNX file is written in fp32, without a note"
            )
        scales = args.scales or list(SUPPORTED_SCALES)
        check_outputs([onnx_path(args.paths[0], s) for s in scales], overwrite=args.overwrite)
        check_weights_file(args.weights)
        models = load_for_scales(args.weights, scales)
        for scale, model in models.items():
            for path in export_onnx(model, args.paths[0], [scale]):
                print(f"onnx: {path}")
        return 0
    from mdsr.train import export_checkpoint

    if len(args.paths) != 2:
        raise ValueError("mdsr export takes a checkpoint and the .safetensors file to write")
    checkpoint, out = args.paths
    if Path(out).suffix != ".safetensors":
        # The loaders know weights by this suffix (anything else is read as a super-image .pt and refused).
        raise ValueError(f"{out}: the weights file's name must end in .safetensors")
    if (written := file_id(Path(out))) is not None and written == file_id(Path(checkpoint)):
        raise ValueError(f"{out} is the checkpoint being exported, never replaced; write to another file")
    check_outputs([out], overwrite=args.overwrite)
    print(f"weights: {export_checkpoint(checkpoint, out, fp16=args.fp16, note=args.note)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdsr", description="MDSR-BAM super-resolution")
    sub = parser.add_subparsers(dest="command", required=True)
    add_upscale(sub)
    add_downscale(sub)
    add_evaluate(sub)
    add_train(sub)
    add_export(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mdsr.train import NonFiniteLossError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, NonFiniteLossError) as err:
        # User-facing errors (bad files, weights, options, a diverged training run) end in one line; anything
        # else is a bug and keeps its traceback.
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
