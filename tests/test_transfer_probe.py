"""bench/transfer_probe.py's report tables: the dose-response contrast between knob values."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
from scipy import stats

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def probe():
    sys.path.insert(0, str(BENCH))  # the script imports its sibling _common
    try:
        spec = importlib.util.spec_from_file_location("transfer_probe", BENCH / "transfer_probe.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _report(knob, pretrained, random):
    settings = {"size": 64, "train": 96, "val": 48, "pretrain_epochs": 24, "head_epochs": "32", "knob": knob}
    runs = [{"knob": knob, "seed": seed, "pretrained:32": {"human_parts": p}, "random:32": {"human_parts": r}}
            for seed, (p, r) in enumerate(zip(pretrained, random))]
    return {"settings": settings, "runs": runs, "gaps": []}


def test_dose_table_is_the_paired_difference_of_the_pretrained_heads(probe):
    floor = [12.0, 12.5, 13.0]
    low, high = _report("0", [14.0, 15.0, 16.0], floor), _report("4", [15.0, 17.0, 16.5], floor)
    table = probe.dose_table([high, low])  # any order: the higher knob minus the lower
    row = [line for line in table.splitlines() if "human_parts" in line]
    assert len(row) == 1 and "| 4 - 0 | 3 |" in row[0]
    diffs = [1.0, 2.0, 0.5]  # by hand
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]" in row[0]
    assert "(+1.0, +2.0, +0.5)" in row[0]


def test_dose_table_orders_the_default_rooms_between_0_and_1(probe):
    floor = [12.0, 12.0]
    table = probe.dose_table([_report("1", [15.0, 16.0], floor), _report("default", [14.0, 14.0], floor),
                              _report("0", [13.0, 13.5], floor)])
    pairs = [line.split(" | ")[1] for line in table.splitlines()[2:]]
    assert pairs == ["default - 0", "1 - 0", "1 - default"]


def test_dose_table_refuses_reports_whose_floors_differ(probe):
    with pytest.raises(ValueError, match="random floors of human_parts differ"):
        probe.dose_table([_report("0", [14.0, 15.0], [12.0, 12.0]), _report("2", [15.0, 16.0], [12.0, 12.1])])
