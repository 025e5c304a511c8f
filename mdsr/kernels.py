"""Fused CPU passes for a residual block's attention, compiled from C at first use.

After a block's second convolution, eager PyTorch makes four passes over the 64-channel map to apply the
balanced attention and the skip: the channel mean, the per-pixel maximum over channels, the spatial gate's
product, and the channel gate's product with the skip's addition (and the 7x7 spatial gate as 49 passes
over the one-channel map). These passes are memory-bound: beside the int8 convolutions, which are fast,
they were about a quarter of the forward's time on a Zen 5 EPYC (docs/performance.md). The kernels make
two passes over the map: one reads it for both statistics, one applies both gates and adds the skip in
place; the 7x7 gate is one pass over the one-channel map. The arithmetic follows eager's order
(``x + (res * s) * g``, rounded once per multiply-add where the CPU has FMA, as PyTorch's vectorised
kernels do), so each operation agrees with eager's to a unit in the last place or so; the channel sums
and the sigmoid differ in their last bits, so pictures agree to one 8-bit level (tests/test_kernels.py).

The C source is compiled once per process with the system's C compiler (``$CC``, else ``cc``) for this
CPU (``-march=native``, OpenMP on PyTorch's thread count; where the compiler refuses those, a plain
single-threaded build), in a private temporary folder deleted once the library is loaded (~0.3 s). Where
there is no compiler, or the build fails, or the library does not load, ``available()`` is False, one log
line says why, and the eager passes run instead: the same results to that one level, slower.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SOURCE = r"""
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* a * b + c rounded once where the CPU has FMA, as PyTorch's vectorised addcmul and add(alpha=) compute it */
#ifdef __FMA__
#define MULADD(a, b, c) fmaf((a), (b), (c))
#else
#define MULADD(a, b, c) ((a) * (b) + (c))
#endif

/* res: P pixels x C channels (channels-last), fp32. Out: sums[C] (double), peak[P] = max over channels
   (NaN where a channel is NaN, as torch.amax). Returns 0, or -1 where memory ran out. */
int channel_sums_and_peak(const float* res, int64_t P, int64_t C, double* sums, float* peak, int threads) {
  double* slots = calloc((size_t)threads * (size_t)C, sizeof(double));  /* per-thread totals */
  float* parts = calloc((size_t)threads * (size_t)C, sizeof(float));
  if (!slots || !parts) { free(slots); free(parts); return -1; }
  #pragma omp parallel num_threads(threads)
  {
    int t = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
#endif
    float* part = parts + (int64_t)t * C;
    double* total = slots + (int64_t)t * C;
    int64_t n = 0;
    #pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* r = res + p * C;
      float m = -INFINITY;
      int nan = 0;
      #pragma omp simd reduction(max:m) reduction(|:nan)
      for (int64_t c = 0; c < C; ++c) { part[c] += r[c]; m = r[c] > m ? r[c] : m; nan |= r[c] != r[c]; }
      peak[p] = nan ? NAN : m;
      if (++n == 256) {  /* float partial sums of 256 pixels, then double: no drift on large maps */
        for (int64_t c = 0; c < C; ++c) { total[c] += part[c]; part[c] = 0.f; }
        n = 0;
      }
    }
    for (int64_t c = 0; c < C; ++c) total[c] += part[c];
  }
  /* the threads' totals added in thread order: the same sums on every run */
  memset(sums, 0, sizeof(double) * C);
  for (int t = 0; t < threads; ++t)
    for (int64_t c = 0; c < C; ++c) sums[c] += slots[(int64_t)t * C + c];
  free(slots); free(parts);
  return 0;
}

/* gate = sigmoid(conv7x7(peak)), zero padding, one channel of H x W; taps: K x K row-major, K odd; the taps
   are added in eager's order (row by row), each as gate += peak * tap. */
void spatial_gate(const float* peak, int64_t H, int64_t W, const float* taps, int64_t K, float* gate,
                  int threads) {
  const int64_t r = K / 2;
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t y = 0; y < H; ++y) {
    float* g = gate + y * W;
    for (int64_t x = 0; x < W; ++x) g[x] = 0.f;
    for (int64_t i = 0; i < K; ++i) {
      const int64_t yy = y + i - r;
      if (yy < 0 || yy >= H) continue;
      const float* row = peak + yy * W;
      for (int64_t j = 0; j < K; ++j) {
        const float t = taps[i * K + j];
        const int64_t x0 = r - j > 0 ? r - j : 0, x1 = W + r - j < W ? W + r - j : W;
        #pragma omp simd
        for (int64_t x = x0; x < x1; ++x) g[x] = MULADD(row[x + j - r], t, g[x]);
      }
    }
    for (int64_t x = 0; x < W; ++x) g[x] = 1.f / (1.f + expf(-g[x]));
  }
}

/* out[p, c] = x[p, c] + (res[p, c] * spatial[p]) * channel[c]; out may be res or x. */
void gate_and_add(const float* res, const float* x, const float* spatial, const float* channel, float* out,
                  int64_t P, int64_t C, int threads) {
  #pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    const float s = spatial[p];
    const float* r = res + p * C; const float* xx = x + p * C; float* o = out + p * C;
    #pragma omp simd
    for (int64_t c = 0; c < C; ++c) o[c] = MULADD(r[c] * s, channel[c], xx[c]);
  }
}
"""

# Tried in turn: the fast build, then a plain one for compilers without OpenMP (Apple's clang) or without
# -march=native (some non-x86 gcc); the pragmas are then ignored and the kernels run on one thread.
_FLAGS = (
    ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"],
    ["-O3", "-ffp-contract=off", "-fno-math-errno"],
)
_BUILD_LOCK = threading.Lock()  # concurrent first calls build once


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (with one log line) where they cannot be built or loaded."""
    if os.environ.get("MDSR_FUSED_KERNELS", "1") == "0":
        logger.info("fused attention kernels switched off (MDSR_FUSED_KERNELS=0): eager passes")
        return None
    compiler = shlex.split(os.environ.get("CC") or "cc")  # CC may carry arguments ("ccache gcc")
    found = shutil.which(compiler[0]) if compiler else None
    if found is None:
        logger.warning("no C compiler found ($CC or cc): the attention runs as eager passes, up to ~17% slower")
        return None
    with _BUILD_LOCK:
        try:
            return _build([found, *compiler[1:]])
        except Exception as error:  # noqa: BLE001 (anything here must leave the eager passes working)
            logger.warning("the fused attention kernels did not build (%s): eager passes instead", _said(error))
            return None


