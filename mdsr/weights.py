"""Loading and saving weights: this project's safetensors files, super-image folders, and the Hub.

Sources, in the order ``load_model`` tries them:
- nothing: the bundled weights shipped in ``mdsr/weights/`` (scales 2, 3 and 4 in one file);
- a ``.safetensors`` file in this project's format: tensors with super-image's key names, and the
  ``MdsrConfig`` plus provenance as JSON in the file's metadata;
- a folder in super-image's layout: ``config.json`` and ``pytorch_model_{s}x.pt`` (one scale each);
- a Hub repository id in that layout (``eugenesiow/mdsr-bam``), downloaded with huggingface_hub.

``WeightStore`` keeps loaded weights for servers and CLI runs, and resolves ``"auto"``: the published
weights where the Hub (or the local Hugging Face cache) has them, else the bundled file.

Legacy ``.pt`` files are read with ``torch.load(weights_only=True)``: a pickle that carries code is
refused and nothing in it runs. Loads are strict and name the missing or unexpected keys.

Weights files may come from anyone (the demo takes uploads), so a file is checked before it costs
memory: its config is validated (types and the family's sizes), the tensors it must hold are worked out
on the ``meta`` device (which allocates nothing) and compared with the file's names, shapes and dtypes
(read from a safetensors header, or from a ``.pt`` archive whose unpacked size was bounded first), and
only then are tensors read and the model built. Values must be finite floats. Whatever a crafted file
does, the caller gets a ``WeightsError`` of one sentence that names the file by its name, never its
folder (a server's paths are nobody's business).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mdsr.files import atomic_path, count_in_file
from mdsr.model import MDSR, SUPPORTED_SCALES, MdsrConfig, parameter_count, shown

BUNDLED_DIR = Path(__file__).parent / "weights"
BUNDLED_NAME = "mdsr-bam-x234.safetensors"
BUNDLED_PATH = BUNDLED_DIR / BUNDLED_NAME

# super-image saves its (unused) mean-shift convolutions; they are accepted and dropped.
IGNORED_KEYS = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")
# Prefixes that training wrappers add (DataParallel/DDP, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# Stored weights are converted to float32 on load; other dtypes (integers, bool, float8) are no MDSR weights.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SAFETENSORS_FLOATS = ("F16", "BF16", "F32", "F64")  # the same dtypes, as a safetensors header names them

# A config is about a hundred characters of JSON; this much leaves room and bounds what json.loads may build.
MAX_CONFIG_CHARS = 4096

# What a .pt archive (torch.save's zip) may unpack to before torch.load reads it. torch.save stores its
# members uncompressed, and weights (noise-like float mantissas) barely deflate, so a real checkpoint unpacks
# to about its own size even when re-zipped; twice its size, plus 1 MiB for the small records, leaves room
# and keeps what torch.load allocates bounded by the file's own size. A ratio rather than a fixed number of
# bytes: a deflate bomb of 390 KB would otherwise still cost as much as the bound (200 MB, say), while a
# large local checkpoint (the family's largest is 460 MB) must still load from the command line.
MAX_UNPACKED_RATIO = 2
UNPACKED_SLACK_BYTES = 1 << 20
# Members of a .pt archive: one per tensor plus a few records. The family's largest model has about 700
# tensors, and a training checkpoint (which --init takes) adds Adam's state, some 2,000 members in all.
# Python's zipfile keeps some 500 bytes for each of the 46-byte directory entries it parses, so a directory
# of nothing but entries would cost ten times the file: they are counted before it parses them.
MAX_ARCHIVE_MEMBERS = 8192
# The pickle of a .pt (a few hundred bytes per tensor) is unpickled into Python objects that may be several
# times its size: a pickle far larger than a state dict's is refused before torch.load reads it.
MAX_PICKLE_BYTES = 4 << 20


class WeightsError(ValueError):
    """A weights source that cannot be used, with a message meant for the user."""


def clean_key(key: str) -> str | None:
    """``key`` without wrapper prefixes; None for super-image's unused mean-shift tensors."""
    for prefix in WRAPPER_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return None if key in IGNORED_KEYS else key


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and drop super-image's unused mean-shift tensors."""
    return {clean: value for key, value in state.items() if (clean := clean_key(key)) is not None}


