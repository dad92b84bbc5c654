"""Every shipped config resolves through the installed entry points alone, as `spacy train`
sees it: a fresh interpreter that never runs `import spacy_rnn` fills and validates each
config, builds its pipeline, and resolves its [training], corpora and [initialize] blocks.

Loading one entry point imports the whole package (which registers every name), so a
successful resolution alone would not notice a name without an entry point; each name a
config references must therefore be either spaCy's/thinc's own or declared by an entry
point of its registry's group, checked before anything of spacy_rnn is imported.
Null paths get a dummy file: the point is the registry names, not the data.
"""
from typing import Dict

import pytest
from helpers import ROOT, run_probe

CONFIGS = sorted((ROOT / "configs").glob("*.cfg"))

PROBE = r"""
import json, sys, traceback
from importlib.metadata import distribution, entry_points
from spacy import util
from spacy.language import Language
from spacy.pipeline.factories import register_factories
from spacy.schemas import ConfigSchemaInit, ConfigSchemaTraining
from spacy.training.initialize import resolve_dot_names
from spacy.util import registry

config_paths, dummy = sys.argv[1:-1], sys.argv[-1]
registry.ensure_populated()
register_factories()
OURS = {(ep.group, ep.name) for ep in distribution("spacy-rnn").entry_points}

def references(node, section=()):
    # (registry, name, section) for every `@registry = name` and every `factory = name`
    for key, value in node.items():
        if isinstance(value, dict):
            yield from references(value, section + (key,))
        elif key.startswith("@"):
            yield key[1:], value, ".".join(section)
        elif key == "factory" and len(section) == 2 and section[0] == "components":
            yield "factories", value, ".".join(section)

def available(reg_name, name):
    # Declared by an entry point of spacy-rnn (not loaded here), or provided without it: by
    # spaCy/thinc (spaCy falls back from spacy.X to spacy-legacy.X) or another distribution.
    # The lookups below load only entry points of that very name, never one of spacy-rnn.
    if reg_name == "factories":
        if ("spacy_factories", name) in OURS:
            return "entry point"
        others = entry_points(group="spacy_factories")
        if Language.has_factory(name) or any(ep.name == name for ep in others):
            return "built in"
        return None
    if ("_".join(getattr(registry, reg_name).namespace), name) in OURS:
        return "entry point"
    legacy = name.replace("spacy.", "spacy-legacy.", 1)
    if registry.has(reg_name, name) or registry.has(reg_name, legacy):
        return "built in"
    return None

results = {}
for path in config_paths:
    raw = util.load_config(path, interpolate=False)
    missing, via_entry_points = [], []
    for reg_name, name, section in references(raw):
        how = available(reg_name, name)
        if how is None:
            missing.append(f"[{section}] @{reg_name} = {name!r}")
        elif how == "entry point":
            via_entry_points.append(name)
    results[path] = {"missing": missing, "via_entry_points": via_entry_points}
results["spacy_rnn imported by the name check"] = "spacy_rnn" in sys.modules

for path in config_paths:
    try:
        raw = util.load_config(path, interpolate=False)
        overrides = {f"paths.{k}": dummy for k, v in raw.get("paths", {}).items() if v is None}
        config = util.load_config(path, overrides=overrides, interpolate=False)
        nlp = util.load_model_from_config(config, auto_fill=True, validate=True)
        filled = nlp.config.interpolate()
        T = registry.resolve(filled["training"], schema=ConfigSchemaTraining, validate=True)
        resolve_dot_names(filled, [T["train_corpus"], T["dev_corpus"]])
        registry.resolve(filled["initialize"], schema=ConfigSchemaInit, validate=True)
        results[path]["pipeline"] = nlp.pipe_names
        results[path]["error"] = None
    except Exception:
        results[path]["error"] = traceback.format_exc()[-3000:]
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> Dict[str, dict]:
    dummy = tmp_path_factory.mktemp("configs") / "dummy.spacy"
    dummy.write_bytes(b"")
    return run_probe(PROBE, *map(str, CONFIGS), str(dummy))


def test_configs_found():
    assert len(CONFIGS) >= 5, CONFIGS


def test_configs_name_check_imports_nothing_of_the_package(resolved):
    assert resolved["spacy_rnn imported by the name check"] is False


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_configs_resolve_through_entry_points(resolved, path):
    result = resolved[str(path)]
    assert not result["missing"], (
        f"{path.name} references names that neither spaCy nor an installed entry point "
        f"provides: {result['missing']}"
    )
    assert result["error"] is None, f"{path.name} does not resolve:\n{result['error']}"
    assert result["pipeline"], f"{path.name} builds an empty pipeline"
    # every config of this package uses at least one of its names, found by entry point
    assert any(name.startswith("spacy_rnn.") for name in result["via_entry_points"]), result
