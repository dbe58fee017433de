"""datasets.yaml ``format`` -> loader class (lazy)."""
from __future__ import annotations

from models.registry import Registry

LOADERS = Registry("benchmark format", {
    "realce": "evalkit.loaders.realce:RealCELoader",
    "svt": "evalkit.loaders.svt:SVTLoader",
    "ctw1500": "evalkit.loaders.ctw1500:CTW1500Loader",
    "icdar2015": "evalkit.loaders.icdar2015:ICDAR2015Loader",
    "totaltext": "evalkit.loaders.totaltext:TotalTextLoader",
    "cute80": "evalkit.loaders.cute80:CUTE80Loader",
    "textzoom": "evalkit.loaders.textzoom:TextZoom",
    "realsr-v3": "evalkit.loaders.srpairs:RealSRV3",
    "sr-pairs": "evalkit.loaders.srpairs:SRPairs",
    "div2k-valid": "evalkit.loaders.srpairs:DIV2KValid",
    "folder-bench": "evalkit.loaders.srpairs:FolderBench",
    "ftsr-tadisr": "evalkit.loaders.ftsr:FTSRTadisr",
    "screensr": "evalkit.loaders.screensr:ScreenSR",
    "reasontext": "evalkit.loaders.reasontext:ReasonText",
    "uzst": "evalkit.loaders.uzst:UZST",
    "tair-realtext": "evalkit.loaders.tair:RealText",
    "tair-satext": "evalkit.loaders.tair:SATextTest",
})


def create_loader(entry, **kw):
    return LOADERS.get(entry.format)(entry, **kw)
