"""Synchronised-adjustment insights: do recommendations and replenishment move together?

Every source -- the fluid plan, the DP policy, simulated trajectories of any policy -- is
put into ONE representation, :class:`InsightData`: per period ``t``, episode ``e``, segment
``k`` and product ``i`` a recommendation intensity (fluid: ``alpha / y``; a simulated
episode: 1 if i is on k's slate, so the mean over episodes is the fraction of episodes in
which i is recommended), the stock available after arrivals, its cover (available divided
by the product's mean demand per period with nothing recommended, so cover is measured in
periods and does not move mechanically with recommendations), orders and arrivals.

The package splits by concern: :mod:`~coordopt.insights.data` (sources),
:mod:`~coordopt.insights.metrics` (patterns, alignment), :mod:`~coordopt.insights.plots`
(figures) and :mod:`~coordopt.insights.report` (Markdown and text).

:func:`insight_metrics` measures the patterns of a coordinated firm, each with the sign it
should have (see :data:`PATTERNS`); simulated sources get a bootstrap 95% interval over
episodes. :func:`alignment_score` says how closely one source's intensities and orders
follow another's (an agent's against the optimiser's). :func:`plot_insights` draws them.
"""

from coordopt.insights.data import (
    InsightData,
    fluid_plan,
    from_plan,
    from_trajectory,
    simulate,
)
from coordopt.insights.metrics import (
    PATTERNS,
    alignment_score,
    confirmations,
    end_order_drop,
    end_weighted_cover,
    insight_metrics,
    intensity_cover_corr,
    intensity_orders_corr,
    post_arrival_lift,
    substitute_excess,
)
from coordopt.insights.plots import plot_insights
from coordopt.insights.report import markdown_summary

__all__ = [
    "PATTERNS",
    "InsightData",
    "alignment_score",
    "confirmations",
    "end_order_drop",
    "end_weighted_cover",
    "fluid_plan",
    "from_plan",
    "from_trajectory",
    "insight_metrics",
    "intensity_cover_corr",
    "intensity_orders_corr",
    "markdown_summary",
    "plot_insights",
    "post_arrival_lift",
    "simulate",
    "substitute_excess",
]
