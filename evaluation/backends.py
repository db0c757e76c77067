"""Where parallel work runs: this machine's processes (the default) or a Ray cluster, behind one interface.

A unit of work is a pure function of a shared, picklable context and an item (an evaluation row is
``(policy, seed)`` of a run, a training run is a seed of a config), returning a small record; the
caller writes each record once, atomically, as it arrives. So both backends give the same files, a
retried task changes nothing, and an interrupted run resumes where it stopped (DESIGN.md section 8).

* :class:`LocalBackend`: ``workers`` processes (``spawn``; each ends with its parent), or this
  process when ``workers == 1``;
* :class:`RayBackend`: Ray tasks (``max_retries``: a task whose worker or node dies is run again),
  on a local cluster started for the run or on the cluster at ``address`` (``ray start --head``).

``work(context, item)`` must be a module-level function; a worker builds what it needs from the context
once (:func:`cached`) and reuses it for every item it is given.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

BACKENDS = ("local", "ray")
MAX_RETRIES = 3  # Ray: a task is run again this many times when its worker process or node dies


class BackendError(ValueError):
    """A backend that cannot be used as asked (unknown name, unreachable cluster); names the flag."""


def make_backend(name: str, workers: int, address: str | None = None) -> LocalBackend | RayBackend:
    """The backend ``name`` (``"local"`` or ``"ray"``) with ``workers`` parallel tasks; checked and, for Ray,
    connected here, before any work, so a bad value is one clear error."""
    if name not in BACKENDS:
        raise BackendError(f"--backend: {name!r} is not allowed; allowed: {list(BACKENDS)}")
    if address is not None and name != "ray":
        raise BackendError(f"--ray-address: given, but --backend is {name!r}; add --backend ray or drop it")
    if name == "local":
        return LocalBackend(workers)
    return RayBackend(workers, address)


def task_error(item, error: BaseException) -> RuntimeError:
    return RuntimeError(f"task {item!r} failed: {type(error).__name__}: {error}")


def default_workers() -> int:
    return os.cpu_count() or 1


def capped_workers(workers: int | None) -> int:
    """At most one worker process per core: more only contend for the same cores (and each loads its own copy
    of the scenario, HiGHS and torch). None: every core."""
    return default_workers() if workers is None else max(1, min(int(workers), default_workers()))


def backend_for(name: str, workers: int | None, address: str | None) -> LocalBackend | RayBackend:
    """The backend of ``--backend``/``--workers``/``--ray-address`` (checked and connected; see
    this module): local workers are capped at the cores, Ray's default to the cluster's CPUs."""
    if name == "ray" and workers is None and address is None:
        return make_backend(name, capped_workers(None), None)  # a local cluster of this machine's cores
    if name == "ray" and workers is None:
        backend = make_backend(name, 1, address)
        backend.workers = max(1, int(backend.ray.cluster_resources().get("CPU", 1)))
        return backend
    return make_backend(name, capped_workers(workers) if name == "local" else workers, address)


# ------------------------------------------------------------------ worker-side cache
_CACHE: dict[str, Any] = {}  # one per worker process: the objects built from each context


def cached(context, build: Callable[[Any], Any]) -> Any:
    """``build(context)`` once per worker process and context (keyed by the context's pickled bytes)."""
    key = hashlib.sha256(pickle.dumps(context)).hexdigest()
    if key not in _CACHE:
        _CACHE.clear()  # one run at a time per worker: do not keep an earlier run's envs and models
        _CACHE[key] = build(context)
    return _CACHE[key]


# ------------------------------------------------------------------ local
class LocalBackend:
    """``workers`` processes on this machine (``spawn``: safe with torch and HiGHS threads).

    ``keep_pool``: the worker processes outlive a ``map`` call and serve the next ones until :meth:`close`
    (for many short rounds of work, e.g. the pricing rounds of a branch-and-price solve, where starting
    processes every round would cost more than the work)."""

    name = "local"

    def __init__(self, workers: int, keep_pool: bool = False) -> None:
        self.workers = max(1, int(workers))
        self.keep_pool = keep_pool
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self, size: int) -> ProcessPoolExecutor:
        if self._pool is not None:
            return self._pool
        pool = ProcessPoolExecutor(
            max_workers=self.workers if self.keep_pool else size,
            mp_context=get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        if self.keep_pool:
            self._pool = pool
        return pool

    def map(self, work: Callable, context, items: Iterable) -> Iterator[tuple[Any, Any]]:
        """``(item, work(context, item))`` as each finishes; the first failure raises (finished ones are kept)."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                try:
                    result = work(context, item)
                except Exception as error:
                    raise task_error(item, error) from error
                yield item, result
            return
        pool = self._executor(min(self.workers, len(items)))
        finished = False
        try:
            pending = {pool.submit(work, context, item): item for item in items}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    error = future.exception()
                    if error is not None:
                        raise task_error(item, error) from error
                    yield item, future.result()
            finished = True
        finally:
            if not finished:  # an error or Ctrl-C: stop the workers now, not after their current solve
                for process in list((getattr(pool, "_processes", None) or {}).values()):  # private until 3.14
                    process.terminate()
            if not finished or pool is not self._pool:
                pool.shutdown(wait=True, cancel_futures=True)
                if pool is self._pool:
                    self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    """End this worker when its parent dies, whatever killed it (a SIGKILL gives the parent no chance to stop
    its pool): on Linux the kernel sends SIGKILL then (``prctl(PR_SET_PDEATHSIG)``, even in the middle of a
    HiGHS solve); elsewhere a daemon thread watches the parent's pid."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


# ------------------------------------------------------------------ Ray
def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """One TCP connect to ``HOST:PORT`` (``ray://`` stripped): ``ray.init`` would otherwise retry an
    unreachable address for many minutes before it gives up."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackendError(f"--ray-address: {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise BackendError(
            f"--ray-address: cannot connect to the Ray cluster at {address!r} ({err}); start one with "
            "`ray start --head` and pass --ray-address auto (or HOST:PORT), or drop --ray-address"
        ) from None


class RayBackend:
    """Ray tasks, ``workers`` at a time (one CPU each). Without ``address`` a local cluster of ``workers``
    CPUs is started for this process (and stopped with it); ``address="auto"`` joins the cluster
    ``ray start`` runs on this machine, ``"HOST:PORT"`` (or ``ray://HOST:PORT``) a remote one."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None) -> None:
        import ray  # deferred: the local backend, the default, needs no Ray

        self.ray = ray
        self.workers = max(1, int(workers))
        self.address = address
        self._started = False
        if not ray.is_initialized():
            if address not in (None, "auto"):
                _check_reachable(address)
            kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            try:
                if address is None:
                    ray.init(num_cpus=self.workers, **kwargs)
                else:
                    ray.init(address=address, **kwargs)
            except (ConnectionError, ValueError, RuntimeError) as err:
                where = "a local Ray cluster" if address is None else f"the Ray cluster at {address!r}"
                raise BackendError(
                    f"--ray-address: cannot connect to {where} ({type(err).__name__}: {err}); start one with "
                    "`ray start --head` and pass --ray-address auto (or HOST:PORT), or drop --ray-address"
                ) from None
            self._started = True

    def map(self, work: Callable, context, items: Iterable) -> Iterator[tuple[Any, Any]]:
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False)(work)
        shared = ray.put(context)  # shipped to each node once, not once per task
        queue, pending = list(items), {}
        finished = False
        try:
            while queue or pending:
                while queue and len(pending) < self.workers:
                    item = queue.pop(0)
                    pending[remote.remote(shared, item)] = item
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as error:  # ray.exceptions.RayTaskError and friends
                        raise task_error(item, error) from error
                    yield item, result
            finished = True
        finally:
            if not finished:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False
