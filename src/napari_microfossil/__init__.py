"""Find, measure and export microfossils in X-ray MicroCT scans.

The engine modules (``io``, ``phantom``, ``model``, ``inference``, ``fossils``,
``export``, ``training``) are plain Python and never import napari or Qt; the napari
layer lives in the ``_napari`` modules and is loaded lazily by napari's manifest.
Importing this package does not import torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
