"""ShadowProcess: shadow work in a child process, in the idle scheduling class.

A model scored in the serving process competes with the answers for the interpreter:
a challenger that holds the GIL for 3 ms a call (or a gradient-boosted model looping
over 1,500 trees in Python) halved the throughput of a champion it never served for.
So the arm that does not answer ("shadow work") runs in one child process instead,
its predictions in a thread of the SCHED_IDLE class: the kernel runs it only on a core
that nothing else wants, and preempts it as soon as the serving process or its clients
want one. Loading stays at normal priority, so a model
loads in seconds even under load. The serving process only pickles a batch and waits on
a pipe in a thread, which releases the GIL.

The child loads each model from the directory the serving process downloaded it to
(`LoadedModel.local_path`): once ahead of the swap (`preload`, from the registry
poller's thread), or on its first call. It keeps only the models the latest routing
snapshot holds (`retain`).

Failure modes: a model that raises is that call's error. A child that dies, or does
not answer within `call_limit_s`, is killed; the call fails with the reason, and the
next call starts a fresh child (which loads its models again on demand). The limit is
generous on purpose: a starved call is slow through no fault of its own, and while it
runs the shadow work behind it is skipped, which never touches a client. Calls are
serialised on one pipe; they come from a few runner threads, never the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from contender.errors import ContenderError, RemoteModelError
from contender.models import LoadedModel, ModelRef
from contender.native_threads import one_native_thread
from contender.registry.loader import ModelLoader, unchecked_predict

_log = logging.getLogger(__name__)

_READY_LIMIT_S = 120.0
_LOAD_LIMIT_S = 600.0
_STOP_LIMIT_S = 5.0


class ShadowProcessError(ContenderError):
    """The shadow process died, hung, or could not load a model."""


class ShadowProcess:
    """A `ModelBackend` whose predict calls run in the low-priority child."""

    def __init__(self, call_limit_s: float) -> None:
        self._call_limit_s = call_limit_s
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._retain: list[str] | None = None

    def predict_fn(self, model: LoadedModel, unchecked: bool, params: Any) -> Callable[[Any], Any]:
        return partial(self._predict, _path_of(model), unchecked, params)

    def retain(self, models: list[LoadedModel]) -> None:
        # Called on the event loop: only note it; the next call tells the child.
        self._retain = [model.local_path for model in models if model.local_path]

    def preload(self, model: LoadedModel) -> None:
        """Blocking: load `model` in the child before it serves, so no shadow work waits."""
        self._ask(("load", _path_of(model)), _LOAD_LIMIT_S)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(("stop",))
            self._stop_child(graceful=True)

    def _predict(self, path: str, unchecked: bool, params: Any, data: Any) -> Any:
        return self._ask(("predict", path, unchecked, params, data), self._call_limit_s)

    def _ask(self, message: tuple[Any, ...], limit_s: float) -> Any:
        with self._lock:
            conn = self._connection()
            if self._retain is not None:
                retain, self._retain = self._retain, None
                self._exchange(conn, ("retain", retain), limit_s)
            return self._exchange(conn, message, limit_s)

    def _exchange(self, conn: Connection, message: tuple[Any, ...], limit_s: float) -> Any:
        try:
            conn.send(message)
            if not conn.poll(limit_s):
                self._stop_child(graceful=False)
                raise TimeoutError(f"the shadow model gave no answer within {limit_s:.0f} s")
            status, value = conn.recv()
        except (EOFError, OSError) as error:
            self._stop_child(graceful=False)
            raise ShadowProcessError(f"the shadow process died: {error!r}") from error
        if status == "error":
            raise RemoteModelError(value)
        return value

    def _connection(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._stop_child(graceful=False)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=child_main, args=(child,), name="contender-shadow", daemon=True
        )
        process.start()
        child.close()
        if not parent.poll(_READY_LIMIT_S):
            process.kill()
            raise ShadowProcessError("the shadow process did not start")
        parent.recv()
        self._process, self._conn = process, parent
        _log.info("shadow process started pid=%s", process.pid)
        return parent

    def _stop_child(self, *, graceful: bool) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if process is not None:
            process.join(_STOP_LIMIT_S if graceful else 0)
            if process.is_alive():
                process.kill()
                process.join()
        if conn is not None:
            conn.close()


def _path_of(model: LoadedModel) -> str:
    if model.local_path is None:
        raise ShadowProcessError(f"version {model.ref.version} has no local copy to load from")
    return model.local_path


def child_main(conn: Connection) -> None:
    """The child's loop: load, predict, forget, one message at a time.

    Predictions run in a thread of their own at the lowest priority; everything else
    (receiving, loading) in this one, at normal priority. SIGTERM and SIGINT are the
    serving process's to act on: a signal to the whole process group (systemd, a
    terminal's Ctrl+C) must not kill shadow work the parent is still draining. The
    child ends when the parent says so or its pipe closes."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    one_native_thread()
    models: dict[str, Any] = {}
    with ThreadPoolExecutor(1, initializer=_prediction_thread) as predictor:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message[0] == "stop":
                return
            try:
                conn.send(("ok", _handle(message, models, predictor)))
            except Exception as error:
                conn.send(("error", f"{type(error).__name__}: {error}"))


def _handle(message: tuple[Any, ...], models: dict[str, Any], predictor: Executor) -> Any:
    kind = message[0]
    if kind == "retain":
        for path in set(models) - set(message[1]):
            del models[path]
        return None
    if kind == "load":
        _model(models, message[1])
        return None
    _, path, unchecked, params, data = message
    pyfunc, unchecked_fn = _model(models, path)
    if unchecked and unchecked_fn is not None:
        return predictor.submit(unchecked_fn, data).result()
    return predictor.submit(pyfunc.predict, data, params=params).result()


def _model(models: dict[str, Any], path: str) -> Any:
    if path not in models:
        import mlflow.pyfunc

        started = time.perf_counter()
        pyfunc = mlflow.pyfunc.load_model(path)
        models[path] = (pyfunc, unchecked_predict(pyfunc))
        _log.info("shadow process loaded %s in %.1f s", path, time.perf_counter() - started)
    return models[path]


def _prediction_thread() -> None:
    one_native_thread()
    # On Linux, pid 0 is the calling thread: only the prediction thread is lowered.
    # SCHED_IDLE rather than nice 19: a waking thread preempts an idle-class one at once,
    # where a nice-19 one keeps its core to the end of its slice. (An earlier trial of
    # SCHED_IDLE starved at one connection only because OpenMP then ran the model on
    # both cores; with one native thread, 100 % of requests are scored at one connection.)
    if hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:  # not Linux: the lowest nice level is the nearest thing there is
        os.setpriority(os.PRIO_PROCESS, 0, 19)


class PreloadingLoader:
    """A `ModelLoader` that also loads each version in the shadow process before the swap.

    A version the shadow process cannot load is not swapped in: it could not do its
    shadow work, and the failure shows in `/status` like any other load failure."""

    def __init__(self, loader: ModelLoader, shadow: ShadowProcess) -> None:
        self._loader = loader
        self._shadow = shadow

    @property
    def downloads(self) -> int:
        return self._loader.downloads

    def __call__(self, ref: ModelRef) -> LoadedModel:
        loaded = self._loader(ref)
        self._shadow.preload(loaded)
        return loaded
