"""The Markdown and text report of the insights: one formatter for every consumer (the
``insights`` command and the synchronised-adjustments study)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from coordopt.insights.metrics import PATTERNS
from coordopt.instance import Instance


def metric_cell(m: dict[str, Any], *, mark: bool = False) -> str:
    """One measured pattern: ``+0.123 [+0.100, +0.150]`` (value, 95% interval when sampled),
    ``n/a`` when undefined; ``mark`` appends ✓ (expected sign), ✗ (opposite) or · (zero)."""
    v = m["value"]
    if v is None or not math.isfinite(v):
        return "n/a"
    out = f"{v:+.3f}"
    if m.get("ci") is not None:
        out += f" [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]"
    if mark:
        marks: dict[Any, str] = {True: " ✓", False: " ✗"}
        out += " ·" if abs(v) < 1e-9 else marks.get(m.get("sign_ok"), "")
    return out


def pattern_table(results: Sequence[dict[str, Any]], *, mark: bool = False) -> list[str]:
    """Markdown table lines: one row per pattern, one column per source (``results`` are
    :func:`~coordopt.insights.metrics.insight_metrics` outputs, or dicts with ``source`` and
    ``metrics``)."""
    head = "| pattern | expected | " + " | ".join(r["source"] for r in results) + " |"
    lines = [head, "|" + "---|" * (2 + len(results))]
    for k, (sign, _, _) in PATTERNS.items():
        cells = " | ".join(metric_cell(r["metrics"][k], mark=mark) for r in results)
        lines.append(f"| {k} | {sign} | {cells} |")
    return lines


def pattern_legend() -> list[str]:
    """Markdown bullets: every pattern's unit and meaning."""
    return [f"- **{k}** ({unit}): {meaning}" for k, (_, meaning, unit) in PATTERNS.items()]


def markdown_summary(
    inst: Instance,
    results: Sequence[dict[str, Any]],
    confirm: dict[str, Any] | None,
    alignment: dict[str, float] | None,
) -> str:
    """A Markdown report of the metrics of every source and the optimum's confirmations."""
    lines = [f"# Synchronised-adjustment insights: {inst.name}", "", inst.summary(), ""]
    lines += pattern_table(results)
    lines += ["", "## Patterns", ""]
    lines += pattern_legend()
    if confirm is not None:
        lines += ["", "## Does the optimum confirm each pattern?", ""]
        for k, c in confirm.items():
            verdict = {True: "yes", False: "no", None: "undefined"}[c["optimal"]]
            agree = {True: "agrees", False: "disagrees", None: "n/a"}[c["agrees_with_optimal"]]
            lines.append(
                f"- {k}: optimum's sign matches the expected one: {verdict}; "
                f"measured source {agree} with the optimum"
            )
    if alignment is not None:
        lines += ["", "## Alignment with the fluid optimum", ""]
        lines += [f"- {k}: {v:.4f}" for k, v in alignment.items()]
    return "\n".join(lines) + "\n"
