"""CoNLL converter: the real CoNLL-2003 counts, gold tags read back, round trips
through DocBin and through CoNLL in every scheme, and each input problem."""

from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_rnn.converters import ConversionError, read_conll, write_conll
from spacy_rnn.schemes import SCHEMES, convert, tags_to_spans

EXPECTED = {
    # docs, sentences, tokens, entities
    "train": (946, 14041, 203621, {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438}),
    "valid": (216, 3250, 51362, None),
    "test": (231, 3453, 46435, None),
}
EXPECTED_TOTAL = {"train": 23499, "valid": 5942, "test": 5648}


def _raw_sentences(path):
    """An independent reading of a CoNLL-2003 file: [(words, pos, ner)] per sentence."""
    sentences, current = [], []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current:
                sentences.append(tuple(map(list, zip(*current))))
            current = []
            continue
        word, pos, _, ner = line.split(" ")
        current.append((word, pos, ner))
    if current:
        sentences.append(tuple(map(list, zip(*current))))
    return sentences


@pytest.fixture(scope="session")
def conll_train(conll_dir):
    return read_conll(conll_dir / "train.txt", pos_col=1)


def test_conll2003_train_counts_and_gold_tags(conll_dir, conll_train):
    docs, stats = conll_train
    n_docs, n_sents, n_tokens, ents = EXPECTED["train"]
    assert (stats.documents, stats.sentences, stats.tokens) == (n_docs, n_sents, n_tokens)
    assert len(docs) == n_docs
    assert dict(stats.entities) == ents
    assert sum(len(doc.ents) for doc in docs) == EXPECTED_TOTAL["train"]
    assert stats.scheme == "IOB2" and stats.scheme_detected and stats.repairs == 0
    assert stats.skipped == []
    # Entities read back as IOB2 give the gold tag of every token, sentence by sentence.
    raw = _raw_sentences(conll_dir / "train.txt")
    sents = [sent for doc in docs for sent in doc.sents]
    assert len(sents) == len(raw) == n_sents
    for sent, (words, pos, ner) in zip(sents, raw):
        assert [t.text for t in sent] == words
        assert [t.tag_ for t in sent] == pos
        assert [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in sent] == ner
    # Fully annotated: no token with missing entity annotation.
    assert all(t.ent_iob != 0 for doc in docs[:50] for t in doc)
    assert all(doc.has_annotation("SENT_START") for doc in docs)


@pytest.mark.parametrize("split", ["valid", "test"])
def test_conll2003_valid_test_counts(conll_dir, split):
    docs, stats = read_conll(conll_dir / f"{split}.txt")
    n_docs, n_sents, n_tokens, _ = EXPECTED[split]
    assert (len(docs), stats.documents, stats.sentences, stats.tokens) == (
        n_docs,
        n_docs,
        n_sents,
        n_tokens,
    )
    assert sum(stats.entities.values()) == sum(len(d.ents) for d in docs) == EXPECTED_TOTAL[split]
    # No bogus one-token "-DOCSTART-" sentences (spacy convert makes one per document).
    assert not any(t.text == "-DOCSTART-" for doc in docs for t in doc)


def test_conll_docbin_roundtrip(conll_train):
    docs = conll_train[0][:40]
    vocab = spacy.blank("en").vocab
    loaded = list(
        DocBin().from_bytes(DocBin(docs=docs, store_user_data=False).to_bytes()).get_docs(vocab)
    )
    for a, b in zip(docs, loaded):
        assert [t.text for t in a] == [t.text for t in b]
        assert [(e.start, e.end, e.label_) for e in a.ents] == [
            (e.start, e.end, e.label_) for e in b.ents
        ]
        assert [(s.start, s.end) for s in a.sents] == [(s.start, s.end) for s in b.sents]
        assert [t.tag_ for t in a] == [t.tag_ for t in b]


