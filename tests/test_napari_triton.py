"""Loading a model inside napari must not import triton (it crashes under Mesa GL)."""

import subprocess
import sys


def test_napari_layer_keeps_triton_out():
    code = (
        "import sys; import napari_microfossil._napari.segment_widget;"
        "from napari_microfossil.model import ModelSpec, build_network;"
        "build_network(ModelSpec(class_names=('a', 'b'), arch_kwargs={'encoder_depth': 3, 'decoder_channels': (16, 8, 8)}));"
        "assert sys.modules.get('triton') is None, 'triton was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
