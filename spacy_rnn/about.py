__title__ = "spacy-rnn"
__version__ = "0.1.0"
