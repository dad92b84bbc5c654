"""Entity tag schemes: IO, IOB1, IOB2 (BIO), IOBES and BILUO.

One small module that every other part of spacy-rnn uses to go between tag
sequences and entity spans: detect a corpus' scheme, validate a sequence,
convert between any two schemes, repair invalid sequences (counting each
repair) and tell a CRF which transitions are valid.

The schemes, for an entity of type X spanning tokens i..j:

- ``IO``: every token ``I-X``. Two adjacent entities of the same type cannot
  be told apart (they read as one), so IO is lossy for such entities.
- ``IOB1`` (CoNLL-2000/2003 original): every token ``I-X``, except that the
  first token is ``B-X`` when the entity directly follows another entity of
  the same type. ``B-`` only separates adjacent same-type entities.
- ``IOB2`` (alias ``BIO``): first token ``B-X``, the others ``I-X``.
- ``IOBES`` (alias ``BIOES``): ``S-X`` for a one-token entity, else ``B-X``,
  ``I-X``..., ``E-X``.
- ``BILUO`` (alias ``BILOU``; spaCy's own): ``U-X``, or ``B-X``, ``I-X``...,
  ``L-X``.

Invalid sequences are read the way conlleval reads them (the "lenient"
reading): a continuation tag (``I-X``, ``E-X``, ``L-X``) that does not
continue an open entity of type X starts a new entity, and an entity that is
not closed where the scheme requires it ends where the next tag is not its
continuation. :func:`repair` rewrites a sequence into the valid tags of that
reading, so ``tags_to_spans(tags) == tags_to_spans(repair(tags)[0])`` always.
Tags are ``"O"`` or ``PREFIX-TYPE``; the type may itself contain hyphens
(``B-WORK-OF-ART``).
"""

from collections import Counter
from functools import lru_cache
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy

SCHEMES = ("IO", "IOB1", "IOB2", "IOBES", "BILUO")

ALIASES = {"BIO": "IOB2", "BIOES": "IOBES", "BILOU": "BILUO"}

# The prefixes each scheme may use, besides the bare "O".
PREFIXES = {
    "IO": ("I",),
    "IOB1": ("I", "B"),
    "IOB2": ("B", "I"),
    "IOBES": ("B", "I", "E", "S"),
    "BILUO": ("B", "I", "L", "U"),
}

# Role of each prefix per scheme: "begin" opens an entity, "inside" continues
# one, "last" continues and closes one, "unit" is a one-token entity.
_ROLES = {
    "IO": {"I": "inside"},
    "IOB1": {"I": "inside", "B": "begin"},
    "IOB2": {"B": "begin", "I": "inside"},
    "IOBES": {"B": "begin", "I": "inside", "E": "last", "S": "unit"},
    "BILUO": {"B": "begin", "I": "inside", "L": "last", "U": "unit"},
}

Span = Tuple[int, int, str]


class TagProblem(NamedTuple):
    """One problem found in a tag sequence (and, for a repair, its fix).

    index (int): position of the tag in the sequence.
    tag (str): the tag as given.
    fixed (Optional[str]): the valid tag it is read as, or None when the tag
        itself is malformed or outside the scheme and cannot be read.
    message (str): a one-line description.
    """

    index: int
    tag: str
    fixed: Optional[str]
    message: str


def normalize_scheme(scheme: str) -> str:
    """Return the canonical upper-case name of a scheme ("bio" -> "IOB2").

    Raises ValueError for an unknown name.
    """
    if scheme in SCHEMES:  # fast path: called once per sequence
        return scheme
    if not isinstance(scheme, str):
        raise ValueError(f"Scheme must be a string, got {scheme!r}")
    name = scheme.strip().upper()
    name = ALIASES.get(name, name)
    if name not in SCHEMES:
        known = ", ".join(SCHEMES + tuple(ALIASES))
        raise ValueError(f"Unknown tag scheme {scheme!r}; expected one of {known}")
    return name


def split_tag(tag: str) -> Tuple[str, str]:
    """Split a tag into (prefix, type): "B-PER" -> ("B", "PER"), "O" -> ("O", "").

    Raises ValueError for a tag that is not "O" nor PREFIX-TYPE with a
    one-letter prefix out of B, I, E, S, L, U and a non-empty type.
    """
    if tag == "O":
        return "O", ""
    if not isinstance(tag, str):
        raise ValueError(f"Invalid tag {tag!r}: tags are strings")
    return _split_tag(tag)


