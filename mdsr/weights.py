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
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mdsr.model import MDSR, SUPPORTED_SCALES, MdsrConfig

BUNDLED_DIR = Path(__file__).parent / "weights"
BUNDLED_NAME = "mdsr-bam-x234.safetensors"
BUNDLED_PATH = BUNDLED_DIR / BUNDLED_NAME

# super-image saves its (unused) mean-shift convolutions; they are accepted and dropped.
IGNORED_KEYS = ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias")
# Prefixes that training wrappers add (DataParallel/DDP, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsError(ValueError):
    """A weights source that cannot be used, with a message meant for the user."""


def clean_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and drop super-image's unused mean-shift tensors."""
    cleaned = {}
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        if key not in IGNORED_KEYS:
            cleaned[key] = value
    return cleaned


def load_state_strict(model: MDSR, state: Mapping[str, torch.Tensor], source: str) -> MDSR:
    state = clean_state_dict(state)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise WeightsError(f"{source} does not fit an MDSR {model.config.scales} model: {'; '.join(parts)}")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise WeightsError(
                f"{source}: {key} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def _short(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    header = {"format": "mdsr", "config": json.dumps(model.config.to_dict())}
    header.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata strings of a safetensors file (config, provenance)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise WeightsError(f"{path} is not a readable safetensors file ({err})") from err


def load_safetensors(path: str | os.PathLike, *, scale: int | None = None) -> MDSR:
    metadata = read_metadata(path)
    if "config" not in metadata:
        raise WeightsError(f"{path} has no MDSR config in its metadata; was it written by mdsr.save_weights?")
    config = MdsrConfig.from_dict(json.loads(metadata["config"]))
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    model = load_state_strict(MDSR(config), state, str(path))
    if scale is not None:
        model.check_scale(scale)
    model.metadata = metadata
    return model


def load_bundled() -> MDSR:
    if not BUNDLED_PATH.exists():
        raise WeightsError(
            f"the bundled weights ({BUNDLED_PATH}) are not in this installation; "
            "pass a weights file, a super-image folder or a Hub id instead"
        )
    return load_safetensors(BUNDLED_PATH)


def load_model(source: str | os.PathLike | None = None, *, scale: int | None = None) -> MDSR:
    """Build an MDSR model from a weights source (see the module docstring)."""
    if source is None:
        return load_bundled() if scale is None else _checked(load_bundled(), scale)
    path = Path(source)
    if path.suffix == ".safetensors" or path.is_file():
        if not path.exists():
            raise WeightsError(f"weights file not found: {path}")
        if path.suffix == ".safetensors":
            return load_safetensors(path, scale=scale)
        return load_super_image_file(path, scale=scale)
    if path.is_dir():
        return load_super_image_folder(path, scale=scale)
    return load_from_hub(str(source), scale=scale)


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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types; all mean "not safe or not weights"
        raise WeightsError(
            f"{path} is not a plain weights file that loads safely ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    state = state.get("model", state) if isinstance(state.get("model"), Mapping) else state
    config = infer_config(state)
    if scale is not None and scale not in config.scales:
        raise WeightsError(f"{path} holds scales {config.scales}, not {scale}")
    model = load_state_strict(MDSR(config), state, str(path))
    model.metadata = {"format": "super-image", "file": Path(path).name, "config": json.dumps(config.to_dict())}
    return model


def infer_config(state: Mapping[str, torch.Tensor]) -> MdsrConfig:
    """The architecture of a super-image state dict, which carries no config of its own."""
    state = clean_state_dict(state)
    scales = sorted({int(k.split(".")[1]) for k in state if k.startswith("upsample.")})
    if "head.0.0.weight" not in state or not scales or any(s not in SUPPORTED_SCALES for s in scales):
        raise WeightsError(
            f"these are not MDSR weights (no head.0.0.weight or no upsampler for 2, 3 or 4; found scales {scales})"
        )
    n_feats = state["head.0.0.weight"].shape[0]
    fc1 = next((v for k, v in state.items() if k.endswith("attention.ca.fc1.weight")), None)
    last_body = max(int(k.split(".")[1]) for k in state if k.startswith("body."))  # the body's final conv
    return MdsrConfig(
        n_resblocks=last_body,
        n_feats=n_feats,
        bam=fc1 is not None,
        reduction=n_feats // fc1.shape[0] if fc1 is not None else 16,
        scales=tuple(scales),
    )


def load_super_image_folder(folder: Path, *, scale: int | None) -> MDSR:
    """A folder in super-image's layout: ``config.json`` plus ``pytorch_model_{s}x.pt``."""
    candidates = sorted(folder.glob("pytorch_model_*x.pt"))
    if scale is None:
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise WeightsError(f"{folder} holds several or no pytorch_model_{{s}}x.pt files ({found}); pass scale=")
        weights = candidates[0]
    else:
        weights = folder / f"pytorch_model_{scale}x.pt"
        if not weights.exists():
            found = ", ".join(p.name for p in candidates) or "none"
            raise WeightsError(f"{folder} has no {weights.name} (it holds: {found})")
    config_file = folder / "config.json"
    if config_file.exists():
        try:
            info = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise WeightsError(f"{config_file} is not valid JSON ({err})") from err
        if info.get("model_type", "MDSR").upper() != "MDSR":
            raise WeightsError(f"{folder} holds a {info.get('model_type')} model, not MDSR")
    return load_super_image_file(weights, scale=scale)


def load_from_hub(repo_id: str, *, scale: int | None) -> MDSR:
    """Download a super-image layout repository (``eugenesiow/mdsr-bam``) and load one scale."""
    if scale is None:
        raise WeightsError(f"{repo_id}: super-image repositories hold one file per scale; pass scale=2, 3 or 4")
    if repo_id.count("/") != 1:
        raise WeightsError(f"{repo_id!r} is neither an existing file or folder nor a Hub id like 'eugenesiow/mdsr-bam'")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        hf_hub_download(repo_id, "config.json")
        weights = hf_hub_download(repo_id, f"pytorch_model_{scale}x.pt")
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
    """A model and the name of the weights that produce its pictures (shown in the UI and the API)."""

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
    meta = read_metadata(path)
    parts = [meta["note"]] if meta.get("note") else []
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

    Sources: ``"auto"`` (the published ``eugenesiow/mdsr-bam`` where the Hub was reachable when the store
    was made, or where they are in the local cache; else the bundled file), ``None`` (bundled), or
    anything ``load_model`` takes. If "auto" cannot load the published weights, it falls back to the
    bundled ones and says why in ``note``, never an error. ``place`` moves each model where it runs (the
    CPU, or CUDA on ZeroGPU). Reduced-precision copies are made once per model by
    ``inference.model_for_precision``, so a store holds one model per (source, scale, precision).
    """

    MAX_FILES = 4  # weights from files (uploads, a folder) kept at once; the oldest is dropped first

    def __init__(self, *, online: bool | None = None, place: Callable[[MDSR], MDSR] = lambda m: m) -> None:
        self.online = hub_reachable() if online is None else online
        self._place = place
        self._loaded: dict[tuple[str | None, int | None], LoadedWeights] = {}
        self._files: list[tuple[str, int]] = []

    def get(self, source: str | None, scale: int) -> LoadedWeights:
        if source == AUTO:
            return self._auto(scale)
        key = (source, None if source is None else scale)  # the bundled file holds every scale
        if key not in self._loaded:
            name = BUNDLED_NAME if source is None else str(source)
            self._loaded[key] = LoadedWeights(self._place(load_model(source, scale=scale)), name)
        return self._loaded[key]

    def get_file(self, path: str | os.PathLike, scale: int, *, max_bytes: int) -> LoadedWeights:
        """Weights from a file someone gave (an upload): at most ``max_bytes``, a ``.safetensors`` file of
        this project or a super-image ``.pt``, read without running any pickled code, keys checked strictly."""
        path = Path(path)
        if path.suffix not in (".safetensors", ".pt"):
            raise WeightsError(
                f"{path.name}: weights must be a .safetensors file (mdsr train/export) or a super-image .pt"
            )
        if path.stat().st_size > max_bytes:
            raise WeightsError(f"{path.name} is {path.stat().st_size:,} bytes; the limit for weights is {max_bytes:,}")
        key = (str(path), scale)
        if key not in self._loaded:
            model = self._place(load_model(path, scale=scale))
            self._loaded[key] = LoadedWeights(model, path.name, about=describe(path))
            self._files.append(key)
            if len(self._files) > self.MAX_FILES:
                self._loaded.pop(self._files.pop(0), None)
        return self._loaded[key]

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
                self._loaded[key] = self.get(PUBLISHED_ID, scale)
            except WeightsError as err:  # kept: a failed download is not retried on every request
                bundled = self.get(None, scale)
                self._loaded[key] = LoadedWeights(
                    bundled.model, bundled.name, f"{PUBLISHED_ID} could not be loaded: {err}"
                )
        return self._loaded[key]
