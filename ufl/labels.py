"""Conventions of stored targets that every layer shares (datasets, losses, metrics): a leaf module
with no imports, so that a light module (``ufl.taskspec``) and a heavy one (``ufl.metrics``) read
the same value."""

__all__ = ["IGNORE_INDEX"]

IGNORE_INDEX = 255
"""Target value that losses and metrics skip (segmentation labels, edge and saliency maps)."""
