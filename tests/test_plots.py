"""The result plots (peft_core.evaluation): nothing cut off at the edges when class names are long."""
import numpy as np

from peft_core.evaluation import confusion_figure, evaluate, plot_confusion, short_labels

LONG = ["Request a refund for a card payment that was charged twice", "Card arrival time",
        "Exchange rate applied to a transfer abroad"]


def _report():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    return evaluate(y, np.eye(3)[y] + rng.normal(0, 0.8, (60, 3)), LONG, y)


def test_short_labels_cut_long_names_and_stay_distinct():
    assert short_labels(LONG) == ["Request a refund …", "Card arrival time", "Exchange rate app…"]
    twins = ["transfer not received by the recipient", "transfer not received by the bank"]
    cut = short_labels(twins)
    assert len(set(cut)) == 2 and cut[0].startswith("0: ") and all(len(c) <= 21 for c in cut)


def test_confusion_matrix_keeps_axis_titles_and_class_names_inside_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig = confusion_figure(_report())
    fig.canvas.draw()
    renderer, width = fig.canvas.get_renderer(), fig.bbox.width
    ax = fig.axes[0]
    for text in [ax.yaxis.label, ax.xaxis.label, *ax.get_yticklabels(), *ax.get_xticklabels()]:
        box = text.get_window_extent(renderer)
        assert 0 <= box.x0 and box.x1 <= width, f"{text.get_text()!r} is cut off ({box.x0:.0f}..{box.x1:.0f})"
    legend = " ".join(" ".join(t.get_text() for t in fig.texts).split())
    assert "Request a refund for a card payment that was charged twice" in legend  # the full name is still on the figure
    plt.close(fig)
    assert plot_confusion(_report(), tmp_path / "cm.png").stat().st_size > 0
