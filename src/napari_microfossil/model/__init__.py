"""U-Net models: build, save, load and wrap as a predictor.

A model file is one ``.safetensors`` file: the weights, and in its header a JSON
document (key ``"napari_microfossil"``) with the architecture, encoder, class names,
input normalisation, tile size, voxel size it was trained at, training provenance and
validation metrics. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..normalise import Normalisation

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

METADATA_KEY = "napari_microfossil"
FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "default"

Predictor = Callable[[np.ndarray], np.ndarray]


#: The U-Net halves a plane five times: tiles, crops and padded planes are multiples of it.
SIZE_MULTIPLE = 32


def check_size_multiple(value: Any, name: str) -> int:
    """`value` as an int if it is a multiple of :data:`SIZE_MULTIPLE` (>= it).

    Raises
    ------
    InputError
        Naming `name`, with the nearest valid value below.
    """
    m = SIZE_MULTIPLE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}: expected an integer multiple of {m}, got {value!r}")
    if value < m or value % m:
        lower = max(m, int(value) // m * m)
        raise InputError(f"{name}: expected a multiple of {m} (>= {m}), got {value}; try {lower}")
    return int(value)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network and use it correctly.

    Parameters
    ----------
    class_names : tuple of str
        Output classes; index 0 is background.
    architecture : str
        A segmentation-models-pytorch architecture name (``"Unet"``, ``"UnetPlusPlus"``,
        ``"FPN"``, ...).
    encoder : str
        Any smp encoder name (``"resnet18"``, ``"resnet34"``, ...).
    arch_kwargs : dict
        Extra keyword arguments for the architecture (e.g. ``decoder_channels``);
        ``pixel_features`` (sigmas in pixels) adds multiscale pixel features to the
        class head's input (:mod:`napari_microfossil.model.pixel_features`).
    in_channels : int
        Input channels (1 for CT).
    normalisation : Normalisation
        Input intensity normalisation used in training; inference applies the same.
    tile_size : int
        Tile edge in pixels the model was trained with (a good default for inference).
    spacing_um : tuple of float or None
        Voxel size ``(z, y, x)`` in µm of the training data, if known.
    provenance : dict
        How the model was made (base model, data, recipe, dates).
    metrics : dict
        Validation metrics (per-class IoU, ...).
    """

    class_names: tuple[str, ...]
    architecture: str = "Unet"
    encoder: str = "resnet18"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    in_channels: int = 1
    normalisation: Normalisation = field(default_factory=Normalisation)
    tile_size: int = 256
    spacing_um: tuple[float, float, float] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise InputError(
                f"class_names: expected at least 2 classes, got {list(self.class_names)}"
            )
        check_size_multiple(self.tile_size, "tile_size")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["normalisation"] = self.normalisation.to_dict()
        d["spacing_um"] = list(self.spacing_um) if self.spacing_um is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        d = dict(d)
        version = int(d.get("format_version", 1))
        if version > FORMAT_VERSION:
            raise InputError(
                f"model format_version: expected <= {FORMAT_VERSION}, got {version}; "
                "upgrade napari-microfossil to read this model"
            )
        kwargs = dict(d.get("arch_kwargs") or {})
        if "decoder_channels" in kwargs:
            kwargs["decoder_channels"] = tuple(kwargs["decoder_channels"])
        spacing = d.get("spacing_um")
        return cls(
            class_names=tuple(d["class_names"]),
            architecture=d.get("architecture", "Unet"),
            encoder=d.get("encoder", "resnet18"),
            arch_kwargs=kwargs,
            in_channels=int(d.get("in_channels", 1)),
            normalisation=Normalisation.from_dict(d.get("normalisation") or {}),
            tile_size=int(d.get("tile_size", 256)),
            spacing_um=tuple(float(s) for s in spacing) if spacing else None,  # type: ignore[arg-type]
            provenance=dict(d.get("provenance") or {}),
            metrics=dict(d.get("metrics") or {}),
            format_version=version,
        )

    def with_updates(self, **changes: Any) -> ModelSpec:
        return replace(self, **changes)


@dataclass
class LoadedModel:
    """A network with its spec, ready to predict."""

    spec: ModelSpec
    network: torch.nn.Module
    path: str | None = None


