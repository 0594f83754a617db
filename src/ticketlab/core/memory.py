"""Keep freed memory in the process for the next training step (glibc only).

glibc hands every allocation above its mmap threshold (at most 32 MB by its own adjustment) to a
fresh `mmap` and returns it to the system when freed, and trims the top of its heap past 128 KB. A
training step on the CPU frees and re-allocates the same large tensors every step (a BERT word
embedding matrix, its gradient, its masked copy: 47 MB each at 30,522 × 384), so every step pays
tens of thousands of page faults for zeroed pages it had a moment before. Raising both thresholds
to 1 GiB keeps that memory in the heap for reuse: the arithmetic is the same (the loss bit for
bit), the page faults go from ~67,000 a step to a few hundred, and a masked fine-tuning step of
`models/minilm-mlm` takes 1.10x less CPU time, for a peak resident size ~6% higher
(`benchmarks/bench_malloc.py` measures both side by side).

`ticketlab` (the CLI, which owns its process) applies it before running a verb, and so does a
sweep's launched worker; the library never changes a process's allocator on import. Left alone: a
user who set glibc's own variables (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`,
`MALLOC_TOP_PAD_`, or `glibc.malloc.*` in `GLIBC_TUNABLES`) or preloads another allocator
(jemalloc, tcmalloc, mimalloc); and every C library whose `mallopt` is missing (macOS, Windows) or
refuses the value (mallopt(3) documents a 32 MB cap on the mmap threshold, which glibc 2.36
does not enforce; where one is enforced, nothing is changed; musl has no such settings).
"""

from __future__ import annotations

import ctypes
import os

KEEP_BYTES = 1 << 30  # both thresholds: allocations and a free heap top up to 1 GiB stay in the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")


def keep_freed_memory(environ: os._Environ | dict[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds to `KEEP_BYTES`; True where both were set. Nothing is
    changed where the user chose the allocator's settings or another allocator, or where the C
    library has no `mallopt`."""
    env = os.environ if environ is None else environ
    if any(k in env for k in USER_SETTINGS) or "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return False
    if any(a in env.get("LD_PRELOAD", "") for a in OTHER_ALLOCATORS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError, TypeError):  # none to open (Windows), or no mallopt in it
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # 1 on success; the trim threshold only once the mmap one is taken, so a refusal changes nothing
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
