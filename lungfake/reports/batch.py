"""A batch of tiles (several files, or .zip archives of them) scored through the one scoring path: one row per
file, a file that cannot be read keeps its own row with the error, and the rest are still scored."""
from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from lungfake.classes import display_name
from lungfake.errors import ImageDecodeError, UploadLimitError
from lungfake.reports.case_report import CaseReport
from lungfake.scoring.scoring import BATCH, ImageScore, Progress, Scorer, csv_text, json_text
from lungfake.serving.images import UPLOAD_SUFFIXES, decode_image

MAX_TILES = 300
MAX_UNPACKED_BYTES = 200 * 1024 * 1024  # a zip's members together; a zip bomb is refused before unpacking


@dataclass(frozen=True)
class BatchRow:
    name: str
    score: ImageScore | None = None
    error: str | None = None

    @property
    def flagged(self) -> bool:
        """Needs a person's look: unreadable, not H&E, unlike LC25000's tissue, or the models disagree.
        (An uncertain subtype is its own column: the verdict already says so.)"""
        if self.score is None:
            return True
        unusual = bool(self.score.ood.ood) or bool(self.score.ood.domain_shift)
        return unusual or not self.score.models_agree

    @property
    def subtype_uncertain(self) -> bool:
        return self.score is not None and self.score.verdict.subtype_uncertain


def expand_uploads(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Files as given, with every .zip replaced by its image members (named archive/member); at most MAX_TILES."""
    expanded: list[tuple[str, bytes]] = []
    for name, data in files:
        expanded.extend(_zip_members(name, data) if name.lower().endswith(".zip") else [(name, data)])
        if len(expanded) > MAX_TILES:
            raise UploadLimitError(f"this batch holds more than {MAX_TILES} tiles; split it into batches of "
                                   f"at most {MAX_TILES}.")
    return expanded


def _zip_members(name: str, data: bytes) -> list[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.infolist() if _is_image_member(m)]
            if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
                raise UploadLimitError(f"{name} unpacks to more than {MAX_UNPACKED_BYTES // 2**20} MB; "
                                       "zip fewer or smaller tiles.")
            if len(members) > MAX_TILES:
                raise UploadLimitError(f"{name} holds {len(members)} images (at most {MAX_TILES}); split it.")
            return [(f"{name}/{m.filename}", archive.read(m)) for m in members]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, NotImplementedError):
        # RuntimeError: an encrypted member; NotImplementedError: an unsupported compression method
        raise UploadLimitError(f"{name} is not a zip archive lungfake can open (damaged, encrypted or an "
                               "unusual compression); zip the tiles again.") from None


def _is_image_member(member: zipfile.ZipInfo) -> bool:
    path = PurePosixPath(member.filename)
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
    return not member.is_dir() and not hidden and path.suffix.lower() in UPLOAD_SUFFIXES


def score_batch(scorer: Scorer, files: list[tuple[str, bytes]],
                on_progress: Callable[[Progress], None] | None = None) -> list[BatchRow]:
    """Every file decoded and scored (no Grad-CAM), in upload order; unreadable files keep a row with the error."""
    started, rows = time.perf_counter(), [None] * len(files)
    for start in range(0, len(files), BATCH):
        readable = {}
        for i in range(start, min(start + BATCH, len(files))):
            name, data = files[i]
            try:
                readable[i] = decode_image(data, name)
            except ImageDecodeError as exc:
                rows[i] = BatchRow(name, error=str(exc))
        if readable:
            scored = scorer.score(list(readable.values()), [files[i][0] for i in readable])
            for i, score in zip(readable, scored):
                rows[i] = BatchRow(score.name, score)
        if on_progress:
            on_progress(Progress(min(start + BATCH, len(files)), len(files), time.perf_counter() - started))
    return rows


def summary(rows: list[BatchRow]) -> dict:
    """Counts per verdict (benign, each subtype, carcinoma with its subtype uncertain), flagged, unreadable and refused
    files. A file refused as not lung H&E counts under not_he only: its forced class means nothing (the score page
    hides it too), and counting it would put holiday photographs among the benign tiles."""
    verdicts = Counter(row.score.verdict.headline for row in rows if row.score is not None and not row.score.refused)
    return {"files": len(rows), "predicted": dict(verdicts), "flagged": sum(r.flagged for r in rows),
            "unreadable": sum(r.score is None for r in rows),
            "not_he": sum(bool(r.score and r.score.refused) for r in rows),
            "domain_shift": sum(bool(r.score and r.score.ood.domain_shift) for r in rows),
            "subtype_uncertain": sum(r.subtype_uncertain for r in rows)}


NO_CLASS = "—"  # a model's cell for a file that gets no class (refused as not H&E, or unreadable)


def _scores_of(score: ImageScore) -> list:
    return [*score.models.values(), *([score.ensemble] if score.ensemble else [])]


def table_rows(rows: list[BatchRow], thumbnail: Callable | None = None) -> list[dict]:
    """One flat record per file for a table: the verdict, each model's prediction and confidence, the ensemble,
    flags. A refused or unreadable file gets no class in any column; an unreadable one's error says why."""
    names = list(dict.fromkeys(m.name for row in rows if row.score for m in _scores_of(row.score)))
    records = []
    for row in rows:
        record = {"thumbnail": thumbnail(row.score.rgb) if thumbnail and row.score else None, "file": row.name}
        score = row.score
        record["verdict"] = "unreadable" if score is None else score.verdict.headline
        everyone = {} if score is None or score.refused else {m.name: m for m in _scores_of(score)}
        for name in names:
            model = everyone.get(name)
            record[name] = f"{display_name(model.predicted)} ({model.confidence:.0%})" if model else NO_CLASS
        record |= {"agree": bool(score and not score.refused and score.models_agree), "not H&E": bool(score and score.refused),
                   "unlike LC25000": bool(score and score.ood.domain_shift), "subtype uncertain": row.subtype_uncertain,
                   "flagged": row.flagged, "error": row.error or ""}
        records.append(record)
    return records


def batch_report(rows: list[BatchRow], source: str, models: list) -> CaseReport:
    """The case report of a batch: every row of the table (no thumbnails), each unreadable file's error, and the
    counts per class of the files read as H&E. File names and errors are the user's: CaseReport escapes them."""
    counts, everything = summary(rows), table_rows(rows)
    report = CaseReport("Batch report", source, models)
    headers = [key for key in everything[0] if key != "thumbnail"] if everything else ["file"]
    report.add_table(headers, [["" if r[k] is None else r[k] for k in headers] for r in everything])
    for row in rows:
        if row.error:
            report.add_warning(f"{row.name}: {row.error}")
    report.add_text("Verdicts of the files read as H&E: " + ", ".join(
        f"{n} {c}" for n, c in sorted(counts["predicted"].items())) + f"; refused as not H&E: {counts['not_he']}")
    return report


def downloads(rows: list[BatchRow]) -> tuple[str, str]:
    """(CSV, JSON) of every row, unreadable files included with their errors."""
    scored = [r.score for r in rows if r.score is not None]
    failures = [(r.name, r.error) for r in rows if r.score is None]
    return csv_text(scored, failures), json_text(scored, failures)
