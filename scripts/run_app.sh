#!/usr/bin/env bash
# Set up from scratch and serve the app on the committed weights: http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
exec .venv/bin/streamlit run streamlit_app.py "$@"
