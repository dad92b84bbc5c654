"""Next-step forecasting of a univariate time series with spacy_rnn's encoder.

The Keras tutorial model

    model = Sequential([LSTM(16, input_shape=(window, 1), return_sequences=False), Dense(1)])
    model.compile(loss="mean_squared_error", optimizer="adam")

written with thinc layers: BiRNNEncoder (one unidirectional LSTM layer of 16
units) reads each window, the state after the last step (Keras
`return_sequences=False`) goes through a Linear layer to the next value.
BiRNNEncoder is a general sequence layer: a "doc" here is a window of floats.

    python examples/time_series_forecast.py --synthetic
    python examples/time_series_forecast.py --csv airline-passengers.csv --column Passengers
"""
import argparse
import csv
import json
import math
from typing import Callable, List, Tuple

import numpy
from thinc.api import Adam, Linear, Model, chain, fix_random_seed
from thinc.types import Floats2d

from spacy_rnn.ml.encode import BiRNNEncoder


def last_step() -> Model[List[Floats2d], Floats2d]:
    """Each sequence's last output row (Keras return_sequences=False)."""
    return Model("last_step", _last_step_forward)


def _last_step_forward(
    model: Model, Xs: List[Floats2d], is_train: bool
) -> Tuple[Floats2d, Callable]:
    shapes = [X.shape for X in Xs]
    Y = model.ops.xp.stack([X[-1] for X in Xs])  # (n_seqs, width)

    def backprop(dY: Floats2d) -> List[Floats2d]:
        dXs = [model.ops.alloc2f(*shape) for shape in shapes]
        for dX, row in zip(dXs, dY):
            dX[-1] = row
        return dXs

    return Y, backprop


def build_forecaster(units: int = 16) -> Model[List[Floats2d], Floats2d]:
    encoder = BiRNNEncoder(units, depth=1, cell="lstm", bidirectional=False)
    return chain(encoder, last_step(), Linear(1))


def synthetic_series(n: int = 600, seed: int = 0) -> numpy.ndarray:
    """Two seasonal cycles (periods 12 and 5) plus noise."""
    rng = numpy.random.default_rng(seed)
    t = numpy.arange(n, dtype="float64")
    season = numpy.sin(2 * math.pi * t / 12) + 0.5 * numpy.sin(2 * math.pi * t / 5)
    return (10 + 2.0 * season + rng.normal(0, 0.2, n)).astype("float32")


def read_csv_column(path: str, column: str) -> numpy.ndarray:
    with open(path, newline="", encoding="utf8") as file_:
        rows = list(csv.DictReader(file_))
    if not rows or column not in rows[0]:
        raise SystemExit(f"{path}: no column {column!r} (columns: {list(rows[0]) if rows else []})")
    return numpy.asarray([float(row[column]) for row in rows], dtype="float32")


def make_windows(series: numpy.ndarray, window: int) -> Tuple[List[Floats2d], Floats2d]:
    """(n - window) windows of shape (window, 1) and their next values (n - window, 1)."""
    X = [series[i:i + window].reshape(window, 1) for i in range(len(series) - window)]
    Y = series[window:].reshape(-1, 1)
    return X, Y


def train_and_evaluate(series, window=12, epochs=30, batch_size=16, learn_rate=0.01, seed=0):
    fix_random_seed(seed)
    split = int(len(series) * 0.67)
    # scale to [0, 1] with the training part's range, as the Keras tutorial does
    low, high = float(series[:split].min()), float(series[:split].max())
    scaled = (series - low) / (high - low)
    X_train, Y_train = make_windows(scaled[:split], window)
    X_test, Y_test = make_windows(scaled[split - window:], window)
    model = build_forecaster()
    model.initialize(X=X_train[:5], Y=Y_train[:5])
    optimizer = Adam(learn_rate)
    order = numpy.arange(len(X_train))
    for _ in range(epochs):
        numpy.random.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            guess, backprop = model.begin_update([X_train[i] for i in idx])
            backprop((guess - Y_train[idx]) / len(idx))  # gradient of the mean squared error / 2
            model.finish_update(optimizer)
    predicted = model.predict(X_test)
    scale = high - low
    rmse = float(numpy.sqrt(((predicted - Y_test) ** 2).mean())) * scale
    naive = float(numpy.sqrt(((numpy.stack([x[-1] for x in X_test]) - Y_test) ** 2).mean())) * scale
    return {"test_rmse": rmse, "naive_rmse": naive, "n_train": len(X_train), "n_test": len(X_test)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--synthetic", action="store_true", help="use a synthetic seasonal series")
    source.add_argument("--csv", help="a CSV file holding the series")
    parser.add_argument("--column", default="Passengers", help="the CSV column of the series")
    parser.add_argument("--window", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the scores as one JSON line")
    args = parser.parse_args()
    series = synthetic_series() if args.synthetic else read_csv_column(args.csv, args.column)
    scores = train_and_evaluate(series, window=args.window, epochs=args.epochs)
    if args.json:
        print(json.dumps(scores))
    else:
        print(f"test RMSE {scores['test_rmse']:.3f} "
              f"(naive last-value forecast: {scores['naive_rmse']:.3f})")


if __name__ == "__main__":
    main()
