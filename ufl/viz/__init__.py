"""Pictures of predictions, targets and attention: colour maps per task kind, and PNG figures.

Pure functions over numpy arrays or torch tensors (no workspace logic): ``ufl predict``,
``ufl visualize``, ``ufl evaluate --plot`` and ``ufl reproduce`` call them. One module per concern:

- :mod:`ufl.colours`: leaf utilities: one map -> ``(H, W, 3)`` uint8 RGB per task kind (the
  table of colours is in its docstring), input images (:func:`as_rgb`), the keys of the colours;
  the task kinds (:mod:`ufl.kinds`) call them;
- :mod:`ufl.viz.maps`: :func:`colorize` (a map of a kind given by name), :func:`class_colours`
  (the catalogue's class palettes);
- :mod:`ufl.viz.attention`: SFA / MSA attention heatmaps (:func:`attention_images`);
- :mod:`ufl.viz.panels`: :class:`PanelRow`, one task's row of panels in a prediction figure;
- :mod:`ufl.viz.figures`: prediction figures (:func:`prediction_grids`);
- :mod:`ufl.viz.charts`: bar charts of results (:func:`bar_chart`, :func:`grouped_bars`,
  :func:`unit_chart`);
- :mod:`ufl.viz.files`: PNG files (:func:`save_png`), written atomically.

Figures are drawn with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: no GUI backend is touched, no global figure list grows, and nothing is left open.
"""

from __future__ import annotations

from .attention import attention_images, blend
from .charts import bar_chart, grouped_bars, metric_unit, unit_chart, unit_figure
from ..colours import (DEPTH_CMAP, DEPTH_PERCENTILES, HEATMAP_CMAP, IGNORE_COLOUR, LEGEND_CLASSES, SCALE_COLOURS,
                      as_rgb, depth_range, normals_key)
from .figures import MAX_FIGURE_INCHES, prediction_figure, prediction_grid, prediction_grids
from .files import save_png
from .maps import class_colours, colorize
from .panels import MAX_PANELS_PER_LINE, PanelRow

__all__ = [
    "colorize", "depth_range", "as_rgb", "blend", "attention_images", "save_png",
    "prediction_grid", "prediction_grids", "prediction_figure", "normals_key", "bar_chart", "grouped_bars",
    "metric_unit", "unit_figure", "unit_chart", "PanelRow", "class_colours",
    "DEPTH_CMAP", "DEPTH_PERCENTILES", "HEATMAP_CMAP", "IGNORE_COLOUR", "SCALE_COLOURS",
    "MAX_FIGURE_INCHES", "MAX_PANELS_PER_LINE", "LEGEND_CLASSES",
]