def _ents(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_conll_write_read_roundtrip_every_scheme(conll_train, tmp_path, scheme):
    docs = conll_train[0][:25]
    path = tmp_path / f"out.{scheme}.conll"
    written = write_conll(docs, path, scheme=scheme)
    assert written.documents == 25
    back, stats = read_conll(path, pos_col=1)
    assert stats.repairs == 0 and stats.scheme_detected
    assert len(back) == len(docs)
    for a, b in zip(docs, back):
        assert [t.text for t in a] == [t.text for t in b]
        assert [t.tag_ for t in a] == [t.tag_ for t in b]
        assert [(s.start, s.end) for s in a.sents] == [(s.start, s.end) for s in b.sents]
        if scheme == "IO":
            # IO merges adjacent same-type entities: compare with that reading.
            expected = []
            for s in a.sents:
                tags = [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_type_ else "O" for t in s]
                io = convert(tags, "IOB2", "IO")
                expected += [(s.start + i, s.start + j, l) for i, j, l in tags_to_spans(io, "IO")]
            assert _ents(b) == expected
        else:
            assert _ents(a) == _ents(b)
    # The detected scheme is the written one, except that a slice with no B-
    # between same-type neighbours is the same in IOB1 and IO.
    assert stats.scheme == scheme or (scheme == "IOB1" and stats.scheme == "IO")


def _write(tmp_path, text, name="in.conll", mode="w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_conll_any_docstart_line_is_a_marker(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\nA x y B-PER\nb x y O\n\n"
        "-DOCSTART- -X- O O\n\nC x y B-LOC\n\n"
        "-DOCSTART-\n\nD x y O\n"
    )
    docs, stats = read_conll(_write(tmp_path, text))
    assert [d.text for d in docs] == ["A b", "C", "D"]
    assert stats.documents == 3 and stats.sentences == 3
    assert dict(stats.entities) == {"PER": 1, "LOC": 1}


def test_conll_two_columns_tabs_and_column_choice(tmp_path):
    # WNUT style: token<TAB>tag; and a 3-column file with the tag in the middle.
    path = _write(tmp_path, "@paul\tO\nNew York\tB-location\ncity\tI-location\n\nhi\tO\n")
    docs, stats = read_conll(path)
    assert [t.text for t in docs[0]] == ["@paul", "New York", "city", "hi"]
    assert _ents(docs[0]) == [(1, 3, "location")]
    assert [(s.start, s.end) for s in docs[0].sents] == [(0, 3), (3, 4)]
    path = _write(tmp_path, "B-PER Anna NNP\nO runs VBZ\n", name="mid.conll")
    docs, _ = read_conll(path, token_col=1, tag_col=0, pos_col=-1)
    assert [t.text for t in docs[0]] == ["Anna", "runs"]
    assert [t.tag_ for t in docs[0]] == ["NNP", "VBZ"]
    assert _ents(docs[0]) == [(0, 1, "PER")]


def test_conll_n_sents_without_markers(tmp_path):
    text = "".join(f"w{i} O\n\n" for i in range(23))
    docs, stats = read_conll(_write(tmp_path, text))
    assert [len(list(d.sents)) for d in docs] == [10, 10, 3]
    assert any("10 sentences per Doc" in note for note in stats.notes)
    docs, _ = read_conll(_write(tmp_path, text), n_sents=4)
    assert [len(list(d.sents)) for d in docs] == [4] * 5 + [3]
    # with markers, n_sents splits inside documents and never across them
    marked = "-DOCSTART- O\n\n" + "a O\n\nb O\n\nc O\n\n" + "-DOCSTART- O\n\n" + "d O\n\n"
    docs, _ = read_conll(_write(tmp_path, marked, name="m.conll"), n_sents=2)
    assert [d.text for d in docs] == ["a b", "c", "d"]


def test_conll_iob1_detected_and_read(tmp_path):
    text = "Anna I-PER\nMaria I-PER\nBob B-PER\nin O\nParis I-LOC\n\nRome I-LOC\nParis B-LOC\n"
    docs, stats = read_conll(_write(tmp_path, text))
    assert stats.scheme == "IOB1" and stats.scheme_detected and stats.repairs == 0
    assert _ents(docs[0]) == [
        (0, 2, "PER"),
        (2, 3, "PER"),
        (4, 5, "LOC"),
        (5, 6, "LOC"),
        (6, 7, "LOC"),
    ]


def test_conll_repairs_counted_with_lines(tmp_path):
    text = "a B-PER\nb I-PER\nc O\nd I-ORG\ne I-ORG\n\nf I-LOC\ng O\n\nh B-MISC\n"
    docs, stats = read_conll(_write(tmp_path, text), scheme="BIO")
    assert stats.scheme == "IOB2" and not stats.scheme_detected
    assert stats.repairs == 2
    assert [(r["line"], r["tag"], r["fixed"]) for r in stats.repair_examples] == [
        (4, "I-ORG", "B-ORG"),
        (7, "I-LOC", "B-LOC"),
    ]
    assert _ents(docs[0]) == [(0, 2, "PER"), (3, 5, "ORG"), (5, 6, "LOC"), (7, 8, "MISC")]
    assert stats.to_dict()["repairs"] == 2
    with pytest.raises(ConversionError) as err:
        read_conll(_write(tmp_path, text), scheme="IOB2", strict=True)
    assert err.value.line == 4 and "invalid IOB2 sequence" in str(err.value)


def test_conll_writer_schemes_text(tmp_path):
    docs, _ = read_conll(_write(tmp_path, "New B-LOC\nYork I-LOC\nis O\nBob B-PER\n"))
    path = tmp_path / "out.conll"
    write_conll(docs, path, scheme="BILUO", docstart=False)
    assert path.read_text() == "New B-LOC\nYork L-LOC\nis O\nBob U-PER\n\n"


# --- bad input: each gives a ConversionError naming the file and the line ---

BAD_CASES = [
    (
        "a B-PER\nb I-PER\nc x O\n",
        3,
        "this line has 3 column(s) but the file's lines have 2 (as line 1)",
    ),
    ("a O\nb B-\n", 2, "the entity type after 'B-' is empty"),
    ("a O\n\nb X-PER\n", 3, "unknown prefix 'X'"),
    ("a O\nb PER\n", 2, "expected 'O' or PREFIX-TYPE"),
]


@pytest.mark.parametrize("text,line,message", BAD_CASES)
def test_conll_bad_lines(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConversionError) as err:
        read_conll(path)
    assert err.value.line == line and err.value.path == str(path)
    assert str(err.value).startswith(f"{path}, line {line}: ")
    assert message in str(err.value) and "--skip-invalid" in str(err.value)


def test_conll_tag_outside_given_scheme(tmp_path):
    path = _write(tmp_path, "a B-PER\nb E-PER\n")
    with pytest.raises(ConversionError, match=r"line 2: Tag 'E-PER' is not a IOB2 tag"):
        read_conll(path, scheme="IOB2")


def test_conll_skip_invalid_reports_each_line(tmp_path):
    text = "a B-PER\nb x I-PER\n\nc X-LOC\n\nd B-ORG\ne I-ORG\n"
    docs, stats = read_conll(_write(tmp_path, text), skip_invalid=True)
    assert [t.text for t in docs[0]] == ["d", "e"]
    assert [r["line"] for r in stats.skipped] == [2, 4]
    assert "its sentence (lines 1-2) was skipped" in stats.skipped[0]["reason"]
    assert "unknown prefix 'X'" in stats.skipped[1]["reason"]
    assert stats.to_dict()["skipped_lines"] == 2


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "file is empty"),
        ("\n\n  \n", "file is empty"),
        ("-DOCSTART- -X- -X- O\n\n-DOCSTART- -X- -X- O\n\n", "no sentences found"),
    ],
)
def test_conll_empty_inputs(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(ConversionError, match=message) as err:
        read_conll(path)
    assert str(path) in str(err.value)


def test_conll_missing_file(tmp_path):
    with pytest.raises(ConversionError, match="file not found"):
        read_conll(tmp_path / "nope.conll")


def test_conll_undecodable_bytes(tmp_path):
    path = _write(
        tmp_path, "caf\xe9 O\nok O\n\nna\xefve B-PER\n\ngood O\n".encode("latin-1"), mode="wb"
    )
    with pytest.raises(ConversionError) as err:
        read_conll(path)
    assert err.value.line == 1
    assert "cannot decode byte b'\\xe9' as utf-8" in str(err.value)
    assert "try --encoding cp1252" in str(err.value)
    docs, _ = read_conll(path, encoding="cp1252")
    assert docs[0].text == "café ok naïve good"
    docs, stats = read_conll(path, skip_invalid=True)
    assert [r["line"] for r in stats.skipped] == [1, 4]
    assert [d.text for d in docs] == ["good"] and stats.sentences == 1


def test_conll_crlf_and_bom(tmp_path):
    path = _write(tmp_path, "\ufeffa B-PER\r\nb O\r\n\r\nc O\r\n".encode("utf-8"), mode="wb")
    docs, stats = read_conll(path)
    assert [t.text for t in docs[0]] == ["a", "b", "c"] and stats.sentences == 2


def test_conll_line_of_only_a_byte_order_mark_is_blank(tmp_path):
    """Some public CoNLL files end with a line holding only U+FEFF: a blank line,
    not a one-column token line that stops the conversion."""
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\ufeff\n"
    text += "Peter NNP B-NP B-PER\n\n\ufeff\n"
    docs, stats = read_conll(_write(tmp_path, text.encode("utf-8"), mode="wb"))
    assert stats.sentences == 2 and stats.tokens == 3 and stats.skipped == []
    assert [t.text for t in docs[0]] == ["EU", "rejects", "Peter"]
    assert [t.is_sent_start for t in docs[0]] == [True, False, True]
    assert [(e.text, e.label_) for e in docs[0].ents] == [("EU", "ORG"), ("Peter", "PER")]


def test_conll_skip_invalid_everything_skipped_lists_each_line(tmp_path):
    """When --skip-invalid leaves no sentence, the error lists every skipped line
    with its reason instead of claiming the file holds no token lines."""
    path = _write(tmp_path, "a B-PER x\nb X-PER\n\nc O\n")
    with pytest.raises(ConversionError) as err:
        read_conll(path, skip_invalid=True)
    message = str(err.value)
    assert "no token lines" not in message
    assert "skipped every sentence (3 invalid line(s))" in message
    assert "line 1: Invalid tag 'x'" in message
    assert "line 2: this line has 2 column(s)" in message
    assert "line 4: this line has 2 column(s)" in message


def test_conll_skip_invalid_everything_skipped_long_list_is_cut(tmp_path):
    path = _write(tmp_path, "".join(f"w{i} Z-PER\n\n" for i in range(15)))
    with pytest.raises(ConversionError) as err:
        read_conll(path, skip_invalid=True)
    message = str(err.value)
    assert "line 19:" in message and "line 21:" not in message
    assert "... and 5 more" in message