def expected_shapes(config: MdsrConfig) -> dict[str, tuple[int, ...]]:
    """The state dict ``MDSR(config)`` has, as key -> shape: built on the meta device, which allocates
    nothing, so that a file is compared with its config before any tensor of it is read."""
    with torch.device("meta"):
        model = MDSR(config)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def check_fit(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], source: str, scales: tuple[int, ...]
) -> None:
    """A WeightsError unless ``found`` (cleaned key -> shape) has exactly the keys and shapes expected."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise WeightsError(f"{source} does not fit an MDSR {scales} model: {'; '.join(parts)}")
    for key, shape in found.items():
        if tuple(shape) != expected[key]:
            raise WeightsError(f"{source}: {key} has shape {tuple(shape)}, the model expects {expected[key]}")


def check_tensors(found: Mapping[str, tuple[tuple[int, ...], str, bool]], config: MdsrConfig, source: str) -> None:
    """The one check of a file's tensors against the model ``config`` describes, before any is read:
    ``found`` maps each cleaned key to (shape, dtype's name, whether that dtype is a float)."""
    check_fit({key: shape for key, (shape, _, _) in found.items()}, expected_shapes(config), source, config.scales)
    for key, (_, dtype, is_float) in found.items():
        if not is_float:
            raise WeightsError(f"{source}: {key} holds {dtype} values, and weights must be floating-point numbers")


def _check_finite(key: str, value: torch.Tensor, source: str) -> None:
    # A NaN or infinite weight turns every picture black (or into noise): a damaged file, said as such.
    if not bool(torch.isfinite(value).all()):
        raise WeightsError(f"{source}: {key} holds NaN or infinite values, so these weights are damaged")


def model_from_state(config: MdsrConfig, state: Mapping[str, torch.Tensor], source: str) -> MDSR:
    """``MDSR(config)`` from a state dict in memory (wrapper prefixes stripped), checked strictly."""
    state = clean_state_dict(state)
    found = {
        k: (tuple(v.shape), str(v.dtype).removeprefix("torch."), v.dtype in FLOAT_DTYPES) for k, v in state.items()
    }
    check_tensors(found, config, source)
    return _built(config, state, source)


def _built(config: MdsrConfig, state: Mapping[str, torch.Tensor], source: str) -> MDSR:
    """``MDSR(config)`` holding a copy of ``state``, whose keys, shapes and dtypes were checked against
    ``config`` already: only its values remain to check. A copy, not the tensors themselves: safetensors'
    tensors map the file, which may change or vanish once loaded."""
    for key, value in state.items():
        _check_finite(key, value, source)
    model = MDSR(config)
    own = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value)  # converts float16 on the way, with no float32 copy of the whole file
    return model.eval()


def _short(keys: list[str], limit: int = 6) -> str:
    listed = ", ".join(keys[:limit])
    return listed + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


@contextmanager
def _refusing(path: Path) -> Iterator[None]:
    """Any failure a crafted file still causes deep inside torch or safetensors becomes a sentence naming
    the file (the checks above give better ones; this is the net under them), never a traceback."""
    try:
        yield
    except WeightsError:
        raise
    except Exception as err:  # the boundary between an untrusted file and the caller
        raise WeightsError(f"{path.name} could not be read as MDSR weights ({type(err).__name__})") from err


def _holding_scale(config: MdsrConfig, scale: int | None, source: str) -> MdsrConfig:
    if scale is not None and scale not in config.scales:
        raise WeightsError(f"{source} holds scales {config.scales}, not {scale}")
    return config


# --------------------------------------------------------------------------------------------------
# This project's format
# --------------------------------------------------------------------------------------------------


