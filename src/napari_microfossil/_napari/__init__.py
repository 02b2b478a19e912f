"""The napari layer: thin wrappers that call the engine. napari imports these lazily.

triton (pulled in by torch's compiler stack when segmentation-models-pytorch loads)
ships its own LLVM, which crashes the process when imported after Mesa's llvmpipe
OpenGL driver is loaded — napari under xvfb, in VMs and over remote desktops. The plugin
never compiles kernels, so inside napari torch is told that triton is absent. Set
``NAPARI_MICROFOSSIL_ALLOW_TRITON=1`` to keep it.
"""

import os
import sys

if "triton" not in sys.modules and not os.environ.get("NAPARI_MICROFOSSIL_ALLOW_TRITON"):
    sys.modules["triton"] = None  # type: ignore[assignment]
