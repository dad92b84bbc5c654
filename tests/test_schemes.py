"""Tag schemes: conversion round trips (property tests), every repair case,
detection, validation and the CRF transition masks against a brute-force
check of every short sequence."""

import itertools

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_rnn.schemes import (
    MISSING_TAG,
    PREFIXES,
    SCHEMES,
    allowed_transitions,
    convert,
    decode_tag_ids,
    detect_scheme,
    encode_tag_ids,
    is_valid,
    labels_of_tag_set,
    normalize_scheme,
    repair,
    spans_to_tags,
    split_tag,
    tag_set,
    tags_to_spans,
    validate,
)

LABELS = ["PER", "LOC", "ORG"]


@st.composite
def spans_strategy(draw, allow_adjacent_same=True):
    """Random non-overlapping spans over n tokens."""
    n = draw(st.integers(min_value=0, max_value=14))
    spans = []
    i = 0
    while i < n:
        if draw(st.booleans()):
            length = draw(st.integers(min_value=1, max_value=min(4, n - i)))
            label = draw(st.sampled_from(LABELS))
            if not allow_adjacent_same and spans and spans[-1][1] == i and spans[-1][2] == label:
                i += 1
                continue
            spans.append((i, i + length, label))
            i += length
        else:
            i += draw(st.integers(min_value=1, max_value=3))
    return n, spans


@pytest.mark.parametrize("src,dst", list(itertools.product(SCHEMES, SCHEMES)))
@settings(max_examples=30, deadline=None)
@given(data=spans_strategy(allow_adjacent_same=True))
def test_schemes_convert_roundtrip_every_pair(src, dst, data):
    n, spans = data
    if "IO" in (src, dst):
        # IO cannot separate adjacent same-type entities: merge them, as IO does.
        spans = tags_to_spans(spans_to_tags(spans, n, "IO"), "IO")
    tags = spans_to_tags(spans, n, src)
    assert is_valid(tags, src)
    assert tags_to_spans(tags, src) == spans
    converted = convert(tags, src, dst, strict=True)
    assert is_valid(converted, dst)
    assert tags_to_spans(converted, dst) == spans
    assert convert(converted, dst, src) == tags


@settings(max_examples=100, deadline=None)
@given(data=spans_strategy(allow_adjacent_same=False))
def test_schemes_io_roundtrips_without_adjacent_same_type(data):
    n, spans = data
    tags = spans_to_tags(spans, n, "IOB2")
    assert convert(convert(tags, "IOB2", "IO"), "IO", "IOB2") == tags


def test_schemes_io_merges_adjacent_same_type():
    tags = ["B-PER", "B-PER", "O"]
    assert convert(tags, "IOB2", "IO") == ["I-PER", "I-PER", "O"]
    assert tags_to_spans(["I-PER", "I-PER"], "IO") == [(0, 2, "PER")]


def _random_tags(scheme):
    prefixes = list(PREFIXES[scheme])
    tag = st.one_of(
        st.just("O"),
        st.builds(
            lambda p, label: f"{p}-{label}", st.sampled_from(prefixes), st.sampled_from(LABELS[:2])
        ),
    )
    return st.lists(tag, max_size=12)


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_schemes_repair_properties(scheme, data):
    tags = data.draw(_random_tags(scheme))
    fixed, repairs = repair(tags, scheme)
    # The repaired sequence is valid, keeps the lenient reading, and a repair
    # is counted for exactly the tags that changed.
    assert is_valid(fixed, scheme)
    assert tags_to_spans(fixed, scheme) == tags_to_spans(tags, scheme)
    assert len(repairs) == sum(a != b for a, b in zip(tags, fixed))
    assert [r.index for r in repairs] == [i for i, (a, b) in enumerate(zip(tags, fixed)) if a != b]
    assert repair(fixed, scheme) == (fixed, [])
    assert (validate(tags, scheme) == []) == (fixed == list(tags))


