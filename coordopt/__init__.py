"""coordopt: coordinate inventory replenishment with product recommendation.

Exact benchmarks (Pyomo + HiGHS fluid programs, an exact dynamic program, model-predictive
control), multi-timescale multi-agent RL warm-started from the optimiser, and case studies,
all on one model (see docs/model.md).
"""

from coordopt.generator import GeneratorConfig, generate_instance
from coordopt.instance import (
    Instance,
    InstanceError,
    Stockout,
    load_instance,
    named_instances,
    save_instance,
)

__all__ = [
    "GeneratorConfig",
    "Instance",
    "InstanceError",
    "Stockout",
    "generate_instance",
    "load_instance",
    "named_instances",
    "save_instance",
]
__version__ = "0.1.0"
