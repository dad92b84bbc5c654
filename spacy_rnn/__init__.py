"""spacy-rnn: recurrent sequence models (char+word embeddings, packed BiLSTM/GRU
encoders, a CRF NER component, an RNN text classifier) for spaCy's config system.

Importing the package registers every architecture, factory, scorer, augmenter and
callback, by importing the modules that hold them. The entry points in setup.cfg
declare the same names, so a config or a saved pipeline resolves them without the
import (tests/test_registry.py keeps the two in step). These modules are the
runtime: they import spaCy, thinc, torch and numpy, never the evaluation lab
(scikit-learn, seqeval, nervaluate, nltk, matplotlib), which loads where it is used.
"""
from .about import __version__  # noqa: F401
from .ml import embed, encode, tagger, textcat, textcat_ensemble, threads  # noqa: F401
from .pipeline import augmenters, crf_ner  # noqa: F401
from . import calibration, schedules, scoring  # noqa: F401
