"""`python -m spacy_rnn compare METRICS.json... [--output table.md] [--plot chart.png]`."""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from . import app
from ..reports import compare_metrics


@app.command("compare")
def compare_cli(
    metrics: List[Path] = typer.Argument(
        ..., metavar="METRICS", help="Metrics JSON files from `evaluate` or `baseline`"
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the table as Markdown"
    ),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG chart"),
) -> None:
    """Put several systems side by side and say whether the RNN beat the baselines."""
    try:
        comparison = compare_metrics(metrics, output=output, plot=plot)
    except ValueError as err:
        msg.fail(f"Cannot compare: {err}", exits=1)
    print(comparison.markdown)
    if output:
        msg.good(f"Table written to {output}")
    if plot:
        msg.good(f"Chart written to {plot}")
