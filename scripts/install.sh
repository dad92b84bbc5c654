#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with the CPU build of
# torch 2.13.0 (installed first, so no CUDA build is pulled in) and spacy-rnn
# with its dev and vectors extras, in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[dev,vectors]"
.venv/bin/python -c "import spacy_rnn, torch; print(f'spacy-rnn {spacy_rnn.__version__} ready (torch {torch.__version__})')"
