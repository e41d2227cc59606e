"""Guards of the command line: validated flag types, size estimates, output checks, exit codes.

Every command validates its flags with the type functions here (argparse then names the flag
and the rule), estimates the memory and time of its work from the instance's size with
:func:`estimate` before starting and refuses with :func:`check_size` beyond the limits,
checks ``--out`` before any work and holds its lock for the whole run with :func:`claim_out`
(one writer per output), and ends with one of the :class:`ExitCode` values; ``coordopt.cli``
turns every known failure into one line on stderr.
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import operator
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordopt.sizes import FULL_LP_CELLS

if TYPE_CHECKING:
    import torch

INT64_MAX = 2**63 - 1


class ExitCode(enum.IntEnum):
    """The exit status of ``coordopt``, one per kind of failure (documented in the README)."""

    OK = 0
    SOLVER = 1
    """A solver or study ended without a usable result (infeasible, unbounded, time limit)."""
    USAGE = 2
    """A bad flag, option or input file, or a named file that does not exist (argparse's own
    code too)."""
    DIVERGED = 3
    """Training diverged (non-finite losses or parameters)."""
    TOO_LARGE = 4
    """The size guard refused the work (or memory ran out); ``--force`` overrides the guard."""
    OUTPUT = 5
    """``--out`` refused: it exists (without ``--force``), lies under a file, or is not writable."""
    FILESYSTEM = 6
    """Another file-system error: a missing file, no permission, a full disk."""
    DEVICE = 7
    """The torch device is unknown or not available here."""
    INTERNAL = 70
    """An unexpected error: a bug (``--debug`` shows the traceback)."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""


class SizeError(Exception):
    """The estimated memory or time of a command is beyond its limit."""


class OutputError(Exception):
    """``--out`` cannot be written as asked."""


class DeviceError(Exception):
    """A torch device that is unknown or not available."""


class MissingExtra(ImportError):
    """An optional dependency (an extra such as ``coordopt[torchrl]``) is not installed; the
    message says how to install it. Bad input to the command, like a bad flag."""


# --------------------------------------------------------------------------- flag types


def _number(kind: type, text: str) -> Any:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


@dataclass(frozen=True)
class Range:
    """An allowed range of a number: ``lo <= x <= hi`` (open ends where asked), finite.

    Called on a string it is an argparse ``type`` (raising ``ArgumentTypeError``, which
    argparse reports with the flag's name); :meth:`check` validates an already parsed value.
    """

    kind: type = float
    lo: float = -math.inf
    hi: float = math.inf
    """Upper end; an integer's is at most ``2**63 - 1`` (what numpy and torch can hold)."""
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, text: str) -> Any:
        value = _number(self.kind, text)
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    @property
    def rule(self) -> str:
        parts = []
        hi = min(self.hi, INT64_MAX) if self.kind is int else self.hi
        if self.lo > -math.inf:
            parts.append(f"{'>' if self.lo_open else '>='} {self.lo:g}")
        if hi < math.inf:
            parts.append(f"{'<' if self.hi_open else '<='} {hi:g}")
        return " and ".join(parts) or "finite"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is outside the range (None when it is inside)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.kind is int and not float(value).is_integer():
            return f"must be an integer, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        hi = min(self.hi, INT64_MAX) if self.kind is int else self.hi
        low = value <= self.lo if self.lo_open else value < self.lo
        high = value >= hi if self.hi_open else value > hi
        return f"must be {self.rule}, got {value!r}" if low or high else None

    @property
    def __name__(self) -> str:  # argparse names the type in some messages
        return self.kind.__name__


positive_int = Range(int, lo=1)
"""An integer >= 1 (counts of episodes, environments, products ...)."""
nonneg_int = Range(int, lo=0)
"""An integer >= 0 (iterations, lead times, rounds ...)."""
seed_int = Range(int, lo=0, hi=2**32 - 1)
"""A random seed: an integer in [0, 2**32 - 1] (what every numpy and torch generator takes)."""
threads_int = Range(int, lo=0, hi=1024)
"""CPU threads: 0 (the library's default) to 1024."""
positive_float = Range(float, lo=0.0, lo_open=True)
"""A finite number > 0 (rates, time limits)."""
nonneg_float = Range(float, lo=0.0)
"""A finite number >= 0 (costs, gaps, bonuses)."""
unit_interval = Range(float, lo=0.0, hi=1.0)
"""A number in [0, 1] (shares, probabilities, lambda)."""
finite_float = Range(float)
"""Any finite number."""


