"""napari plugin for explainable L2GNet segmentation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-l2gnet")  # written once, in pyproject.toml
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"