def save_weights(
    model: MDSR,
    path: str | os.PathLike,
    *,
    metadata: Mapping[str, object] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write ``model`` as safetensors with its config and ``metadata`` (provenance) as JSON strings.

    ``dtype=torch.float16`` halves the file; the loader converts back to float32. The write is
    atomic: a temporary file renamed into place.
    """
    model = getattr(model, "module", model)
    path = Path(path)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    header = {"format": "mdsr", "config": json.dumps(model.config.to_dict())}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata strings of a safetensors file (config, provenance)."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"{path.name} is not a readable safetensors file ({_reason(err, path)})") from err


def _reason(err: BaseException, path: Path) -> str:
    """An error's first line, short, naming the file by its name only (libraries may quote the full path)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0].replace(str(path), path.name)
    return text if len(text) <= 120 else text[:117] + "..."


def config_from_metadata(metadata: Mapping[str, str], source: str) -> MdsrConfig:
    """The ``MdsrConfig`` a safetensors file's metadata carries, or a WeightsError saying what is wrong."""
    if "config" not in metadata:
        raise WeightsError(f"{source} has no MDSR config in its metadata; was it written by mdsr.save_weights?")
    text = metadata["config"]
    if len(text) > MAX_CONFIG_CHARS:
        raise WeightsError(
            f"{source} has a config of {len(text):,} characters, and an MDSR config is a few hundred at most"
        )
    try:
        data = json.loads(text)
    except RecursionError as err:  # json.loads recurses once per nesting level
        raise WeightsError(f"{source} has a config nested too deeply to be an MDSR config") from err
    except ValueError as err:  # JSONDecodeError, and the rare ValueError of a number too long to convert
        raise WeightsError(f"{source} has a config that is not valid JSON ({err})") from err
    try:
        return MdsrConfig.from_dict(data)
    except ValueError as err:
        raise WeightsError(f"{source} has an invalid MDSR config: {err}") from err


def load_safetensors(path: str | os.PathLike, *, scale: int | None = None) -> MDSR:
    """This project's format. The header alone is checked (config, then every tensor's name, shape and
    dtype against the model the config describes) before any tensor is read."""
    path = Path(path)
    with _refusing(path):
        metadata = read_metadata(path)
        config = _holding_scale(config_from_metadata(metadata, path.name), scale, path.name)
        # Each weight takes at least 2 bytes (float16): a file smaller than that cannot hold its model.
        size, count = path.stat().st_size, parameter_count(config)
        if size < 2 * count:
            raise WeightsError(
                f"{path.name} is {size:,} bytes, too small for the {count:,} weights its config describes"
            )
        with safe_open(str(path), framework="pt") as f:
            names = {clean: key for key in f.keys() if (clean := clean_key(key)) is not None}  # noqa: SIM118
            slices = {clean: f.get_slice(key) for clean, key in names.items()}
            found = {
                k: (tuple(p.get_shape()), p.get_dtype(), p.get_dtype() in SAFETENSORS_FLOATS) for k, p in slices.items()
            }
            check_tensors(found, config, path.name)
            state = {clean: f.get_tensor(key) for clean, key in names.items()}
        model = _built(config, state, path.name)
    model.metadata = metadata
    return model


def load_bundled() -> MDSR:
    if not BUNDLED_PATH.exists():
        raise WeightsError(
            f"the bundled weights ({BUNDLED_NAME}) are not in this installation; "
            "pass a weights file, a super-image folder or a Hub id instead"
        )
    return load_safetensors(BUNDLED_PATH)


def is_file_source(source: str | os.PathLike) -> bool:
    """Whether ``load_model`` reads ``source`` as one file (this project's .safetensors, or a single
    super-image .pt) rather than as super-image's one file per scale (a folder or a Hub id)."""
    path = Path(source)
    return path.suffix == ".safetensors" or path.is_file()


def load_model(
    source: str | os.PathLike | None = None, *, scale: int | None = None, online: bool | None = None
) -> MDSR:
    """Build an MDSR model from a weights source (see the module docstring). ``online``: for a Hub id, whether
    the Hub answers, where the caller already asked (``load_from_hub``)."""
    if source is None:
        return load_bundled() if scale is None else _checked(load_bundled(), scale)
    path = Path(source)
    if is_file_source(path):
        if not path.exists():
            raise WeightsError(f"weights file not found: {path.name}")  # the name only: the demo shows it
        if path.suffix == ".safetensors":
            return load_safetensors(path, scale=scale)
        return load_super_image_file(path, scale=scale)
    if path.is_dir():
        return load_super_image_folder(path, scale=scale)
    if looks_like_path(str(source)):
        raise WeightsError(f"no such file or folder: {path.name}")  # the name only, as for a missing file
    return load_from_hub(str(source), scale=scale, online=online)


def looks_like_path(source: str) -> bool:
    """Whether ``source`` is written as a path (``./dir``, ``/abs``, ``~/dir``, ``a/b/c``), never as a Hub
    id, which is ``owner/name`` with its one slash: a missing one is then said to be missing, not looked
    for on the Hub."""
    separators = source.count("/") + (source.count(os.sep) if os.sep != "/" else 0)
    return source.startswith((".", "/", "~")) or separators > 1 or bool(os.altsep and os.altsep in source)


@contextmanager
def _quiet_hub() -> Iterator[None]:
    """huggingface_hub's own log lines (each retry of an unreachable Hub) and warnings kept out of the
    output: a failure is said once, in the ``WeightsError`` raised."""
    import logging
    import warnings

    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def load_for_scales(source: str | os.PathLike | None, scales: list[int]) -> dict[int, MDSR]:
    """A model for each scale: one shared model where the source holds every scale in one file (this
    project's format), else one per scale (super-image folders and Hub repositories)."""
    if source is None or Path(source).is_file():
        model = load_model(source)
        for s in scales:
            model.check_scale(s)
        return {s: model for s in scales}
    return {s: load_model(source, scale=s) for s in scales}


def _checked(model: MDSR, scale: int) -> MDSR:
    model.check_scale(scale)
    return model


def load_super_image_file(path: Path, *, scale: int | None) -> MDSR:
    """A super-image ``.pt`` (a state dict for one scale), or a training checkpoint holding one under
    ``"model"``. The archive's unpacked size is bounded before ``torch.load``; the config inferred from the
    tensors is checked, and so are their shapes against the model it describes, before that model is built."""
    path = Path(path)
    with _refusing(path):
        check_archive(path)
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle errors come in many types; all mean "not safe or not weights"
            raise WeightsError(
                f"{path.name} is not a plain weights file that loads safely ({type(err).__name__})"
            ) from err
        state = _state_dict_in(loaded, path.name)
        try:
            config = infer_config(state)
        except WeightsError as err:
            raise WeightsError(f"{path.name}: {err}") from err
        _holding_scale(config, scale, path.name)
        model = model_from_state(config, state, path.name)
    model.metadata = {"format": "super-image", "file": path.name, "config": json.dumps(config.to_dict())}
    return model


def check_archive(path: Path) -> None:
    """Refuse a ``.pt`` zip whose members would unpack to far more than the file itself (a deflate bomb),
    or that has more members, or a larger pickle, than a state dict has. Legacy (non-zip) pickles are left
    to ``torch.load``: it fills their tensors from the file itself (a storage the pickle claims but the
    file lacks is allocated, never touched, then refused), so they cost about their size."""
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"  # torch.load's own test for its zip format
    if not is_zip:
        return
    # An upper bound on the directory entries any zip reader can find: each one starts with this signature.
    # Counted in the raw bytes, before Python's zipfile (or torch's) parses and keeps them all.
    if count_in_file(path, b"PK\x01\x02") > MAX_ARCHIVE_MEMBERS:
        raise WeightsError(
            f"{path.name} is an archive of over {MAX_ARCHIVE_MEMBERS:,} members, far more than weights have"
        )
    limit = MAX_UNPACKED_RATIO * path.stat().st_size + UNPACKED_SLACK_BYTES
    too_large = WeightsError(f"{path.name} unpacks to more than {limit:,} bytes, far more than weights of its size")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            # The directory's sizes are what torch allocates for each member: bounded first...
            if sum(m.file_size for m in members) > limit:
                raise too_large
            # ...then every member is unpacked and counted, so that data disagreeing with the directory
            # (a crafted archive) is refused here rather than met inside torch.load.
            total = 0
            for member in members:
                # torch's zip reader finds records by name regardless of case: DATA.PKL is a pickle to it too
                pickle_limit = MAX_PICKLE_BYTES if member.filename.lower().endswith(".pkl") else limit
                size = 0
                with archive.open(member) as stream:
                    while chunk := stream.read(1 << 20):
                        total, size = total + len(chunk), size + len(chunk)
                        if total > limit:
                            raise too_large
                        if size > pickle_limit:
                            raise WeightsError(
                                f"{path.name} holds a pickle of over {MAX_PICKLE_BYTES:,} bytes, "
                                "far more than a state dict needs"
                            )
    except WeightsError:
        raise
    except Exception as err:  # zipfile's BadZipFile, zlib.error, EOFError, NotImplementedError (a compression it lacks)
        raise WeightsError(f"{path.name} is a damaged or unsupported zip archive ({_reason(err, path)})") from err


def _state_dict_in(loaded: object, source: str) -> dict[str, torch.Tensor]:
    """The cleaned state dict a loaded ``.pt`` holds (itself, or its ``"model"`` entry): names to tensors."""
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{source} holds a {type(loaded).__name__}, not a state dict")
    state = loaded["model"] if isinstance(loaded.get("model"), Mapping) else loaded
    for key, value in state.items():
        plain = isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"
        if not isinstance(key, str) or not plain:
            raise WeightsError(f"{source} holds {type(value).__name__} under {shown(key)}, not a plain tensor")
    return clean_state_dict(state)


# A key's block or scale number: digits only (int() alone would take " 7", "1_0" or other scripts' digits).
_NUMBERED = re.compile(r"(body|upsample)\.(\d{1,6})\.")


def infer_config(state: Mapping[str, torch.Tensor]) -> MdsrConfig:
    """The architecture of a super-image state dict, which carries no config of its own. Only well-formed
    keys are read here; any other key is an unexpected one for the strict comparison that follows."""
    state = clean_state_dict(state)
    numbers: dict[str, set[int]] = {"body": set(), "upsample": set()}
    for key in state:
        if match := _NUMBERED.match(key):
            numbers[match[1]].add(int(match[2]))
    scales = sorted(numbers["upsample"])
    head = state.get("head.0.0.weight")
    if head is None or head.ndim != 4 or not scales or any(s not in SUPPORTED_SCALES for s in scales):
        raise WeightsError(
            f"these are not MDSR weights (no head.0.0.weight or no upsampler for 2, 3 or 4; found scales {scales})"
        )
    if not numbers["body"]:
        raise WeightsError("these are not MDSR weights (no body.N tensors)")
    n_feats = head.shape[0]
    fc1 = next((v for k, v in state.items() if k.endswith("attention.ca.fc1.weight")), None)
    hidden = fc1.shape[0] if fc1 is not None and fc1.ndim else 0
    try:
        return MdsrConfig(
            n_resblocks=max(numbers["body"]),  # the body's final conv comes after its blocks
            n_feats=n_feats,
            bam=fc1 is not None,
            reduction=(n_feats // hidden if hidden else 0) if fc1 is not None else 16,
            scales=tuple(scales),
        )
    except ValueError as err:
        raise WeightsError(f"these tensors describe no MDSR model of this family ({err})") from err


def load_super_image_folder(folder: Path, *, scale: int | None) -> MDSR:
    """A folder in super-image's layout: ``config.json`` plus ``pytorch_model_{s}x.pt``."""
    candidates = sorted(folder.glob("pytorch_model_*x.pt"))
    if scale is None:
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise WeightsError(
                f"{folder.name} holds several or no pytorch_model_{{s}}x.pt files ({found}); pass scale="
            )
        weights = candidates[0]
    else:
        weights = folder / f"pytorch_model_{scale}x.pt"
        if not weights.exists():
            found = ", ".join(p.name for p in candidates) or "none"
            raise WeightsError(f"{folder.name} has no {weights.name} (it holds: {found})")
    config_file = folder / "config.json"
    if config_file.exists():
        try:
            info = json.loads(config_file.read_text(encoding="utf-8"))
        except RecursionError as err:
            raise WeightsError(f"config.json in {folder.name} is nested too deeply to be a model's config") from err
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            raise WeightsError(f"config.json in {folder.name} is not valid JSON ({err})") from err
        model_type = info.get("model_type", "MDSR") if isinstance(info, dict) else None
        if not isinstance(model_type, str) or model_type.upper() != "MDSR":
            raise WeightsError(f"{folder.name} holds a {shown(model_type)} model, not MDSR")
    return load_super_image_file(weights, scale=scale)


def load_from_hub(repo_id: str, *, scale: int | None, online: bool | None = None) -> MDSR:
    """Download a super-image layout repository (``eugenesiow/mdsr-bam``) and load one scale. ``online``:
    whether the Hub answers, where the caller already asked (``WeightStore``); None asks it now."""
    if scale is None:
        raise WeightsError(f"{repo_id}: super-image repositories hold one file per scale; pass scale=2, 3 or 4")
    if repo_id.count("/") != 1:
        raise WeightsError(f"{repo_id!r} is neither an existing file or folder nor a Hub id like 'eugenesiow/mdsr-bam'")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    # Where the Hub does not answer at once, only the local cache is read: huggingface_hub would otherwise
    # retry each file for half a minute before giving up.
    cached_only = not (hub_reachable() if online is None else online)
    try:
        with _quiet_hub():
            hf_hub_download(repo_id, "config.json", local_files_only=cached_only)
            weights = hf_hub_download(repo_id, f"pytorch_model_{scale}x.pt", local_files_only=cached_only)
    except LocalEntryNotFoundError as err:  # a subclass of EntryNotFoundError: offline, not missing
        raise WeightsError(
            f"could not download {repo_id} from the Hugging Face Hub (offline or unreachable); "
            "the bundled weights or a local folder work offline"
        ) from err
    except (RepositoryNotFoundError, EntryNotFoundError) as err:
        raise WeightsError(f"the Hub has no pytorch_model_{scale}x.pt in {repo_id} ({type(err).__name__})") from err
    except Exception as err:  # connection errors come as OSError or as the HTTP client's own types
        raise WeightsError(
            f"could not download {repo_id} from the Hugging Face Hub (offline or unreachable: {type(err).__name__}); "
            "the bundled weights or a local folder work offline"
        ) from err
    return load_super_image_folder(Path(weights).parent, scale=scale)


# --------------------------------------------------------------------------------------------------
# "auto": the published weights where they can be had, else the bundled ones
# --------------------------------------------------------------------------------------------------

PUBLISHED_ID = "eugenesiow/mdsr-bam"
AUTO = "auto"
HUB_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True when the Hub answers within ``timeout`` seconds; False at once where HF_HUB_OFFLINE is set."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    import urllib.request

    try:
        with urllib.request.urlopen(f"{constants.ENDPOINT}/api/models/{PUBLISHED_ID}", timeout=timeout):
            return True
    except Exception:  # no network, DNS failure, timeout, an HTTP error: all mean "not usable now"
        return False


def published_in_cache(scale: int) -> bool:
    """True when the published weights for ``scale`` are already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(PUBLISHED_ID, f"pytorch_model_{scale}x.pt"), str)


@dataclass(frozen=True)
class LoadedWeights:
    """A model and the name of the weights that produce its pictures (shown in the UI and the API). Its
    copies for other precisions are made by whoever runs it (``inference.PreparedModels``), keyed on the
    model: "auto" falling back to the bundled weights shares the bundled model, and so its int8 copy."""

    model: MDSR
    name: str
    note: str = ""  # why "auto" fell back to the bundled weights, when it did
    about: str = ""  # the file's own provenance, in one line (``describe``)


def describe(path: str | os.PathLike) -> str:
    """One line of a weights file's provenance: its note, steps and last validation PSNR, as far as its
    metadata says (super-image ``.pt`` files carry none)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return "super-image checkpoint (no provenance recorded)"
    try:
        meta = read_metadata(path)
    except WeightsError:
        return "not readable as weights"
    parts = [meta["note"]] if meta.get("note") else []
    if meta.get("init"):
        # A Hub id or relative path as given; of an absolute path, the file's name (the trainer's folders are
        # theirs, not the page's).
        init = meta["init"]
        parts.append(f"fine-tuned from {Path(init).name if Path(init).is_absolute() else init}")
    if meta.get("steps"):
        parts.append(f"{meta['steps']} steps")
    if meta.get("final_val_psnr") not in (None, "null"):
        parts.append(f"validation PSNR {meta['final_val_psnr']}")
    return "; ".join(parts) or "no provenance recorded"


def weights_in_folder(folder: str | os.PathLike | None) -> list[Path]:
    """The ``*.safetensors`` files of a folder (``MDSR_WEIGHTS_DIR`` for the demo), sorted; none if unset."""
    if not folder or not Path(folder).is_dir():
        return []
    return sorted(p for p in Path(folder).iterdir() if p.suffix == ".safetensors" and p.is_file())


class WeightStore:
    """Weights loaded once per (source, scale) and kept, for a server or a CLI run.

    Sources: ``"auto"`` (the published ``eugenesiow/mdsr-bam`` where the Hub was reachable at the first
    "auto" request, or where they are in the local cache; else the bundled file), ``None`` (bundled), or
    anything ``load_model`` takes. If "auto" cannot load the published weights, it falls back to the
    bundled ones and says why in ``note``, never an error. ``place`` moves each model where it runs (the
    CPU, or CUDA on ZeroGPU). Reduced-precision copies are the runner's (``inference.PreparedModels``).
    """

    MAX_FILES = 4  # weights from files (uploads, a folder) kept at once; the oldest is dropped first

    def __init__(self, *, online: bool | None = None, place: Callable[[MDSR], MDSR] = lambda m: m) -> None:
        self._online = online  # asked of the Hub at the first "auto" request, not when the store is made
        self._place = place
        self._loaded: dict[tuple[str | None, int | None], LoadedWeights] = {}
        self._files: list[tuple[str, int]] = []

    def get(self, source: str | None, scale: int) -> LoadedWeights:
        if source == AUTO:
            return self._auto(scale)
        key = (source, None if source is None else scale)  # the bundled file holds every scale
        if key not in self._loaded:
            name = BUNDLED_NAME if source is None else str(source)
            # A Hub id is fetched with the store's answer on whether the Hub is reachable, where it has one.
            self._loaded[key] = LoadedWeights(self._place(load_model(source, scale=scale, online=self._online)), name)
        return self._loaded[key]

    def get_file(self, path: str | os.PathLike, scale: int, *, max_bytes: int) -> LoadedWeights:
        """Weights from a file someone gave (an upload): at most ``max_bytes``, a ``.safetensors`` file of
        this project or a super-image ``.pt``, read without running any pickled code, keys checked strictly."""
        path = Path(path)
        if path.suffix not in (".safetensors", ".pt"):
            raise WeightsError(
                f"{path.name}: weights must be a .safetensors file (mdsr train/export) or a super-image .pt"
            )
        try:
            size = path.stat().st_size
        except OSError as err:
            raise WeightsError(f"{path.name} could not be read ({err.strerror or type(err).__name__})") from err
        if size > max_bytes:
            raise WeightsError(f"{path.name} is {size:,} bytes; the limit for weights is {max_bytes:,}")
        key = (str(path), scale)
        if key not in self._loaded:
            model = self._place(load_model(path, scale=scale))
            self._loaded[key] = LoadedWeights(model, path.name, about=describe(path))
            self._files.append(key)
            if len(self._files) > self.MAX_FILES:
                self._loaded.pop(self._files.pop(0), None)
        return self._loaded[key]

    @property
    def online(self) -> bool:
        if self._online is None:
            self._online = hub_reachable()
        return self._online

    def _auto(self, scale: int) -> LoadedWeights:
        key = (AUTO, scale)
        if key in self._loaded:
            return self._loaded[key]
        if not (self.online or published_in_cache(scale)):
            bundled = self.get(None, scale)
            note = f"the Hub is not reachable (or HF_HUB_OFFLINE is set) and {PUBLISHED_ID} is not in the local cache"
            self._loaded[key] = LoadedWeights(bundled.model, bundled.name, note)
        else:
            try:
                self._loaded[key] = self.get(PUBLISHED_ID, scale)  # with the answer ``online`` has: asked once
            except WeightsError as err:  # kept: a failed download is not retried on every request
                bundled = self.get(None, scale)
                self._loaded[key] = LoadedWeights(
                    bundled.model, bundled.name, f"{PUBLISHED_ID} could not be loaded: {err}"
                )
        return self._loaded[key]
