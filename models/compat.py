"""The one place that makes basicsr 1.4.2 importable beside current torchvision.

basicsr imports ``torchvision.transforms.functional_tensor``, which torchvision removed in 0.17;
because ``import basicsr`` imports everything, that one rename breaks every ``basicsr.*`` import.
``import_basicsr()`` installs a stand-in module exposing ``rgb_to_grayscale`` before the first
basicsr import. Call it instead of importing basicsr directly.
"""
from __future__ import annotations

import sys
import types


def _install_functional_tensor_shim() -> None:
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:  # an old torchvision that still has the module needs nothing
        import torchvision.transforms.functional_tensor  # noqa: F401
        return
    except ImportError:
        pass
    from torchvision.transforms import functional as F

    shim = types.ModuleType(name)
    shim.rgb_to_grayscale = F.rgb_to_grayscale
    sys.modules[name] = shim


def import_basicsr():
    """Return the ``basicsr`` package, importable on torchvision >= 0.17."""
    _install_functional_tensor_shim()
    import basicsr

    return basicsr
