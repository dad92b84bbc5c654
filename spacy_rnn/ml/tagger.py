"""spacy_rnn.CRFTagger.v1/v2: tok2vec -> (dropout) -> linear emission scores -> CRF layer."""

from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, with_array, zero_init
from thinc.types import Floats2d

from .crf import CRF
from .dropout import fixed_dropout


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


def _crf_tagger(
    tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int], dropout: Optional[float]
) -> Model[List[Doc], List[Floats2d]]:
    """tok2vec >> (fixed dropout, v2 only) >> Linear >> CRF, with the refs both versions share."""
    output_layer = Linear(nO=nO, init_W=zero_init)
    emission = output_layer if dropout is None else chain(fixed_dropout(dropout), output_layer)
    crf = CRF(nO=nO)
    model = chain(tok2vec, with_array(emission), crf)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output_layer", output_layer)
    model.set_ref("crf", crf)
    return model