def build_network(spec: ModelSpec, *, encoder_weights: str | None = None) -> torch.nn.Module:
    """Build an untrained smp network for ``spec``.

    Parameters
    ----------
    encoder_weights : str or None
        ``None`` (offline, random init) or e.g. ``"imagenet"``, which needs network
        access the first time; a clear :class:`InputError` is raised when offline.
    """
    import segmentation_models_pytorch as smp

    from .pixel_features import FeatureHeadNet, split_arch_kwargs
    from .pixel_forest import ARCHITECTURE as FOREST
    from .pixel_forest import build_forest

    if spec.architecture == FOREST:  # trees as tensors, fitted by training.forest
        try:
            return build_forest(spec.num_classes, spec.arch_kwargs)
        except ValueError as exc:
            raise InputError(f"model: {exc}") from None

    smp_kwargs, sigmas = split_arch_kwargs(spec.arch_kwargs)
    try:
        net = smp.create_model(
            spec.architecture,
            encoder_name=spec.encoder,
            encoder_weights=encoder_weights,
            in_channels=spec.in_channels,
            classes=spec.num_classes,
            **smp_kwargs,
        )
    except KeyError as exc:
        raise InputError(
            f"model: unknown architecture {spec.architecture!r} or encoder {spec.encoder!r} ({exc})"
        ) from None
    except OSError as exc:  # download of pretrained weights failed
        raise InputError(
            f"encoder_weights: could not get {encoder_weights!r} weights for {spec.encoder!r}: "
            f"no network, and they are not in the download cache ({type(exc).__name__}); "
            "start from the default model or from random weights ('scratch') instead"
        ) from None
    # smp keeps ResNet stages beyond encoder_depth although it never runs them: drop
    # them so model files and optimiser state hold only weights that are used.
    depth = int(spec.arch_kwargs.get("encoder_depth", 5))
    for stage in range(max(depth, 1), 5):
        if hasattr(net.encoder, f"layer{stage}"):
            delattr(net.encoder, f"layer{stage}")
    if sigmas:  # the class head also sees multiscale pixel features
        return FeatureHeadNet(net, sigmas)
    return net


def default_model_path() -> Path:
    """Path of the bundled default model file."""
    return Path(
        str(resources.files("napari_microfossil") / "models" / f"{DEFAULT_MODEL_NAME}.safetensors")
    )


def resolve_model_path(model: str | os.PathLike[str]) -> Path:
    """``"default"`` or a path to a model file, checked to exist."""
    if str(model) == DEFAULT_MODEL_NAME:
        path = default_model_path()
        if not path.is_file():
            raise InputError(
                f"model: the bundled default model is missing at {path}; reinstall the package"
            )
        return path
    path = Path(model)
    if not path.exists():
        raise InputError(f"model: file not found: {path}")
    if not path.is_file():
        raise InputError(f"model: expected a .safetensors file, got a folder: {path}")
    return path


