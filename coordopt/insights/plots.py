"""PNG figures of the insights (Agg backend, written atomically)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coordopt.insights.data import InsightData
from coordopt.insights.metrics import PATTERNS
from coordopt.instance import Instance
from coordopt.io import atomic_write


def plot_insights(
    inst: Instance,
    sources: Sequence[InsightData],
    results: Sequence[dict[str, Any]],
    out_dir: str | Path,
) -> list[Path]:
    """Draw the insights into ``out_dir`` (PNG, Agg backend) and return the files:

    ``intensity_vs_cover.png`` (per product, time-averaged, one panel per source),
    ``timeline.png`` (intensity, cover and arrivals over time of the four best-selling
    products of the first source) and ``metrics.png`` (each pattern's value per source
    with its 95% interval).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    files: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        atomic_write(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight", format="png"))
        plt.close(fig)
        files.append(path)

    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 4), squeeze=False)
    for ax, d in zip(axes[0], sources, strict=True):
        r = d.product_intensity.mean(axis=(0, 1))
        c = d.cover.mean(axis=(0, 1))
        ax.scatter(c, r, s=18, alpha=0.7)
        ax.set_xlabel("mean stock cover (periods of base demand)")
        ax.set_ylabel("recommendation intensity (share of customers)")
        ax.set_title(f"{d.source}: intensity vs cover")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{inst.name}: recommendation intensity vs stock cover, per product")
    save(fig, "intensity_vs_cover.png")

    d = sources[0]
    r = d.product_intensity.mean(axis=1)
    c = d.cover.mean(axis=1)
    a = d.arrivals.mean(axis=1) / np.maximum(d.base_demand, 1e-9)
    top = np.argsort(-d.base_demand.mean(axis=0))[:4]
    fig, axes = plt.subplots(len(top), 1, figsize=(8, 2.2 * len(top)), sharex=True, squeeze=False)
    periods = np.arange(1, r.shape[0] + 1)
    for ax, i in zip(axes[:, 0], top, strict=True):
        ax.bar(periods, a[:, i], color="tab:gray", alpha=0.4, label="arrivals (periods of demand)")
        ax.plot(periods, c[:, i], color="tab:blue", label="cover (periods of demand)")
        ax.set_ylabel("periods")
        ax2 = ax.twinx()
        ax2.plot(periods, r[:, i], color="tab:red", marker=".", label="intensity")
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("intensity")
        ax.set_title(f"{inst.product_names[i]}", fontsize=9)
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("period")
    fig.suptitle(f"{inst.name}, {d.source}: intensity, stock cover and arrivals over time")
    save(fig, "timeline.png")

    names = list(PATTERNS)
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(len(results), 1)
    for j, res in enumerate(results):
        vals = [res["metrics"][k]["value"] for k in names]
        err = np.array(
            [
                [0.0, 0.0]
                if res["metrics"][k]["ci"] is None or not math.isfinite(v)
                else [v - res["metrics"][k]["ci"][0], res["metrics"][k]["ci"][1] - v]
                for k, v in zip(names, vals, strict=True)
            ]
        ).T
        xs = np.arange(len(names)) + j * width
        ax.bar(
            xs,
            np.nan_to_num(np.array(vals, dtype=float)),
            width,
            yerr=err,
            capsize=3,
            label=res["source"],
        )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(names)) + width * (len(results) - 1) / 2)
    ax.set_xticklabels([n.replace("_", "\n") for n in names], fontsize=8)
    ax.set_ylabel("metric value (expected > 0; see summary for units)")
    ax.set_title(f"{inst.name}: synchronised-adjustment patterns (95% bootstrap CI)")
    ax.legend()
    save(fig, "metrics.png")
    return files
