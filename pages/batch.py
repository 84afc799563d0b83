import hashlib

import streamlit as st

from lungfake.reports.batch import MAX_TILES, batch_report, downloads, expand_uploads, score_batch, summary, table_rows
from lungfake.reports.case_report import image_uri
from pages.common import DISCLAIMER, computed_once, enter_page, progress_bar, scorer

FILTERS = {
    "All files": lambda row: True,
    "Flagged only (unreadable, not H&E, unlike LC25000's tissue, or the models disagree)": lambda row: row.flagged,
    "Disagreements only": lambda row: row.score is not None and not row.score.models_agree,
    "Subtype uncertain only": lambda row: row.subtype_uncertain,
    "Unreadable only": lambda row: row.score is None,
}


def score_uploads(uploads) -> list:
    files = expand_uploads([(u.name, u.getvalue()) for u in uploads])
    bar, show = progress_bar("files")
    rows = score_batch(scorer(), files, show)
    bar.empty()
    return rows


enter_page()
st.title("Score a batch of tiles")
st.warning(DISCLAIMER)
uploads = st.file_uploader(f"Tiles, or .zip archives of tiles (at most {MAX_TILES} tiles in all)", accept_multiple_files=True,
                           type=["jpg", "jpeg", "png", "tif", "tiff", "zip"])
if not uploads:
    st.info("Upload several tiles (or a zip of them): each is scored by every model, without overlays.")
    st.stop()

key = hashlib.sha256(b"".join(hashlib.sha256(u.getvalue()).digest() + u.name.encode() for u in uploads)).hexdigest()
rows = computed_once("batch", key, lambda: score_uploads(uploads))

counts = summary(rows)
columns = st.columns(5)
columns[0].metric("Files", counts["files"])
columns[1].metric("Flagged", f"{counts['flagged'] / counts['files']:.0%}", help=f"{counts['flagged']} files: unreadable, "
                  "not H&E, unlike LC25000's tissue, or the models disagree")
columns[2].metric("Unreadable", counts["unreadable"])
columns[3].metric("Not H&E", counts["not_he"], help="Refused: not a lung H&E tile; not counted under any class")
columns[4].metric("Subtype uncertain", counts["subtype_uncertain"], help="Carcinoma, but its subtype is withheld: the "
                  "models disagree on it, its lean is small, or the tissue is unlike LC25000's (the score page says why)")
st.caption("Verdicts (cancer vs benign first, the subtype where it can be trusted), of the files read as H&E:")
for column, (name, count) in zip(st.columns(max(len(counts["predicted"]), 1)), sorted(counts["predicted"].items())):
    column.metric(name, count)
keep = FILTERS[st.selectbox("Show", list(FILTERS))]
shown = [row for row in rows if keep(row)]
records = table_rows(shown, lambda rgb: image_uri(rgb, 64))
st.dataframe(records, width="stretch", hide_index=True,
             column_config={"thumbnail": st.column_config.ImageColumn("tile", width="small")})
st.caption(f"{len(shown)} of {len(rows)} files shown; click a column header to sort.")

csv_data, json_data = downloads(rows)
report = batch_report(rows, ", ".join(u.name for u in uploads), [served.entry for served in scorer().served])
left, middle, right = st.columns(3)
left.download_button("Download results (CSV)", csv_data, "batch_lungfake.csv", "text/csv", on_click="ignore")
middle.download_button("Download results (JSON)", json_data, "batch_lungfake.json", "application/json", on_click="ignore")
right.download_button("Download case report (HTML)", report.html(), "batch_report.html", "text/html", on_click="ignore")
st.text(f"Scored: {len(rows)} files")
