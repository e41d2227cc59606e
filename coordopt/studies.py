"""Case-study runner: a grid of cells, run in parallel, resumable, reported.

A study lives in ``case_studies/<name>/``: ``config.toml`` (its grids: ``[quick]`` and
``[full]``) and ``runner.py`` with three functions:

- ``cells(config: dict) -> list[dict]`` -- the grid, one JSON-able dict of parameters per
  cell (instance x method x seed, ...);
- ``run_cell(params: dict, workdir: Path) -> dict`` -- runs one cell and returns JSON-able
  results; ``workdir`` (``OUT/work/<cell key>``) holds what the cell writes on the way
  (training runs, which resume from their checkpoints after an interruption);
- ``report(results: list[dict], config: dict, out: Path) -> Path`` -- writes the Markdown
  report with its tables, PNG figures and CSV data, and returns the report's path.

:func:`run_study` stores every finished cell as ``cells/<key>.json`` (atomically), so an
interrupted run resumes where it stopped and never recomputes a finished cell. Cells run
on a local process pool by default, or on a Ray cluster (``backend="ray"``; ``address``
points at an existing cluster, none starts a local one) -- the study code is the same.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import socket
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from tqdm import tqdm

from coordopt.guards import claim_out, output_claims
from coordopt.io import atomic_write_text

STUDIES_PACKAGE = "coordopt.case_studies"


class CellFailed(RuntimeError):
    """A cell raised; finished cells are kept, so a re-run resumes after the fix."""


def study_names() -> list[str]:
    """The studies shipped in ``case_studies/``."""
    root = Path(importlib.import_module(STUDIES_PACKAGE).__path__[0])
    return sorted(p.name.replace("_", "-") for p in root.iterdir() if (p / "runner.py").is_file())


def _module(name: str) -> Any:
    if name not in study_names():
        raise ValueError(f"unknown study '{name}'; available: {', '.join(study_names())}")
    return importlib.import_module(f"{STUDIES_PACKAGE}.{name.replace('-', '_')}.runner")


def load_config(name: str, quick: bool) -> dict[str, Any]:
    """The study's ``[quick]`` or ``[full]`` grid from its ``config.toml``."""
    path = (
        Path(importlib.import_module(STUDIES_PACKAGE).__path__[0])
        / name.replace("-", "_")
        / "config.toml"
    )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: malformed TOML: {exc}") from None
    section = "quick" if quick else "full"
    if section not in data:
        raise ValueError(f"{path}: missing table [{section}]")
    return {**data.get("common", {}), **data[section], "study": name, "quick": quick}


def cell_key(params: dict[str, Any]) -> str:
    """A readable, stable file name for a cell."""
    text = json.dumps(params, sort_keys=True)
    label = "_".join(
        f"{k}-{v}" for k, v in sorted(params.items()) if isinstance(v, (str, int, float))
    )
    label = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:80]
    return f"{label}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def read_cell(path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The finished cell ``params`` stored in ``path`` by an earlier run. Cells are written
    atomically, so one that does not read back as this cell's record (not JSON, another
    cell's parameters, fields missing) was damaged or put there by something else: it is
    refused (``ValueError``) naming the file, never silently recomputed or reported."""
    try:
        rec = json.loads(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        problem = f"not a readable JSON cell record ({type(exc).__name__})"
    else:
        if not isinstance(rec, dict) or not {"params", "result", "seconds"} <= set(rec):
            problem = "not a cell record (expected the fields params, result and seconds)"
        elif rec["params"] != json.loads(json.dumps(params)):
            problem = "the record of another cell (its params differ from this cell's)"
        elif isinstance(rec["seconds"], bool) or not isinstance(rec["seconds"], (int, float)):
            problem = f"its 'seconds' is {rec['seconds']!r}, not a number"
        else:
            return rec
    raise ValueError(
        f"study cell {path}: {problem}; delete the file to recompute the cell "
        "(the study's other finished cells are kept)"
    )


def _run_cell(module_name: str, params: dict[str, Any], workdir: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    module = importlib.import_module(module_name)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        out = module.run_cell(params, Path(workdir))
    except Exception as exc:
        raise CellFailed(
            f"cell {cell_key(params)} ({json.dumps(params)}) failed: {type(exc).__name__}: {exc}"
        ) from exc
    return {"params": params, "result": out, "seconds": time.perf_counter() - t0}


def _run_serial(
    module_name: str, todo: list[tuple[dict[str, Any], str]], done: Callable[[dict[str, Any]], None]
) -> None:
    for params, workdir in todo:
        done(_run_cell(module_name, params, workdir))


def _run_pool(
    module_name: str,
    todo: list[tuple[dict[str, Any], str]],
    done: Callable[[dict[str, Any]], None],
    workers: int,
) -> None:
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        pending: set[Future[dict[str, Any]]] = {
            pool.submit(_run_cell, module_name, p, w) for p, w in todo
        }
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                done(fut.result())


RAY_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a Ray head to answer at ``--address`` (Ray itself retries forever)."""
RAY_CONNECT_ATTEMPTS = 2
"""Attempts of ``ray.init`` to reach an existing head's GCS (about 30 s each; Ray's default
of 20 suits a head still starting, not one that should be running)."""


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT) -> None:
    """Refuse (``ValueError``), within ``timeout`` seconds, an ``--address`` where no Ray head
    answers: ``HOST:PORT`` (the head's GCS port) or ``ray://HOST:PORT`` (Ray Client) must
    accept a connection; ``auto`` and ``local`` are Ray's own to resolve."""
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--address {address!r}: expected HOST:PORT of a Ray head (or ray://HOST:PORT, auto)"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(
            f"--address {address}: no Ray head answers there within {timeout:g} s "
            f"({exc.strerror or type(exc).__name__}); start one with `ray start --head`, check "
            "the address, or run without --address (a local cluster)"
        ) from None


