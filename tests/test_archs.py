"""Our HAT and basicsr's SwinIR against the official key layouts and an official HAT output.

The fixtures were written from the official code (XPixelGroup/HAT ``hat/archs/hat_arch.py``,
JingyunLiang/SwinIR ``models/network_swinir.py``): state-dict names, shapes and dtypes, the tiny
HAT's relative-position index tables, and the official tiny HAT's output for seeded weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models.sr.archs.hat_arch import (
    HAT,
    HAT_REAL_X4_KWARGS,
    hat_tiny_kwargs,
    reflect_pad,
)

FIXTURES = Path(__file__).parent / "fixtures"

# basicsr's SwinIR calls torch.meshgrid without ``indexing``
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def _layout(net: torch.nn.Module) -> list:
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]


def _plain(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(cfg).items()}


def _official_layout_weights(entries: list, seed: int = 0) -> dict:
    """Seeded float tensors for every float32 entry, in the fixture's (official) key order.

    The same rule produced the fixture's reference output from the official module.
    """
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, dtype in entries:
        if dtype != "float32":
            continue
        t = torch.randn(shape, generator=g) * 0.1
        if name.endswith(".weight") and name.split(".")[-2].startswith("norm"):
            t += 1.0
        sd[name] = t
    return sd


def _tiny_official_checkpoint() -> dict:
    """A tiny-HAT state dict in the official layout, index buffers from the official code."""
    tiny = _fixture("hat_real_x4_keys.json")["tiny_x4"]
    sd = _official_layout_weights(tiny["state_dict"])
    sd["relative_position_index_SA"] = torch.tensor(tiny["relative_position_index_SA"])
    sd["relative_position_index_OCA"] = torch.tensor(tiny["relative_position_index_OCA"])
    return {k: sd[k] for k, _, _ in tiny["state_dict"]}


# --------------------------------------------------------------------------------------- HAT


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(17, 23), (2, 3)])
def test_hat_tiny_forward_any_size(scale, size):
    torch.manual_seed(0)
    net = HAT(**hat_tiny_kwargs(scale)).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all()


def test_hat_real_x4_state_dict_is_the_official_layout():
    ref = _fixture("hat_real_x4_keys.json")["real_x4"]
    assert _plain(HAT_REAL_X4_KWARGS) == ref["config"]
    with torch.device("meta"):  # shapes only; 20.8 M parameters need no memory or init time
        net = HAT(**HAT_REAL_X4_KWARGS)
    assert _layout(net) == ref["state_dict"]


def test_hat_tiny_state_dict_and_index_tables_are_official():
    ref = _fixture("hat_real_x4_keys.json")["tiny_x4"]
    assert _plain(hat_tiny_kwargs(4)) == ref["config"]
    net = HAT(**hat_tiny_kwargs(4))
    assert _layout(net) == ref["state_dict"]
    assert net.relative_position_index_SA.tolist() == ref["relative_position_index_SA"]
    assert net.relative_position_index_OCA.tolist() == ref["relative_position_index_OCA"]


def test_hat_params_ema_checkpoint_loads_strict_and_matches_official_output(tmp_path):
    ref = _fixture("hat_real_x4_keys.json")["tiny_x4"]["reference"]
    path = tmp_path / "tiny_hat.pth"
    torch.save({"params_ema": _tiny_official_checkpoint()}, path)

    torch.manual_seed(0)
    net = HAT(**hat_tiny_kwargs(4)).eval()
    x = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net(x)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(ckpt["params_ema"], strict=True)
        after = net(x)

    assert after.shape == (1, 3, 24, 28)
    assert not torch.allclose(before, after)
    expected = torch.tensor(ref["output_sample_every_4th_pixel"])
    torch.testing.assert_close(after[0, :, ::4, ::4], expected, rtol=1e-5, atol=1e-4)
    assert after.mean().item() == pytest.approx(ref["output_mean"], abs=1e-4)
    assert after.abs().mean().item() == pytest.approx(ref["output_abs_mean"], rel=1e-5)


def test_hat_pads_like_the_official_harness():
    """forward(x) equals the official harness: reflect-pad to the window, run, crop."""
    torch.manual_seed(0)
    net = HAT(**hat_tiny_kwargs(2)).eval()
    x = torch.rand(1, 3, 9, 6)
    with torch.no_grad():
        padded = net(F.pad(x, (0, 2, 0, 3), mode="reflect"))[..., :18, :12]
        torch.testing.assert_close(net(x), padded, rtol=0, atol=1e-6)


def test_reflect_pad_matches_torch_and_handles_wide_pads():
    x = torch.rand(1, 3, 5, 4)
    torch.testing.assert_close(reflect_pad(x, 3, 2), F.pad(x, (0, 2, 0, 3), mode="reflect"))
    y = reflect_pad(x, 9, 13)
    assert y.shape == (1, 3, 14, 17)
    assert torch.equal(y[..., :5, :4], x)


def test_hat_rejects_configs_the_official_forward_cannot_run():
    with pytest.raises(ValueError, match="upsampler"):
        HAT()  # official default upsampler='' computes nothing
    with pytest.raises(ValueError, match="img_size"):
        HAT(**{**hat_tiny_kwargs(), "img_size": 4})
    with pytest.raises(ValueError, match="overlap"):
        HAT(**{**hat_tiny_kwargs(), "overlap_ratio": 0.25})
    with pytest.raises(TypeError):
        HAT(**hat_tiny_kwargs(), window_szie=8)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        HAT(**hat_tiny_kwargs())(torch.rand(3, 8, 8))


# ------------------------------------------------------------------------------------ SwinIR


def _basicsr_swinir(**kwargs):
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.archs.swinir_arch import SwinIR

    return SwinIR(**kwargs)


@pytest.fixture(scope="module")
def swinir_real_x4():
    """basicsr's SwinIR with the real-world x4 arguments (built once: its init is slow on CPU)."""
    from models.sr.archs.swinir_compat import SWINIR_REAL_X4_KWARGS

    torch.manual_seed(0)
    return _basicsr_swinir(**SWINIR_REAL_X4_KWARGS).eval()


