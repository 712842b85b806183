"""napari plugin for explainable L2GNet segmentation."""

__version__ = "0.1.0"
