"""The training log: one CSV row per iteration, TensorBoard scalars, a progress bar.

Every row carries the iteration's environment steps per second; on resume the rows at or
after the resumed iteration are dropped, so the log of a resumed run equals an
uninterrupted one's.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

LOG = "log.csv"
COLUMNS = (
    "iteration",
    "env_steps",
    "seconds",
    "steps_per_second",
    "train_profit",
    "train_return",
    "lr_critic",
    "lr_replenishment",
    "lr_recommendation",
    "bc_coef",
    "pg_loss_replenishment",
    "pg_loss_recommendation",
    "value_loss",
    "kl_replenishment",
    "kl_recommendation",
    "entropy_replenishment",
    "entropy_recommendation",
    "bc_nll_replenishment",
    "bc_nll_recommendation",
    "clipfrac_replenishment",
    "clipfrac_recommendation",
    "eval_profit",
    "eval_ci95",
    "siloed_profit",
    "null_profit",
    "gap_vs_siloed",
)


class TrainLog:
    """``OUT/log.csv``, ``OUT/tb`` (when enabled and installed) and a tqdm bar to stderr."""

    def __init__(
        self, out: Path, start: int, total: int, desc: str, tensorboard: bool, progress: bool
    ) -> None:
        self.path = out / LOG
        rows: list[dict[str, str]] = []
        if start > 0 and self.path.is_file():
            with self.path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["iteration"]) < start]
        with self.path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        self.writer = _tensorboard(out) if tensorboard else None
        self.bar = tqdm(
            total=total,
            initial=min(start, total),
            desc=desc,
            disable=not progress,
            file=sys.stderr,
            unit="it",
        )

    def write(self, row: dict[str, float]) -> None:
        """Append one iteration's row (NaN and missing values as empty cells)."""
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=COLUMNS).writerow(
                {k: "" if _missing(row.get(k)) else row[k] for k in COLUMNS}
            )
        if self.writer is not None:
            for k, v in row.items():
                if k != "iteration" and isinstance(v, float) and math.isfinite(v):
                    self.writer.add_scalar(k, v, row["iteration"])
        self.bar.update(1)
        self.bar.set_postfix(
            profit=f"{row['train_profit']:.1f}",
            sps=f"{row['steps_per_second']:.0f}",
            **({"eval": f"{row['eval_profit']:.1f}"} if "eval_profit" in row else {}),
        )

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print(
            "coordopt train: tensorboard is not installed; logging to CSV only "
            "(pip install tensorboard, or pass --no-tensorboard to silence this)",
            file=sys.stderr,
        )
        return None
    return SummaryWriter(str(out / "tb"))
