"""LoRA on the SD UNet/VAE with peft, as the one-step SR methods' official code does it, and
strict loading of their ``*.pkl`` checkpoints.

The official code (OSEDiff ``osediff.py``: ``initialize_unet``/``initialize_vae``/``load_ckpt``;
PiSA-SR ``pisasr.py``; CODSR; all on peft) builds ``LoraConfig(r=rank, init_lora_weights=
"gaussian", target_modules=<module list from the checkpoint>)`` — ``lora_alpha`` left at peft's
default 8, so the LoRA scale is 8/r — and adds it under a fixed adapter name. Parameter names
then read ``<module>.lora_A.<adapter>.weight`` / ``<module>.base_layer.weight``; the checkpoints
store exactly those names. The official loaders copy ``state[name]`` for every model parameter
whose name passes a filter and silently ignore any other key; :func:`load_lora_state` instead
requires a one-to-one match and names every key at fault.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from models.sr.checkpoint import CheckpointError, check_keys

# the substrings the official ``initialize_unet`` greps parameter names for, in its order
UNET_GREP = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
             "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")
VAE_GREP = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")


def unet_lora_modules(unet) -> tuple[list[str], list[str], list[str]]:
    """(encoder, decoder, others) module lists of OSEDiff/PiSA-SR's ``initialize_unet``: weights
    (not biases or norms) whose names contain a grep pattern, split by ``down_blocks``/``conv_in``,
    ``up_blocks``/``conv_out``, and the rest (mid block)."""
    enc, dec, other = [], [], []
    for n, _ in unet.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pat in UNET_GREP:
            if pat in n and ("down_blocks" in n or "conv_in" in n):
                enc.append(n.replace(".weight", ""))
                break
            if pat in n and ("up_blocks" in n or "conv_out" in n):
                dec.append(n.replace(".weight", ""))
                break
            if pat in n:
                other.append(n.replace(".weight", ""))
                break
    return enc, dec, other


def vae_encoder_lora_modules(vae) -> list[str]:
    """OSEDiff's ``initialize_vae`` list: encoder convs/attention projections and ``quant_conv``.
    (The official list repeats names — one entry per matching pattern; peft makes it a set.)"""
    out = []
    for n, _ in vae.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pat in VAE_GREP:
            if pat in n and "encoder" in n or "quant_conv" in n and "post_quant_conv" not in n:
                out.append(n.replace(".weight", ""))
    return list(dict.fromkeys(out))


def check_modules(model, modules: Iterable[str], where: str):
    """Every listed module must exist in ``model`` (peft skips names it cannot find as long as one
    matches, which would silently drop part of a checkpoint)."""
    have = {n for n, _ in model.named_modules()}
    absent = [m for m in dict.fromkeys(modules) if m not in have]
    if absent:
        raise CheckpointError(f"{where}: {len(absent)} LoRA target module(s) not in the model "
                              f"(e.g. {', '.join(absent[:3])}). Is it this method's checkpoint for this base model?")


def add_lora(model, modules: Iterable[str], rank: int, adapter: str):
    """Inject a peft LoRA adapter named ``adapter`` into ``model`` on ``modules`` (exact module
    names, matched as peft matches ``target_modules``), configured as the official code does."""
    from peft import LoraConfig, inject_adapter_in_model

    modules = list(modules)
    if not modules:
        raise CheckpointError(f"LoRA adapter {adapter!r}: empty module list")
    cfg = LoraConfig(r=int(rank), init_lora_weights="gaussian", target_modules=modules)
    with warnings.catch_warnings():
        # peft warns that a second adapter makes several adapters: that is the official design
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        inject_adapter_in_model(cfg, model, adapter_name=adapter)
    return model


def tuner_layers(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def activate(model, adapters: Iterable[str]):
    """Make ``adapters`` the active ones on every LoRA layer (a layer runs those it holds)."""
    adapters = list(adapters)
    for _, m in tuner_layers(model):
        m.set_adapter([a for a in adapters if a in m.lora_A] or adapters[:1])


def enable_lora(model, enabled: bool):
    """Switch every LoRA layer of ``model`` on or off (the base weights stay as they are)."""
    for _, m in tuner_layers(model):
        m.enable_adapters(enabled)


def merge_lora(model, adapters: Iterable[str], unload: bool = True):
    """Add the weight deltas of ``adapters`` into the base weights (in the base's dtype, so merge
    in float32 before casting to fp16) and drop those adapters; with ``unload`` a layer left with
    no adapter is replaced by its plain base module (no peft code on the forward path)."""
    import torch

    adapters = list(adapters)
    with torch.no_grad():
        for name, m in tuner_layers(model):
            for a in adapters:
                if a in m.lora_A:
                    base = m.get_base_layer()
                    base.weight += m.get_delta_weight(a).to(base.weight.dtype)
                    m.delete_adapter(a)
            if unload and not m.lora_A:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, child, m.get_base_layer())
    return model


def read_pkl(path, required: Iterable[str], what: str) -> dict:
    """The dict saved by an official ``save_model`` (tensors, ints, lists of names), read with
    ``weights_only=True``; raises CheckpointError naming missing top-level keys."""
    import torch

    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise CheckpointError(f"{path}: cannot read as a {what} checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected the dict {what} saves, got {type(ckpt).__name__}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not a {what} checkpoint: missing {', '.join(missing)} "
                              f"(has {', '.join(map(str, list(ckpt)[:10]))})")
    return ckpt


def load_lora_state(model, state: dict, select: Callable[[str], bool], where: str):
    """Copy ``state`` into the parameters of ``model`` whose names pass ``select``, requiring a
    one-to-one match of names and shapes; a missing, unexpected or misshapen key raises
    CheckpointError naming it (``where`` says which checkpoint entry, e.g. "x.pkl: state_dict_unet")."""
    import torch

    params = {n: p for n, p in model.named_parameters() if select(n)}
    check_keys(params, state, f"{where} does not fit the model",
               "Is it this method's checkpoint for this base model?")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.dtype))
    return len(params)
