"""Weights files crafted against the loader, as anyone may upload them to the demo: each is refused with one
sentence naming the file by its name, and none costs more memory than its own size before it is refused."""

from __future__ import annotations

import io
import json
import pickle
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ROOT, TINY, tiny
from safetensors.torch import save_file

from mdsr import weights
from mdsr.weights import WeightsError, WeightStore, describe, load_model, read_metadata, save_weights

Maker = Callable[[Path], None]


def with_config(config: object, tensors: dict[str, torch.Tensor] | None = None) -> Maker:
    """A safetensors file whose metadata carries ``config``, JSON-encoded unless it is already a string."""

    def make(path: Path) -> None:
        text = config if isinstance(config, str) else json.dumps(config)
        save_file(tensors or {}, str(path), metadata={"format": "mdsr", "config": text})

    return make


def tiny_with(key: str, value: torch.Tensor) -> Maker:
    """``tiny()`` saved as safetensors, its config intact, with one tensor replaced by ``value``."""

    def make(path: Path) -> None:
        state = {**tiny().state_dict(), key: value}
        save_file(state, str(path), metadata={"format": "mdsr", "config": json.dumps(TINY.to_dict())})

    return make


def pt_of(state: object) -> Maker:
    return lambda path: torch.save(state, path)


def tiny_pt_with(extra: dict[str, torch.Tensor]) -> Maker:
    """A super-image ``.pt`` of ``tiny(scales=(2,))`` with ``extra`` tensors added or replaced."""
    return pt_of({**tiny(scales=(2,)).state_dict(), **extra})


SEED_NUMEL = 100_003  # a size that occurs nowhere else in a pickled one-tensor state dict


