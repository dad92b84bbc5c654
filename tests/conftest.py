"""Shared fixtures. The real corpora live in ../shared/data (or SPACY_RNN_DATA);
a test that needs them skips when they are absent, except under CI=true,
where a missing corpus is a failure."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("SPACY_RNN_DATA", ROOT.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"corpus not found: {path} (set SPACY_RNN_DATA to the folder holding conll2003/ and sst2/)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(DATA_DIR)


@pytest.fixture(scope="session")
def conll_dir() -> Path:
    return _require(DATA_DIR / "conll2003")


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    return _require(DATA_DIR / "sst2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
