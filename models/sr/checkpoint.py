"""Loading official SR checkpoints into our networks: strict, and loud about mismatches."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from models.files import sha256_file
from models.errors import TextsrError


class CheckpointError(TextsrError, ValueError):
    """A checkpoint that does not fit the network; names the file and the keys at fault."""


def read_weights_file(path: Path) -> dict:
    """Tensors of a diffusers-style weights file: ``.safetensors``, else a torch ``.bin`` / ``.pth``
    state dict (read with ``weights_only``); an unreadable file is a CheckpointError naming it."""
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 — a truncated or foreign file means the same to the user
            raise CheckpointError(f"{path}: cannot read as safetensors ({type(e).__name__}: {e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise CheckpointError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}: {e})") from None


def read_state_dict(path: Path, keys: tuple[str, ...] = ("params_ema", "params")) -> tuple[dict, str | None]:
    """The tensors of a checkpoint: the first of ``keys`` present (BasicSR saves ``params`` and
    ``params_ema``; EMA weights are what the authors release for inference), or the whole dict
    when it already is a state dict. ``module.`` prefixes (DataParallel) are stripped."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    used = next((k for k in keys if k in ckpt and isinstance(ckpt[k], dict)), None)
    sd = ckpt[used] if used else ckpt
    if not all(hasattr(v, "shape") for v in sd.values()):
        raise CheckpointError(f"{path}: no state dict under {', '.join(keys)} (top-level keys: "
                              f"{', '.join(list(ckpt)[:8])})")
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in sd.items()}
    return sd, used


def check_keys(own: dict, given: dict, what: str, hint: str) -> None:
    """Raise CheckpointError("<what>: N missing (e.g. …); N unexpected …; N of another shape …. <hint>")
    unless ``given`` has exactly the keys of ``own`` with the same shapes (both name -> tensor)."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    shape = [f"{k}: checkpoint {tuple(given[k].shape)} vs network {tuple(own[k].shape)}"
             for k in own if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shape:
            parts.append(f"{len(shape)} of another shape (e.g. {shape[0]})")
        raise CheckpointError(f"{what}: " + "; ".join(parts) + f". {hint}")


def load_into(net, path: Path, keys: tuple[str, ...] = ("params_ema", "params"),
              adapt: Callable[[dict, object], dict] | None = None) -> dict:
    """Load ``path`` into ``net`` with every key matched (none silently ignored); returns a
    record of what was loaded (path, sha256, key)."""
    sd, used = read_state_dict(Path(path), keys)
    if adapt is not None:
        try:
            sd = adapt(sd, net)
        except ValueError as e:
            raise CheckpointError(f"{path}: {e}") from None
    check_keys(net.state_dict(), sd, f"{path} does not fit {type(net).__name__}",
               "Is it the checkpoint of this model and scale?")
    net.load_state_dict(sd, strict=True)
    return {"path": str(path), "sha256": sha256_file(Path(path)), "key": used}
