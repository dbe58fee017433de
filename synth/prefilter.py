"""Background verdicts computed once: the per-image check of ``synth prefilter`` and its file format.

TADiSR filtered LSDIR for text once, before building FTSR; this is that step. For every image of a
background source, :func:`check_item` records what :class:`synth.stages.background.BackgroundStage`
would find — its size and every OCR reading with a letter or digit (any score), through the stage's
own :func:`~synth.stages.background.ocr_texts` — and a recipe's ``backgrounds.verdicts: FILE`` lets a
build decide from the file (:func:`~synth.stages.background.decide` with the recipe's own
``hr_size`` and ``ocr_min_score``) instead of OCR-ing each image on each worker. The samples are
byte-identical to a build without the file.

What a file must match to be used (else a :class:`VerdictsError` naming the file, the field and the
command that rebuilds it): the OCR engine's identity (settings + model sha256), the OCR resize
policy (``max_side_for_ocr``, ``min_side_for_ocr``) and, per source, its name and listing (number of
items + sha256 of the sorted item ids); every item needs a row. ``hr_size`` and ``ocr_min_score``
are applied at build time, so changing them needs no new prefilter run.

Format, chosen by suffix: ``.parquet`` (pyarrow; the header JSON in the schema metadata under
``textsr-bg-verdicts``; ``texts`` as a list of ``{text, score}`` structs) or JSONL (any other
suffix; first line the header, then one row per image in item order, sources in header order)::

    {"format": "textsr-bg-verdicts/1",
     "sources": [{"name": ..., "items": N, "ids_sha256": ...}, ...],
     "ocr": {<engine identity>, "max_side_for_ocr": ..., "min_side_for_ocr": ...},
     "thresholds": {"hr_size": ..., "ocr_min_score": ...},   # what the verdict labels used
     "created": ..., "versions": {...}}
    {"id": "name:relpath", "verdict": "ok"|"has-text"|"too-small"|"unreadable", "width": W, "height": H,
     "texts": [[text, score], ...], "score": max score or null, "error": null or why it is unreadable}

A file may cover several sources (one file per recipe); sources are matched by name, and a file
may hold sources the recipe does not use. ``unreadable`` rows (anything the decoder rejects:
corrupt, grey, transparent …) carry no size: a build loads such an image and counts the decoder's
own rejection exactly as without the file.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from models.files import atomic_path, sha256_bytes
from models.versions import versions
from synth.imageio import decode_image
from synth.recipe import BackgroundConfig, RecipeError
from synth.stages.background import STAGE, decide, ocr_texts
from synth.types import Rejected

FORMAT = "textsr-bg-verdicts/1"
VERDICTS = ("ok", "has-text", "too-small", "unreadable")
PARQUET_KEY = b"textsr-bg-verdicts"
ROW_KEYS = ("id", "verdict", "width", "height", "texts", "score", "error")


class VerdictsError(RecipeError):
    """A verdicts file that is malformed or does not fit the recipe; the message names the file,
    the line or field, and the command that writes a fitting one."""


# -- what a file must match -----------------------------------------------------------------------
def source_identity(src) -> dict:
    """``{"name", "items", "ids_sha256"}`` of a background source: its listing, named by content."""
    ids = sorted(src.item_id(i) for i in range(len(src)))
    return {"name": src.name, "items": len(ids), "ids_sha256": sha256_bytes("\n".join(ids).encode("utf-8"))}


def ocr_identity(cfg: BackgroundConfig, engine_identity: dict) -> dict:
    """What decides the OCR readings of a background: the engine and the resize policy."""
    return _plain({**engine_identity, "max_side_for_ocr": cfg.max_side_for_ocr,
                   "min_side_for_ocr": cfg.min_side_for_ocr})


def make_header(cfg: BackgroundConfig, sources: list[dict], engine_identity: dict) -> dict:
    """The header of a verdicts file for ``sources`` (:func:`source_identity` dicts)."""
    return {"format": FORMAT, "sources": _plain(sources), "ocr": ocr_identity(cfg, engine_identity),
            "thresholds": {"hr_size": cfg.hr_size, "ocr_min_score": cfg.ocr_min_score},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "versions": versions()}


def header_mismatch(old: dict, new: dict) -> str | None:
    """The first field in which two headers' OCR settings or sources differ, as ``"field (file: a,
    now: b)"``; None when the one can stand for the other (``created``/``versions``/``thresholds``
    may differ)."""
    a, b = old.get("ocr", {}), new.get("ocr", {})
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"ocr.{k} (file: {a.get(k)!r}, now: {b.get(k)!r})"
    sa = [s.get("name") for s in old.get("sources", [])]
    sb = [s.get("name") for s in new.get("sources", [])]
    if sa != sb:
        return f"sources (file: {sa}, now: {sb})"
    for x, y in zip(old["sources"], new["sources"]):
        for k in ("items", "ids_sha256"):
            if x.get(k) != y.get(k):
                return f"sources[{x['name']!r}].{k} (file: {x.get(k)!r}, now: {y.get(k)!r})"
    return None


def rerun_hint(path, names) -> str:
    srcs = " ".join(f"--source {n}" for n in names)
    return f"run `synth prefilter {srcs} --out {path}` again"


# -- the per-image check ------------------------------------------------------------------------
def check_item(src, i: int, ocr, cfg: BackgroundConfig) -> dict:
    """The row of item ``i`` of background source ``src``: decode it as a build does, OCR it with the
    stage's resize policy (every image, too-small ones included, so a later smaller ``hr_size``
    needs no new run), and label it with ``cfg``'s thresholds (``ocr_reject`` aside: the label says
    what is in the image; a build honours ``ocr_reject`` itself)."""
    item = src.item_id(i)
    try:
        img = decode_image(src.load(i), stage=STAGE, what=item, allow_gray=False)
    except Rejected as r:
        return {"id": item, "verdict": "unreadable", "width": None, "height": None, "texts": [],
                "score": None, "error": f"{r.reason}: {r.detail}"}
    h, w = img.shape[:2]
    texts = [[str(t), float(s)] for t, s in ocr_texts(ocr, img, max_side=cfg.max_side_for_ocr,
                                                       min_side=cfg.min_side_for_ocr)]
    rejected = decide(item, w, h, texts, hr_size=cfg.hr_size, min_score=cfg.ocr_min_score)
    return {"id": item, "verdict": rejected.reason if rejected else "ok", "width": int(w), "height": int(h),
            "texts": texts, "score": max((s for _, s in texts), default=None), "error": None}


def relabel(row: dict, cfg: BackgroundConfig) -> dict:
    """``row`` with its ``verdict`` label recomputed from its size and texts at ``cfg``'s thresholds
    (no OCR); unreadable rows are returned as they are."""
    if row["verdict"] == "unreadable":
        return row
    rejected = decide(row["id"], row["width"], row["height"], row["texts"], hr_size=cfg.hr_size,
                      min_score=cfg.ocr_min_score)
    return {**row, "verdict": rejected.reason if rejected else "ok"}


# -- a file read back -----------------------------------------------------------------------------
@dataclass
class Verdicts:
    """A verdicts file in memory: ``header`` and ``rows`` (item id -> row dict, file order)."""

    path: Path
    header: dict
    rows: dict[str, dict]

    @property
    def source_names(self) -> list[str]:
        return [s["name"] for s in self.header["sources"]]

    def check(self, cfg: BackgroundConfig, sources: list, engine_identity: dict) -> None:
        """Raise :class:`VerdictsError` unless this file fits: OCR engine + resize policy, and for
        every source in ``sources`` its listing and one row per item."""
        names = [s.name for s in sources]
        a, b = self.header["ocr"], ocr_identity(cfg, engine_identity)
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                raise VerdictsError(f"{self.path}: ocr.{k} differs (file: {a.get(k)!r}, recipe: {b.get(k)!r}); "
                                    f"{rerun_hint(self.path, names)}")
        by_name = {s["name"]: s for s in self.header["sources"]}
        for src in sources:
            ident = source_identity(src)
            have = by_name.get(ident["name"])
            if have is None:
                raise VerdictsError(f"{self.path}: has no verdicts for background source {ident['name']!r} "
                                    f"(it covers {self.source_names}); {rerun_hint(self.path, names)}")
            for k in ("items", "ids_sha256"):
                if have.get(k) != ident[k]:
                    raise VerdictsError(f"{self.path}: source {ident['name']!r} {k} differs (file: {have.get(k)!r}, "
                                        f"now: {ident[k]!r}): its listing changed; {rerun_hint(self.path, names)}")
            missing = [src.item_id(i) for i in range(len(src)) if src.item_id(i) not in self.rows]
            if missing:
                raise VerdictsError(f"{self.path}: {len(missing)} of {len(src)} items of source {ident['name']!r} "
                                    f"have no row (first: {missing[0]}); {rerun_hint(self.path, names)}")

    def stale(self, item: str) -> VerdictsError:
        """The error for an image the file calls unreadable that decodes now."""
        return VerdictsError(f"{self.path}: {item} is recorded as unreadable ({self.rows[item]['error']}) but "
                             f"decodes now: the image changed after the prefilter run; "
                             f"{rerun_hint(self.path, self.source_names)}")


def read_verdicts(path) -> Verdicts:
    """Read a verdicts file (``.parquet`` or JSONL, by suffix). Raises :class:`VerdictsError`
    naming the file and line (JSONL) or row (Parquet) of anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise VerdictsError(f"verdicts file {path} does not exist; write it with `synth prefilter --out {path}`")
    if path.suffix.lower() == ".parquet":
        header, rows = _read_parquet(path)
    else:
        header, rows = read_jsonl(path)
    return Verdicts(path, header, rows)


