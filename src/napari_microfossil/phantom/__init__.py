"""Synthetic MicroCT scans of fossiliferous carbonate rock, with exact ground truth.

:func:`make_phantom` draws, from one integer seed, a scan of a carbonate core plug:
micritic mud with grains, ooid-like look-alikes and pores, and foraminifera (spiral
chains of hollow calcite chambers) and ostracods (two-valved hollow carapaces) whose
chambers are empty, spar-cemented or mud-filled. The scan then goes through a crude
model of a lab CT scanner: beam-hardening cupping, ring artefacts, a slow drift along
z, the point-spread function, intensity-dependent noise and a random linear mapping to
``uint16``.

The phantom is the bundled sample scan, the training data of the default model and
test data, so each seed varies widely (every strength is drawn from a range of
:class:`PhantomStyle`) while the truth stays crisp: class boundaries are the analytic
outer surfaces of the bodies, sampled at voxel centres before blur and noise.

Every object is drawn inside its own bounding box, so the cost grows with the volume
and the number of objects, not with their product.

Modules: :mod:`.style` (the ranges and one volume's draw from them), :mod:`.geometry`
(rotations, boxes, ellipsoid distances, the core plug), :mod:`.shapes` (foraminifera,
ostracods, blobs), :mod:`.rock` (matrix, grains, ooids, pores), :mod:`.fossils`
(drawing and placing fossils), :mod:`.scanner` (the CT artefacts and ``uint16``
mapping) and :mod:`.make` (:func:`make_phantom`, the order of the draws).
"""

from .make import Phantom, make_phantom, validate_shape
from .style import PhantomStyle

__all__ = ["Phantom", "PhantomStyle", "make_phantom", "validate_shape"]
