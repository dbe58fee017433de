"""What weights every component needs and whether each is here: ``evalkit weights``."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from models.weights import (WeightsChecksumError, WeightsFolder, WeightsMissingError, fetch_command,
                            fetch_folder_command, resolve, resolve_folder)


@dataclass
class WeightsRow:
    component: str          # "sr:realesrgan-x4plus", "seg:hi-sam", "ocr:rapidocr-ppocrv4"
    file: str
    source: str
    status: str             # present | present, sha256 ok | missing | checksum mismatch | embedded …
    path: str = ""
    fetch: str = ""


def _sr_specs():
    from models.sr.registry import SR_MODELS

    seen = set()
    for name in SR_MODELS.names():
        if name.endswith("-tiny"):
            continue
        module = importlib.import_module(SR_MODELS.target(name).split(":")[0])
        specs = getattr(module, "SPECS", {})
        if name in specs and name not in seen:
            seen.add(name)
            yield specs[name]


def _family_weights():
    """(name, files) of SR families that declare ``needs() -> {name: (WeightsFile | WeightsFolder, …)}``
    instead of SRSpecs (the diffusion methods: a base model folder, the method's checkpoint, taggers)."""
    from models.sr.registry import SR_MODELS

    for name in SR_MODELS.names():
        if name.endswith("-tiny"):
            continue
        module = importlib.import_module(SR_MODELS.target(name).split(":")[0])
        files = module.needs().get(name) if hasattr(module, "needs") else None
        if files:
            yield name, files


def _status(wf, allow_download: bool = False) -> tuple[str, str]:
    try:
        if isinstance(wf, WeightsFolder):
            path = resolve_folder(wf, allow_download=allow_download)
            return "present", str(path)
        path = resolve(wf, allow_download=allow_download)
    except WeightsMissingError:
        return "missing", ""
    except WeightsChecksumError:
        return "checksum mismatch", ""
    return ("present, sha256 ok" if wf.sha256 else "present (no published sha256)"), str(path)


def _folder_label(wf: WeightsFolder) -> str:
    """``name/`` — or ``name/sub/`` when every required file is in one sub-folder, so two parts of one
    repo snapshot (VOSR's checkpoint folder and its VAE, both in ``CSWRY/VOSR``) are told apart."""
    heads = {r.split("/", 1)[0] for r in wf.required}
    if len(heads) == 1 and all("/" in r for r in wf.required):
        return f"{wf.name}/{heads.pop()}/"
    return wf.name + "/"


def weights_rows(pattern: str | None = None, allow_download: bool = False) -> list[WeightsRow]:
    """One row per file per component whose name matches ``pattern`` (fnmatch), SR models,
    segmenters and OCR engines. With ``allow_download`` missing files are fetched."""
    import fnmatch

    rows: list[WeightsRow] = []

    def want(name: str) -> bool:
        return pattern is None or fnmatch.fnmatch(name, pattern)

    for spec in _sr_specs():
        if not want(spec.name) or (spec.weights is None and spec.embedded is None):
            continue
        if spec.weights is not None:
            status, path = _status(spec.weights, allow_download)
            rows.append(WeightsRow(f"sr:{spec.name}", spec.weights.filename, spec.weights.source, status, path,
                                   "" if path else fetch_command(spec.weights)))
        if spec.embedded is not None:
            from models.sr.ncnn_convert import embedded_status

            status, path, source = embedded_status(spec.embedded)
            rows.append(WeightsRow(f"sr:{spec.name}", f"{spec.embedded}.from-ncnn.pth", source, status, path))
    for name, files in _family_weights():
        if want(name):
            for wf in files:
                status, path = _status(wf, allow_download)
                fetch = "" if path else (fetch_folder_command(wf) if isinstance(wf, WeightsFolder) else fetch_command(wf))
                rows.append(WeightsRow(f"sr:{name}", _folder_label(wf) if isinstance(wf, WeightsFolder) else wf.filename,
                                       wf.source, status, path, fetch))
    from models.caption.blip import FOLDERS as CAPTION_FOLDERS

    for name, wf in CAPTION_FOLDERS.items():
        if want(name):
            status, path = _status(wf, allow_download)
            rows.append(WeightsRow(f"caption:{name}", wf.name + "/", wf.source, status, path,
                                   "" if path else fetch_folder_command(wf)))
    from models.seg.hisam import SAM_TSS_DATASETS, hisam_weights, sam_encoder_weights, sam_tss_weights

    seg = {"hi-sam": [hisam_weights("vit_l"), sam_encoder_weights("vit_l")],
           "sam-ts": [sam_tss_weights("vit_l", d) for d in SAM_TSS_DATASETS] + [sam_encoder_weights("vit_l")]}
    for name, files in seg.items():
        if want(name):
            for wf in files:
                status, path = _status(wf, allow_download)
                rows.append(WeightsRow(f"seg:{name}", wf.filename, wf.source, status, path,
                                       "" if path else fetch_command(wf)))
    for name, package in (("rapidocr-ppocrv4", "rapidocr_onnxruntime"), ("rapidocr-ppocrv6", "rapidocr")):
        if want(name):
            spec = importlib.util.find_spec(package)
            status = "shipped in the wheel" if spec else f"not installed (pip install {package.replace('_', '-')})"
            where = next(iter(spec.submodule_search_locations)) if spec else ""
            rows.append(WeightsRow(f"ocr:{name}", "PP-OCR det/rec/cls .onnx", f"PyPI {package}", status, where))
    return rows
