"""The exact training config of a system: a shipped config or spaCy's own
generated one, patched with this run's paths, vectors, pooling, limits and logger."""
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .systems import Settings, System


def _walk(node: Any, fn: Callable[[Dict[str, Any]], None]) -> None:
    """Call `fn` on every dict (section or block) of a config, depth first."""
    if isinstance(node, dict):
        fn(node)
        for value in node.values():
            _walk(value, fn)


def generate_config(pipe: str, optimize: str, lang: str = "en"):
    """spaCy's own recommended CPU config
    (`spacy init config -p PIPE -o OPTIMIZE --lang LANG`)."""
    from spacy.cli.init_config import init_config

    return init_config(lang=lang, pipeline=[pipe], optimize=optimize, gpu=False,
                       pretraining=False, silent=True)


def prepare_config(
    system: System,
    settings: Settings,
    data: Dict[str, Path],
    log_file: Path,
    lang: Optional[str] = None,
    seed: Optional[int] = None,
    architecture: Optional[str] = None,
    model_args: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write the exact training config of a system (paths, vectors, limits, logger)
    next to `log_file`; RETURNS its path.

    lang: the pipeline's language (`[nlp] lang`; spaCy's generated config is made
        for it); None keeps the config's.
    seed: `[system] seed` (the training seed); None keeps the config's.
    architecture: another `spacy_rnn.RNNTextCat.vN` for the config's text
        classifier model (arguments the other version lacks are dropped).
    model_args: arguments set on that model (with `architecture`)."""
    from spacy.util import load_config

    if system.generate is not None:
        config = generate_config(*system.generate, lang=lang or "en")
    else:
        src = settings.configs / system.config
        if not src.exists():
            raise ValueError(f"config not found: {src}")
        config = load_config(src, interpolate=False)
    if lang is not None:
        config["nlp"]["lang"] = lang
    if seed is not None:
        config["system"]["seed"] = seed
    if architecture is not None:
        _set_architecture(config, architecture, system, model_args or {})
    config["paths"]["train"] = str(data["train"])
    config["paths"]["dev"] = str(data["dev"])
    vectors = str(settings.vectors) if system.vectors else None
    if system.vectors and not Path(settings.vectors).exists():
        raise ValueError(
            f"vectors not found: {settings.vectors}; run `spacy project run vectors` "
            "(or `python -m spacy_rnn vectors vectors/glove`)"
        )
    config["paths"]["vectors"] = vectors
    config["initialize"]["vectors"] = "${paths.vectors}"

    def set_vectors(node: Dict[str, Any]) -> None:
        if "include_static_vectors" in node:
            node["include_static_vectors"] = bool(system.vectors)

    _walk(config["components"], set_vectors)
    if system.pooling is not None:
        found = []

        def set_pooling(node: Dict[str, Any]) -> None:
            if str(node.get("@architectures", "")).startswith("spacy_rnn.RNNTextCat"):
                node["pooling"] = system.pooling
                found.append(node)

        _walk(config["components"], set_pooling)
        if not found:
            raise ValueError(f"{system.config}: no spacy_rnn.RNNTextCat model to set "
                             f"pooling={system.pooling!r} on")
    training = config["training"]
    if settings.max_steps is not None:
        training["max_steps"] = settings.max_steps
        training["max_epochs"] = 0
    if settings.eval_frequency is not None:
        training["eval_frequency"] = settings.eval_frequency
    if log_file.exists():
        log_file.unlink()  # the logger refuses to overwrite a log
    training["logger"] = {
        "@loggers": "spacy.ConsoleLogger.v3",
        "progress_bar": None,
        "console_output": True,
        "output_file": str(log_file),
    }
    path = log_file.parent / "config.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(path)
    return path


def _set_architecture(
    config: Any, architecture: str, system: System, model_args: Dict[str, Any]
) -> None:
    """Swap the config's RNNTextCat model for `architecture`, keeping the arguments
    that the new version accepts (its own defaults fill the rest), then setting
    `model_args`."""
    import inspect

    from spacy.util import registry

    func = registry.architectures.get(architecture)
    accepted = set(inspect.signature(func).parameters)
    found = []

    def swap(node: Dict[str, Any]) -> None:
        if str(node.get("@architectures", "")).startswith("spacy_rnn.RNNTextCat"):
            for key in [k for k in node if not k.startswith("@") and k not in accepted]:
                del node[key]
            node["@architectures"] = architecture
            node.update(model_args)
            found.append(node)

    _walk(config["components"], swap)
    if not found:
        raise ValueError(f"{system.config}: no spacy_rnn.RNNTextCat model to replace "
                         f"by {architecture}")
