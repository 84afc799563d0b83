"""A case report: one self-contained HTML page (images embedded as data URIs, no scripts, no external
requests) that prints cleanly to PDF from a browser. It records what was scored, each model's and the
ensemble's calibrated output, the Grad-CAM overlays, every warning, which weights produced it (names,
training split, sha256), the app version and the time; it carries the research-use disclaimer.

Built in memory and handed to the user as a download: nothing is written to disk or sent anywhere.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import io
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lungfake.classes import display_name
from lungfake.explain.cam import overlay
from lungfake.scoring.scoring import ImageScore
from lungfake.serving.registry import ModelEntry

DISCLAIMER = ("Research use only. lungfake is a demonstration, not a medical device, and must not be used for "
              "diagnosis or treatment decisions. Its models were trained on one public dataset (LC25000) and can "
              "be wrong with high confidence on tissue, stains or scanners they have not seen.")
REPO = Path(__file__).resolve().parents[2]
_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;max-width:1000px;margin:24px auto;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:22px;border-bottom:1px solid #ddd}
.disclaimer{border:2px solid #b00;padding:8px 12px;background:#fff4f4;font-weight:600}
.warning{border-left:4px solid #e69500;padding:4px 10px;background:#fff8e6;margin:6px 0}
table{border-collapse:collapse;font-size:13px;margin:8px 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;overflow-wrap:anywhere}
figure{max-width:300px}
.images{display:flex;flex-wrap:wrap;gap:10px} figure{margin:0;break-inside:avoid} figcaption{font-size:12px;color:#555}
.block{break-inside:avoid;page-break-inside:avoid} .meta{font-size:12px;color:#555}
@media print{body{margin:0;max-width:none} h2{break-after:avoid}}
"""


@functools.lru_cache(maxsize=1)
def app_version() -> str:
    """The git commit the app runs from, where the checkout has one; else the package version."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        return f"git {commit}"
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"lungfake {version('lungfake')}"
        except PackageNotFoundError:
            return "unknown"


def reproducible() -> bool:
    """Whether SOURCE_DATE_EPOCH asks for reproducible reports (the reproducible-builds convention): the same input
    then gives byte-identical reports (a cohort's slides against each slide mapped alone), so no report states how
    long anything took."""
    stated = os.environ.get("SOURCE_DATE_EPOCH")
    return bool(stated and stated.isdigit())


def generation_time() -> dt.datetime:
    """Now, or the time SOURCE_DATE_EPOCH states (reproducible)."""
    if reproducible():
        return dt.datetime.fromtimestamp(int(os.environ["SOURCE_DATE_EPOCH"]), dt.UTC)
    return dt.datetime.now(dt.UTC)


def image_uri(rgb: np.ndarray, max_side: int = 640) -> str:
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(rgb: np.ndarray, caption: str, width: int) -> str:
    return (f'<figure><img src="{image_uri(rgb)}" width="{width}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class CaseReport:
    title: str
    source: str  # the uploaded file name(s), as the user named them
    models: list[ModelEntry]
    sections: list[str] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        self.sections.append(f"<p>{html.escape(text)}</p>")

    def add_warning(self, text: str) -> None:
        self.sections.append(f'<div class="warning">{html.escape(text)}</div>')

    def add_images(self, images: list[tuple[np.ndarray, str]], width: int = 300) -> None:
        self.sections.append('<div class="images">' + "".join(_figure(rgb, caption, width) for rgb, caption in images) + "</div>")

    def add_table(self, headers: list[str], rows: list[list]) -> None:
        self.sections.append(_table(headers, rows))

    def add_score(self, score: ImageScore, heading: str | None = None, opacity: float = 0.45) -> None:
        """One image: its verdict, warnings, predictions table and each model's Grad-CAM overlay when computed; an image
        refused as not lung H&E gets its reason and no class."""
        parts, verdict = [f"<h2>{html.escape(heading or score.name)}</h2>"], score.verdict
        if score.refused:
            parts.append(f'<div class="warning">Not a lung H&amp;E tile by the out-of-distribution check: '
                         f"{html.escape(score.ood.reason)}. No class is given for it.</div>")
            parts.append('<div class="images">' + _figure(score.rgb, "input", 220) + "</div>")
            self.sections.append('<div class="block">' + "".join(parts) + "</div>")
            return
        parts.append(f'<p class="verdict"><strong>{html.escape(verdict.headline)}</strong></p>')
        if verdict.subtype_uncertain:
            parts.append(f'<div class="warning">{html.escape(verdict.explanation)}</div>')
        if score.ood.domain_shift:
            parts.append(f'<div class="warning">H&amp;E tissue, but unlike LC25000\'s tiles: '
                         f"{html.escape(score.ood.domain_shift_reason)}. Trust the predictions less.</div>")
        if not score.models_agree:
            parts.append('<div class="warning">The models disagree.</div>')
        if score.scale_note:
            parts.append(f'<p class="meta">{html.escape(score.scale_note)}</p>')
        everyone = {**score.models, **({"ensemble": score.ensemble} if score.ensemble else {})}
        classes = list(next(iter(score.models.values())).probabilities)
        rows = [[m.name, display_name(m.predicted), *[f"{m.probabilities[c]:.1%}" for c in classes],
                 f"{m.cancer_probability:.1%}"] for m in everyone.values()]
        parts.append(_table(["model", "prediction", *[display_name(c) for c in classes], "cancer"], rows))
        explained = [m for m in score.models.values() if m.heatmap is not None]
        images = [(score.rgb, "input")] + [(overlay(score.rgb, m.heatmap, opacity), f"{m.name}: {m.overlay_caption}")
                                           for m in explained if m.overlay_is_evidence]
        parts.extend(f'<div class="warning">{html.escape(f"{m.name}: overlay left out. {m.overlay_caption}")}</div>'
                     for m in explained if not m.overlay_is_evidence)
        parts.append('<div class="images">' + "".join(_figure(rgb, caption, 220) for rgb, caption in images) + "</div>")
        self.sections.append('<div class="block">' + "".join(parts) + "</div>")

    def html(self, now: dt.datetime | None = None) -> str:
        now = now or generation_time()
        models = _table(["model", "weights file", "sha256", "trained on split", "input px", "temperature"],
                        [[m.display_name or m.arch, m.file, m.sha256, m.split, m.input_size, f"{m.temperature:.3f}"]
                         for m in self.models])
        return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f"<style>{_STYLE}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>"
                f'<p class="meta">Source: {html.escape(self.source)} &middot; generated {now:%Y-%m-%d %H:%M:%S %Z} '
                f"&middot; lungfake {html.escape(app_version())}</p>"
                f'<div class="disclaimer">{html.escape(DISCLAIMER)}</div>'
                + "".join(self.sections)
                + f"<h2>Models</h2>{models}<p class=\"meta\">Probabilities are calibrated (temperature fitted on "
                "validation tiles). The ensemble takes a weighted mean of the models' calibrated probabilities (weights "
                "fitted on validation tiles by log-loss), then applies its own temperature, also fitted there. The verdict "
                "gives cancer vs benign, and a carcinoma's subtype only where the models agree on it and lean to it clearly "
                "enough (levels chosen on validation tiles).</p></body></html>")