# Each repair case: (scheme, input, repaired, number of repairs)
REPAIR_CASES = [
    # IOB2: I-X after O starts an entity
    ("IOB2", ["O", "I-PER", "I-PER"], ["O", "B-PER", "I-PER"], 1),
    # IOB2: I-X at the start of a sentence
    ("IOB2", ["I-LOC", "O"], ["B-LOC", "O"], 1),
    # IOB2: I-X after another type starts a new entity
    ("IOB2", ["B-PER", "I-LOC", "I-LOC"], ["B-PER", "B-LOC", "I-LOC"], 1),
    # IOB1: B-X after O (B only separates same-type entities)
    ("IOB1", ["O", "B-PER", "I-PER"], ["O", "I-PER", "I-PER"], 1),
    # IOB1: B-X after another type
    ("IOB1", ["I-LOC", "B-PER"], ["I-LOC", "I-PER"], 1),
    # IOB1: valid B separating same-type entities is kept
    ("IOB1", ["I-PER", "B-PER", "O"], ["I-PER", "B-PER", "O"], 0),
    # IOBES: entity not closed before O: B -> S, and I -> E
    ("IOBES", ["B-PER", "O"], ["S-PER", "O"], 1),
    ("IOBES", ["B-PER", "I-PER", "O"], ["B-PER", "E-PER", "O"], 1),
    # IOBES: I-X / E-X without an open entity start one
    ("IOBES", ["O", "I-PER", "E-PER"], ["O", "B-PER", "E-PER"], 1),
    ("IOBES", ["O", "E-PER"], ["O", "S-PER"], 1),
    # IOBES: entity still open at the end
    ("IOBES", ["O", "B-ORG", "I-ORG"], ["O", "B-ORG", "E-ORG"], 1),
    # IOBES: type change inside an entity
    ("IOBES", ["B-PER", "E-LOC"], ["S-PER", "S-LOC"], 2),
    # BILUO: the same cases with L/U
    ("BILUO", ["B-PER", "O"], ["U-PER", "O"], 1),
    ("BILUO", ["O", "I-PER", "L-PER"], ["O", "B-PER", "L-PER"], 1),
    ("BILUO", ["L-PER"], ["U-PER"], 1),
    ("BILUO", ["B-PER", "B-PER", "L-PER"], ["U-PER", "B-PER", "L-PER"], 1),
    ("BILUO", ["U-PER", "I-PER"], ["U-PER", "U-PER"], 1),
    # IO: any sequence of valid tags is valid
    ("IO", ["I-PER", "I-LOC", "O", "I-PER"], ["I-PER", "I-LOC", "O", "I-PER"], 0),
]


@pytest.mark.parametrize("scheme,tags,expected,n", REPAIR_CASES)
def test_schemes_repair_case(scheme, tags, expected, n):
    fixed, repairs = repair(tags, scheme)
    assert fixed == expected
    assert len(repairs) == n
    for r in repairs:
        assert r.fixed == expected[r.index] and r.tag == tags[r.index]
        assert scheme in r.message and repr(r.tag) in r.message


def test_schemes_repair_message_names_context():
    _, repairs = repair(["O", "I-PER"], "IOB2")
    assert repairs[0].message == (
        "'I-PER' at position 1 (after 'O', before '<end>') is invalid in IOB2; read as 'B-PER'"
    )


@pytest.mark.parametrize(
    "tag,message",
    [
        ("B-", "entity type after 'B-' is empty"),
        ("X-PER", "unknown prefix 'X'"),
        ("PER", "expected 'O' or PREFIX-TYPE"),
        ("", "expected 'O' or PREFIX-TYPE"),
        ("B- ", "is empty"),
    ],
)
def test_schemes_malformed_tags(tag, message):
    with pytest.raises(ValueError, match=message):
        split_tag(tag)
    problems = validate(["O", tag], "IOB2")
    assert len(problems) == 1 and problems[0].index == 1 and problems[0].fixed is None
    assert message.split("'")[0] in problems[0].message
    with pytest.raises(ValueError):
        tags_to_spans(["O", tag], "IOB2")
    with pytest.raises(ValueError):
        repair([tag], "IOB2")


