"""``python -m napari_microfossil.cli`` (as torchrun launches it)."""

import sys

from . import main

sys.exit(main())
