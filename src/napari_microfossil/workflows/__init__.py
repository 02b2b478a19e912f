"""Use cases: what the command line and the napari panels ask the engine to do.

Each module holds typed, frozen request objects, checked once when they are built
(every argument and output path before any work), and generator use cases that own
the product's rules and yield :class:`~napari_microfossil._progress.Progress`. The
front ends only parse (argparse, widgets), build a request, run it and render its
progress and result, so each rule is written once and tested without a display.
"""