def test_schemes_tag_outside_scheme():
    assert validate(["E-PER"], "IOB2")[0].message == (
        "Tag 'E-PER' is not a IOB2 tag (IOB2 tags are O, B-TYPE, I-TYPE)"
    )
    with pytest.raises(ValueError, match="not a IO tag"):
        tags_to_spans(["B-PER"], "IO")


def test_schemes_hyphenated_types():
    assert split_tag("B-WORK-OF-ART") == ("B", "WORK-OF-ART")
    assert tags_to_spans(["B-WORK-OF-ART", "I-WORK-OF-ART"], "BIO") == [(0, 2, "WORK-OF-ART")]


def test_schemes_names_and_aliases():
    assert normalize_scheme("bio") == "IOB2"
    assert normalize_scheme("bilou") == "BILUO"
    assert normalize_scheme("BIOES") == "IOBES"
    assert normalize_scheme(" iob1 ") == "IOB1"
    with pytest.raises(ValueError, match="Unknown tag scheme 'IOX'"):
        normalize_scheme("IOX")


def test_schemes_spans_to_tags_rejects_bad_spans():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([(0, 2, "PER"), (1, 3, "LOC")], 4, "IOB2")
    with pytest.raises(ValueError, match="outside"):
        spans_to_tags([(2, 5, "PER")], 4, "IOB2")
    with pytest.raises(ValueError, match="empty"):
        spans_to_tags([(2, 2, "PER")], 4, "IOB2")


@pytest.mark.parametrize(
    "tags,expected",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], "IOB2"),
        ([["I-PER", "I-PER", "O"], ["O", "I-LOC", "B-LOC"]], "IOB1"),
        ([["I-PER", "O"], ["I-LOC"]], "IO"),
        (["S-PER", "B-LOC", "E-LOC"], "IOBES"),
        (["U-PER", "B-LOC", "L-LOC"], "BILUO"),
        (["O", "O"], "IOB2"),
        ([], "IOB2"),
        # mostly IOB2 with one stray I- after O: still IOB2 (then repaired)
        ([["B-PER", "I-PER"], ["B-LOC"], ["O", "I-ORG"], ["B-ORG", "O"]], "IOB2"),
    ],
)
def test_schemes_detect(tags, expected):
    assert detect_scheme(tags) == expected


def test_schemes_detect_sentence_boundaries_matter():
    # As two sentences, each I-LOC starts an entity: IOB2 would need 1 repair,
    # IOB1 none (B- separates same types, the sentence start resets).
    assert detect_scheme([["I-LOC"], ["B-LOC", "B-LOC"]]) == "IOB2"
    assert detect_scheme([["I-LOC", "I-LOC"], ["I-PER", "B-PER"]]) == "IOB1"


def test_schemes_detect_errors():
    with pytest.raises(ValueError, match="mix IOBES"):
        detect_scheme(["S-PER", "U-LOC"])
    with pytest.raises(ValueError, match="unknown prefix 'X'"):
        detect_scheme(["X-PER"])


def test_schemes_iob1_reading():
    # In IOB1, I- starts an entity unless it continues the same type.
    tags = ["I-PER", "I-PER", "B-PER", "I-LOC", "O", "I-LOC"]
    assert tags_to_spans(tags, "IOB1") == [
        (0, 2, "PER"),
        (2, 3, "PER"),
        (3, 4, "LOC"),
        (5, 6, "LOC"),
    ]
    assert convert(tags, "IOB1", "IOB2") == ["B-PER", "I-PER", "B-PER", "B-LOC", "O", "B-LOC"]


def _tag_set(scheme):
    return ["O"] + [f"{p}-{label}" for label in ("PER", "LOC") for p in PREFIXES[scheme]]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_schemes_allowed_transitions_brute_force(scheme):
    """A sequence passes the masks exactly when validate() finds no problem."""
    tag_set = _tag_set(scheme)
    start, trans, end = allowed_transitions(tag_set, scheme)
    n = len(tag_set)
    assert start.shape == (n,) and end.shape == (n,) and trans.shape == (n, n)
    assert start.dtype == bool
    for length in (1, 2, 3):
        for seq in itertools.product(range(n), repeat=length):
            ok = start[seq[0]] and end[seq[-1]] and all(trans[a, b] for a, b in zip(seq, seq[1:]))
            tags = [tag_set[i] for i in seq]
            assert ok == is_valid(tags, scheme), tags