@lru_cache(maxsize=65536)
def _split_tag(tag: str) -> Tuple[str, str]:
    prefix, sep, label = tag.partition("-")
    if not sep:
        raise ValueError(f"Invalid tag {tag!r}: expected 'O' or PREFIX-TYPE such as 'B-PER'")
    if prefix not in ("B", "I", "E", "S", "L", "U"):
        raise ValueError(
            f"Invalid tag {tag!r}: unknown prefix {prefix!r} (expected one of B, I, E, S, L, U)"
        )
    if not label.strip() or label != label.strip():
        raise ValueError(f"Invalid tag {tag!r}: the entity type after {prefix + '-'!r} is empty")
    return prefix, label


def check_tag(tag: str, scheme: str) -> Tuple[str, str]:
    """Split a tag and check that its prefix belongs to the scheme.

    Raises ValueError naming the tag and the scheme's tags otherwise.
    """
    return _check_tag(tag, normalize_scheme(scheme))


def _check_tag(tag: str, scheme: str) -> Tuple[str, str]:
    """check_tag for a canonical scheme name (no normalization: called per token)."""
    prefix, label = split_tag(tag)
    if prefix != "O" and prefix not in PREFIXES[scheme]:
        allowed = ", ".join(["O"] + [f"{p}-TYPE" for p in PREFIXES[scheme]])
        raise ValueError(f"Tag {tag!r} is not a {scheme} tag ({scheme} tags are {allowed})")
    return prefix, label


def tags_to_spans(tags: Sequence[str], scheme: str) -> List[Span]:
    """Read entity spans [(start, end, label)] (end exclusive) from a tag sequence.

    Invalid sequences are read leniently (see the module docstring); malformed
    tags or tags outside the scheme raise ValueError.
    """
    scheme = normalize_scheme(scheme)
    roles = _ROLES[scheme]
    spans: List[Span] = []
    start = -1  # start of the open entity, -1 when none is open
    open_label = ""
    for i, tag in enumerate(tags):
        prefix, label = _check_tag(tag, scheme)
        if prefix == "O":
            if start >= 0:
                spans.append((start, i, open_label))
                start = -1
            continue
        role = roles[prefix]
        continues = start >= 0 and open_label == label
        if role in ("inside", "last") and continues:
            pass
        else:
            if start >= 0:
                spans.append((start, i, open_label))
            start, open_label = i, label
        if role in ("last", "unit"):
            spans.append((start, i + 1, open_label))
            start = -1
    if start >= 0:
        spans.append((start, len(tags), open_label))
    return spans


def spans_to_tags(spans: Iterable[Span], n: int, scheme: str) -> List[str]:
    """Write entity spans [(start, end, label)] (end exclusive) as n tags.

    Spans must lie within [0, n), be non-empty and must not overlap. In IO,
    adjacent spans of the same type merge (the scheme cannot separate them).
    """
    scheme = normalize_scheme(scheme)
    tags = ["O"] * n
    ordered = sorted(spans)
    prev_end, prev_label = -1, None
    for start, end, label in ordered:
        if not (0 <= start < end <= n):
            raise ValueError(f"Span {(start, end, label)!r} is empty or outside 0..{n}")
        if start < prev_end:
            raise ValueError(f"Span {(start, end, label)!r} overlaps another span")
        if not isinstance(label, str) or not label or label != label.strip():
            raise ValueError(f"Span {(start, end, label)!r} has an invalid label")
        length = end - start
        if scheme == "IO":
            tags[start:end] = [f"I-{label}"] * length
        elif scheme == "IOB1":
            tags[start:end] = [f"I-{label}"] * length
            if prev_end == start and prev_label == label:
                tags[start] = f"B-{label}"
        elif scheme == "IOB2":
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (length - 1)
        else:
            last, unit = ("E", "S") if scheme == "IOBES" else ("L", "U")
            if length == 1:
                tags[start] = f"{unit}-{label}"
            else:
                inner = [f"I-{label}"] * (length - 2)
                tags[start:end] = [f"B-{label}"] + inner + [f"{last}-{label}"]
        prev_end, prev_label = end, label
    return tags


