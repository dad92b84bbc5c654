"""spacy_rnn.CRFTagger.v1/v2/v3: tok2vec -> (dropout) -> linear emission scores -> CRF
layer; v3 adds a language-model objective on the encoder while training."""

from typing import List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, with_array, zero_init
from thinc.types import Floats2d

from .crf import CRF
from .dropout import fixed_dropout
from .lm_objective import with_lm_objective


@registry.architectures("spacy_rnn.CRFTagger.v1")
def CRFTagger(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None
) -> Model[List[Doc], List[Floats2d]]:
    """Emission scores for a linear-chain CRF over the tokens of each doc.

    tok2vec (Model[List[Doc], List[Floats2d]]): the token encoder, e.g.
        spacy.Tok2Vec.v2 with spacy_rnn.CharWordEmbed.v1 and
        spacy_rnn.BiRNNEncoder.v1, or a spacy.Tok2VecListener.v1.
    nO (Optional[int]): the number of tags; left null, the crf_ner pipe sets
        it from its labels and tag scheme at initialize.

    The output is one (n_tokens, nO) array of emission scores per doc. The
    "crf" node (`model.get_ref("crf")`) holds the transition, start and end
    scores that decoding and the loss add to them (see spacy_rnn.ml.crf).
    The emission layer starts at zero, as spaCy's tagger does, so that the
    first updates are not dominated by random scores.
    """
    return _crf_tagger(tok2vec, nO, dropout=None)


@registry.architectures("spacy_rnn.CRFTagger.v2")
def CRFTagger_v2(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None, dropout: float = 0.5
) -> Model[List[Doc], List[Floats2d]]:
    """CRFTagger.v1 with dropout on the encoder output, before the emission
    layer (as Ma & Hovy 2016 apply it to the BiLSTM output).

    dropout (float): the rate, fixed: spaCy's [training] dropout sets the
        embedding dropout but leaves this one alone, so each is set on its own.

    Parameters and refs are those of v1; at prediction time the two compute
    the same scores.
    """
    return _crf_tagger(tok2vec, nO, dropout=dropout)


@registry.architectures("spacy_rnn.CRFTagger.v3")
def CRFTagger_v3(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
    lm_words: int = 3000,
    lm_weight: float = 0.1,
) -> Model[List[Doc], List[Floats2d]]:
    """CRFTagger.v1 trained with a language-model objective beside the CRF
    loss (Rei, 2017; spacy_rnn.ml.lm_objective): the forward half of the
    BiLSTM output predicts the next word, the backward half the previous one.
    It teaches the encoder context from the training text itself, which
    matters most without pretrained vectors.

    lm_words (int): the predicted vocabulary: the first lm_words words (NORM)
        seen in training, all others one UNK class.
    lm_weight (float): the objective's weight; the CRF loss is summed over
        sequences and the objective over tokens.

    The tok2vec must end in a one-layer bidirectional BiRNNEncoder.v1. At
    prediction time the scores are those of v1 with the same weights; the
    objective's output layers (2 x lm_words x width / 2) are only trained.
    """
    return _crf_tagger(tok2vec, nO, dropout=None, lm=(lm_words, lm_weight))


def _crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int],
    dropout: Optional[float],
    lm: Optional[Tuple[int, float]] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """tok2vec (+ LM objective, v3) >> (fixed dropout, v2) >> Linear >> CRF,
    with the refs all versions share."""
    output_layer = Linear(nO=nO, init_W=zero_init)
    emission = output_layer if dropout is None else chain(fixed_dropout(dropout), output_layer)
    crf = CRF(nO=nO)
    encoder = tok2vec if lm is None else with_lm_objective(tok2vec, *lm)
    model = chain(encoder, with_array(emission), crf)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output_layer", output_layer)
    model.set_ref("crf", crf)
    if lm is not None:
        model.set_ref("lm_objective", encoder)
    return model
