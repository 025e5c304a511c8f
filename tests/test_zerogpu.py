"""Hugging Face ZeroGPU: the upscaling function becomes a GPU task only where a ZeroGPU Space runs it."""

from __future__ import annotations

import sys
import types

from mdsr.inference import on_zerogpu, to_serving_device, zerogpu_active


def upscale(x):
    return x


def fake_spaces(calls: list) -> types.ModuleType:
    """A stand-in for the `spaces` package: records what ``spaces.GPU`` was asked to wrap."""

    def gpu(*, duration):
        def wrap(fn):
            calls.append((fn, duration))
            return lambda *args: ("on the GPU", fn(*args))

        return wrap

    return types.SimpleNamespace(GPU=gpu)


def test_without_the_spaces_package_nothing_changes(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", None)  # makes `import spaces` fail
    assert not zerogpu_active()
    assert on_zerogpu(upscale) is upscale


def test_with_spaces_but_not_on_zerogpu_nothing_changes(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls := []))
    assert on_zerogpu(upscale) is upscale and calls == []


def test_on_zerogpu_the_function_becomes_a_gpu_task(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls := []))
    task = on_zerogpu(upscale, duration=90)
    assert calls == [(upscale, 90)]
    assert task(3) == ("on the GPU", 3)


def test_off_zerogpu_models_stay_on_the_cpu(tiny_model, monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert to_serving_device(tiny_model) is tiny_model
    assert next(tiny_model.parameters()).device.type == "cpu"
