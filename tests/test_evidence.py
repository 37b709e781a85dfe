"""ufl.evidence: paired t-intervals and verdicts against hand-computed values."""

import math

import pytest

from ufl.evidence import Claim, claims_figure, claims_markdown, decide, paired_interval, verdict


def test_paired_interval_by_hand():
    # d = (1, 2, 3, 6): mean 3, sd = sqrt(((-2)^2 + (-1)^2 + 0 + 3^2) / 3) = sqrt(14/3),
    # t(0.975, 3) = 3.182446305284263 (tables), half-width = t * sd / 2
    mean, (lo, hi) = paired_interval([1.0, 2.0, 3.0, 6.0])
    half = 3.182446305284263 * math.sqrt(14 / 3) / 2
    assert mean == 3.0
    assert lo == pytest.approx(3.0 - half, rel=1e-9) and hi == pytest.approx(3.0 + half, rel=1e-9)
    assert lo == pytest.approx(-0.4374, abs=1e-4)  # contains 0: undecided


def test_one_seed_has_no_interval_and_equal_differences_a_zero_width_one():
    assert paired_interval([2.5]) == (2.5, None)
    assert paired_interval([2.0, 2.0, 2.0]) == (2.0, (2.0, 2.0))
    with pytest.raises(ValueError):
        paired_interval([])


def test_verdicts():
    assert verdict((0.1, 2.0)) == "held"
    assert verdict((-2.0, -0.1)) == "not held"
    assert verdict((-0.1, 2.0)) == "undecided"
    assert verdict(None) == "undecided"
    assert verdict((-0.9, 0.5), threshold=-1.0) == "held"  # "within one point"
    assert verdict((-3.0, -1.5), threshold=-1.0) == "not held"


def test_decide_pairs_by_seed_and_skips_missing_seeds(tmp_path):
    a = {0: 10.0, 1: 12.0, 2: 11.0, 3: 9.0}
    b = {0: 8.0, 1: 9.0, 2: 9.5, 3: None}
    claim = Claim("A beats B", lambda s: None if b[s] is None else a[s] - b[s], unit="points")
    result = decide(claim, [0, 1, 2, 3])
    # differences 2, 3, 1.5: mean 2.1667, sd 0.7638, t(0.975, 2) = 4.302652729911275
    assert result["seeds"] == [0, 1, 2] and result["differences"] == [2.0, 3.0, 1.5]
    half = 4.302652729911275 * math.sqrt(((2 - 13 / 6) ** 2 + (3 - 13 / 6) ** 2 + (1.5 - 13 / 6) ** 2) / 2) / math.sqrt(3)
    assert result["mean"] == pytest.approx(13 / 6)
    assert result["ci95"] == [pytest.approx(13 / 6 - half), pytest.approx(13 / 6 + half)]
    assert result["verdict"] == "held" and result["held"] is True
    assert {"claim", "verdict", "mean", "ci95", "seeds"} <= set(result)
    one = decide(claim, [0])
    assert one["verdict"] == "undecided" and one["ci95"] is None and one["mean"] == 2.0
    fact = {"claim": "Cost", "verdict": "held", "mean": 56.6, "ci95": [56.6, 56.6], "seeds": [], "differences": [],
            "threshold": 25.0, "unit": "% fewer parameters", "held": True}
    text = claims_markdown([result, one, fact])
    assert "**held**: A beats B" in text and "no interval with one seed" in text
    assert text.splitlines()[-1] == "- **held**: Cost — +56.60 % fewer parameters, threshold +25"
    png = claims_figure([result, one], tmp_path / "claims.png", title="t")
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert claims_figure([decide(Claim("none", lambda s: None), [0])], tmp_path / "empty.png") is None
    assert not (tmp_path / "empty.png").exists()
