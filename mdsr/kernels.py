"""Fused CPU passes for a residual block's attention, compiled from C at first use.

After a block's second convolution, eager PyTorch makes five passes over the 64-channel map to apply the
balanced attention and the skip: the channel mean, the per-pixel channel maximum, the 7x7 spatial gate,
the spatial gate's product and the channel gate's product with the skip's addition. These passes are
memory-bound: with the int8 convolutions, which are fast, they were about a quarter of the forward's time on
a Zen 5 EPYC (docs/performance.md).
The kernels below make two: one that reads the map once for both statistics, one that applies both gates
and adds the skip in place. The arithmetic is eager's, in the same order (``out = x + (res * s) * g``, no
fused multiply-add); only the channel sums are added up in another order.

The C source is compiled once per process with the system's C compiler (``$CC``, else ``cc``) for this
CPU (``-march=native``, OpenMP), into a temporary folder that is deleted once the library is loaded
(~0.3 s). Where there is no compiler, or it fails, or the library does not load, ``available()`` is
False, one log line says why, and the eager passes run instead: the same values, slower.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

_SOURCE = r"""
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* res: P pixels x C channels (channels-last), fp32. Out: sums[C] (double), peak[P] = max over channels. */
void channel_sums_and_peak(const float* res, int64_t P, int64_t C, double* sums, float* peak, int threads) {
  memset(sums, 0, sizeof(double) * C);
  #pragma omp parallel num_threads(threads)
  {
    float part[1024]; double total[1024];
    for (int64_t c = 0; c < C; ++c) { part[c] = 0.f; total[c] = 0.0; }
    int64_t n = 0;
    #pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* r = res + p * C;
      float m = r[0];
      #pragma omp simd reduction(max:m)
      for (int64_t c = 0; c < C; ++c) { part[c] += r[c]; m = r[c] > m ? r[c] : m; }
      peak[p] = m;
      if (++n == 256) {  /* float partial sums of 256 pixels, then double: no drift on large maps */
        for (int64_t c = 0; c < C; ++c) { total[c] += part[c]; part[c] = 0.f; }
        n = 0;
      }
    }
    for (int64_t c = 0; c < C; ++c) total[c] += part[c];
    #pragma omp critical
    for (int64_t c = 0; c < C; ++c) sums[c] += total[c];
  }
}

/* gate = sigmoid(conv7x7(peak)), zero padding, one channel of H x W; taps: K x K row-major, K odd. */
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
        for (int64_t x = x0; x < x1; ++x) g[x] += row[x + j - r] * t;
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
    for (int64_t c = 0; c < C; ++c) o[c] = xx[c] + (r[c] * s) * channel[c];
  }
}
"""

MAX_CHANNELS = 1024  # the C side's per-thread partial sums


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled kernels, or None (with one log line) where they cannot be built or loaded."""
    if os.environ.get("MDSR_FUSED_KERNELS", "1") == "0":
        logger.info("fused attention kernels switched off (MDSR_FUSED_KERNELS=0): eager passes")
        return None
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        logger.warning("no C compiler found ($CC or cc): the attention runs as eager passes, up to ~10% slower")
        return None
    with tempfile.TemporaryDirectory(prefix="mdsr-kernels-") as folder:
        source, library = Path(folder) / "kernels.c", Path(folder) / "kernels.so"
        source.write_text(_SOURCE)
        command = [compiler, "-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
        command += ["-fPIC", "-shared", str(source), "-o", str(library)]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=120)
            lib = ctypes.CDLL(str(library))
        except (OSError, subprocess.SubprocessError) as error:
            stderr = getattr(error, "stderr", b"") or b""
            detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [str(error)]
            logger.warning("the fused attention kernels did not build (%s): eager passes instead", detail[0])
            return None
    i64, ptr, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    lib.channel_sums_and_peak.argtypes = [ptr, i64, i64, ptr, ptr, i32]
    lib.spatial_gate.argtypes = [ptr, i64, i64, ptr, i64, ptr, i32]
    lib.gate_and_add.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, i64, i32]
    return lib


def available() -> bool:
    """True where the kernels are built and loaded in this process (built at the first call)."""
    return _library() is not None


def fits(*maps: torch.Tensor) -> bool:
    """True where the kernels take these maps: fp32 on the CPU, one image, dense channels-last, no autograd."""
    return (
        all(
            m.dtype == torch.float32
            and m.device.type == "cpu"
            and m.dim() == 4
            and m.shape[0] == 1
            and 0 < m.shape[1] <= MAX_CHANNELS
            and m.is_contiguous(memory_format=torch.channels_last)
            and not m.requires_grad
            for m in maps
        )
        and len({m.shape for m in maps}) == 1
    )


def _lib() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError("the fused attention kernels are not available here (kernels.available() is False)")
    return lib


def channel_mean_and_peak(res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, C, H, W) fp32 channels-last map -> its mean over the image (1, C, 1, 1) and its maximum over
    channels (1, 1, H, W), in one pass."""
    _, c, h, w = res.shape
    sums = torch.empty(c, dtype=torch.float64)
    peak = torch.empty((1, 1, h, w), dtype=torch.float32)
    _lib().channel_sums_and_peak(res.data_ptr(), h * w, c, sums.data_ptr(), peak.data_ptr(), torch.get_num_threads())
    return sums.div_(h * w).float().reshape(1, c, 1, 1), peak


def spatial_gate(peak: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sigmoid(conv2d(peak, weight, zero padding)): a (1, 1, H, W) fp32 map, a (1, 1, K, K) kernel, K odd."""
    _, _, h, w = peak.shape
    k = weight.shape[-1]
    taps = weight.detach().float().reshape(k * k).contiguous()
    peak = peak.contiguous()
    gate = torch.empty_like(peak)
    _lib().spatial_gate(peak.data_ptr(), h, w, taps.data_ptr(), k, gate.data_ptr(), torch.get_num_threads())
    return gate


def gate_and_add(res: torch.Tensor, spatial: torch.Tensor, channel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``x + (res * spatial) * channel``, written into ``res``: maps (1, C, H, W) fp32 channels-last, the
    spatial gate (1, 1, H, W), the channel gate (1, C, 1, 1)."""
    _, c, h, w = res.shape
    spatial, channel = spatial.float().contiguous(), channel.float().reshape(c).contiguous()
    _lib().gate_and_add(
        res.data_ptr(), x.data_ptr(), spatial.data_ptr(), channel.data_ptr(), res.data_ptr(), h * w, c,
        torch.get_num_threads(),
    )  # fmt: skip
    return res
