"""Shared fixtures. The corpora live in ../shared/data (or SPACY_RNN_DATA); a
test that needs them skips when they are absent, except under CI=true, where
a missing corpus is a failure (helpers.data_path). Small pipelines, configs
and examples are in tests/helpers.py."""
from pathlib import Path

import pytest

from helpers import ROOT, data_path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder holding conll2003/ and sst2/."""
    return data_path()


@pytest.fixture(scope="session")
def conll_dir() -> Path:
    return data_path("conll2003")


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    return data_path("sst2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