def pickled_int(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # pickle's BININT, which torch.save uses for sizes from 65,536 up


def deflate_bomb(unpacked_bytes: int) -> Maker:
    """What ``torch.save`` writes for one float tensor of ``unpacked_bytes``, but with the archive's members
    deflated, not stored: its zeros shrink a thousandfold, and ``torch.load`` would inflate them all."""

    def make(path: Path) -> None:
        numel = unpacked_bytes // 4
        buffer = io.BytesIO()
        torch.save({"head.0.0.weight": torch.zeros(SEED_NUMEL)}, buffer)
        with zipfile.ZipFile(buffer) as saved, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
            for member in saved.infolist():
                data = saved.read(member)
                if member.filename.endswith("/data.pkl"):  # the tensor's size, in its shape and in its storage
                    assert data.count(pickled_int(SEED_NUMEL)) == 2
                    bomb.writestr(member.filename, data.replace(pickled_int(SEED_NUMEL), pickled_int(numel)))
                elif member.filename.endswith("/data/0"):  # the storage, padded with zeros to its new size
                    with bomb.open(member.filename, "w") as storage:
                        for start in range(0, 4 * numel, 1 << 20):
                            storage.write(bytes(min(1 << 20, 4 * numel - start)))
                else:
                    bomb.writestr(member.filename, data)

    return make


def many_members(count: int) -> Maker:
    """A zip of ``count`` empty members: a directory that Python's zipfile would keep at ~500 bytes each."""

    def make(path: Path) -> None:
        with zipfile.ZipFile(path, "w") as archive:
            for n in range(count):
                archive.writestr(f"archive/{n}", b"")

    return make


def large_pickle(entries: int) -> Maker:
    """A ``.pt`` archive, members stored, whose pickle is a list of ``entries`` zeros: 2 bytes each in the
    file, an 8-byte reference each once unpickled."""

    def make(path: Path) -> None:
        buffer = io.BytesIO()
        torch.save({}, buffer)
        with zipfile.ZipFile(buffer) as saved, zipfile.ZipFile(path, "w") as archive:
            for member in saved.infolist():
                data = saved.read(member)
                if member.filename.endswith("/data.pkl"):
                    data = b"\x80\x02](" + b"K\x00" * entries + b"e."
                archive.writestr(member.filename, data)

    return make


def legacy_storage_claim(claimed_bytes: int) -> Maker:
    """A legacy (pre-zip) ``.pt`` whose pickle claims a storage of ``claimed_bytes`` the file does not hold."""

    def make(path: Path) -> None:
        buffer = io.BytesIO()
        torch.save({"head.0.0.weight": torch.zeros(SEED_NUMEL)}, buffer, _use_new_zipfile_serialization=False)
        raw = buffer.getvalue()
        assert raw.count(pickled_int(SEED_NUMEL)) == 2
        path.write_bytes(raw.replace(pickled_int(SEED_NUMEL), pickled_int(claimed_bytes // 4))[: -4 * SEED_NUMEL])

    return make


class Exploit:
    def __reduce__(self):
        return (print, ("this ran",))


FULL = {"n_resblocks": 32, "n_feats": 64, "res_scale": 0.1, "bam": True, "scales": [2, 3, 4], "reduction": 16}
BOMB_BYTES = 300_000_000

# name: (file suffix, how to write it, what the refusal says)
CORPUS: dict[str, tuple[str, Maker, str]] = {
    "config_n_feats_512": (
        ".safetensors",
        with_config({**FULL, "n_feats": 512}),
        "has an invalid MDSR config: n_feats must be a whole number from 1 to 256; got 512",
    ),
    "config_n_feats_2048_few_tensors": (
        ".safetensors",
        with_config({**FULL, "n_feats": 2048}, {"head.0.0.weight": torch.zeros(2048, 3, 3, 3)}),
        "n_feats must be a whole number from 1 to 256; got 2048",
    ),
    "config_n_resblocks_10000": (
        ".safetensors",
        with_config({**FULL, "n_resblocks": 10_000}),
        "n_resblocks must be a whole number from 1 to 80; got 10000",
    ),
    "config_largest_of_the_family_no_tensors": (
        ".safetensors",
        with_config({**FULL, "n_resblocks": 80, "n_feats": 256}),
        r"is \d+ bytes, too small for the 115,199,705 weights its config describes",
    ),
    "config_reduction_0": (
        ".safetensors",
        with_config({**FULL, "reduction": 0}),
        r"reduction must be a whole number that divides n_feats \(64\); got 0",
    ),
    "config_negative_n_feats": (
        ".safetensors",
        with_config({**FULL, "n_feats": -64}),
        "n_feats must be a whole number from 1 to 256; got -64",
    ),
    "config_a_list": (
        ".safetensors",
        with_config([64, 32]),
        "has an invalid MDSR config: an MDSR config must be an object of named fields; got list",
    ),
    "config_not_json": (
        ".safetensors",
        with_config("{n_feats: 64"),
        "has a config that is not valid JSON",
    ),
    "config_deeply_nested": (
        ".safetensors",
        with_config("[" * 100_000),
        "has a config of 100,000 characters, and an MDSR config is a few hundred at most",
    ),
    "config_string_for_an_int": (
        ".safetensors",
        with_config({**FULL, "n_feats": "64"}),
        "n_feats must be a whole number from 1 to 256; got '64'",
    ),
    "config_fraction_for_an_int": (
        ".safetensors",
        with_config({**FULL, "n_feats": 64.5}),
        "n_feats must be a whole number from 1 to 256; got 64.5",
    ),
    "config_bool_for_an_int": (
        ".safetensors",
        with_config({**FULL, "n_resblocks": True}),
        "n_resblocks must be a whole number from 1 to 80; got True",
    ),
    "config_string_for_scales": (
        ".safetensors",
        with_config({**FULL, "scales": "234"}),
        r"scales must be a non-empty subset of \(2, 3, 4\), got '234'",
    ),
    "tensor_int64": (
        ".safetensors",
        tiny_with("tail.0.0.bias", torch.zeros(3, dtype=torch.int64)),
        "tail.0.0.bias holds I64 values, and weights must be floating-point numbers",
    ),
    "tensor_nan": (
        ".safetensors",
        tiny_with("body.0.body.0.0.weight", torch.full((16, 16, 3, 3), float("nan"))),
        "body.0.body.0.0.weight holds NaN or infinite values, so these weights are damaged",
    ),
    "tensor_inf": (
        ".safetensors",
        tiny_with("tail.0.0.bias", torch.tensor([0.0, float("inf"), 0.0])),
        "tail.0.0.bias holds NaN or infinite values, so these weights are damaged",
    ),
    "tensor_of_a_wrong_shape": (
        ".safetensors",
        tiny_with("tail.0.0.bias", torch.zeros(4)),
        r"tail.0.0.bias has shape \(4,\), the model expects \(3,\)",
    ),
    "pt_body_1000": (
        ".pt",
        pt_of(  # a head of 64 channels, a x2 upsampler and a block numbered 1000: 1000 blocks of 64 channels
            {
                "head.0.0.weight": torch.zeros(64, 3, 3, 3),
                "upsample.2.0.0.weight": torch.zeros(1),
                "body.1000.0.weight": torch.zeros(1),
            }
        ),
        r"describe no MDSR model of this family \(n_resblocks must be a whole number from 1 to 80; got 1000\)",
    ),
    "pt_int64_tensor": (
        ".pt",
        tiny_pt_with({"tail.0.0.bias": torch.zeros(3, dtype=torch.int64)}),
        "tail.0.0.bias holds int64 values, and weights must be floating-point numbers",
    ),
    "pt_nan_tensor": (
        ".pt",
        tiny_pt_with({"head.0.0.bias": torch.full((16,), float("nan"))}),
        "head.0.0.bias holds NaN or infinite values",
    ),
    "pt_number_for_a_tensor": (
        ".pt",
        pt_of({"head.0.0.weight": 5}),
        "holds int under 'head.0.0.weight', not a plain tensor",
    ),
    "pt_deflate_bomb": (
        ".pt",
        deflate_bomb(BOMB_BYTES),
        r"unpacks to more than [\d,]+ bytes, far more than weights of its size",
    ),
    "pt_many_members": (
        ".pt",
        many_members(100_000),
        "is an archive of over 8,192 members, far more than weights have",
    ),
    "pt_large_pickle": (
        ".pt",
        large_pickle(8_000_000),
        "holds a pickle of over 4,194,304 bytes, far more than a state dict needs",
    ),
    "pt_legacy_storage_claim": (
        ".pt",
        legacy_storage_claim(1_000_000_000),
        r"is not a plain weights file that loads safely \(RuntimeError\)",
    ),
    "pt_pickle_carrying_code": (
        ".pt",
        lambda path: path.write_bytes(pickle.dumps({"head.0.0.weight": Exploit()})),
        r"is not a plain weights file that loads safely \(UnpicklingError\)",
    ),
}

# The files that would cost memory out of proportion to their size if the loader trusted them (a legacy
# pickle's storage claim is one torch.load itself does not trust: here to show it stays so).
BOMBS = [
    "config_n_feats_512",
    "config_n_feats_2048_few_tensors",
    "config_n_resblocks_10000",
    "config_largest_of_the_family_no_tensors",
    "pt_body_1000",
    "pt_deflate_bomb",
    "pt_many_members",
    "pt_large_pickle",
    "pt_legacy_storage_claim",
]


def write_corpus(folder: Path) -> dict[str, Path]:
    """Every crafted file, written into ``folder``."""
    paths = {}
    for name, (suffix, make, _) in CORPUS.items():
        paths[name] = folder / f"{name}{suffix}"
        make(paths[name])
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """Every crafted file, written once for the module."""
    return write_corpus(tmp_path_factory.mktemp("uploads"))


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_crafted_file_is_refused_with_one_sentence_naming_it(corpus, name):
    path = corpus[name]
    with pytest.raises(WeightsError) as refused:
        load_model(path)
    message = str(refused.value)
    assert re.search(CORPUS[name][2], message), message
    assert path.name in message and str(path.parent) not in message and "\n" not in message


def test_an_uploaded_crafted_file_is_refused_the_same_way(corpus):
    with pytest.raises(WeightsError, match="n_feats must be a whole number from 1 to 256; got 2048"):
        WeightStore(online=False).get_file(corpus["config_n_feats_2048_few_tensors"], 2, max_bytes=20_000_000)


def test_the_deflate_bomb_is_a_file_under_1_mb_that_unpacks_to_300_mb(corpus):
    path = corpus["pt_deflate_bomb"]
    with zipfile.ZipFile(path) as archive:
        assert sum(m.file_size for m in archive.infolist()) > BOMB_BYTES
    assert path.stat().st_size < 1_000_000


def test_a_config_nested_past_the_recursion_limit_is_a_sentence_even_without_the_length_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "MAX_CONFIG_CHARS", 10**6)
    path = tmp_path / "nested.safetensors"
    with_config("[" * 100_000)(path)
    with pytest.raises(WeightsError, match="nested.safetensors has a config nested too deeply to be an MDSR config"):
        load_model(path)


def test_a_weights_file_deflated_as_a_whole_still_loads(tmp_path):
    """Re-zipping a checkpoint with compression is no attack: weights barely deflate, so it stays in bounds."""
    model = tiny(scales=(2,))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    path = tmp_path / "pytorch_model_2x.pt"
    with zipfile.ZipFile(buffer) as saved, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as deflated:
        for member in saved.infolist():
            deflated.writestr(member.filename, saved.read(member))
    loaded = load_model(path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_training_checkpoint_with_its_optimizer_state_stays_within_the_bounds_and_loads(tmp_path):
    model = tiny().train()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 8, 8), 2).mean().backward()
    optimizer.step()
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": 1}, path)
    assert load_model(path).config == TINY


def test_loaded_weights_do_not_depend_on_their_file_afterwards(tiny_weights):
    """safetensors maps the file: a model holding those tensors would crash (SIGBUS) once it shrank."""
    code = (
        "import sys, torch\n"
        "from mdsr.weights import load_model\n"
        "model = load_model(sys.argv[1])\n"
        "open(sys.argv[1], 'wb').close()\n"
        "print(sum(float(p.sum()) for p in model.parameters()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, tiny_weights], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_error_from_a_file_deep_in_folders_names_the_file_only(tmp_path):
    folder = tmp_path / "srv" / "gradio" / "cache" / "0123abcd"
    folder.mkdir(parents=True)
    unreadable = folder / "weights.safetensors"
    unreadable.write_bytes(b"not weights at all")
    no_config = save_weights(tiny(), folder / "other.safetensors")
    no_config_meta = folder / "bare.safetensors"
    save_file(tiny().state_dict(), str(no_config_meta))
    tiny_pt_with({"body.1000.0.weight": torch.zeros(1)})(folder / "pytorch_model_2x.pt")
    calls = [
        lambda: load_model(unreadable),
        lambda: read_metadata(unreadable),
        lambda: load_model(no_config_meta),
        lambda: load_model(no_config, scale=5),
        lambda: load_model(folder / "absent.safetensors"),
        lambda: load_model(folder / "pytorch_model_2x.pt"),
        lambda: WeightStore(online=False).get_file(folder / "gone.pt", 2, max_bytes=1000),
    ]
    for call in calls:
        with pytest.raises(WeightsError) as refused:
            call()
        assert str(folder.parent) not in str(refused.value), str(refused.value)
    assert describe(unreadable) == "not readable as weights"  # what the demo lists it as, never its path


MEMORY_PROBE = """
import json, sys
import torch
from mdsr.weights import WeightsError, load_model

def peak_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024

try:  # from here the high-water mark counts from the present use, not the imports' passing peak
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
except OSError:
    pass
rest = peak_mb()
refused = {}
for path in sys.argv[1:]:
    try:
        load_model(path)
    except WeightsError as err:
        refused[path] = str(err)
print(json.dumps({"rest": rest, "peak": peak_mb(), "refused": refused}))
"""


@pytest.mark.slow
def test_loading_every_bomb_raises_the_peak_memory_by_under_50_mb(corpus):
    paths = [str(corpus[name]) for name in BOMBS]
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, *paths], capture_output=True, text=True, timeout=900, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert sorted(result["refused"]) == sorted(paths)
    assert result["peak"] - result["rest"] < 50, result