def convert(tags: Sequence[str], src: str, dst: str, *, strict: bool = False) -> List[str]:
    """Convert a tag sequence from scheme src to scheme dst.

    The entities are those of the lenient reading of src (see the module
    docstring); with strict=True an invalid src sequence raises ValueError.
    Converting to IO merges adjacent entities of the same type.
    """
    if strict:
        problems = validate(tags, src)
        if problems:
            raise ValueError(f"Invalid {normalize_scheme(src)} sequence: {problems[0].message}")
    return spans_to_tags(tags_to_spans(tags, src), len(tags), dst)


def _context(tags: Sequence[str], i: int) -> str:
    prev_tag = tags[i - 1] if i > 0 else "<start>"
    next_tag = tags[i + 1] if i + 1 < len(tags) else "<end>"
    return f"after {prev_tag!r}, before {next_tag!r}"


def repair(tags: Sequence[str], scheme: str) -> Tuple[List[str], List[TagProblem]]:
    """Rewrite a sequence into valid tags of the same scheme.

    Returns (tags, repairs): the repaired tags and one TagProblem per tag that
    changed (len(repairs) is the number of repairs). The repaired tags encode
    the lenient reading: e.g. in IOB2, an I-X after O or after another type
    starts a new entity and becomes B-X. Malformed tags raise ValueError.
    """
    scheme = normalize_scheme(scheme)
    fixed = spans_to_tags(tags_to_spans(tags, scheme), len(tags), scheme)
    repairs = [
        TagProblem(
            i,
            old,
            new,
            f"{old!r} at position {i} ({_context(tags, i)}) is invalid in {scheme}; "
            f"read as {new!r}",
        )
        for i, (old, new) in enumerate(zip(tags, fixed))
        if old != new
    ]
    return fixed, repairs


def validate(tags: Sequence[str], scheme: str) -> List[TagProblem]:
    """List the problems of a tag sequence in a scheme (empty when valid).

    A malformed tag or one outside the scheme gives a problem with fixed=None;
    otherwise each tag that :func:`repair` would change is a problem.
    """
    scheme = normalize_scheme(scheme)
    bad = []
    for i, tag in enumerate(tags):
        try:
            _check_tag(tag, scheme)
        except ValueError as err:
            bad.append(TagProblem(i, tag, None, str(err)))
    if bad:
        return bad
    return repair(tags, scheme)[1]


def is_valid(tags: Sequence[str], scheme: str) -> bool:
    """Whether a tag sequence is valid in a scheme."""
    return not validate(tags, scheme)


def _as_sequences(tags: Union[Sequence[str], Iterable[Sequence[str]]]) -> List[Sequence[str]]:
    items = list(tags)
    if not items or isinstance(items[0], str):
        return [items]
    return items


def detect_scheme(tags: Union[Sequence[str], Iterable[Sequence[str]]]) -> str:
    """Guess the scheme of a tag sequence or of a list of sequences (sentences).

    Rules, from the prefixes used: E/S -> IOBES; L/U -> BILUO; I only -> IO;
    B and I -> IOB2 when every entity starts with B- (IOB2 is preferred),
    else IOB1 when B- only separates same-type entities, else whichever of the
    two needs fewer repairs. No entity at all gives IOB2. Passing sentences
    rather than one flat list lets a sentence start count as a boundary.
    Raises ValueError for malformed tags or a mix of IOBES and BILUO prefixes.
    """
    sequences = _as_sequences(tags)
    prefixes: Counter = Counter()
    for seq in sequences:
        for tag in seq:
            prefixes[split_tag(tag)[0]] += 1
    has_es = prefixes["E"] or prefixes["S"]
    has_lu = prefixes["L"] or prefixes["U"]
    if has_es and has_lu:
        raise ValueError(
            "Tags mix IOBES (E-, S-) and BILUO (L-, U-) prefixes; give the scheme explicitly"
        )
    if has_es:
        return "IOBES"
    if has_lu:
        return "BILUO"
    if not prefixes["B"]:
        return "IO" if prefixes["I"] else "IOB2"
    # B- and I- only: count the tags each reading would have to repair.
    iob1_errors = iob2_errors = 0
    for seq in sequences:
        prev = ("O", "")
        for tag in seq:
            prefix, label = split_tag(tag)
            after_same = prev[0] != "O" and prev[1] == label
            if prefix == "I" and not after_same:
                iob2_errors += 1
            elif prefix == "B" and not after_same:
                iob1_errors += 1
            prev = (prefix, label)
    if iob2_errors <= iob1_errors:
        return "IOB2"
    return "IOB1"


