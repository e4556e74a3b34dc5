"""Reading pretrained weight files of any common format, and finding hub weights without waiting.

CLIP ViT-B/16 weights reach users in three containers:

- OpenAI's original ``ViT-B-16.pt`` (the file CLIP-ReID loads): a **TorchScript** archive of the
  whole CLIP model. ``torch.load(weights_only=True)`` refuses it; ``torch.jit.load`` gives the
  module, whose ``state_dict()`` holds the image tower under ``visual.*`` (plus the text tower).
- open_clip's ``open_clip_pytorch_model.bin``: a pickled state dict with the same ``visual.*``
  names (or ``visual.trunk.*`` for open_clip models built on a timm trunk).
- timm / Hugging Face ``model.safetensors``: a safetensors state dict in timm's own names.

:func:`read_weights` opens any of them into a state dict and says which container and which key
layout it found, so that a loading error can name both; timm's checkpoint filter then converts
the OpenAI names and resamples the position embeddings.

Hub weights: without network, ``huggingface_hub`` retries for about a minute before failing.
:func:`cached_hub_file` answers from the local cache first (then no hub call is made at all) and
:func:`hub_reachable` checks the endpoint with one short connection attempt, so an offline
machine fails within seconds with a message naming both ways out.
"""

from __future__ import annotations

import os
import socket
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mosaic.core.errors import MosaicError

__all__ = ["WeightsFile", "read_weights", "cached_hub_file", "hub_reachable", "OFFLINE_FIXES"]

# The two ways out when hub weights cannot be fetched; every offline message names both.
OFFLINE_FIXES = (
    "pass a local file with --set model.pretrained_file=PATH (OpenAI's ViT-B-16.pt, open_clip's "
    "open_clip_pytorch_model.bin or timm's model.safetensors), or download the weights once where there is "
    "network so they sit in the Hugging Face cache (HF_HOME); HF_HUB_OFFLINE=1 then uses the cache without retries"
)

# file names timm asks the hub for, in its order of preference
_HUB_FILENAMES = ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")


@dataclass
class WeightsFile:
    """A weights file read into memory.

    Attributes:
        path: where it came from.
        container: ``torchscript`` (OpenAI's JIT archive), ``safetensors`` or ``torch-pickle``
            (``torch.save`` of a state dict, e.g. open_clip's ``.bin`` or a timm ``.pth``).
        layout: the key naming: ``openai-clip`` (``visual.*``, OpenAI and open_clip), ``open_clip-timm``
            (``visual.trunk.*``), ``transformers-clip`` (``vision_model.*``) or ``timm``.
        state_dict: name -> tensor.
    """

    path: Path
    container: str
    layout: str
    state_dict: dict[str, Any]

    @property
    def description(self) -> str:
        return f"{self.container} file in {self.layout} layout"


def _is_torchscript(path: Path) -> bool:
    # Both torch.save and TorchScript write zip archives; only TorchScript stores code and constants.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _layout_of(keys: set[str]) -> str:
    if "visual.class_embedding" in keys or "module.visual.class_embedding" in keys:
        return "openai-clip"
    if any(k.startswith("visual.trunk.") for k in keys):
        return "open_clip-timm"
    if any(k.startswith("vision_model.") for k in keys):
        return "transformers-clip"
    return "timm"


def _unwrap(checkpoint: Any) -> Any:
    # training checkpoints nest the weights one level down
    if isinstance(checkpoint, dict):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), dict):
                return checkpoint[key]
    return checkpoint


def read_weights(path: str | Path) -> WeightsFile:
    """Open a weights file of any supported container; raise a one-line :class:`MosaicError` otherwise."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise MosaicError(f"pretrained weights file {path} does not exist: check the path or drop pretrained_file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            container, state = "safetensors", load_file(str(path), device="cpu")
        elif _is_torchscript(path):
            container = "torchscript"
            with warnings.catch_warnings():  # torch marks TorchScript deprecated; OpenAI's file is one
                warnings.simplefilter("ignore", FutureWarning)
                state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        else:
            container, state = "torch-pickle", _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except MosaicError:
        raise
    except Exception as exc:  # corrupt archives and foreign pickles arrive as many types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MosaicError(
            f"cannot read weights file {path} ({type(exc).__name__}: {first[:200]}): pass a .safetensors file, "
            "a torch state dict (.pth/.bin) or OpenAI's TorchScript ViT-B-16.pt"
        ) from None
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise MosaicError(
            f"weights file {path} ({container}) holds no state dict of tensors: pass the weights, not a whole training state"
        )
    state = {str(k): v for k, v in state.items()}
    layout = _layout_of(set(state))
    if layout == "transformers-clip":
        raise MosaicError(
            f"weights file {path} ({container}) is in the transformers CLIPModel layout (vision_model.*), which "
            "the timm backbone cannot read: use OpenAI's ViT-B-16.pt, open_clip_pytorch_model.bin or timm's model.safetensors"
        )
    return WeightsFile(path=path, container=container, layout=layout, state_dict=state)


def _hub_cache_dir() -> str | None:
    # read at call time, so a changed environment (HF_HOME, HF_HUB_CACHE) is honoured
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default


def cached_hub_file(repo_id: str) -> Path | None:
    """The locally cached weights file of a hub repository, or ``None`` (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in _HUB_FILENAMES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=_hub_cache_dir())
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    endpoint = os.environ.get("HF_ENDPOINT")
    if not endpoint:
        try:
            from huggingface_hub import constants

            endpoint = constants.ENDPOINT
        except ImportError:
            endpoint = "https://huggingface.co"
    return endpoint


def hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection attempt to the hub endpoint (no HTTP, no retries).

    Behind an HTTP proxy a direct connection says nothing, so the hub counts as reachable and the
    download itself decides.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
