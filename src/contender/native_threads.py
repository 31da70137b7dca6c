"""One native (OpenMP/BLAS) thread per model call, in every thread that runs a model.

Requests already run concurrently, and native pools on top oversubscribe two cores: a
gradient-boosted model's one-row predict was measured here at 1 ms to 1.2 s with the
default OpenMP threads under load, about 2.5 ms with one. OpenMP keeps its thread count
per calling thread, and a new thread starts from the default (every core), so a limit set
once in the main thread does not reach the worker threads: each sets its own.
"""

from __future__ import annotations


def one_native_thread() -> None:
    """Limit native thread pools for the calling thread (a thread pool's initializer)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
