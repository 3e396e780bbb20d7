"""`flushproof matrix`: every (policy, configuration, property) cell with its verdict, engine,
certificate or counterexample and time, decided on a local process pool or on a Dask cluster
(docs/matrix.md).

One task per (policy, configuration), with the property list: a task builds the relation once
(symbolic execution is most of a tdp cell's time, minutes on a nested configuration), checks
once that every event is enabled within the bound (the part of the vacuity checks that does
not depend on the property), and decides each property on it, in order; houdini's inductive
invariant and the invariants already re-checked are kept on the relation, so those are shared
too.  A task per cell would repeat all of that once per property.

A task runs in a worker process and returns plain JSON-able data (render.proof_json, the
rendered text), never solver terms.  A worker that dies gives `unknown` for its task's cells,
with the reason: on the pool, the tasks a broken pool took down are run again each alone in a
fresh process, and only a task whose own process dies there is unknown; on Dask, the
scheduler's own rule (a task whose workers died `allowed-failures` times is KilledWorker)."""

from __future__ import annotations

import gc
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from formal.cli import policies, prove, render
from formal.engines.checker import Checker
from formal.engines.progress import Progress
from formal.engines.search import Verdict
from formal.errors import InputError, Malformed
from formal.model.properties import ModelError
from formal.solvers import Deadline, Inconclusive

FORMAT = "flushproof-matrix/1"
VERDICTS = ("proved", "refuted", "bounded", "unknown")

Cell = dict[str, object]


@dataclass(frozen=True)
class Task:
    """One (policy, configuration) of the matrix and the properties to decide on its relation.
    Picklable as plain data: a loaded policy travels as its file's path, loaded again in the
    worker."""

    policy: str
    config: str
    props: tuple[str, ...]
    engine: str
    bound: int
    timeout: float | None
    policy_file: str | None = None  # None: a shipped policy
    certificates: str | None = None  # the certificate store (formal.cli.store); None: none
    relations: str | None = None  # the relation cache; None: none

    def obligation(self, prop: str) -> prove.Obligation:
        return prove.Obligation(self.policy, self.config, (prop,), self.engine, self.bound,
                                self.timeout)

    def lost(self, reason: str, shared_seconds: float | None = None) -> list[Cell]:
        """Every cell of the task as unknown, for reason."""
        return [self.cell(p, "unknown", self.engine, reason, 0.0, shared_seconds)
                for p in self.props]

    def cell(self, prop: str, verdict: str, engine: str, reason: str, seconds: float,
             shared_seconds: float | None, proof: dict | None = None,
             text: str | None = None) -> Cell:
        return {"policy": self.policy, "config": self.config, "property": prop,
                "verdict": verdict, "engine": engine, "reason": reason,
                "seconds": round(seconds, 2),
                "shared_seconds": None if shared_seconds is None else round(shared_seconds, 2),
                "worker": f"{socket.gethostname()}:{os.getpid()}",
                "policy_file": self.policy_file, "proof": proof, "text": text}


# The policy files this worker process has loaded: path -> policy name.
_LOADED_HERE: dict[str, str] = {}


# A Dask worker runs tasks on threads, but pySMT's formula manager and z3's context are one
# per process and not thread-safe: z3 through ctypes lets another thread run while it works,
# and that thread may be Dask's event loop, whose allocations start Python's cyclic garbage
# collection, whose finalizers free z3 terms of an earlier task (Z3_dec_ref) in the middle of
# a z3 call.  Measured: tests/test_matrix.py's Dask test lost a worker to SIGSEGV in
# Z3_mk_not in about 1 run of 5.  So one task at a time per process, and its garbage
# collected in its own thread before the next one starts (which roughly doubles a task's
# peak memory: v6.6 shadow's three houdini cells 215 MB -> 471 MB; the pool's workers run
# tasks on their main thread and keep the collector on).
_ALONE = threading.Lock()


@contextmanager
def _alone() -> Iterator[None]:
    with _ALONE:
        gc.disable()
        try:
            yield
        finally:
            gc.collect()
            gc.enable()


def run_dask_task(task: Task) -> list[Cell]:
    """run_task on a Dask worker's thread: one task at a time (_alone)."""
    with _alone():
        return run_task(task)


