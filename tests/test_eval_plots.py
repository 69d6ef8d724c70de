"""Evaluation plots: value labels and group names never overlap, whatever the number of bars."""

from __future__ import annotations

import pytest

from eval.runner import _grouped_bars, overlapping


def _axes(width: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 4.8))
    return fig, fig.add_subplot(1, 1, 1)


@pytest.mark.parametrize(("width", "n_series"), [(8.0, 3), (6.0, 4), (10.0, 6)])
def test_bar_value_labels_do_not_overlap(width, n_series):
    fig, ax = _axes(width)
    groups = ["connection\n(n=11)", "fact\n(n=43)", "followup\n(n=13)", "list\n(n=18)", "numeric\n(n=16)",
              "unanswerable\n(n=24)"]
    series = [(f"config-{i}", [1.0, 0.95, None, 1.0, 0.875, 0.5], f"C{i}") for i in range(n_series)]
    _grouped_bars(ax, groups, series, [False] * len(groups))
    fig.canvas.draw()
    assert not overlapping(ax.texts), [t.get_text() for t in ax.texts]
    assert not overlapping(ax.get_xticklabels())


def test_long_group_names_are_turned_not_overlapping():
    fig, ax = _axes(6.0)
    groups = ["Refusal accuracy", "Evidence coverage", "Citation precision", "False refusals", "nDCG@10", "MRR"]
    _grouped_bars(ax, groups, [("hybrid", [0.8, 0.67, 0.75, 0.16, 0.87, 0.83], "C0")], [False] * 4 + [True] * 2)
    fig.canvas.draw()
    assert not overlapping(ax.get_xticklabels())
    assert any(t.get_rotation() for t in ax.get_xticklabels())


def test_labels_stay_level_when_there_is_room():
    fig, ax = _axes(12.0)
    _grouped_bars(ax, ["hit@1", "hit@5"], [("hybrid", [0.71, 0.97], "C0")], [False, False])
    fig.canvas.draw()
    assert all(t.get_rotation() == 0 for t in [*ax.texts, *ax.get_xticklabels()])


def test_overlapping_detects_overlap():
    fig, ax = _axes(4.0)
    a = ax.text(0.5, 0.5, "100%")
    b = ax.text(0.5, 0.5, "100%")
    fig.canvas.draw()
    assert overlapping([a, b])
    b.set_position((0.0, 0.0))
    assert not overlapping([a, b])