def read_jsonl(path, *, torn_tail_ok: bool = False) -> tuple[dict, dict[str, dict]]:
    """Header and rows of a JSONL verdicts file. ``torn_tail_ok``: a last line without its newline
    that does not parse (a write cut short by a kill) is dropped instead of being an error — for
    the ``.partial.jsonl`` file of an interrupted run."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    torn = lines.pop() if lines else b""  # text after the last newline (b"" for a complete file)
    if torn.strip() and torn_tail_ok:
        try:
            json.loads(torn)
        except (json.JSONDecodeError, UnicodeDecodeError):
            torn = b""
    if torn.strip():
        lines.append(torn)
    if not lines:
        raise VerdictsError(f"{path}: empty; expected a {FORMAT} header line")
    header = _header(_json_line(path, 1, lines[0]), f"{path}:1")
    rows: dict[str, dict] = {}
    for n, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        _add(rows, _row(_json_line(path, n, line), f"{path}:{n}"), f"{path}:{n}")
    return header, rows


def _json_line(path: Path, n: int, line: bytes):
    try:
        return json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VerdictsError(f"{path}:{n}: not valid JSON ({e}); is this a verdicts file written by "
                            "`synth prefilter`?") from None


def _header(h, where: str) -> dict:
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        got = h.get("format") if isinstance(h, dict) else type(h).__name__
        raise VerdictsError(f"{where}: not a verdicts header (format {got!r}, expected {FORMAT!r})")
    srcs = h.get("sources")
    if (not isinstance(h.get("ocr"), dict) or not isinstance(srcs, list)
            or not all(isinstance(s, dict) and {"name", "items", "ids_sha256"} <= set(s) for s in srcs)):
        raise VerdictsError(f"{where}: header needs 'ocr' (a mapping) and 'sources' (a list of "
                            "{name, items, ids_sha256})")
    return h


def _row(r, where: str) -> dict:
    if not isinstance(r, dict) or set(r) != set(ROW_KEYS):
        keys = sorted(r) if isinstance(r, dict) else type(r).__name__
        raise VerdictsError(f"{where}: a row needs exactly the keys {list(ROW_KEYS)}, got {keys}")
    bad = None
    if not isinstance(r["id"], str) or not r["id"]:
        bad = "id must be a non-empty string"
    elif r["verdict"] not in VERDICTS:
        bad = f"verdict {r['verdict']!r} is not one of {list(VERDICTS)}"
    elif r["verdict"] != "unreadable" and not all(isinstance(r[k], int) and not isinstance(r[k], bool) and r[k] > 0
                                                  for k in ("width", "height")):
        bad = f"width/height must be positive integers, got {r['width']!r}x{r['height']!r}"
    elif not isinstance(r["texts"], list) or not all(
            isinstance(t, (list, tuple)) and len(t) == 2 and isinstance(t[0], str)
            and isinstance(t[1], (int, float)) and not isinstance(t[1], bool) for t in r["texts"]):
        bad = f"texts must be a list of [text, score] pairs, got {r['texts']!r}"
    elif r["score"] is not None and (isinstance(r["score"], bool) or not isinstance(r["score"], (int, float))):
        bad = f"score must be a number or null, got {r['score']!r}"
    if bad:
        raise VerdictsError(f"{where}: {bad}")
    r["texts"] = [[t, float(s)] for t, s in r["texts"]]
    return r


def _add(rows: dict, r: dict, where: str) -> None:
    if r["id"] in rows:
        raise VerdictsError(f"{where}: a second row for {r['id']!r}")
    rows[r["id"]] = r


# -- writing -------------------------------------------------------------------------------------
def write_verdicts(path, header: dict, rows: list[dict]) -> Path:
    """Write ``header`` and ``rows`` (in the order given) to ``path`` atomically; Parquet for a
    ``.parquet`` suffix, else JSONL."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            _write_parquet(tmp, header, rows)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json_line(header))
                f.writelines(json_line(r) for r in rows)
    return path


