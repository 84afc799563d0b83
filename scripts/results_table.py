"""Write the results tables into README.md and docs/models.md from the committed metrics (after `evaluate`).

Usage: python scripts/results_table.py [--check]   (--check: exit 1 if a committed table is stale)
"""
import sys
from pathlib import Path

from lungfake.reports.results_table import documents, with_table

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    stale = []
    for path, table in documents(REPO).items():
        text = path.read_text()
        updated = with_table(text, table, path.name)
        if updated != text:
            stale.append(path.name)
            if "--check" not in sys.argv:
                path.write_text(updated)
    verb = "stale" if "--check" in sys.argv else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "every results table is current")
    return 1 if stale and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
