"""The house rules of STYLE.md that a refactor could silently break."""
import subprocess
import sys

import numpy as np
import pytest

from models.sr import create_sr, list_sr


def _imported_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("stmt", ["import synth.factory, synth.stages.paste, synth.degrade, synth.sources.rendered",
                                  "import models.ocr, models.seg, models.sr, models.weights", "import evalkit"])
def test_only_pipelines_imports_ray(stmt):
    mods = _imported_after(stmt)
    assert "ray" not in mods and "diffusers" not in mods and "paddle" not in mods


def test_package_inits_import_nothing_heavy():
    mods = _imported_after("import models, models.ocr, models.seg, models.sr, synth, evalkit, pipelines")
    assert not {"torch", "onnxruntime", "rapidocr_onnxruntime", "ray", "cv2"} & mods


@pytest.mark.parametrize("name", list_sr())
def test_every_registered_sr_model_upscales_by_its_scale(name):
    import torch

    m = create_sr(name, scale=2)
    x = torch.rand(2, 3, 8, 12)
    y = m.upscale(x)
    assert y.shape == (2, 3, 16, 24) and 0 <= y.min() and y.max() <= 1
    img = (np.random.default_rng(0).random((8, 12, 3)) * 255).astype(np.uint8)
    assert m.upscale_image(img).shape == (16, 24, 3)
    with pytest.raises(ValueError, match="N×3×H×W"):
        m.upscale(torch.rand(3, 8, 8))