DEVICE_TYPES = ("cpu", "cuda")
"""The torch device types coordopt runs on. Not ``mps``: evaluations compute in float64,
which MPS does not support, and training runs on cpu or cuda only."""


def resolve_device(text: str) -> torch.device:
    """The torch device ``text`` names, if coordopt runs on it here: ``cpu``, ``cuda`` or
    ``cuda:N`` (:data:`DEVICE_TYPES`). The one rule for every ``--device`` flag and for
    training.

    A name that is not such a device is bad input (``ValueError``); a supported device that
    is not available here raises :class:`DeviceError` (its own exit code).
    """
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {text!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in DEVICE_TYPES:
        raise ValueError(
            f"device {text!r} is not supported; use cpu, cuda or cuda:N"
            + (" (evaluations compute in float64, which MPS lacks)" if dev.type == "mps" else "")
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {text}: CUDA is not available to torch here; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    return dev


def device_type(text: str) -> str:
    """The argparse type of ``--device``: :func:`resolve_device`'s rule (argparse names the
    flag in a usage error; an unavailable device raises :class:`DeviceError`)."""
    try:
        resolve_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


# --------------------------------------------------------------------------- size guard

SIM_STEP_SECONDS = 5e-4
"""One batched simulated period with the policy's decision (tiny: about 1 ms at load 20)."""
SIM_CELLS_PER_SECOND = 2e9
"""Environment x segment x product periods simulated per second (N=1,000, M=100, B=64:
about 22 M product-periods/s on the development machine)."""
LP_CELL_SECONDS = 4e-6
"""Seconds of one fluid solve per (period, segment, product) cell (``medium``: 0.09 s warm)."""
LP_BYTES_PER_CELL = 200
"""Memory of a fluid program and its plan per (period, segment, product) cell: the solver's
matrix (about ten nonzeros) and the plan's six period x segment x product arrays."""
CATALOG_CELL_SECONDS = 1.5e-6
"""Seconds of the catalog solver per cell (``large``, 5.2 M cells: 2.3 s; 10,000 x 100 x 52,
52 M cells: 65 s to a 0.5% gap)."""
CATALOG_BYTES_PER_CELL = 100
"""Peak memory of the catalog solver per cell (10,000 x 100 x 52: 4.7 GiB)."""
TRAIN_STEP_SECONDS = 0.1
"""One batched training period (rollout and its share of PPO updates; ``small``, 64 envs)."""
TRAIN_CELLS_PER_SECOND = 1.3e7
"""Environment x segment x product x hidden-unit periods trained per second (additive scorer,
``large``: 2.07 env-periods/s); the factorised scorer is 10x faster."""
STORED_BYTES_PER_PRODUCT_PERIOD = 300
"""A stored training environment-period, per product: its observations (about 70 floats)
and order bins (rollouts, and the warm start's labelled states)."""
GRAPH_BYTES_PER_CELL = 46
"""Autograd memory per period x environment x segment x product cell of a backward pass
(factorised scorer; measured while cloning on a 2,500 x 100 x 52 catalog)."""
BYTES_PER_PRODUCT = 5_000
"""Python objects of one product while an instance is built, validated and written (10^5
products: 470 MB peak)."""
SECONDS_PER_PRODUCT = 1.5e-4
"""Building, validating and writing one product (10^5 products: 10-16 s)."""
PROGRAM_STATE_SECONDS = 3e-8
"""Seconds per product, state of its program's cap and period of one sweep of the best siloed
firm's per-product programs (measured 1.6e-9 to 4.7e-8 on ``small``, ``medium``, ``large``
and 10,000 products). Priced at the cap (``max_states``), which most products stay well below
(``large``: 3.5% of the default 1,000,000), so an upper estimate: 10,000 products at the
default cap are refused, ``max_states=4096`` runs."""
LAGRANGIAN_STATE_SECONDS = 1.7e-6
"""The same for the decomposition policy's programs, which choose a demand rate at every
state (measured 1.6e-6 to 2.8e-6 at caps 64 and 256 on ``large`` and 10,000 products; its
defaults, 2,048 states and 30 iterations, are priced at 1.6 h on ``large``, where they fill
42% of the cap)."""
MEMORY_LIMIT = 8 * 2**30
"""Bytes a command may plan to use without ``--force``."""
TIME_LIMIT = 3600.0
"""Seconds a command may plan to run without ``--force``."""


@dataclass(frozen=True)
class Estimate:
    """What a command's work will cost, from the instance's size (rates of the development
    machine, so an order of magnitude, not a promise)."""

    size: str
    """The sizes the estimate comes from, in words."""
    memory: float
    """Peak bytes."""
    seconds: float
    """Wall time."""
    lp_cells: int = 0
    """Cells of the largest full fluid program solved (0: none)."""


def estimate(
    horizon: int,
    segments: int,
    products: int,
    *,
    episodes: int = 0,
    batch: int = 1,
    recorded: bool = False,
    agent_hidden: int = 0,
    lp_solves: int = 0,
    catalog_solve: bool = False,
    program_seconds: float = 0.0,
    train_iterations: int = 0,
    train_envs: int = 0,
    stored_envs: int = 0,
    graph_cells: int = 0,
    hidden: int = 0,
    factorised: bool = False,
) -> Estimate:
    """The memory and time of simulating, solving or training on a T x M x N instance.

    ``episodes`` simulated ``batch`` at a time (``recorded``: every period's flows kept, as
    the insights do; ``agent_hidden``: the width of trained agents acting, whose additive
    slate scorer holds a batch x segments x products x width tensor); ``lp_solves`` full-horizon fluid programs
    (the fluid plan: 1; MPC: one per period and episode); ``catalog_solve``: the fluid program
    solved by the catalog solver (``solve --method decompose``, bid-price control, the plan
    agents observe); ``program_seconds`` per product and period of per-product programs
    (:class:`PolicyWork`); ``train_iterations`` PPO iterations
    over ``train_envs`` environments with ``hidden``-wide networks, after a warm start that
    keeps ``stored_envs`` labelled episodes, with backward passes of at most ``graph_cells`` cells
    (default: one period of every environment). Every count is a Python
    int, so absurd sizes are estimated exactly and refused at once.
    """
    t, m, n = int(horizon), int(segments), int(products)
    cells = t * m * n
    memory = 8 * (4 * m * n + t * m + 16 * n) + BYTES_PER_PRODUCT * (n + m)
    seconds = SECONDS_PER_PRODUCT * (n + m)
    parts = [f"{t:,} periods x {m:,} segments x {n:,} products"]
    if episodes:
        b = max(1, min(int(batch), int(episodes)))
        memory += 8 * 16 * b * (n + m)
        seconds += -(-int(episodes) // b) * t * SIM_STEP_SECONDS
        seconds += int(episodes) * cells / SIM_CELLS_PER_SECOND
        if recorded:
            memory += 8 * 8 * int(episodes) * t * (n + m)
        if agent_hidden:
            memory += 4 * 4 * b * m * n * int(agent_hidden)
            seconds += 3 * int(episodes) * cells * int(agent_hidden) / TRAIN_CELLS_PER_SECOND / 10
        parts.append(f"{int(episodes):,} episodes, {b:,} at once")
    if lp_solves:
        memory += LP_BYTES_PER_CELL * cells
        seconds += int(lp_solves) * cells * LP_CELL_SECONDS
        parts.append(f"{int(lp_solves):,} fluid solve(s)")
    elif catalog_solve:
        memory += CATALOG_BYTES_PER_CELL * cells
    if catalog_solve:
        seconds += cells * CATALOG_CELL_SECONDS
        parts.append("the catalog solver")
    if program_seconds:
        seconds += n * t * float(program_seconds)
        parts.append("per-product programs")
    if train_iterations:
        per_cell = 1 if factorised else max(1, int(hidden))
        graph = int(graph_cells) or int(train_envs) * m * n
        memory += GRAPH_BYTES_PER_CELL * per_cell * graph
        # the warm start's labelled states are freed before the first PPO rollout
        memory += STORED_BYTES_PER_PRODUCT_PERIOD * t * n * max(int(train_envs), int(stored_envs))
        rate = TRAIN_CELLS_PER_SECOND * (10 if factorised else 1)
        seconds += int(train_iterations) * t * TRAIN_STEP_SECONDS
        seconds += int(train_iterations) * int(train_envs) * cells * max(1, int(hidden)) / rate
        parts.append(f"{int(train_iterations):,} iterations x {int(train_envs):,} environments")
    return Estimate(", ".join(parts), memory, seconds, cells if lp_solves else 0)


@dataclass(frozen=True)
class PolicyWork:
    """What simulating a policy adds to a command's workload: each policy's registry entry
    declares it (:data:`coordopt.policies.POLICY_ENTRIES`), :func:`estimate` prices it."""

    setup_lp_solves: int = 0
    """Full fluid solves when the policy is made (the fluid plan: one)."""
    lp_solves_per_decision: int = 0
    """Full fluid solves per period of every episode (MPC: one)."""
    catalog_solve: bool = False
    """The catalog solver's solve of the fluid program (bid-price control)."""
    program_states: int = 0
    """The state cap of each product's program (0: none): per-product programs, solved when
    the policy is made; their cost grows with products x states."""
    program_sweeps: int = 1
    """Times the per-product programs are swept (the decomposition policy: its iterations and
    the final solve)."""
    state_seconds: float = PROGRAM_STATE_SECONDS
    """Seconds per product, state, sweep and period of those programs."""
    agent_hidden: int = 0
    """The width of a trained agent's additive slate scorer."""

    def workload(self, episodes: int, horizon: int) -> dict[str, Any]:
        """The keywords of :func:`estimate` for ``episodes`` episodes of ``horizon`` periods,
        those that are zero left out."""
        work = {
            "lp_solves": self.setup_lp_solves + self.lp_solves_per_decision * episodes * horizon,
            "catalog_solve": int(self.catalog_solve),
            "program_seconds": self.program_states * self.program_sweeps * self.state_seconds,
            "agent_hidden": self.agent_hidden,
        }
        return {key: value for key, value in work.items() if value}


def total_workload(works: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The workload of simulating several policies one after another: their solves and
    programs add up; the memory of the widest agent and of one catalog solve is held once."""
    total: dict[str, Any] = {}
    for work in works:
        for key, value in work.items():
            keep = max if key in ("agent_hidden", "catalog_solve") else operator.add
            total[key] = keep(total.get(key, 0), value)
    return total


def _amount(value: float, unit: str) -> str:
    if unit == "B":
        for name, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
            if value >= scale:
                return f"{value / scale:,.1f} {name}"
        return f"{value / 2**10:,.1f} KiB"
    if value >= 86_400:
        return f"{value / 86_400:,.1f} days"
    if value >= 3600:
        return f"{value / 3600:,.1f} h"
    return f"{value:,.0f} s"


def check_size(est: Estimate, *, force: bool, way_out: str, what: str = "to run") -> None:
    """Refuse ``est`` beyond the memory, time or full-LP limits unless ``force``.

    ``what`` completes "refused ...", e.g. "to solve large". The message names the size,
    the estimate, the limit and ``way_out`` (what to change), and that ``--force`` runs it
    anyway.
    """
    if force:
        return
    over = []
    if est.lp_cells > FULL_LP_CELLS:
        over.append(
            f"the full fluid program has {est.lp_cells:,} period-segment-product cells "
            f"(limit {FULL_LP_CELLS:,})"
        )
    if est.memory > MEMORY_LIMIT:
        over.append(
            f"it needs about {_amount(est.memory, 'B')} of memory "
            f"(limit {_amount(MEMORY_LIMIT, 'B')})"
        )
    if est.seconds > TIME_LIMIT:
        over.append(
            f"it takes about {_amount(est.seconds, 's')} (limit {_amount(TIME_LIMIT, 's')})"
        )
    if over:
        raise SizeError(
            f"refused {what} ({est.size}): {'; '.join(over)}; {way_out}, or pass --force"
        )


# --------------------------------------------------------------------------- outputs


def check_out(path: str | Path, *, folder: bool, force: bool, flag: str = "--out") -> Path:
    """Check before any work that ``path`` can be written; return it.

    Refused (:class:`OutputError`): a path under a file; a file where a folder is wanted or
    the reverse; an existing file, or a non-empty folder (coordopt's lock files, named
    ``*``:data:`LOCK_NAME`, do not count), unless ``force``; a location whose nearest existing folder is not
    writable. Nothing is created; commands call :func:`claim_out`, which checks under the
    output's lock.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputError(f"{flag} {path}: is a file, not a folder")
        if not folder and path.is_dir():
            raise OutputError(f"{flag} {path}: is a folder, not a file")
        if not force and (
            not folder or any(not p.name.endswith(LOCK_NAME) for p in path.iterdir())
        ):
            what = "the folder is not empty" if folder else "the file exists"
            fix = "write into it" if folder else "replace it"
            raise OutputError(f"{flag} {path}: {what}; pass --force to {fix}")
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: {parent} is not writable")
    return path


def add_force_flag(p: argparse.ArgumentParser, what: str) -> None:
    """``--force``: run beyond the size guard and replace an existing output."""
    p.add_argument(
        "--force",
        action="store_true",
        help=f"run beyond the size guard's limits and {what}",
    )


# --------------------------------------------------------------------------- one writer per output

LOCK_NAME = ".coordopt.lock"
"""The lock file of a folder output, inside it (a file output's is ``.NAME.coordopt.lock``
beside it)."""


def lock_file(path: str | Path, *, folder: bool) -> Path:
    """Where the lock of the output ``path`` lives: ``DIR/.coordopt.lock`` for a folder, the
    sibling ``.NAME.coordopt.lock`` for a file. It depends on the path only, so every writer of one
    output meets at one lock whether or not the output exists yet."""
    path = Path(path)
    return path / LOCK_NAME if folder else path.with_name(f".{path.name}{LOCK_NAME}")


def _holder() -> dict[str, Any]:
    """Who writes: recorded in the lock file for a refused second writer to print."""
    import shlex
    import socket
    import time

    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": shlex.join(argv),
    }


def _describe_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        info = json.loads(os.read(fd, 4096).decode())
        return (
            f"pid {int(info['pid'])} on {info['host']}, started {info['started']}: "
            f"{info['command']}"
        )
    except (OSError, ValueError, TypeError, KeyError):
        return "its pid and command are not recorded yet"


@dataclass
class OutputLock:
    """An exclusive ``flock`` on an output's lock file, held by this process until
    :meth:`release` (or until the process ends, when the kernel drops it: the lock file a
    crash leaves behind holds no lock, and the next writer takes it over).

    Claims of one output in one thread nest (a study claimed by ``reproduce`` and again by
    ``run_study``): the lock goes when the outermost claim ends. Another thread, like another
    process, is a second writer.
    """

    output: Path
    file: Path
    fd: int
    made: list[Path]
    """Folders created to hold the lock file (outermost first); removed again if still empty
    when the lock goes, so a refused or failed run leaves nothing behind."""
    thread: int
    """The thread that holds it (claims nest within it)."""
    claims: int = 1

    def release(self) -> None:
        """End one claim; the last removes the lock file, drops the lock and the folders made
        for it that are still empty."""
        self.claims -= 1
        if self.claims > 0 or self.fd < 0:
            return
        _HELD.pop((self.thread, self.file), None)
        try:  # unlinked while still locked: a writer that opened it re-checks and retries
            if os.path.samestat(os.fstat(self.fd), os.stat(self.file)):
                self.file.unlink()
        except OSError:
            pass
        os.close(self.fd)
        self.fd = -1
        _remove_empty(self.made)


_HELD: dict[tuple[int, Path], OutputLock] = {}
"""This process's output locks, by thread and lock file."""


def _cannot_create(flag: str, path: Path, where: Path, exc: OSError) -> OutputError:
    """The refusal of an output whose location takes no new files or folders."""
    reason = exc.strerror or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and where.parent.is_dir():
        reason = "the file system there takes no new files"  # /proc, /sys
    return OutputError(f"{flag} {path}: cannot create {where} ({reason}); choose another location")


def _make_folders(folder: Path, flag: str, output: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    for f in reversed(missing):
        try:
            f.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_empty(made)
            raise _cannot_create(flag, output, f, exc) from None
        made.append(f)
    return made


def lock_output(path: str | Path, *, folder: bool, flag: str = "--out") -> OutputLock:
    """Take the exclusive lock of the output ``path`` (:func:`lock_file`) at once, or refuse
    (:class:`OutputError`) naming the run that holds it: its pid, host, start and command,
    which the holder writes into the lock file."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock
        fcntl = None  # type: ignore[assignment]
    path = Path(path)
    target = lock_file(path, folder=folder)
    key = target.absolute()
    held = _HELD.get((threading.get_ident(), key))
    if held is not None:
        held.claims += 1
        return held
    made: list[Path] = []
    for _ in range(20):  # retries only while a releasing holder removes the file under us
        made += _make_folders(target.parent, flag, path)
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError as exc:
            if not target.parent.is_dir():
                continue  # the folder went with a holder that just finished
            _remove_empty(made)
            raise _cannot_create(flag, path, target, exc) from None
        except OSError as exc:
            _remove_empty(made)
            raise _cannot_create(flag, path, target, exc) from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            _remove_empty(made)
            raise OutputError(
                f"{flag} {path}: another coordopt run is writing it ({holder}); wait for it "
                f"to end or choose another {flag} (its lock file: {target})"
            ) from None
        except OSError as exc:  # a file system without locks: write unprotected, say so
            print(
                f"coordopt: note: {flag} {path}: cannot lock {target} "
                f"({exc.strerror}); a second writer would not be stopped",
                file=sys.stderr,
            )
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(target))
        except FileNotFoundError:
            same = False
        if not same:  # a finishing holder unlinked it after we opened it: take the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)  # a crashed holder's record is replaced by ours
        os.write(fd, (json.dumps(_holder()) + "\n").encode())
        lock = OutputLock(path, key, fd, made, threading.get_ident())
        _HELD[lock.thread, key] = lock
        return lock
    raise OutputError(f"{flag} {path}: its lock file {target} keeps changing; try again")


def _remove_empty(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


_CLAIMS: ContextVar[list[OutputLock] | None] = ContextVar("coordopt_claims", default=None)


@contextmanager
def output_claims() -> Iterator[None]:
    """The scope of a command's run: every output claimed inside (:func:`claim_out`) is
    released when it ends, however it ends. A claim outside any scope is held until the
    process ends."""
    claims: list[OutputLock] = []
    token = _CLAIMS.set(claims)
    try:
        yield
    finally:
        _CLAIMS.reset(token)
        for lock in reversed(claims):
            lock.release()


def claim_out(
    path: str | Path, *, folder: bool, force: bool, flag: str = "--out", reuse: bool = False
) -> Path:
    """:func:`check_out` under the output's exclusive lock, held for the rest of the run
    (:func:`output_claims`): one writer per output. A second run writing the same output is
    refused at once, naming the first; an existing output is judged under the lock, so two
    runs started together cannot both find it absent. ``reuse``: an existing output is
    continued (``train --resume``, a study's folder, ``demo``'s runs), not refused.
    Before the lock, the path is checked for what would make the lock fail (under a file, a
    file where a folder is wanted, not writable), so those keep their messages."""
    path = check_out(path, folder=folder, force=True, flag=flag)
    lock = lock_output(path, folder=folder, flag=flag)
    scope = _CLAIMS.get()
    if scope is not None:
        scope.append(lock)
    try:
        return check_out(path, folder=folder, force=force or reuse, flag=flag)
    except BaseException:
        if scope is not None:
            scope.remove(lock)
        lock.release()
        raise
