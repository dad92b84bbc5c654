"""spacy-rnn: recurrent sequence models (char+word embeddings, packed BiLSTM/GRU
encoders, a CRF NER component, an RNN text classifier) for spaCy's config system.

Importing the package registers every architecture, factory and scorer; the
entry points in setup.cfg make the same names resolvable without the import.
"""
from .about import __version__  # noqa: F401
from . import registrations  # noqa: F401
