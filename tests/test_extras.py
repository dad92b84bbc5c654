"""spacy_rnn.extras.require: a missing optional dependency names the extra to install; any
other import failure surfaces unchanged; the extras it knows are the ones setup.cfg declares."""
import configparser
import json
import re
import sys
from pathlib import Path

import pytest

from spacy_rnn.extras import EXTRAS, require

ROOT = Path(__file__).resolve().parent.parent


def test_extras_require_returns_the_module():
    assert require("json", "dev", "Reading JSON") is json


def test_extras_require_names_the_extra(monkeypatch):
    # Both entries: an earlier test may have imported matplotlib.pyplot, which then
    # imports from sys.modules whatever its parent's entry says.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError) as err:
        require("matplotlib.pyplot", "plots", "Plotting the benchmark")
    message = str(err.value)
    assert message.startswith("Plotting the benchmark needs the Python module 'matplotlib.pyplot'")
    assert 'pip install "spacy-rnn[plots]"' in message


def test_extras_require_does_not_hide_a_broken_installed_module(tmp_path, monkeypatch):
    # the module exists but fails importing something else: that is a bug, not a missing extra
    (tmp_path / "broken_extra_mod.py").write_text("import no_such_module_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_module_xyz") as err:
        require("broken_extra_mod", "plots", "Plotting")
    assert "spacy-rnn[" not in str(err.value)


def test_extras_require_rejects_an_unknown_extra():
    with pytest.raises(ValueError, match=re.escape("unknown extra 'plot'")):
        require("json", "plot", "Plotting")


def test_extras_match_setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf8")
    declared = set(parser["options.extras_require"]) - {"all"}
    assert declared == set(EXTRAS)


def test_extras_require_message_starts_with_a_capital(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"^The Ray engine needs the Python module 'ray'"):
        require("ray", "ray", "the Ray engine")
