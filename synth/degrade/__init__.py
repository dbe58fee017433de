"""HR -> LR degradations (numpy + OpenCV, per sample): Real-ESRGAN's second-order chain and the
plain MATLAB / OpenCV bicubic downscales."""
from synth.degrade.kernels import KERNEL_SIZE, KERNEL_TYPES
from synth.degrade.matlab_resize import ResizeInputError, imresize
from synth.degrade.pipeline import DEGRADE_VERSION, DegradeConfig, degrade
from synth.degrade.presets import PRESETS, UnknownPresetError, get_preset

__all__ = ["DEGRADE_VERSION", "KERNEL_SIZE", "KERNEL_TYPES", "PRESETS", "DegradeConfig", "ResizeInputError",
           "UnknownPresetError", "degrade", "get_preset", "imresize"]
