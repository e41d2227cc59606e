"""Run directories: their files declared once, written atomically, read as untrusted input.

A run directory -- coordopt's agents (``coordopt train --out DIR``) or a TorchRL peer
(``--algorithm mappo|ippo``; it holds ``peer.json``) -- is one :class:`RunDir`: the trainers
write it through the training lifecycle (:mod:`coordopt.rl.lifecycle`), and the policies'
loaders, resume and the studies read it. It is what users share, so it is read like any input
file, and every refusal names the file:

- only the files its kind declares (:class:`RunKind`), each a regular file inside the
  directory (a link that leaves it, a device or a FIFO is refused) of bounded size;
- JSON of bounded size and nesting, every field of its declared type and range
  (:class:`Fields`, with :class:`~coordopt.guards.Range` rules);
- checkpoints: zip archives as ``torch.save`` writes them, whose entries' sizes are checked
  from the zip's central directory before any is read (:data:`MAX_CHECKPOINT_BYTES`), read
  with ``torch.load(weights_only=True)`` (tensors and plain data, never code); every tensor
  within its storage; weights finite, floating point, of the shapes and dtypes that the run's
  own configuration declares (:func:`check_weights`, against the networks built on the
  ``meta`` device, which allocates nothing), and those networks within
  :data:`MAX_NETWORK_BYTES` before any is built (:func:`check_network_size`).

Bad files raise :class:`CheckpointError` (a ``ValueError``: the command line's exit 2); networks
beyond the size limit :class:`~coordopt.guards.SizeError` (exit 4).
"""

from __future__ import annotations

import csv
import json
import os
import stat
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from coordopt.guards import Range, SizeError, finite_float, nonneg_float, nonneg_int
from coordopt.io import atomic_write, atomic_write_text
from coordopt.policies import PEER_ENTRY
from coordopt.text import clip

BEST = "best.pt"
"""The policy of the best greedy evaluation (the one a run directory stands for)."""
FINAL = "final.pt"
"""The policy at the end of training."""
CHECKPOINT = "checkpoint.pt"
"""Everything an agents' run needs to resume bit for bit."""
CONFIG = "config.json"
"""An agents' run's training configuration (written first)."""
PEER_META = PEER_ENTRY.marker
"""A peer's format, configuration and instance (written first; names the kind, and makes
:func:`coordopt.policies.make_policy` load the directory as a peer's:
:data:`~coordopt.policies.PEER_ENTRY` declares its name)."""
SUMMARY = "summary.json"
"""What a finished run reports (written last)."""
LOG = "log.csv"
"""One row per iteration (:data:`coordopt.rl.lifecycle.COLUMNS`)."""
TENSORBOARD = "tb"
"""TensorBoard's folder of scalars (when enabled and installed)."""

MAX_JSON_BYTES = 16 * 2**20
"""Largest JSON file of a run (a summary or config is a few kilobytes)."""
MAX_NESTING = 32
"""Deepest nesting of JSON objects and lists, and of the containers in a checkpoint (what
coordopt writes is at most six deep)."""
MAX_CHECKPOINT_BYTES = 2**30
"""Largest checkpoint: its file, and the sum of its zip entries' sizes once read, checked from
the zip's central directory before any entry is read (coordopt's agents take a few megabytes;
a peer's networks grow with the catalog, about 0.2 GiB on ``large``)."""
MAX_PICKLE_BYTES = 64 * 2**20
"""Largest pickled structure (``data.pkl``) of a checkpoint: the names and plain data around
its tensors."""
MAX_NETWORK_BYTES = MAX_CHECKPOINT_BYTES
"""Largest weights a run's configuration may describe: networks that could not be saved in a
checkpoint cannot be loaded from one, and are refused before they are built."""
MAX_LAYERS = 256
"""Deepest MLP a peer's configuration may describe (the reader builds the declared networks,
without memory, to learn their shapes)."""


class CheckpointError(ValueError):
    """A file that is not a coordopt checkpoint, or a run that does not match the request."""


def refuse(path: Path | str, what: str) -> CheckpointError:
    """``CheckpointError("{path}: {what}; refused")``."""
    return CheckpointError(f"{path}: {what}; refused")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters."""
    text = str(exc).strip().splitlines()
    return clip(text[0] if text else type(exc).__name__, limit)


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile value is not echoed whole)."""
    return clip(repr(value), limit)


# --------------------------------------------------------------------------- kinds and files


