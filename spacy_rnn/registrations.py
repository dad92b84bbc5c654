"""Import every module that registers a name, so `import spacy_rnn` is enough.

Each import is guarded only for modules still under construction; once a module
exists, an import error in it must surface, so no blanket try/except here.
"""
import importlib
import importlib.util

_REGISTERING_MODULES = [
    "spacy_rnn.ml.embed",
    "spacy_rnn.ml.encode",
    "spacy_rnn.ml.tagger",
    "spacy_rnn.ml.textcat",
    "spacy_rnn.pipeline.crf_ner",
    "spacy_rnn.scoring",
]

for _name in _REGISTERING_MODULES:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)
