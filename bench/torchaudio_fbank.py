#!/usr/bin/env python3
"""Times torchaudio.compliance.kaldi.fbank (AST/MBT settings) on one thread, on the same input
as the Rust criterion bench `logmel_10s_16k`: 10 s of 16 kHz noise from the same 32-bit LCG.

Prints one line: `torchaudio_fbank_10s_16k median_ms=<ms> runs=<n>`. Run by bench/tokenizer.sh.
"""
import statistics
import time

import numpy as np
import torch
import torchaudio


def bench_noise(n: int) -> np.ndarray:
    """Same generator as bench_noise() in crates/mbt-core/benches/tokenize.rs."""
    out = np.empty(n, dtype=np.float32)
    s = 12345
    for i in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = np.float32((s >> 8) / float(1 << 24)) - np.float32(0.5)
    return out


def main() -> None:
    torch.set_num_threads(1)
    x = torch.from_numpy(bench_noise(160_000)).unsqueeze(0)
    kw = dict(htk_compat=True, use_energy=False, window_type="hanning", num_mel_bins=128, dither=0.0, frame_shift=10)
    for _ in range(5):
        torchaudio.compliance.kaldi.fbank(x, **kw)
    times = []
    deadline = time.perf_counter() + 4.0
    while time.perf_counter() < deadline or len(times) < 20:
        t0 = time.perf_counter()
        torchaudio.compliance.kaldi.fbank(x, **kw)
        times.append(time.perf_counter() - t0)
    print(f"torchaudio_fbank_10s_16k median_ms={statistics.median(times) * 1e3:.3f} runs={len(times)}")


if __name__ == "__main__":
    main()