def read_spec(model: str | os.PathLike[str]) -> ModelSpec:
    """Read only the metadata of a model file (fast, no weights, no torch)."""
    path = resolve_model_path(model)
    header = _read_header(path)
    meta = header.get("__metadata__") or {}
    if METADATA_KEY not in meta:
        raise InputError(
            f"model: {path} is a safetensors file but not a napari-microfossil model (no metadata)"
        )
    try:
        return ModelSpec.from_dict(json.loads(meta[METADATA_KEY]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"model: {path} has unreadable metadata: {exc}") from None


def _read_header(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("file too short")
            n = int.from_bytes(raw, "little")
            if n <= 0 or n > 100_000_000:
                raise ValueError("bad header length")
            header = json.loads(fh.read(n))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"model: {path} is not a readable .safetensors model file ({exc})"
        ) from None
    if not isinstance(header, dict):
        raise InputError(f"model: {path} is not a readable .safetensors model file")
    return header


def load_model(
    model: str | os.PathLike[str] = DEFAULT_MODEL_NAME, *, device: Any = "cpu"
) -> LoadedModel:
    """Load a model file (or ``"default"``) onto ``device`` in eval mode.

    Raises
    ------
    InputError
        If the file is missing, not a model file, or its weights do not match its spec.
    """
    import torch
    from safetensors.torch import load_file

    from ..device import resolve_device

    path = resolve_model_path(model)
    spec = read_spec(path)
    dev = resolve_device(device) if not hasattr(device, "type") else device
    net = build_network(spec)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"model: could not read weights from {path}: {exc}") from None
    ref = net.state_dict()
    missing = sorted(set(ref) - set(state))
    unexpected = sorted(set(state) - set(ref))
    wrong = sorted(k for k in set(ref) & set(state) if tuple(ref[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        raise InputError(
            f"model: weights in {path} do not fit its architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} of the wrong shape, e.g. {(wrong or missing or unexpected)[:2]})"
        )
    # torch's own loader: smp's override drops mismatched keys with a warning instead.
    torch.nn.Module.load_state_dict(
        net, {k: v.to(ref[k].dtype) for k, v in state.items()}, strict=True
    )
    net.to(dev).eval()
    return LoadedModel(spec=spec, network=net, path=str(path))


def save_model(
    path: str | os.PathLike[str],
    network: torch.nn.Module,
    spec: ModelSpec,
    *,
    half: bool = True,
    overwrite: bool = True,
) -> Path:
    """Write a model file atomically (temp file in the same folder, then rename).

    Parameters
    ----------
    half : bool
        Store floating-point weights as float16 (half the size; loading restores
        float32). Integer buffers are kept as they are.
    """
    import torch
    from safetensors.torch import save_file

    from .pixel_forest import ARCHITECTURE as FOREST

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"output: {path} exists; pass overwrite=True (--overwrite) to replace it")
    if path.suffix != ".safetensors":
        raise InputError(f"output: model files end in .safetensors, got {path.name!r}")
    state = {}
    for k, v in network.state_dict().items():
        t = v.detach().to("cpu")
        # a forest's thresholds stay float32 (its class shares are float16 already)
        if half and t.is_floating_point() and spec.architecture != FOREST:
            t = t.to(torch.float16)
        state[k] = t.contiguous()
    meta = {METADATA_KEY: json.dumps(spec.to_dict(), sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def make_predictor(
    network: torch.nn.Module, device: Any = None, *, amp: bool | None = None
) -> Predictor:
    """Wrap a network as ``f(batch) -> probabilities`` on numpy arrays.

    Parameters
    ----------
    network : torch.nn.Module
        Maps ``(B, 1, H, W)`` to class logits ``(B, C, H, W)``.
    device : torch.device or str, optional
        Where the network runs (resolved with :func:`~napari_microfossil.device.resolve_device`).
    amp : bool, optional
        Mixed precision; default on for CUDA, off elsewhere.

    Returns
    -------
    callable
        Takes float32 ``(B, 1, H, W)`` (H, W multiples of 32) and returns float32
        softmax probabilities ``(B, C, H, W)``.
    """
    import torch

    from ..device import resolve_device

    dev = device if isinstance(device, torch.device) else resolve_device(device)
    use_amp = (dev.type == "cuda") if amp is None else bool(amp and dev.type == "cuda")
    network = network.to(dev).eval()
    if dev.type == "cuda":
        network = network.to(memory_format=torch.channels_last)

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(
                dev, non_blocking=True
            )
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                logits = network(x)
            probs = torch.softmax(logits.float(), dim=1)
            return probs.cpu().numpy()

    return predict


def default_score_key(spec: ModelSpec) -> str:
    """The validation score training maximises by default: the first foreground class's
    IoU (``"iou_fossil"`` for the default classes), else the mean foreground IoU."""
    return f"iou_{spec.class_names[1]}" if spec.num_classes > 1 else "mean_iou_fg"


def headline_score(spec: ModelSpec) -> str:
    """The model's validation score in words, ``"IoU fossil 0.871 (validation)"``; or ``""``.

    The first foreground class's IoU if it was measured, else the mean foreground IoU.
    """
    names = list(spec.class_names)
    for key in (f"iou_{names[1]}", "mean_iou_fg"):
        value = spec.metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            label = f"IoU {names[1]}" if key != "mean_iou_fg" else "mean IoU"
            return f"{label} {float(value):.3f} (validation)"
    return ""


def describe(spec: ModelSpec) -> str:
    """Human-readable summary of a model's metadata (for ``microfossil info``)."""
    from .pixel_forest import ARCHITECTURE as FOREST

    kw = spec.arch_kwargs
    if spec.architecture == FOREST:
        arch = (
            f"pixel forest, {len(kw.get('trees', []))} stage(s) of {kw.get('trees')} trees, "
            f"features at sigmas {kw.get('sigmas')}"
        )
    else:
        arch = f"{spec.architecture} ({spec.encoder} encoder)"
    lines = [
        f"architecture : {arch}",
        f"classes      : {', '.join(f'{i}={n}' for i, n in enumerate(spec.class_names))}",
        f"tile size    : {spec.tile_size}",
        f"normalisation: {spec.normalisation.method} {spec.normalisation.low}-{spec.normalisation.high}"
        + (
            f", 3D smoothing sigma {spec.normalisation.smooth:g} voxels"
            if spec.normalisation.smooth > 0
            else ""
        ),
        f"voxel size   : {' x '.join(f'{s:g}' for s in spec.spacing_um) + ' µm' if spec.spacing_um else 'unknown'}",
    ]
    for key, value in spec.provenance.items():
        lines.append(
            f"provenance.{key}: {json.dumps(value) if not isinstance(value, str) else value}"
        )
    for key, value in spec.metrics.items():
        lines.append(f"metrics.{key}: {json.dumps(value) if not isinstance(value, str) else value}")
    return "\n".join(lines)