def test_schemes_allowed_transitions_bio_alias_and_examples():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    start, trans, end = allowed_transitions(tags, "BIO")
    assert start.tolist() == [True, True, False, True, False]
    assert end.all()
    assert trans[tags.index("B-PER"), tags.index("I-PER")]
    assert not trans[tags.index("B-LOC"), tags.index("I-PER")]
    assert not trans[tags.index("O"), tags.index("I-LOC")]
    with pytest.raises(ValueError, match="not a IOB2 tag"):
        allowed_transitions(["O", "U-PER"], "IOB2")


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=40, deadline=None)
@given(data=spans_strategy(allow_adjacent_same=True))
def test_schemes_detect_finds_the_writing_scheme(scheme, data):
    n, spans = data
    tags = spans_to_tags(spans, n, scheme)
    found = detect_scheme(tags)
    prefixes = {tag[0] for tag in tags if tag != "O"}
    if not prefixes:
        assert found == "IOB2"  # no entity: every scheme reads it the same
    elif scheme == "IOB1" and "B" not in prefixes:
        assert found == "IO"  # without B-, IOB1 and IO tags are the same
    else:
        assert found == scheme
    assert tags_to_spans(tags, found) == tags_to_spans(tags, scheme)


# ---- tag ids -----------------------------------------------------------------


def test_schemes_tag_set_order_and_labels():
    assert tag_set(["LOC", "PER"], "BILUO") == [
        "O", "B-LOC", "I-LOC", "L-LOC", "U-LOC", "B-PER", "I-PER", "L-PER", "U-PER"
    ]
    assert tag_set(["PER"], "bio") == ["O", "B-PER", "I-PER"]
    assert tag_set(["PER"], "IOBES") == ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert tag_set([], "BILUO") == ["O"]
    for scheme in ("IOB2", "IOBES", "BILUO"):
        tags = tuple(tag_set(["WORK-OF-ART", "PER"], scheme))
        assert labels_of_tag_set(tags, scheme) == ("WORK-OF-ART", "PER")
    with pytest.raises(ValueError, match="not a BILUO tag set"):
        labels_of_tag_set(("O", "B-PER", "I-PER", "U-PER", "L-PER"), "BILUO")
    with pytest.raises(ValueError, match="not a IOB2 tag set"):
        labels_of_tag_set(("O", "I-PER", "B-PER"), "IOB2")
    for scheme in ("IO", "IOB1"):
        with pytest.raises(ValueError, match="marks where an entity begins"):
            tag_set(["PER"], scheme)


@st.composite
def chained_spans(draw):
    """(chain lengths, entity spans [(start, end, label index)]) over the
    concatenated tokens, each span inside one chain, none overlapping."""
    lengths = draw(st.lists(st.integers(1, 7), min_size=1, max_size=4))
    spans = []
    offset = 0
    for n in lengths:
        i = 0
        while i < n:
            if draw(st.booleans()):
                end = draw(st.integers(i + 1, n))
                spans.append((offset + i, offset + end, draw(st.integers(0, 2))))
                i = end
            else:
                i += 1
        offset += n
    return lengths, spans


def _chain_arrays(lengths):
    n = sum(lengths)
    first = numpy.zeros(n, dtype=bool)
    last = numpy.zeros(n, dtype=bool)
    starts = numpy.cumsum([0] + lengths[:-1])
    first[starts] = True
    last[starts + numpy.array(lengths) - 1] = True
    return first, last


def _entity_arrays(n, spans):
    label = numpy.full(n, -1, dtype="int64")
    begins = numpy.zeros(n, dtype=bool)
    for s, e, lab in spans:
        label[s:e] = lab
        begins[s] = True
    return label, begins