def allowed_transitions(
    tags: Sequence[str], scheme: str
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Which tags may start or end a sequence, and which tag may follow which.

    tags (Sequence[str]): the tag set of a tagger, e.g. ["O", "B-PER", "I-PER"].
    scheme (str): the scheme the tags are in.
    RETURNS (start, trans, end): boolean arrays of shapes (n,), (n, n), (n,);
        trans[i, j] says whether tags[j] may follow tags[i]. A sequence is
        valid in the scheme exactly when start[t0], every trans[t_k, t_k+1]
        and end[t_last] hold, so a CRF that masks the rest decodes only
        valid sequences.
    """
    scheme = normalize_scheme(scheme)
    roles = _ROLES[scheme]
    parsed = []
    for tag in tags:
        prefix, label = check_tag(tag, scheme)
        parsed.append(("outside" if prefix == "O" else roles[prefix], label))
    n = len(parsed)
    # shape: (n,)
    start = numpy.zeros((n,), dtype=bool)
    end = numpy.zeros((n,), dtype=bool)
    # shape: (n, n)
    trans = numpy.zeros((n, n), dtype=bool)
    closing = scheme in ("IOBES", "BILUO")
    for j, (role, label) in enumerate(parsed):
        if scheme == "IOB1":
            # B-X only directly after an X entity; I-X anywhere.
            start[j] = role != "begin"
        elif closing:
            start[j] = role in ("outside", "begin", "unit")
        else:
            start[j] = role in ("outside", "begin") if scheme == "IOB2" else True
        end[j] = role in ("outside", "last", "unit") if closing else True
    for i, (role_a, label_a) in enumerate(parsed):
        # An entity of type label_a is open after tag i and must continue.
        open_a = role_a in ("begin", "inside") and closing
        for j, (role_b, label_b) in enumerate(parsed):
            same = role_a != "outside" and label_a == label_b
            if scheme == "IO":
                ok = True
            elif scheme == "IOB1":
                ok = role_b != "begin" or same
            elif scheme == "IOB2":
                ok = role_b != "inside" or same
            elif open_a:
                ok = role_b in ("inside", "last") and same
            else:
                ok = role_b in ("outside", "begin", "unit")
            trans[i, j] = ok
    return start, trans, end


# ---- tag ids: the tag set of a tagger and its arithmetic -----------------

# The tag id of a token whose tag is unknown (missing annotation).
MISSING_TAG = -1

# Schemes whose tag ids the functions below read and write: those in which
# an entity's first tag says that it begins.
ID_SCHEMES = ("IOB2", "IOBES", "BILUO")


def _id_scheme(scheme: str) -> str:
    canonical = normalize_scheme(scheme)
    if canonical not in ID_SCHEMES:
        raise ValueError(
            f"Tag ids need a scheme that marks where an entity begins ({', '.join(ID_SCHEMES)}); "
            f"got {scheme!r}"
        )
    return canonical


def tag_set(labels: Sequence[str], scheme: str) -> List[str]:
    """The tag set of a tagger of these entity types: "O", then for each
    label its tags in the scheme's prefix order (B, I for IOB2; B, I, L, U for
    BILUO; B, I, E, S for IOBES). Tag id 1 + label * n_prefixes + prefix."""
    prefixes = PREFIXES[_id_scheme(scheme)]
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in prefixes]


@lru_cache(maxsize=64)
def labels_of_tag_set(tags: Tuple[str, ...], scheme: str) -> Tuple[str, ...]:
    """The labels of a tag set made by :func:`tag_set`; ValueError if the
    tags are not such a set (so tag ids would not mean what they should)."""
    prefixes = PREFIXES[_id_scheme(scheme)]
    labels = tuple(split_tag(tag)[1] for tag in tags[1::len(prefixes)])
    if list(tags) != tag_set(labels, scheme):
        raise ValueError(
            f"Tags {list(tags)[:8]}... are not a {normalize_scheme(scheme)} tag set "
            f"(expected 'O', then {', '.join(p + '-X' for p in prefixes)} for each type X)"
        )
    return labels


def _prefix_index(scheme: str, role: str) -> int:
    """The prefix index that plays `role` (IOB2 writes a unit as B, a last as I)."""
    prefixes = PREFIXES[scheme]
    fallback = {"unit": "begin", "last": "inside"}
    by_role = {r: p for p, r in _ROLES[scheme].items()}
    return prefixes.index(by_role.get(role) or by_role[fallback[role]])


def encode_tag_ids(
    label: numpy.ndarray,
    begins: numpy.ndarray,
    known: numpy.ndarray,
    chain_first: numpy.ndarray,
    scheme: str,
) -> numpy.ndarray:
    """Tag ids (in :func:`tag_set` order) of tokens laid out in chains.

    label (n,) int: the label index of the entity each token is in, -1 for
        a token outside entities (or of unknown annotation).
    begins (n,) bool: tokens that begin an entity (needed where an entity
        directly follows another of the same type).
    known (n,) bool: False for a token whose tag is unknown: it gets
        MISSING_TAG.
    chain_first (n,) bool: the first token of each chain (sentence).
    Entities are cut at chain boundaries, so each chain's tag path is valid.
    RETURNS (n,) int64.
    """
    scheme = _id_scheme(scheme)
    label = numpy.asarray(label, dtype="int64")
    n = len(label)
    inside = numpy.asarray(known, dtype=bool) & (label >= 0)
    prev_label = numpy.full(n, -1, dtype="int64")
    prev_label[1:] = numpy.where(inside[:-1], label[:-1], -1)
    begins = inside & (numpy.asarray(begins, dtype=bool) | chain_first | (prev_label != label))
    next_continues = numpy.zeros(n, dtype=bool)
    next_continues[:-1] = inside[1:] & ~begins[1:]
    finals = inside & ~next_continues
    prefix = numpy.select(
        [begins & finals, begins, finals],
        [_prefix_index(scheme, role) for role in ("unit", "begin", "last")],
        default=_prefix_index(scheme, "inside"),
    )
    n_prefixes = len(PREFIXES[scheme])
    tags = numpy.where(inside, 1 + label * n_prefixes + prefix, numpy.where(known, 0, MISSING_TAG))
    return tags.astype("int64")


def decode_tag_ids(
    tags: numpy.ndarray, chain_last: numpy.ndarray, scheme: str
) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Entities (starts, ends exclusive, label indices) of a valid sequence of
    tag ids (in :func:`tag_set` order) over tokens laid out in chains.

    chain_last (n,) bool: the last token of each chain; an IOB2 entity ends
        there or where the next tag does not continue it.
    Raises ValueError for a sequence that is not valid in the scheme.
    """
    scheme = _id_scheme(scheme)
    tags = numpy.asarray(tags, dtype="int64")
    n_prefixes = len(PREFIXES[scheme])
    in_entity = tags > 0
    prefix = numpy.where(in_entity, (tags - 1) % n_prefixes, -1)
    label = (tags - 1) // n_prefixes
    begin, unit = _prefix_index(scheme, "begin"), _prefix_index(scheme, "unit")
    begins = (prefix == begin) | (prefix == unit)
    if scheme == "IOB2":
        inside = _prefix_index(scheme, "inside")
        next_inside = numpy.zeros_like(begins)
        next_inside[:-1] = prefix[1:] == inside
        finals = in_entity & (chain_last | ~next_inside)
    else:
        finals = (prefix == _prefix_index(scheme, "last")) | (prefix == unit)
    starts = numpy.flatnonzero(begins)
    ends = numpy.flatnonzero(finals) + 1
    if len(starts) != len(ends) or (len(starts) and ((ends <= starts).any() or (
        starts[1:] < ends[:-1]
    ).any())):
        raise ValueError(f"decode_tag_ids: the tag ids are not a valid {scheme} sequence")
    return starts, ends, label[starts]