def json_line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False) + "\n"


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("verdict", pa.string()), ("width", pa.int32()),
                      ("height", pa.int32()),
                      ("texts", pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())]))),
                      ("score", pa.float64()), ("error", pa.string())])


def _write_parquet(tmp: Path, header: dict, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [r[k] for r in rows] for k in ROW_KEYS}
    cols["texts"] = [[{"text": t, "score": s} for t, s in r["texts"]] for r in rows]
    schema = _parquet_schema().with_metadata({PARQUET_KEY: json.dumps(header, ensure_ascii=False).encode()})
    pq.write_table(pa.table(cols, schema=schema), tmp)


def _read_parquet(path: Path) -> tuple[dict, dict[str, dict]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise VerdictsError(f"{path}: not a readable Parquet file ({e})") from None
    meta = table.schema.metadata or {}
    if PARQUET_KEY not in meta:
        raise VerdictsError(f"{path}: no {PARQUET_KEY.decode()} header in the Parquet schema metadata; "
                            "write the file with `synth prefilter`")
    try:
        header = json.loads(meta[PARQUET_KEY])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VerdictsError(f"{path}: its {PARQUET_KEY.decode()} header is not valid JSON ({e})") from None
    header = _header(header, f"{path} (header)")
    missing = [k for k in ROW_KEYS if k not in table.column_names]
    if missing:
        raise VerdictsError(f"{path}: Parquet columns {missing} are missing (has {table.column_names})")
    rows: dict[str, dict] = {}
    for n, r in enumerate(table.select(list(ROW_KEYS)).to_pylist(), 1):
        texts = r["texts"]
        if isinstance(texts, list) and all(isinstance(t, dict) for t in texts):
            r["texts"] = [[t.get("text"), t.get("score")] for t in texts]
        _add(rows, _row(r, f"{path} row {n}"), f"{path} row {n}")
    return header, rows


def _plain(x):
    """JSON's view of ``x`` (tuples become lists), so a header compares equal to its read-back."""
    return json.loads(json.dumps(x))