def _build(compiler: list[str]) -> ctypes.CDLL:
    """Compile and load the kernels in a private temporary folder (the compiler's own temporaries too)."""
    with tempfile.TemporaryDirectory(prefix="mdsr-kernels-", ignore_cleanup_errors=True) as folder:
        source, library = Path(folder) / "kernels.c", Path(folder) / "kernels.so"
        source.write_text(_SOURCE)
        for n, flags in enumerate(_FLAGS):
            command = [*compiler, *flags, "-fPIC", "-shared", str(source), "-o", str(library)]
            done = subprocess.run(
                command,
                capture_output=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "TMPDIR": folder},
            )
            if done.returncode == 0:
                break
            if n == len(_FLAGS) - 1:
                raise RuntimeError(_first_error(done.stderr) or f"{compiler[0]} exited with {done.returncode}")
        lib = ctypes.CDLL(str(library))
        i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.channel_sums_and_peak.argtypes = [ptr, i64, i64, ptr, ptr, i32]
        lib.channel_sums_and_peak.restype = i32
        lib.spatial_gate.argtypes = [ptr, i64, i64, ptr, i64, ptr, i32]
        lib.spatial_gate.restype = None
        lib.gate_and_add.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i32]
        lib.gate_and_add.restype = None
        return lib


def _first_error(stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    return next((line for line in lines if "error" in line.lower()), lines[-1] if lines else "")


def _said(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def available() -> bool:
    """True where the kernels are built and loaded in this process (built at the first call)."""
    return _library() is not None


def fits(*maps: torch.Tensor) -> bool:
    """True where the kernels take these maps: of one shape, fp32 on the CPU, one image, laid out densely as
    pixels x channels (channels-last), no autograd."""
    return len({m.shape for m in maps}) == 1 and all(
        m.dtype == torch.float32
        and m.device.type == "cpu"
        and m.dim() == 4
        and m.shape[0] == 1
        and m.numel() > 0
        and m.is_contiguous(memory_format=torch.channels_last)
        and not m.requires_grad
        for m in maps
    )


def _lib() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError("the fused attention kernels are not available here (kernels.available() is False)")
    return lib


def _check(condition: bool, what: str) -> None:
    if not condition:  # the C side trusts its pointers: a wrong map would be read out of bounds
        raise ValueError(f"the fused attention kernels take {what}")


def channel_mean_and_peak(res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H, W) fp32 channels-last map -> its mean over the image (1, C, 1, 1) and its maximum over
    channels (1, 1, H, W), in one pass."""
    _check(fits(res), "a (1, C, H, W) fp32 channels-last map (kernels.fits)")
    _, c, h, w = res.shape
    sums = torch.empty(c, dtype=torch.float64)
    peak = torch.empty((1, 1, h, w), dtype=torch.float32)
    threads = torch.get_num_threads()
    if _lib().channel_sums_and_peak(res.data_ptr(), h * w, c, sums.data_ptr(), peak.data_ptr(), threads) != 0:
        raise MemoryError("the fused attention kernels ran out of memory for their channel sums")
    return sums.div_(h * w).float().reshape(1, c, 1, 1), peak


def spatial_gate(peak: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sigmoid(conv2d(peak, weight, zero padding)): a (1, 1, H, W) fp32 map, a (1, 1, K, K) kernel, K odd."""
    _check(fits(peak) and peak.shape[1] == 1, "a (1, 1, H, W) fp32 map")
    _check(weight.dim() == 4 and weight.shape[:2] == (1, 1), "a (1, 1, K, K) kernel")
    k = weight.shape[-1]
    _check(weight.shape[-2] == k and k % 2 == 1, "a square kernel of odd size")
    _, _, h, w = peak.shape
    taps = weight.detach().float().reshape(k * k).contiguous()
    peak = peak.contiguous()
    gate = torch.empty_like(peak)
    _lib().spatial_gate(peak.data_ptr(), h, w, taps.data_ptr(), k, gate.data_ptr(), torch.get_num_threads())
    return gate


def gate_and_add(res: torch.Tensor, spatial: torch.Tensor, channel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x + (res * spatial) * channel``, written into ``res``: maps (1, C, H, W) fp32 channels-last, the
    spatial gate (1, 1, H, W), the channel gate (1, C, 1, 1)."""
    _check(fits(res, x), "two (1, C, H, W) fp32 channels-last maps of one shape (kernels.fits)")
    _, c, h, w = res.shape
    _check(spatial.numel() == h * w and channel.numel() == c, "a (1, 1, H, W) spatial and a (1, C, 1, 1) channel gate")
    spatial = spatial.detach().float().contiguous()
    channel = channel.detach().float().reshape(c).contiguous()
    _lib().gate_and_add(
        res.data_ptr(), x.data_ptr(), spatial.data_ptr(), channel.data_ptr(), res.data_ptr(), h * w, c,
        torch.get_num_threads(),
    )  # fmt: skip
    return res