def run_task(task: Task) -> list[Cell]:
    """Decide task's cells (in a worker process): the relation built once, then each property
    on it.  An error of the model or of a loaded policy's code makes a cell unknown, named;
    anything else is a bug in flushproof and propagates."""
    if task.policy_file is not None and task.policy_file not in _LOADED_HERE:
        try:
            _LOADED_HERE[task.policy_file] = policies.load_file(task.policy_file)
        except InputError as exc:
            return task.lost(f"the worker could not load the policy file: {exc}")
    t0 = time.perf_counter()
    whole = replace(task.obligation(task.props[0]), props=task.props)
    what = "symbolic execution"
    try:
        rel, _ = prove.load_or_build(whole, Deadline.after(task.timeout), Progress(),
                                     None if task.relations is None else Path(task.relations))
        what = "vacuity"
        enabled = prove.events_enabled(rel, task.bound,
                                       Checker(deadline=Deadline.after(task.timeout), jobs=1))
    except Inconclusive as exc:
        return task.lost(f"{what}: {exc}", time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - named below, or re-raised as a bug
        return task.lost(_failure(exc), time.perf_counter() - t0)
    shared = time.perf_counter() - t0
    cells = []
    for prop in task.props:
        t1 = time.perf_counter()
        try:
            proof = prove.run(task.obligation(prop), jobs=1, rel=rel, enabled=enabled,
                              certificates=None if task.certificates is None
                              else Path(task.certificates))
        except Exception as exc:  # noqa: BLE001 - named below, or re-raised as a bug
            cells.append(task.cell(prop, "unknown", task.engine, _failure(exc),
                                   time.perf_counter() - t1, shared))
            continue
        r = proof.result
        cells.append(task.cell(prop, r.label, r.engine, r.reason, time.perf_counter() - t1,
                               shared, render.proof_json(proof, None),
                               render.proof_text(proof, None)))
    return cells


def _failure(exc: Exception) -> str:
    """The reason a cell is unknown for exc: a model error, or the loaded policy's own code
    failing; any other exception is a bug and is raised again."""
    if isinstance(exc, ModelError):
        return f"model error: {exc}"
    where = policies.blame(exc)
    if where is None:
        raise exc
    return where


Done = Callable[[int], None]  # told how many cells just finished


def on_pool(tasks: Sequence[Task], jobs: int, done: Done) -> list[list[Cell]]:
    """Each task's cells, in order, decided on `jobs` local processes.  A process that dies
    breaks the whole pool, failing every task it had not finished: those run again, each alone
    in a fresh process, `jobs` at a time; a task whose own process dies is unknown."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads (Dask's)
    out: list[list[Cell] | None] = [None] * len(tasks)
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        futures = {pool.submit(run_task, t): i for i, t in enumerate(tasks)}
        for f in as_completed(futures):
            i = futures[f]
            try:
                out[i] = f.result()
            except BrokenProcessPool:
                continue
            done(len(out[i]))
    again = [i for i, cells in enumerate(out) if cells is None]

    def alone(i: int) -> list[Cell]:
        with ProcessPoolExecutor(1, mp_context=ctx) as one:
            try:
                return one.submit(run_task, tasks[i]).result()
            except BrokenProcessPool as exc:
                return tasks[i].lost(f"its worker process died (run again alone in a fresh "
                                     f"process, it died again): {exc}")

    with ThreadPoolExecutor(jobs) as threads:
        for i, cells in zip(again, threads.map(alone, again), strict=True):
            out[i] = cells
            done(len(cells))
    return [cells for cells in out if cells is not None]


def check_scheduler(address: str) -> str:
    """A Dask scheduler address, tcp://HOST:PORT; Malformed otherwise."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        port = None
        parts = None
    if parts is None or parts.scheme != "tcp" or not parts.hostname or port is None \
            or parts.path not in ("", "/"):
        raise Malformed(f"--scheduler {address!r}: expected tcp://HOST:PORT "
                        "(e.g. tcp://127.0.0.1:8786)")
    return address


def on_dask(tasks: Sequence[Task], address: str, done: Done) -> list[list[Cell]]:
    """Each task's cells, in order, decided on the Dask cluster whose scheduler is at address.
    A task whose workers died (the scheduler's allowed-failures, 3 by default) is unknown."""
    try:  # an optional dependency: pip install 'flushproof[dask]'
        from distributed import Client
        from distributed import as_completed as dask_completed
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise Malformed("--scheduler needs Dask distributed: pip install "
                        "'flushproof[dask]' (or 'dask[distributed]')") from None

    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise Malformed(f"--scheduler {address}: cannot connect: {exc}") from None
    out: list[list[Cell]] = [[] for _ in tasks]
    with client:
        futures = {client.submit(run_dask_task, t, pure=False): i for i, t in enumerate(tasks)}
        for f in dask_completed(list(futures)):
            i = futures[f]
            try:
                out[i] = f.result()
            except KilledWorker as exc:
                out[i] = tasks[i].lost(f"its Dask workers died: {exc}")
            done(len(out[i]))
    return out


def summary(cells: Sequence[Cell]) -> dict[str, int]:
    """How many cells have each verdict (bounded(N) counted as bounded)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for c in cells:
        counts[str(c["verdict"]).split("(")[0]] += 1
    return counts


def document(tasks: Sequence[Task], cells: list[Cell], runner: dict[str, object],
             started: datetime, seconds: float, load: float) -> dict[str, object]:
    """The matrix as JSON-able data (formal/cli/schemas/matrix-result.schema.json)."""
    first = tasks[0]
    return {
        "format": FORMAT,
        "policies": list(dict.fromkeys(t.policy for t in tasks)),
        "configs": list(dict.fromkeys(t.config for t in tasks)),
        "properties": list(first.props),
        "engine": first.engine, "bound": first.bound, "timeout": first.timeout,
        "runner": runner, "cores": os.cpu_count() or 1, "load": round(load, 2),
        "started": started.astimezone(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 1), "counts": summary(cells), "cells": cells,
    }


def run(tasks: Sequence[Task], jobs: int | None, scheduler: str | None,
        done: Done) -> dict[str, object]:
    """The matrix of tasks, on the Dask scheduler if one is given, else on `jobs` local
    processes (default: one per core); done hears each batch of finished cells."""
    started = datetime.now(UTC)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    if scheduler is not None:
        per_task = on_dask(tasks, scheduler, done)
        runner: dict[str, object] = {"kind": "dask", "scheduler": scheduler, "jobs": None}
    else:
        jobs = jobs or os.cpu_count() or 1
        per_task = on_pool(tasks, jobs, done)
        runner = {"kind": "pool", "scheduler": None, "jobs": jobs}
    cells = [c for cells in per_task for c in cells]
    return document(tasks, cells, runner, started, time.perf_counter() - t0, load)


def exit_verdict(doc: dict[str, object]) -> Verdict | None:
    """What the matrix's exit status reports: UNKNOWN if any cell is unknown, else BOUNDED if
    any is bounded, else None (every cell decided: a matrix is a report, not a pass/fail)."""
    counts = doc["counts"]
    assert isinstance(counts, dict)
    if counts["unknown"]:
        return Verdict.UNKNOWN
    if counts["bounded"]:
        return Verdict.BOUNDED
    return None
