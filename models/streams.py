"""Forward passes of one network on several CPU threads at once: chunks of a batch run concurrently, each thread
with its own (small) number of torch intra-op threads.

Why: on a few cores, one forward on ``T`` OpenMP threads loses time at every barrier of every layer, more so when
another process (video decode, Ray's own workers) preempts one of the threads and the others wait for it. ``T``
Python threads of one torch thread each, over separate chunks, have no barriers between them; PyTorch releases the
GIL inside its operators. FastPose-res50, batch 8, 2 cores: bare bf16 forward 26.8 vs 23.9 persons/s for one
2-thread forward (medians of 4 on a quiet machine, 1.12×); the whole ``jobs.label`` job on the Bonn clip ×10, fp32
on an AVX2 EPYC: 8.47 vs 7.21 persons/s (``benchmarks/end_to_end.py --modes default one_stream``, medians of 3
interleaved rounds; per round 1.10–1.28×).

The chunks are the same ones a single stream runs (consecutive ``chunk``-sized slices), so outputs do not depend
on the number of streams, up to the float rounding of a different intra-op thread count.

Grad and inference mode are thread-local in PyTorch: ``fn`` must enter ``torch.inference_mode()`` itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["ChunkStreams"]

T = TypeVar("T")


class ChunkStreams:
    """Runs ``fn(start, stop)`` over consecutive chunks of ``n`` items on ``streams`` threads.

    ``streams=1`` runs every chunk in the calling thread (no pool), with torch's threads as they are.
    """

    def __init__(self, streams: int, threads_per_stream: int = 1) -> None:
        if streams < 1 or threads_per_stream < 1:
            raise ValueError(f"streams and threads_per_stream must be ≥ 1, got {streams}, {threads_per_stream}")
        self.streams = streams
        self.threads_per_stream = threads_per_stream
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        if streams > 1:
            self._pool = ThreadPoolExecutor(
                max_workers=streams, thread_name_prefix="sppe-stream", initializer=self._init_thread
            )

    def _init_thread(self) -> None:
        # OpenMP's thread count is a per-thread setting: each stream thread sets its own
        torch.set_num_threads(self.threads_per_stream)

    def map(self, fn: Callable[[int, int], T], n: int, chunk: int) -> list[T]:
        """``[fn(s, min(s + chunk, n)) for s in range(0, n, chunk)]``, in that order, ``streams`` at a time."""
        if chunk < 1:
            raise ValueError(f"chunk must be ≥ 1, got {chunk}")
        bounds = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        if self._pool is None:
            return [fn(s, e) for s, e in bounds]
        return list(self._pool.map(lambda b: fn(*b), bounds))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
