"""`python -m spacy_rnn calibrate MODEL DEV --output MODEL_OUT`.

Fits the temperature of the pipeline's calibratable components (`crf_ner`,
and `textcat` over spacy_rnn.RNNTextCat with exclusive classes) on a gold dev
DocBin and saves the calibrated pipeline. The predictions do
not change, only the confidences (see docs/confidence.md).
"""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from . import app


@app.command("calibrate")
def calibrate_cli(
    model: Path = typer.Argument(..., metavar="MODEL", help="spaCy pipeline to calibrate"),
    dev: Path = typer.Argument(
        ..., metavar="DEV", help="Gold dev DocBin (.spacy) the temperature is fit on"
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Where to save the calibrated pipeline"
    ),
    component: Optional[List[str]] = typer.Option(
        None, "--component", "-c", help="Component to calibrate (default: every one that can)"
    ),
    gold_preproc: Optional[bool] = typer.Option(
        None,
        "--gold-preproc/--no-gold-preproc",
        help="Run each gold sentence as its own doc, or whole documents "
        "(default: as the pipeline's dev corpus was read in training, its gold_preproc)",
    ),
) -> None:
    """Fit a temperature on dev data so that confidences match accuracy; save the pipeline."""
    import spacy

    from ..calibration import calibrate_pipeline
    from ..evaluation import load_docs

    try:
        if not model.exists():
            raise ValueError(f"{model}: model path not found")
        nlp = spacy.load(model)
        docs = load_docs(dev, nlp.vocab)
        if not docs:
            raise ValueError(f"{dev}: holds no documents")
        results = calibrate_pipeline(nlp, docs, gold_preproc, component or None)
    except (ValueError, OSError) as err:
        msg.fail(f"Cannot calibrate {model} on {dev}: {err}", exits=1)
    for name, result in results.items():
        what = (
            f"{result['n_entities']:,} predicted entities" if "n_entities" in result
            else f"{result['n']:,} documents"
        )
        msg.info(
            f"{name}: temperature {result['temperature']:.4f}, dev NLL "
            f"{result['nll_before']:.4f} -> {result['nll_after']:.4f} over "
            f"{what} ({result['accuracy']:.1%} correct)"
        )
    nlp.to_disk(output)
    msg.good(f"Calibrated pipeline saved to {output}")
