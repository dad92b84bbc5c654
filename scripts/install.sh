#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with torch 2.13.0 (installed
# first, so the right torch build is chosen before anything depends on it) and spacy-rnn
# in editable mode with every extra: dev (pytest, hypothesis, build, flake8), vectors
# (GloVe 6B 50d), plots (matplotlib), baselines (sklearn-crfsuite) and ray (ray[data]).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev,vectors,plots,baselines,ray]"
.venv/bin/python -c "import spacy_rnn, torch; print(f'spacy-rnn {spacy_rnn.__version__} ready (torch {torch.__version__})')"