def test_basicsr_swinir_real_x4_state_dict_is_the_official_layout(swinir_real_x4):
    from models.sr.archs.swinir_compat import SWINIR_REAL_X4_KWARGS

    ref = _fixture("swinir_real_x4_keys.json")["real_x4"]
    assert _plain(SWINIR_REAL_X4_KWARGS) == ref["config"]
    assert _layout(swinir_real_x4) == ref["state_dict"]


def test_official_swinir_checkpoint_loads_through_the_adapter(swinir_real_x4):
    from models.sr.archs.swinir_compat import (
        SWINIR_REAL_X4_PARAM_KEY,
        adapt_official_swinir_state_dict,
        swinir_forward_padded,
    )

    entries = _fixture("swinir_real_x4_keys.json")["real_x4"]["state_dict"]
    sd = _official_layout_weights(entries)
    for name, shape, dtype in entries:  # derived buffers: present, as in the official file
        if name not in sd:
            sd[name] = torch.zeros(shape, dtype=getattr(torch, dtype))
    ckpt = {SWINIR_REAL_X4_PARAM_KEY: sd, "params": {"unused": torch.zeros(1)}}  # as torch.load gives

    net = swinir_real_x4
    x = torch.rand(1, 3, 5, 11)
    with torch.no_grad():
        before = swinir_forward_padded(net, x)
        net.load_state_dict(adapt_official_swinir_state_dict(ckpt, net), strict=True)
        after = swinir_forward_padded(net, x)
    assert after.shape == (1, 3, 20, 44)
    assert torch.isfinite(after).all()
    assert not torch.allclose(before, after)
    # learned weights come from params_ema; derived buffers stay the network's own
    name = next(k for k, _, _ in entries if k.endswith("qkv.weight"))
    assert torch.equal(net.state_dict()[name], sd[name])
    assert net.state_dict()["layers.0.residual_group.blocks.1.attn_mask"].abs().max() == 100


def test_swinir_adapter_names_the_mismatch():
    from models.sr.archs.swinir_compat import adapt_official_swinir_state_dict

    small = {"upscale": 4, "in_chans": 3, "img_size": 16, "window_size": 4, "img_range": 1.0,
             "depths": (1,), "embed_dim": 12, "num_heads": (2,), "mlp_ratio": 2.0,
             "upsampler": "nearest+conv", "resi_connection": "1conv"}
    ckpt = _basicsr_swinir(**small).state_dict()
    with pytest.raises(ValueError, match="shape differs"):
        adapt_official_swinir_state_dict(ckpt, _basicsr_swinir(**{**small, "embed_dim": 16}))
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        adapt_official_swinir_state_dict(ckpt, _basicsr_swinir(**{**small, "depths": (2,)}))
