"""The `python -m spacy_rnn` / `spacy-rnn` command line (typer).

Each sub-command lives in its own module under `spacy_rnn.cli` and adds itself
to `app` on import; this module only collects them. Every command's usage line
shows its arguments as plain UPPERCASE metavars (`convert [OPTIONS] INPUT
OUTPUT`), without the braces typer puts around required arguments.
"""
import importlib
import re
from typing import Any, List

import click
import typer
from typer.core import TyperCommand

_BRACED = re.compile(r"^\{(.+)\}(\.\.\.)?$")


class PlainUsageCommand(TyperCommand):
    """A typer command whose usage line prints `INPUT`, not `{INPUT}`."""

    def collect_usage_pieces(self, ctx: click.Context) -> List[str]:
        return [_BRACED.sub(r"\1\2", piece) for piece in super().collect_usage_pieces(ctx)]


class _App(typer.Typer):
    """typer.Typer whose commands default to PlainUsageCommand."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or PlainUsageCommand, **kwargs)


app = _App(
    name="spacy-rnn",
    help="Recurrent sequence models for spaCy: convert corpora, evaluate, run baselines, compare.",
    no_args_is_help=True,
    add_completion=False,
)

_COMMAND_MODULES = [
    "convert", "evaluate", "baseline", "compare", "vectors", "annotate", "benchmark", "calibrate"
]


def _load_commands() -> None:
    """Import each command module (each adds its command to `app`)."""
    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def main() -> None:
    _load_commands()
    app()