def _connect_ray(ray: Any, address: str) -> None:
    """``ray.init(address=...)`` that gives up with a clear error (``ValueError``) instead of
    retrying for minutes: the head must answer (:func:`check_ray_address`) and its GCS within
    :data:`RAY_CONNECT_ATTEMPTS` attempts (unless ``RAY_gcs_server_port_wait_time_s`` is set)."""
    check_ray_address(address)
    key = "RAY_gcs_server_port_wait_time_s"
    given = os.environ.get(key)
    if given is None:
        os.environ[key] = str(RAY_CONNECT_ATTEMPTS)
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise ValueError(
            f"--address {address}: cannot connect to a Ray cluster there "
            f"({' '.join(str(exc).split())[:200]}); check that it is a Ray head's address "
            "(`ray status` on the head prints it)"
        ) from None
    finally:
        if given is None:
            os.environ.pop(key, None)


def _run_ray(
    module_name: str,
    todo: list[tuple[dict[str, Any], str]],
    done: Callable[[dict[str, Any]], None],
    workers: int,
    address: str | None,
) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'coordopt[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            _connect_ray(ray, address)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(_run_cell)
        pending = [remote.remote(module_name, p, w) for p, w in todo]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                done(ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def run_study(
    name: str,
    out: Path,
    quick: bool = False,
    backend: str = "process",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    only: Iterable[str] = (),
) -> Path:
    """Run (or resume) study ``name`` into ``out`` and write its report; returns the report path.

    One writer per study folder: ``out`` is locked while the study runs (:func:`claim_out`;
    ``reproduce`` holds the same lock), so a second run into it is refused at once
    (:class:`~coordopt.guards.OutputError`, naming the first) instead of doubling its logs.
    """
    with output_claims():
        claim_out(out, folder=True, force=True, flag="study folder")
        return _run_study(name, Path(out), quick, backend, workers, address, progress, only)


def _run_study(
    name: str,
    out: Path,
    quick: bool,
    backend: str,
    workers: int | None,
    address: str | None,
    progress: bool,
    only: Iterable[str],
) -> Path:
    module = _module(name)
    config = load_config(name, quick)
    out = Path(out)
    cell_dir = out / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    grid = module.cells(config)
    todo: list[tuple[dict[str, Any], str]] = []
    results: dict[str, dict[str, Any]] = {}
    for params in grid:
        key = cell_key(params)
        path = cell_dir / f"{key}.json"
        if path.exists():
            results[key] = read_cell(path, params)
            continue
        todo.append((params, str((out / "work" / key).resolve())))
    workers = workers or max(1, min(len(todo), os.cpu_count() or 1))
    bar = tqdm(
        total=len(grid),
        initial=len(grid) - len(todo),
        desc=f"study {name}",
        unit="cell",
        disable=not progress,
        delay=0.5,
    )

    def done(rec: dict[str, Any]) -> None:
        key = cell_key(rec["params"])
        atomic_write_text(cell_dir / f"{key}.json", json.dumps(rec, indent=1))
        results[key] = rec
        bar.update(1)

    try:
        if not todo:
            pass
        elif backend == "serial" or (backend == "process" and workers == 1):
            _run_serial(module.__name__, todo, done)
        elif backend == "process":
            _run_pool(module.__name__, todo, done, workers)
        elif backend == "ray":
            _run_ray(module.__name__, todo, done, workers, address)
        else:
            raise ValueError(f"unknown backend '{backend}': use process, ray or serial")
    finally:
        bar.close()
    ordered = [results[cell_key(p)] for p in grid]
    report = module.report(ordered, config, out)
    atomic_write_text(
        out / "manifest.json",
        json.dumps(
            {
                "study": name,
                "quick": quick,
                "cells": len(grid),
                "backend": backend,
                "cell_seconds": sum(r["seconds"] for r in ordered),
                "report": str(Path(report).name),
            },
            indent=1,
        ),
    )
    return Path(report)