@settings(max_examples=150, deadline=None)
@given(scheme=st.sampled_from(["IOB2", "BIO", "IOBES", "BILUO"]), data=chained_spans())
def test_schemes_tag_ids_match_the_tag_strings(scheme, data):
    """encode_tag_ids writes, per chain, the ids of the tags spans_to_tags
    writes; decode_tag_ids reads the spans back."""
    lengths, spans = data
    n = sum(lengths)
    first, last = _chain_arrays(lengths)
    label, begins = _entity_arrays(n, spans)
    tags = tag_set(LABELS, scheme)
    ids = encode_tag_ids(label, begins, numpy.ones(n, dtype=bool), first, scheme)
    offset = 0
    for length in lengths:
        chain = [(s - offset, e - offset, LABELS[lab]) for s, e, lab in spans
                 if offset <= s < offset + length]
        expected = spans_to_tags(chain, length, scheme)
        assert [tags[i] for i in ids[offset:offset + length]] == expected
        offset += length
    starts, ends, labels = decode_tag_ids(ids, last, scheme)
    assert list(zip(starts.tolist(), ends.tolist(), labels.tolist())) == sorted(spans)


def test_schemes_tag_ids_cut_entities_at_chain_starts_and_mark_missing():
    # An entity over tokens 1-4 with a chain starting at 3; token 6 unknown;
    # tokens 7-8 two adjacent entities of the same type.
    n = 9
    label = numpy.array([-1, 0, 0, 0, 0, -1, -1, 1, 1])
    begins = numpy.array([0, 1, 0, 0, 0, 0, 0, 1, 1], dtype=bool)
    known = numpy.array([1, 1, 1, 1, 1, 1, 0, 1, 1], dtype=bool)
    first = numpy.zeros(n, dtype=bool)
    first[[0, 3]] = True
    tags = tag_set(["PER", "LOC"], "BILUO")
    ids = encode_tag_ids(label, begins, known, first, "BILUO")
    names = [tags[i] if i >= 0 else None for i in ids]
    assert names == ["O", "B-PER", "L-PER", "B-PER", "L-PER", "O", None, "U-LOC", "U-LOC"]
    assert ids[6] == MISSING_TAG
    bio = encode_tag_ids(label, begins, known, first, "BIO")
    tags = tag_set(["PER", "LOC"], "BIO")
    assert [tags[i] if i >= 0 else None for i in bio] == [
        "O", "B-PER", "I-PER", "B-PER", "I-PER", "O", None, "B-LOC", "B-LOC"
    ]
    # Decoding the BIO ids gives the entities back, cut at the chain start.
    last = numpy.roll(first, -1)
    assert last.tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 1]
    starts, ends, labels = decode_tag_ids(numpy.where(bio < 0, 0, bio), last, "BIO")
    assert list(zip(starts, ends, labels)) == [(1, 3, 0), (3, 5, 0), (7, 8, 1), (8, 9, 1)]
    # No entity crosses a chain end: B-PER | I-PER is two chains' invalid paths.
    with pytest.raises(ValueError, match="not a valid IOB2"):
        decode_tag_ids(numpy.array([1, 2]), numpy.array([True, True]), "BIO")
    assert decode_tag_ids(numpy.array([1, 2]), numpy.array([False, True]), "BIO")[1] == [2]


@pytest.mark.parametrize(
    "scheme,tags",
    [
        ("BILUO", ["B-PER", "O"]),  # never closed
        ("BILUO", ["O", "L-PER"]),  # never opened
        ("IOBES", ["B-PER", "B-PER", "E-PER"]),
        ("IOB2", ["O", "I-PER"]),  # IOB2 opens an entity with B- only
    ],
)
def test_schemes_decode_tag_ids_rejects_invalid_sequences(scheme, tags):
    names = tag_set(["PER"], scheme)
    ids = numpy.array([names.index(tag) for tag in tags])
    last = numpy.zeros(len(tags), dtype=bool)
    last[-1] = True
    with pytest.raises(ValueError, match="not a valid"):
        decode_tag_ids(ids, last, scheme)
