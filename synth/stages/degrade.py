"""Stage: HR -> LR through a named degradation preset (synth.degrade)."""
from __future__ import annotations

import numpy as np

from synth.degrade import degrade, get_preset
from synth.recipe import DegradeSpec


class DegradeStage:
    def __init__(self, spec: DegradeSpec):
        self.spec = spec
        self.cfg = get_preset(spec.preset, **spec.overrides)  # fails fast on a bad preset/override

    def process(self, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return degrade(hr, self.spec.scale, self.cfg, rng)
