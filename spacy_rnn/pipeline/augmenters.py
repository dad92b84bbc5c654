"""Corpus augmenters (registry `augmenters`)."""

from typing import Callable, Iterator

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry


@registry.augmenters("spacy_rnn.gold_sentences.v1")
def create_gold_sentences_augmenter() -> Callable[[Language, Example], Iterator[Example]]:
    """A corpus augmenter that gives each training/evaluation doc the
    reference's tokens and sentence starts (what `gold_preproc = true` does)
    while keeping whole documents, so the encoder reads the document's context
    and the CRF decodes sentence by sentence."""
    return gold_sentences_augmenter


def gold_sentences_augmenter(nlp: Language, example: Example) -> Iterator[Example]:
    """One example whose predicted doc has the reference's words, spaces and
    sentence starts (if it has any), and no other annotation."""
    reference = example.reference
    words = [token.text for token in reference]
    spaces = [bool(token.whitespace_) for token in reference]
    sent_starts = None
    if reference.has_annotation("SENT_START"):
        sent_starts = [bool(token.is_sent_start) for token in reference]
    yield Example(Doc(nlp.vocab, words=words, spaces=spaces, sent_starts=sent_starts), reference)
