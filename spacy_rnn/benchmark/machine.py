"""The machine a system was trained or timed on, as recorded in results.json and
named under each table (a merged file can hold runs of several machines)."""
import os
import platform
from typing import Any, Dict, Optional


def cpu_model() -> Optional[str]:
    """The CPU's model name from /proc/cpuinfo (Linux); None elsewhere, where
    the tables fall back to the "processor" entry."""
    try:
        with open("/proc/cpuinfo", encoding="utf8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> Dict[str, Any]:
    """Platform, CPU, Python/spaCy/torch versions and torch's thread count."""
    import spacy
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def machine_name(machine: Optional[Dict[str, Any]]) -> str:
    """"CPU model, N CPUs" of a recorded machine ("not recorded" for none)."""
    if not machine:
        return "not recorded"
    cpu = machine.get("cpu_model") or machine.get("processor", "?")
    return f"{cpu}, {machine.get('cpu_count', '?')} CPUs"
