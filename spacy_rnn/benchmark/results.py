"""The results file (results.json): read, and written atomically, merging only this
run's systems into what the file holds now so that runs in parallel lose nothing."""
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

RESULTS_VERSION = 1


def load_results(path: Path) -> Dict[str, Any]:
    """The results in `path`, or an empty results dict when there is no file yet."""
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{path}: not valid JSON ({err}); move it away to start afresh"
            ) from None
        if (isinstance(data, dict) and data.get("version") == RESULTS_VERSION
                and isinstance(data.get("systems"), dict)):
            return data
        raise ValueError(f"{path}: not a benchmark results file (version {RESULTS_VERSION})")
    return {"version": RESULTS_VERSION, "systems": {}}


def save_results(
    results: Dict[str, Any], path: Path, names: Optional[Iterable[str]] = None
) -> Dict[str, Any]:
    """Write `results` to `path`. With `names`, only those systems' entries
    (and the machine info) are merged into what the file holds now, so that
    runs of other systems that finished meanwhile, in another process, are
    kept. RETURNS the data written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if names is not None:
        merged = load_results(path)
        for key, value in results.items():
            if key != "systems":
                merged[key] = value
        for name in names:
            if name in results["systems"]:
                merged["systems"][name] = results["systems"][name]
        results = merged
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf8")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a file
    return results
