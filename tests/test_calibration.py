"""Calibration metrics against hand computations, and the temperature fit."""
import math

import numpy
import pytest

from spacy_rnn.calibration import (
    bin_edges,
    binary_nll,
    brier_score,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    plot_reliability,
    precision_at,
    reliability,
    scale_probabilities,
)

CONF = [0.95, 0.9, 0.8, 0.6, 0.55, 0.3]
HIT = [1, 1, 0, 1, 0, 0]


def test_ece_equal_mass_by_hand():
    # 3 equal-mass bins over the sorted confidences:
    # {0.3, 0.55}: conf 0.425, acc 0.0; {0.6, 0.8}: conf 0.7, acc 0.5;
    # {0.9, 0.95}: conf 0.925, acc 1
    expected = (2 * 0.425 + 2 * 0.2 + 2 * 0.075) / 6
    assert expected_calibration_error(CONF, HIT, n_bins=3) == pytest.approx(expected)


def test_ece_equal_width_by_hand():
    # 2 equal-width bins: [0, 0.5): {0.3} conf 0.3 acc 0; [0.5, 1]: the other five,
    # conf (0.95+0.9+0.8+0.6+0.55)/5 = 0.76, acc 3/5
    expected = (1 * 0.3 + 5 * abs(0.6 - 0.76)) / 6
    assert expected_calibration_error(CONF, HIT, n_bins=2, mode="width") == pytest.approx(expected)


def test_width_bins_put_one_in_the_last_bin_and_keep_empty_bins():
    bins = bin_edges([0.0, 0.5, 1.0], n_bins=4, mode="width")
    assert [list(b) for b in bins] == [[0], [], [1], [2]]


def test_perfectly_calibrated_predictions_have_zero_ece():
    conf = [0.25] * 4 + [0.75] * 4
    hit = [1, 0, 0, 0, 1, 1, 1, 0]
    assert expected_calibration_error(conf, hit, n_bins=2) == pytest.approx(0.0)
    rows = reliability(conf, hit, n_bins=2)
    assert [(r["confidence"], r["accuracy"], r["count"]) for r in rows] == [
        (0.25, 0.25, 4),
        (0.75, 0.75, 4),
    ]


def test_brier_and_nll_by_hand():
    assert brier_score([0.8, 0.3], [1, 0]) == pytest.approx((0.04 + 0.09) / 2)
    assert binary_nll([0.8, 0.3], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)


def test_precision_at_thresholds():
    rows = {r["threshold"]: r for r in precision_at(CONF, HIT, thresholds=(0.5, 0.9, 0.99))}
    assert rows[0.5]["count"] == 5 and rows[0.5]["precision"] == pytest.approx(3 / 5)
    assert rows[0.5]["share"] == pytest.approx(5 / 6)
    assert rows[0.9]["precision"] == 1.0 and rows[0.9]["count"] == 2
    assert rows[0.99]["precision"] is None and rows[0.99]["share"] == 0.0


def test_report_is_complete_and_handles_no_predictions():
    report = calibration_report(CONF, HIT)
    assert report["n"] == 6 and report["accuracy"] == pytest.approx(0.5)
    assert {"ece", "ece_width", "brier", "nll", "reliability", "precision_at"} <= set(report)
    empty = calibration_report([], [])
    assert empty["n"] == 0 and empty["ece"] == 0.0 and empty["brier"] == 0.0


def test_bad_input_is_an_error():
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        brier_score([1.2], [1])
    with pytest.raises(ValueError, match="2 confidences but 1"):
        brier_score([0.2, 0.3], [1])
    with pytest.raises(ValueError, match="'mass' or 'width'"):
        expected_calibration_error([0.2], [1], mode="quantile")


def test_temperature_fit_recovers_the_generating_temperature():
    # Labels drawn from softmax(z / 2): scaling the logits z by T = 2 is the truth.
    rng = numpy.random.default_rng(0)
    logits = rng.normal(0.0, 3.0, size=(4000, 3))
    true_probs = scale_probabilities(numpy.exp(logits), 2.0)
    labels = numpy.array([rng.choice(3, p=p) for p in true_probs])
    probs = scale_probabilities(numpy.exp(logits), 1.0)

    def nll_at(t):
        scaled = scale_probabilities(probs, t)
        return float(-numpy.log(scaled[numpy.arange(len(labels)), labels]).mean())

    t = fit_temperature(nll_at)
    assert t == pytest.approx(2.0, rel=0.1)
    assert nll_at(t) < nll_at(1.0)
    before = calibration_report(probs.max(1), probs.argmax(1) == labels)["ece"]
    scaled = scale_probabilities(probs, t)
    after = calibration_report(scaled.max(1), scaled.argmax(1) == labels)["ece"]
    assert after < before / 2


def test_temperature_fit_keeps_one_when_already_calibrated():
    assert fit_temperature(lambda t: (math.log(t)) ** 2) == 1.0


def test_scale_probabilities_keeps_the_argmax_and_rows_sum_to_one():
    probs = numpy.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    for t in (0.5, 1.0, 3.0):
        scaled = scale_probabilities(probs, t)
        assert (scaled.argmax(1) == probs.argmax(1)).all()
        numpy.testing.assert_allclose(scaled.sum(1), 1.0)
    numpy.testing.assert_allclose(scale_probabilities(probs, 1.0), probs, rtol=1e-9)
    assert scale_probabilities(probs, 3.0)[0, 0] < 0.7 < scale_probabilities(probs, 0.5)[0, 0]


def test_reliability_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_reliability(
        {"before": calibration_report(CONF, HIT, n_bins=3)}, str(tmp_path / "rel.png")
    )
    assert (tmp_path / "rel.png").stat().st_size > 1000 and path.endswith("rel.png")
