"""Real-ESRGAN-style degradation of HR images into LR images (numpy + OpenCV, per sample)."""
from synth.degrade.kernels import KERNEL_SIZE, KERNEL_TYPES
from synth.degrade.pipeline import DegradeConfig, degrade
from synth.degrade.presets import PRESETS, UnknownPresetError, get_preset

__all__ = ["KERNEL_SIZE", "KERNEL_TYPES", "PRESETS", "DegradeConfig", "UnknownPresetError", "degrade", "get_preset"]
