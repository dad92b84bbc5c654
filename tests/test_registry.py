"""Every name the package registers has an entry point, and every entry point is a name it
registers: a config or a saved pipeline then resolves any of them without `import spacy_rnn`.

What `import spacy_rnn` registers is read in a fresh interpreter as the difference of the
registries (catalogue's table, which spaCy's and thinc's registries share) before and after
the import; what the installed distribution declares is read from its metadata; and
setup.cfg is read too, since an editable install refreshes its entry points only when
reinstalled (`pip install -e . --no-deps`).
"""
import configparser
import json
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path
from typing import Dict, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = "spacy-rnn"
# Entry-point groups that are not registries.
NOT_REGISTRIES = {"console_scripts", "gui_scripts"}

# Runs in a fresh interpreter, prints JSON: the names `import spacy_rnn` adds to the
# registries, as entry-point (group, name) pairs with the registered object's origin; the
# names that importing any other module of the package adds on top; and for each declared
# entry point whether it loads to the very object registered under it.
PROBE = r"""
import importlib, json, pkgutil, sys
import catalogue
from importlib.metadata import distribution
from spacy.util import registry

registry.ensure_populated()
assert "spacy_rnn" not in sys.modules, "spaCy's own registry imported spacy_rnn"
before = set(catalogue.REGISTRY)
import spacy_rnn  # noqa: F401
after_import = set(catalogue.REGISTRY)

def group_of(namespace):
    # Language.factory registers in ("spacy", "internal_factories"); spaCy looks factories
    # up in the entry-point group of its ("spacy", "factories") registry.
    if tuple(namespace) == ("spacy", "internal_factories"):
        return "spacy_factories"
    return "_".join(namespace)

registered = {}
for key in after_import - before:
    obj = catalogue.REGISTRY[key]
    origin = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"
    registered[f"{group_of(key[:-1])} {key[-1]}"] = origin

# Names that only some other module of the package registers, which `import spacy_rnn`
# would miss: import every module (except __main__, which runs the CLI) and diff again.
import_errors = {}
for info in pkgutil.walk_packages(spacy_rnn.__path__, "spacy_rnn."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(info.name)
    except Exception as err:
        import_errors[info.name] = f"{type(err).__name__}: {err}"
elsewhere = sorted(
    f"{group_of(key[:-1])} {key[-1]}" for key in set(catalogue.REGISTRY) - after_import
)

by_group = {group_of(key[:-1]): key[:-1] for key in catalogue.REGISTRY}
loads = {}
for ep in distribution("spacy-rnn").entry_points:
    if ep.group in ("console_scripts", "gui_scripts"):
        continue
    try:
        obj = ep.load()
    except Exception as err:
        loads[f"{ep.group} {ep.name}"] = f"does not load: {type(err).__name__}: {err}"
        continue
    namespace = by_group.get(ep.group)
    key = None if namespace is None else (*namespace, ep.name)
    if key not in catalogue.REGISTRY:
        loads[f"{ep.group} {ep.name}"] = "loads, but nothing is registered under this name"
    elif catalogue.REGISTRY[key] is not obj:
        loads[f"{ep.group} {ep.name}"] = f"loads {ep.value}, not the registered object"
    else:
        loads[f"{ep.group} {ep.name}"] = "ok"
print(json.dumps({"registered": registered, "loads": loads, "elsewhere": elsewhere,
                  "import_errors": import_errors}))
"""


@pytest.fixture(scope="module")
def probe() -> Dict[str, Dict[str, str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def installed_entry_points() -> Set[Tuple[str, str]]:
    """(group, name) of every registry entry point the installed distribution declares."""
    return {
        (ep.group, ep.name)
        for ep in distribution(DIST).entry_points
        if ep.group not in NOT_REGISTRIES
    }


def setup_cfg_entry_points() -> Dict[Tuple[str, str], str]:
    """(group, name) -> target of every registry entry point written in setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf8")
    declared = {}
    for group, value in parser["options.entry_points"].items():
        if group in NOT_REGISTRIES:
            continue
        for line_no, line in enumerate(value.strip().splitlines(), start=1):
            name, sep, target = line.partition("=")
            assert sep, f"setup.cfg [options.entry_points] {group}, line {line_no}: {line!r}"
            declared[(group, name.strip())] = target.strip()
    return declared


def test_registry_every_registered_name_has_an_entry_point(probe):
    registered = {tuple(key.split(" ", 1)) for key in probe["registered"]}
    missing = registered - installed_entry_points()
    assert not missing, (
        "registered by `import spacy_rnn` but declared by no entry point of the installed "
        f"distribution (add them to setup.cfg, then reinstall): {sorted(missing)}"
    )


def test_registry_every_entry_point_is_a_registered_name(probe):
    registered = {tuple(key.split(" ", 1)) for key in probe["registered"]}
    extra = installed_entry_points() - registered
    assert not extra, (
        f"entry points naming something `import spacy_rnn` does not register: {sorted(extra)}"
    )


def test_registry_entry_points_load_the_registered_objects(probe):
    bad = {key: state for key, state in probe["loads"].items() if state != "ok"}
    assert not bad, bad
    assert probe["loads"], "the installed distribution declares no registry entry points"


def test_registry_import_spacy_rnn_registers_everything(probe):
    """A name registered by a module that spacy_rnn/__init__.py does not import would be
    missing after `import spacy_rnn` and escape the comparison above."""
    assert not probe["import_errors"], probe["import_errors"]
    assert not probe["elsewhere"], (
        "registered only when another module is imported (import it in "
        f"spacy_rnn/__init__.py): {probe['elsewhere']}"
    )


def test_registry_installed_entry_points_match_setup_cfg():
    in_cfg = set(setup_cfg_entry_points())
    installed = installed_entry_points()
    assert in_cfg == installed, (
        "setup.cfg and the installed distribution disagree; an editable install reads its "
        "entry points only when installed: run `.venv/bin/python -m pip install -e . "
        f"--no-deps`. Only in setup.cfg: {sorted(in_cfg - installed)}; "
        f"only installed: {sorted(installed - in_cfg)}"
    )


def test_registry_names_are_namespaced_and_versioned(probe):
    """Registered functions are `spacy_rnn.Name.vN` (factories are plain component names),
    so a changed signature gets a new version next to the old one instead of an edit."""
    for key, origin in probe["registered"].items():
        group, name = key.split(" ", 1)
        assert origin.startswith("spacy_rnn."), f"{key} is registered by {origin}"
        if group == "spacy_factories":
            assert re.fullmatch(r"[a-z][a-z0-9_]*", name), key
        else:
            assert re.fullmatch(r"spacy_rnn\.[A-Za-z][A-Za-z0-9_]*\.v[0-9]+", name), key