@dataclass(frozen=True)
class RunKind:
    """What one kind of run directory holds: the checkpoints a policy is loaded from, in
    order of preference; the JSON file of its configuration and the rule it is read with;
    the rule of its summary. Nothing else is opened as input."""

    name: str
    checkpoints: tuple[str, ...]
    config: str
    config_rule: Any
    summary_rule: Any

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.checkpoints, self.config, SUMMARY)


def run_kind(run_dir: Path) -> RunKind:
    """The kind of the run in ``run_dir`` (a peer's holds ``peer.json``)."""
    return PEER_RUN if os.path.lexists(Path(run_dir) / PEER_META) else AGENTS_RUN


def _regular(path: Path, limit: int) -> None:
    """Refuse a path that is not a regular file of at most ``limit`` bytes."""
    try:
        info = path.stat()
    except OSError as exc:
        raise refuse(path, f"cannot be read ({first_line(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        raise refuse(path, "not a regular file (a folder, device, FIFO or socket)")
    if info.st_size > limit:
        raise refuse(path, f"{info.st_size:,} bytes, more than such a file may have ({limit:,})")


def run_file(run_dir: Path, name: str, kind: RunKind | None = None) -> Path:
    """``run_dir / name``, one of the files ``kind`` declares, checked: inside the directory
    (no link out), a regular file. ``FileNotFoundError`` when absent."""
    run_dir = Path(run_dir)
    kind = kind or run_kind(run_dir)
    if name not in kind.files:
        raise CheckpointError(
            f"{run_dir}: a {kind.name} run directory holds only {', '.join(kind.files)}; "
            f"{show(name)} is not read"
        )
    file = run_dir / name
    if not os.path.lexists(file):
        raise FileNotFoundError(f"{file}: no such file in the run directory")
    if file.resolve().parent != run_dir.resolve():
        raise CheckpointError(f"{file}: links out of the run directory; refused")
    if not file.exists():
        raise FileNotFoundError(f"{file}: a link to a file that does not exist")
    _regular(file, MAX_CHECKPOINT_BYTES if name.endswith(".pt") else MAX_JSON_BYTES)
    return file


def choose_checkpoint(run_dir: Path, name: Any = None, kind: RunKind | None = None) -> Path:
    """The checkpoint a policy loads: ``name`` (one of the kind's checkpoints; never another
    path) or the first of them present."""
    run_dir = Path(run_dir)
    kind = kind or run_kind(run_dir)
    if name is not None and name not in kind.checkpoints:
        raise CheckpointError(
            f"checkpoint={show(name)}: must be one of {', '.join(kind.checkpoints)} "
            f"(a checkpoint of the run directory {run_dir}); other paths are not loaded"
        )
    names = [name] if name is not None else list(kind.checkpoints)
    for fname in names:
        if os.path.lexists(run_dir / fname):
            return run_file(run_dir, fname, kind)
    raise FileNotFoundError(
        f"{run_dir}: no {' or '.join(names)}; is this a `coordopt train --out` "
        "directory, and did training save a checkpoint?"
    )


# --------------------------------------------------------------------------- JSON


@dataclass(frozen=True)
class Fields:
    """A JSON object: each key's rule -- a :class:`~coordopt.guards.Range`, a type (``str``,
    ``bool``, ``dict`` for an object read elsewhere), ``NUMBER``, :class:`Maybe`,
    :class:`MapOf` or another :class:`Fields`. Keys in ``optional`` may be absent; keys
    not declared are refused unless ``open``."""

    rules: Mapping[str, Any]
    optional: frozenset[str] = field(default_factory=frozenset)
    open: bool = False


@dataclass(frozen=True)
class MapOf:
    """A JSON object with any (string) keys, each value under ``rule``."""

    rule: Any


@dataclass(frozen=True)
class ListOf:
    """A JSON list, each item under ``rule``."""

    rule: Any


@dataclass(frozen=True)
class Maybe:
    """``null`` or a value under ``rule``."""

    rule: Any


NUMBER = "number"
"""Any JSON number (NaN and infinities included: a figure that was not measured)."""


def _problem(value: Any, rule: Any) -> tuple[str, Any] | None:
    """``(what is wrong, where below)`` of ``value`` under ``rule``, or ``None``."""
    if isinstance(rule, Maybe):
        return None if value is None else _problem(value, rule.rule)
    if isinstance(rule, Range):
        problem = rule.problem(value)
        return (problem, ()) if problem else None
    if rule == NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else (f"must be a number, got {show(value)}", ())
    if isinstance(rule, type):
        ok = isinstance(value, rule) and not (rule is not bool and isinstance(value, bool))
        noun = {str: "a string", bool: "true or false", dict: "an object", list: "a list"}
        return None if ok else (f"must be {noun.get(rule, rule.__name__)}, got {show(value)}", ())
    if isinstance(rule, MapOf):
        if not isinstance(value, dict):
            return f"must be an object, got {show(value)}", ()
        for key, item in value.items():
            found = _problem(item, rule.rule)
            if found:
                return found[0], (key, *found[1])
        return None
    if isinstance(rule, ListOf):
        if not isinstance(value, list):
            return f"must be a list, got {show(value)}", ()
        for index, item in enumerate(value):
            found = _problem(item, rule.rule)
            if found:
                return found[0], (index, *found[1])
        return None
    if isinstance(rule, Fields):
        if not isinstance(value, dict):
            return f"must be an object, got {show(value)}", ()
        missing = [k for k in rule.rules if k not in value and k not in rule.optional]
        if missing:
            return f"lacks {', '.join(missing)}", ()
        extra = [k for k in value if k not in rule.rules]
        if extra and not rule.open:
            return f"has unknown keys {show(extra)}", ()
        for key, sub in rule.rules.items():
            if key in value:
                found = _problem(value[key], sub)
                if found:
                    return found[0], (key, *found[1])
        return None
    raise TypeError(f"not a rule: {rule!r}")


def check_json(path: Path | str, data: Any, rule: Any, what: str = "") -> None:
    """Refuse ``data`` (JSON read from ``path``) outside ``rule``, naming the field."""
    found = _problem(data, rule)
    if found:
        problem, where = found
        name = ".".join(str(k) for k in where)
        subject = f"field '{name}'" if name else "its content"
        raise refuse(path, f"{what}{subject} {problem}")


def nesting(data: Any) -> int:
    """How deep the dicts, lists and tuples of ``data`` nest (iterative: any depth)."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, (list, tuple)):
            deepest = max(deepest, depth + 1)
            if depth + 1 > MAX_NESTING:
                return depth + 1
            stack.extend((x, depth + 1) for x in item)
    return deepest


def parse_json(text: str | bytes, where: Path | str) -> Any:
    """JSON text parsed with its nesting bounded (:data:`MAX_NESTING`)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise refuse(where, f"JSON nested more than {MAX_NESTING} deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise refuse(where, f"not valid JSON ({first_line(exc)})") from None
    if nesting(data) > MAX_NESTING:
        raise refuse(where, f"JSON nested more than {MAX_NESTING} deep")
    return data


def read_json(run_dir: Path, name: str, rule: Any, kind: RunKind | None = None) -> Any:
    """The JSON file ``name`` of a run directory, read and checked against ``rule``."""
    path = run_file(run_dir, name, kind)
    with path.open("rb") as fh:
        raw = fh.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise refuse(path, f"more than {MAX_JSON_BYTES:,} bytes")
    data = parse_json(raw, path)
    check_json(path, data, rule)
    return data


@contextmanager
def reading(path: Path | str, what: str) -> Iterator[None]:
    """Turn a failure to build something from a file's values into a refusal naming it."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise refuse(path, f"{what} ({first_line(exc)})") from None


# --------------------------------------------------------------------------- checkpoints


def _check_zip(path: Path) -> None:
    """Refuse a file that is not a zip archive of stored entries whose sizes, read from the
    central directory, fit :data:`MAX_CHECKPOINT_BYTES` -- before any entry is read."""
    not_ours = (
        "not a coordopt checkpoint, refused without running anything from it ({}); "
        "checkpoints hold tensors and plain data only"
    )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: " + not_ours.format("not a zip archive as torch.save writes")
        )
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{path}: " + not_ours.format(first_line(exc))) from None
    total = sum(e.file_size for e in entries)
    if total > MAX_CHECKPOINT_BYTES:
        big = max(entries, key=lambda e: e.file_size)
        raise refuse(
            path,
            f"its zip entries inflate to {total:,} bytes (entry '{show(big.filename)}': "
            f"{big.file_size:,}), more than a checkpoint may hold ({MAX_CHECKPOINT_BYTES:,}); "
            "nothing was read from them",
        )
    for e in entries:
        if e.filename.endswith(".pkl") and e.file_size > MAX_PICKLE_BYTES:
            raise refuse(
                path,
                f"its structure '{show(e.filename)}' takes {e.file_size:,} bytes "
                f"(at most {MAX_PICKLE_BYTES:,})",
            )
        if e.compress_type != zipfile.ZIP_STORED:
            raise refuse(path, f"entry '{show(e.filename)}' is compressed; torch.save writes none")


def read_checkpoint(path: Path) -> Any:
    """The object a checkpoint file holds, read safely (see the module doc): its layout is
    the caller's to check. Every tensor in it lies within its storage (no broadcast view
    larger than the file), and its containers nest at most :data:`MAX_NESTING` deep."""
    path = Path(path)
    _regular(path, MAX_CHECKPOINT_BYTES)
    _check_zip(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle safely means "not a checkpoint"
        raise CheckpointError(
            f"{path}: not a coordopt checkpoint, refused without running anything from it "
            f"({first_line(exc)}); checkpoints hold tensors and plain data only"
        ) from None
    if nesting(blob) > MAX_NESTING:
        raise refuse(path, f"its data nest more than {MAX_NESTING} deep")
    for name, tensor in tensors(blob):
        if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes():
            raise refuse(path, f"tensor '{name}' is larger than its storage")
    return blob


def tensors(data: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in nested dicts, lists and tuples, with its dotted name."""
    stack = [(prefix, data)]
    while stack:
        name, item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield name, item
        elif isinstance(item, dict):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{name}.{i}" if name else str(i), v) for i, v in enumerate(item))


def check_finite(path: Path | str, data: Any, what: str) -> None:
    """Refuse non-finite or non-floating tensors among ``data``'s (optimiser states)."""
    for name, t in tensors(data):
        if not t.is_floating_point():
            raise refuse(path, f"{what} '{name}' is {t.dtype}, not floating point")
        if not bool(torch.isfinite(t).all()):
            raise refuse(path, f"{what} '{name}' holds NaN or infinite values")


def meta_state(build: Callable[[], Any]) -> dict[str, torch.Tensor]:
    """The state dict (names, shapes, dtypes) of the module(s) ``build`` returns, built on
    the ``meta`` device: nothing is allocated, whatever sizes they declare."""
    with torch.device("meta"):
        built = build()
    modules = built if isinstance(built, dict) else {"": built}
    out: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for name, t in module.state_dict().items():
            out[f"{prefix}.{name}" if prefix else name] = t
    return out


def check_network_size(path: Path | str, expected: Mapping[str, torch.Tensor], sizes: str) -> None:
    """Refuse (:class:`~coordopt.guards.SizeError`) networks whose weights exceed
    :data:`MAX_NETWORK_BYTES`; ``sizes`` names the configuration's sizes."""
    total = sum(t.numel() * t.element_size() for t in expected.values())
    if total > MAX_NETWORK_BYTES:
        raise SizeError(
            f"{path}: its configuration ({sizes}) describes networks of "
            f"{total / 2**30:,.1f} GiB of weights, beyond the limit of "
            f"{MAX_NETWORK_BYTES / 2**30:g} GiB that a checkpoint may hold; refused before "
            "building them"
        )


def check_widths(path: Path | str, widths: Mapping[str, Any]) -> None:
    """Refuse (:class:`~coordopt.guards.SizeError`) a declared width or count that alone puts
    the networks over :data:`MAX_NETWORK_BYTES` (one float per unit), before building them."""
    limit = MAX_NETWORK_BYTES // 4
    for name, value in widths.items():
        if isinstance(value, int) and value > limit:
            raise SizeError(
                f"{path}: its configuration's {name} = {value:,} describes networks beyond the "
                f"limit of {MAX_NETWORK_BYTES / 2**30:g} GiB of weights that a checkpoint may "
                "hold; refused before building them"
            )


def check_weights(
    path: Path | str,
    saved: Any,
    expected: Mapping[str, torch.Tensor],
    *,
    may_lack: frozenset[str] = frozenset(),
    what: str = "weight",
) -> set[str]:
    """Refuse saved weights that are not exactly the declared ones: the same names (only
    ``may_lack`` may be missing), each a finite floating-point tensor of its declared shape
    and dtype. Returns the names missing (a subset of ``may_lack``)."""
    if not isinstance(saved, Mapping):
        raise refuse(path, f"its {what}s are {type(saved).__name__}, not a mapping of tensors")
    missing = set(expected) - set(saved)
    absent, unexpected = sorted(missing - may_lack), sorted(set(saved) - set(expected))
    if absent or unexpected:
        raise refuse(
            path,
            f"its {what}s do not fit the networks its configuration describes "
            f"(missing {show(absent, 120)}, unexpected {show(unexpected, 120)})",
        )
    for name, spec in expected.items():
        if name not in saved:
            continue
        t = saved[name]
        if not isinstance(t, torch.Tensor):
            raise refuse(path, f"{what} '{name}' is {type(t).__name__}, not a tensor")
        if t.shape != spec.shape:
            raise refuse(
                path,
                f"{what} '{name}' has shape {show(tuple(t.shape))}, its network "
                f"{tuple(spec.shape)}: the weights do not fit the configuration",
            )
        if t.dtype != spec.dtype:
            raise refuse(path, f"{what} '{name}' is {t.dtype}, its network {spec.dtype}")
        if not bool(torch.isfinite(t).all()):
            raise refuse(path, f"{what} '{name}' holds NaN or infinite values")
    return missing


# --------------------------------------------------------------------------- schemas

EVALUATION = MapOf(NUMBER)
"""An evaluation: mean, ci95, iteration, env_steps, seconds (numbers; NaN where unmeasured)."""
INSTANCE_IDENTITY = Fields({"name": str, "hash": str})
NORMALISER = Fields(
    {
        "mean": finite_float,
        "var": nonneg_float,
        "count": Range(float, lo=0.0, lo_open=True),
    }
)
CHECKPOINT_META = Fields(
    {
        "config": dict,
        "instance": INSTANCE_IDENTITY,
        "iteration": nonneg_int,
        "env_steps": nonneg_int,
        "seconds": nonneg_float,
        "normalisers": MapOf(NORMALISER),
        "numpy_rng": dict,
        "baselines": MapOf(NUMBER),
        "warm_start": Maybe(dict),
        "initial_eval": EVALUATION,
        "best_eval": EVALUATION,
        "initial_profits": ListOf(finite_float),
        "init": Maybe(dict),
        "guide": Maybe(str),
    },
    optional=frozenset(
        {
            "guide",
            "normalisers",
            "numpy_rng",
            "baselines",
            "warm_start",
            "initial_eval",
            "best_eval",
            "initial_profits",
            "init",
        }
    ),
)
"""The JSON metadata of an agents' checkpoint (a policy needs its config and identity; a
resume needs the rest, refused then if absent; ``initial_profits``, the per-episode profits
of the evaluation before training, absent from checkpoints written before they were kept,
holds one per evaluation episode of its config or none: :func:`check_episode_profits`;
``guide``, the spec of the teacher whose decisions the agents see, absent or null where they
see none)."""


def check_episode_profits(path: Path | str, meta: Mapping[str, Any], eval_episodes: int) -> None:
    """Refuse a checkpoint's ``initial_profits`` unless it holds none or one per evaluation
    episode of its configuration (its items: :data:`CHECKPOINT_META`)."""
    count = len(meta.get("initial_profits", []))
    if count not in (0, eval_episodes):
        raise refuse(
            path,
            f"its metadata's field 'initial_profits' holds {count:,} episodes' profits, "
            f"its configuration's eval_episodes is {eval_episodes:,} (one per episode, or none)",
        )


RUN_SUMMARY = {
    "out_dir": str,
    "iterations": nonneg_int,
    "env_steps": nonneg_int,
    "seconds": nonneg_float,
    "steps_per_second": nonneg_float,
    "final_eval": EVALUATION,
    "initial_eval": EVALUATION,
    "best_eval": EVALUATION,
    "stop": str,
}
"""The fields of every run's summary (:class:`coordopt.rl.lifecycle.RunResult`)."""
AGENTS_SUMMARY = Fields(
    {
        **RUN_SUMMARY,
        "baselines": MapOf(NUMBER),
        "warm_start": Maybe(dict),
        "instance": MapOf(str),
        "init": Maybe(dict),
        "decoding": Maybe(dict),
    },
    optional=frozenset({"initial_eval", "best_eval", "instance", "init", "stop", "decoding"}),
)
"""``summary.json`` of a finished agents' run (:meth:`coordopt.rl.ppo.TrainResult.read`)."""
PEER_SUMMARY = Fields({**RUN_SUMMARY, "algorithm": str}, optional=frozenset({"stop"}))
"""``summary.json`` of a finished peer's run (:class:`coordopt.rl.peers.PeerResult`)."""
PEER_METADATA = Fields({"format": str, "config": dict, "instance": str})
"""``peer.json`` of a TorchRL peer's run."""


# --------------------------------------------------------------------------- run directories

AGENTS_RUN = RunKind("coordopt agents", (BEST, FINAL, CHECKPOINT), CONFIG, dict, AGENTS_SUMMARY)
"""``coordopt train --out DIR``: ``best.pt`` (best greedy evaluation), ``final.pt``, the
resumable ``checkpoint.pt``; ``config.json`` and ``summary.json``."""
PEER_RUN = RunKind("TorchRL peer", (BEST, FINAL), PEER_META, PEER_METADATA, PEER_SUMMARY)
"""``coordopt train --algorithm mappo|ippo --out DIR``: ``peer.json`` names the kind."""


@dataclass(frozen=True)
class RunDir:
    """One training run's directory: the only way its files are named, written and read.

    The trainers write it through the training lifecycle: JSON files and checkpoints
    atomically (an interrupted run never leaves half a file). The policies' loaders, resume
    and the studies read it: JSON and checkpoints as untrusted input (the checks above), the
    log as the rows it holds.
    """

    path: Path
    kind: RunKind

    @classmethod
    def at(cls, path: str | Path, kind: RunKind | None = None) -> RunDir:
        """The run directory at ``path``, of ``kind`` (by default, the kind its files say)."""
        return cls(Path(path), kind or run_kind(Path(path)))

    def file(self, name: str) -> Path:
        """The path of the run's file ``name``: one its kind declares, the log or TensorBoard's."""
        if name not in (*self.kind.files, LOG, TENSORBOARD):
            raise ValueError(f"{self.path}: a {self.kind.name} run directory has no {name!r}")
        return self.path / name

    @property
    def holds_run(self) -> bool:
        """Whether a run of either kind was started here (its configuration or checkpoint)."""
        return any(os.path.lexists(self.path / n) for n in (CONFIG, PEER_META, CHECKPOINT))

    def holds(self, name: str) -> bool:
        """Whether the run's file ``name`` is there (a link too, even a broken one: reading it
        decides)."""
        return os.path.lexists(self.file(name))

    @property
    def interrupted_before_checkpoint(self) -> bool:
        """Whether an agents' run here was stopped (Ctrl-C, a crash) after writing its
        configuration but before its first checkpoint -- during the warm start or the first
        evaluation. Nothing of it can be resumed, and nothing is lost by starting it again
        from that configuration, which ``--resume`` does (the same seed gives the same run)."""
        return self.file(CONFIG).is_file() and not any(
            self.holds(name) for name in (CHECKPOINT, FINAL, SUMMARY)
        )

    @property
    def resumable(self) -> bool:
        """Whether it holds a checkpoint to resume from."""
        return (self.path / CHECKPOINT).exists()

    @property
    def finished(self) -> bool:
        """Whether training ended here: its final policy and summary (written last) are there."""
        return (self.path / FINAL).is_file() and (self.path / SUMMARY).is_file()

    def checkpoint(self, name: Any = None) -> Path:
        """The checkpoint a policy loads (:func:`choose_checkpoint`)."""
        return choose_checkpoint(self.path, name, self.kind)

    def read_json(self, name: str, rule: Any) -> Any:
        """The JSON file ``name``, read and checked against ``rule`` (:func:`read_json`)."""
        return read_json(self.path, name, rule, self.kind)

    def read_config(self) -> Any:
        """The run's configuration file, checked against its kind's rule."""
        return self.read_json(self.kind.config, self.kind.config_rule)

    def read_summary(self) -> dict[str, Any]:
        """The finished run's summary, every field checked against its kind's rule."""
        summary: dict[str, Any] = self.read_json(SUMMARY, self.kind.summary_rule)
        return summary

    def read_log(self) -> list[dict[str, str]]:
        """The log's rows (cells as text, empty where nothing was measured)."""
        with self.file(LOG).open(newline="") as fh:
            return list(csv.DictReader(fh))

    def write_json(self, name: str, data: Any) -> None:
        """Write the JSON file ``name`` atomically (creating the directory)."""
        atomic_write_text(self.file(name), json.dumps(data, indent=2, default=float))

    def save(self, name: str, blob: Any) -> None:
        """Write the checkpoint ``name`` atomically: ``blob`` holds tensors and plain data."""
        atomic_write(self.file(name), lambda tmp: torch.save(blob, tmp))
