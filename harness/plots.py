"""The plots findings carry for the HTML report (Finding.plots): matplotlib off-screen, one small
figure each. A plot is drawn when its PNG is first asked for (`png_of`): every check attaches its
plots, and only an HTML report reads them, so a run without one never pays for matplotlib."""
from __future__ import annotations

import io

import numpy as np


def new_figure(size: tuple = (6, 3)):
    """(figure, axes) drawn off-screen (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def png_bytes(fig, dpi: int = 80) -> bytes:
    """The figure laid out and encoded as PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


class Plot:
    """A figure drawn on first use: `draw()` returns a matplotlib figure, `png()` its PNG bytes (kept)."""

    __slots__ = ("_draw", "_png")

    def __init__(self, draw):
        self._draw, self._png = draw, None

    def png(self) -> bytes:
        if self._png is None:
            self._png = png_bytes(self._draw())
        return self._png


def png_of(plot) -> bytes:
    """The PNG bytes of a Finding.plots value: a Plot, or bytes already encoded."""
    return plot.png() if isinstance(plot, Plot) else bytes(plot)


def deferred(draw):
    """Decorator: a function drawing a figure returns a Plot that draws it when first asked for."""
    def plot(*args, **kwargs) -> Plot:
        return Plot(lambda: draw(*args, **kwargs))

    plot.__name__, plot.__doc__ = draw.__name__, draw.__doc__
    return plot


@deferred
def bar_png(labels, values, ylabel: str, log: bool = False):
    """One bar a label (values floored at 1e-12, so a log axis can show zeros)."""
    fig, ax = new_figure((8, 3))
    ax.bar(range(len(values)), [max(v, 1e-12) for v in values])
    ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    return fig


@deferred
def curve_png(series: dict, xlabel: str, ylabel: str):
    """One line a series (name -> values at x = 1, 2, ...)."""
    fig, ax = new_figure()
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig


@deferred
def histogram_png(series: dict, xlabel: str):
    """Overlaid log-count histograms of several value sets (e.g. model input by modality)."""
    fig, ax = new_figure()
    drawn = 0
    for name, values in series.items():
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=80, histtype="step", label=name, log=True)
            drawn += 1
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count (log)")
    if drawn:  # an all-NaN input has nothing to draw (and legend() would warn)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    return fig
