"""The `python -m spacy_rnn` / `spacy-rnn` command line (typer).

Each sub-command lives in its own module under `spacy_rnn.cli` and adds itself
to `app` on import; this module only collects them.
"""
import importlib
import importlib.util

import typer

app = typer.Typer(
    name="spacy-rnn",
    help="Recurrent sequence models for spaCy: convert corpora, evaluate, run baselines, compare.",
    no_args_is_help=True,
    add_completion=False,
)

_COMMAND_MODULES = ["convert", "evaluate", "baseline", "compare", "vectors", "annotate", "benchmark"]


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        full = f"{__name__}.{name}"
        if importlib.util.find_spec(full) is not None:
            importlib.import_module(full)


def main() -> None:
    _load_commands()
    app()
