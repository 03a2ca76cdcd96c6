"""Drawings shared by a run's TensorBoard images and a reproduction's plots.

The reliability diagram (docs/metrics.md, "TensorBoard") is drawn here once:
`analysis.plots.calibration_curves` puts one curve per model on its axes,
and a training run writes one image per scored task (`summaries`).

Figures are `matplotlib.figure.Figure` objects rendered straight to PNG,
without pyplot, so drawing changes no global matplotlib state (no backend
switch, no open figures).
"""

import io
from typing import Optional

from matplotlib import figure as figure_lib

from cabb_tf import metrics


def reliability_curve(ax, labels, predictions, sample_weight=None,
                      bins: int = 10, label: Optional[str] = None) -> None:
  """Draws the points of `metrics.reliability` on `ax`, joined by a line."""
  mean_p, rate = metrics.reliability(labels, predictions, sample_weight,
                                     bins)
  ax.plot(mean_p, rate, "o-", label=label)


def finish_reliability(ax, title: str) -> None:
  """The diagonal of a calibrated model, the axis labels, title and legend
  of a reliability diagram whose curves are drawn."""
  lim = max(ax.get_xlim()[1], ax.get_ylim()[1])
  ax.plot([0, lim], [0, lim], "k:", linewidth=1)
  ax.set_xlabel("mean prediction")
  ax.set_ylabel("observed rate")
  ax.set_title(title)
  ax.legend(fontsize=8)


def reliability_png(title: str, labels, predictions, sample_weight=None,
                    bins: int = 10, label: Optional[str] = None,
                    size_inches: float = 4.0, dpi: int = 80) -> bytes:
  """A reliability diagram of one set of predictions, as PNG bytes."""
  fig = figure_lib.Figure(figsize=(size_inches, size_inches))
  # Fixed margins: a third of the cost of `tight_layout` at this size.
  fig.subplots_adjust(left=0.18, right=0.96, bottom=0.13, top=0.91)
  ax = fig.subplots()
  reliability_curve(ax, labels, predictions, sample_weight, bins, label)
  finish_reliability(ax, title)
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=dpi)
  return buffer.getvalue()
