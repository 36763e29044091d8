"""``models.streams.ChunkStreams``: chunks in order, on threads that each run their own torch thread count."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from models.streams import ChunkStreams


def test_chunks_come_back_in_order_and_cover_every_item():
    for streams in (1, 2, 3):
        s = ChunkStreams(streams)
        assert s.map(lambda a, b: (a, b), 10, 4) == [(0, 4), (4, 8), (8, 10)]
        assert s.map(lambda a, b: (a, b), 0, 4) == []
        s.close()
    with pytest.raises(ValueError, match="chunk must be"):
        ChunkStreams(1).map(lambda a, b: 0, 3, 0)
    with pytest.raises(ValueError, match="streams and threads_per_stream"):
        ChunkStreams(0)


def test_two_streams_run_concurrently_with_their_own_thread_count():
    s = ChunkStreams(2, threads_per_stream=1)
    inside = []
    barrier = threading.Barrier(2, timeout=30)  # only passes if two chunks are in flight at once

    def chunk(a: int, b: int) -> int:
        barrier.wait()
        inside.append((threading.get_ident(), torch.get_num_threads()))
        time.sleep(0.01)
        return a

    assert s.map(chunk, 4, 1) == [0, 1, 2, 3]
    assert len({ident for ident, _ in inside}) == 2
    assert {n for _, n in inside} == {1}
    assert threading.get_ident() not in {ident for ident, _ in inside}
    s.close()
