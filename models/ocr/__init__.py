"""OCR engines behind one adapter (PP-OCR via RapidOCR's ONNX wheels; PaddleOCR optional).

Nothing heavy is imported here: onnxruntime / rapidocr / paddleocr load only when an engine is built.
"""
from models.ocr.base import (
    DEFAULT_OCR,
    OCR_ENGINES,
    OCREngine,
    OCRInputError,
    OCRLine,
    check_rgb_image,
    create_ocr,
    list_ocr,
)
from models.ocr.textsim import (
    RATIO_DISTANCES,
    levenshtein_ratio,
    normalize_text,
    text_similarity,
)

__all__ = [
    "DEFAULT_OCR",
    "OCR_ENGINES",
    "RATIO_DISTANCES",
    "OCREngine",
    "OCRInputError",
    "OCRLine",
    "check_rgb_image",
    "create_ocr",
    "levenshtein_ratio",
    "list_ocr",
    "normalize_text",
    "text_similarity",
]
