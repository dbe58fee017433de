"""The house rules of STYLE.md that a refactor could silently break."""
import subprocess
import sys

import pytest


def _imported_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("stmt", ["import synth.factory, synth.stages.paste, synth.degrade, synth.sources.rendered",
                                  "import models.ocr, models.seg, models.sr, models.weights, models.caption", "import evalkit"])
def test_only_pipelines_imports_ray(stmt):
    mods = _imported_after(stmt)
    assert "ray" not in mods and "diffusers" not in mods and "paddle" not in mods


def test_package_inits_import_nothing_heavy():
    mods = _imported_after("import models, models.ocr, models.seg, models.sr, models.caption, synth, evalkit, pipelines")
    assert not {"torch", "onnxruntime", "rapidocr_onnxruntime", "ray", "cv2"} & mods
