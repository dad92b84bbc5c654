"""How many intra-op threads torch uses inside our layers.

Our torch work is many small steps (one LSTM/GRU time step, one CRF step, a
small matmul): too small for a second OpenMP thread to pay off, and when
another process keeps a core busy, torch's default of one thread per core
makes every step wait for a thread that is not running (a 60x slowdown
measured on a 2-core machine; docs/threads.md). So our layers run torch with
one intra-op thread by default; parallelism across documents comes from
`nlp.pipe(n_process=...)`.

`torch_threads()` sets the policy's number for the duration of one of our
torch computations and puts back the caller's own setting afterwards, so the
user's own torch code keeps whatever threads it had. The number comes from,
first to last:

1. `set_torch_threads(n)` from Python;
2. the environment variable SPACY_RNN_TORCH_THREADS (read at first use, or
   again after `refresh()`);
3. the `spacy_rnn.torch_threads.v1` callback in a pipeline's config (in
   `[nlp.before_creation]`, so it is applied at `spacy.load`);
4. the default, 1.

Each is a positive int or "torch" (leave torch's own setting alone). An int
is capped by the CPUs this process may use: its affinity mask and its
cgroup's CPU quota (a container's `--cpus`). A forked child (spaCy's
`nlp.pipe(n_process=N)` on Linux) uses one thread: GNU OpenMP deadlocks in a
child forked after the parent ran OpenMP threads, and N workers share the
cores anyway.

A second CPU is used another way: the two directions of a bidirectional
recurrent layer are independent, so `run_pair` runs the backward direction
in a worker Python thread while the calling thread runs the forward one,
each with the policy's intra-op threads. Each thread does a whole
direction's work and the caller waits for the worker without spinning, so
beside a busy process this loses nothing against one thread, where a second
OpenMP thread of each small step waits for a core. It is on when the
process may use at least two CPUs per intra-op thread (`parallel_directions`;
SPACY_RNN_PARALLEL_DIRECTIONS, `set_parallel_directions` and the
`spacy_rnn.torch_threads.v2` callback switch it), never in a forked child.
"""
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Tuple, TypeVar, Union

import torch
from spacy.util import registry

ENV_VAR = "SPACY_RNN_TORCH_THREADS"
DEFAULT_THREADS = 1
PARALLEL_ENV_VAR = "SPACY_RNN_PARALLEL_DIRECTIONS"
DEFAULT_PARALLEL = True
LEAVE_TO_TORCH = "torch"
CGROUP_ROOT = Path("/sys/fs/cgroup")

Setting = Union[int, str, None]  # a positive int, "torch", or None (not set at this level)

_python_setting: Setting = None
_config_setting: Setting = None
_in_forked_child = False
# the policy's number, computed once; 0 = not computed, -1 = "torch"
_cached: int = 0
_LEAVE = -1
# the directions switch: None = not set at that level; _parallel_cached None = not computed
_python_parallel: Optional[bool] = None
_config_parallel: Optional[bool] = None
_parallel_cached: Optional[bool] = None
_pool: Optional[ThreadPoolExecutor] = None
_pool_lock = threading.Lock()
T = TypeVar("T")


class _ScopeState(threading.local):
    """Per Python thread: torch's intra-op thread count is OpenMP's, which each
    thread holds for itself, so each thread sets and puts back its own; nested
    scopes set it once and the outermost puts back what it found."""

    depth = 0
    saved = 0
    in_worker = False  # this thread is run_pair's worker


_state = _ScopeState()


def parse_setting(value: Any, source: str) -> Union[int, str]:
    """A setting as an int >= 1 or "torch"; `source` names where the value
    came from, for the error."""
    original = value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() == LEAVE_TO_TORCH:
            return LEAVE_TO_TORCH
        try:
            value = int(text)
        except ValueError:
            raise ValueError(
                f"{source}: expected a positive number of threads or {LEAVE_TO_TORCH!r} "
                f"(leave torch's own setting alone), got {text!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{source}: expected a positive number of threads or {LEAVE_TO_TORCH!r} "
            f"(leave torch's own setting alone), got {original!r}"
        )
    return value


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup_dirs(proc_cgroup: Path) -> List[str]:
    """The cgroup paths of this process from /proc/self/cgroup ("/" in most
    containers, which see their own cgroup as the root)."""
    text = _read(proc_cgroup)
    paths = []
    for line in (text or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "" or "cpu" in parts[1].split(",")):
            paths.append(parts[2].lstrip("/"))
    return paths


def _candidate_dirs(root: Path, proc_cgroup: Path) -> Iterable[Path]:
    own = _own_cgroup_dirs(proc_cgroup)
    for base in (root, root / "cpu", root / "cpu,cpuacct", root / "cpuacct,cpu"):
        yield base
        for path in own:
            if path:
                yield base / path


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> Optional[float]:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None if
    there is none: cgroup v2 `cpu.max` ("max 100000" or "150000 100000"),
    cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = none). Where
    several levels set one, the smallest counts."""
    quotas = []
    for directory in _candidate_dirs(root, proc_cgroup):
        v2 = _read(directory / "cpu.max")
        if v2 is not None:
            fields = v2.split()
            if len(fields) >= 1 and fields[0] != "max":
                period = fields[1] if len(fields) > 1 else "100000"
                try:
                    quota, per = int(fields[0]), int(period)
                except ValueError:
                    continue
                if quota > 0 and per > 0:
                    quotas.append(quota / per)
            continue
        quota_text = _read(directory / "cpu.cfs_quota_us")
        period_text = _read(directory / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        try:
            quota, per = int(quota_text), int(period_text)
        except ValueError:
            continue
        if quota > 0 and per > 0:
            quotas.append(quota / per)
    return min(quotas) if quotas else None


def available_cpus(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int:
    """The CPUs this process can use: its affinity mask, capped by its
    cgroup's CPU quota (rounded down, at least 1)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover (macOS, Windows)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def requested_setting() -> Union[int, str]:
    """The setting in force before the CPU caps: Python, else the environment
    variable, else the config callback, else the default."""
    if _python_setting is not None:
        return _python_setting
    env = os.environ.get(ENV_VAR)
    if env is not None and env.strip():
        return parse_setting(env, f"environment variable {ENV_VAR}")
    if _config_setting is not None:
        return _config_setting
    return DEFAULT_THREADS


def policy_threads() -> Optional[int]:
    """The number of intra-op threads our layers run torch with, or None to
    leave torch's own setting alone. Computed once (see `refresh`)."""
    global _cached
    if _cached == 0:
        setting = requested_setting()
        if setting == LEAVE_TO_TORCH:
            _cached = _LEAVE
        elif _in_forked_child:
            _cached = 1
        else:
            _cached = min(int(setting), available_cpus())
    return None if _cached == _LEAVE else _cached


def refresh() -> None:
    """Forget the computed number and directions switch, so the next use
    reads the environment variables and the CPU limits again."""
    global _cached, _parallel_cached
    _cached = 0
    _parallel_cached = None


def set_torch_threads(n_threads: Setting) -> None:
    """Set the number of intra-op threads our layers use, from Python: a
    positive int (capped by the CPUs available), "torch" to leave torch's own
    setting alone, or None to go back to the environment variable, config
    or default. Overrides the environment variable and the config."""
    global _python_setting
    _python_setting = None if n_threads is None else parse_setting(
        n_threads, "set_torch_threads")
    refresh()


def set_config_torch_threads(n_threads: Setting) -> None:
    """The config-level setting (what `spacy_rnn.torch_threads.v1` applies);
    the environment variable and `set_torch_threads` override it."""
    global _config_setting
    _config_setting = None if n_threads is None else parse_setting(
        n_threads, "spacy_rnn.torch_threads.v1: n_threads")
    refresh()


def parse_switch(value: Any, source: str) -> bool:
    """A directions switch as a bool (true/false, 1/0, yes/no, on/off);
    `source` names where the value came from, for the error."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise ValueError(f"{source}: expected true or false (1 or 0), got {value!r}")


def parallel_directions() -> bool:
    """Whether our bidirectional layers run their two directions at once, in
    two Python threads (`run_pair`): the switch (Python, else the environment
    variable, else the config, else on), and only where the process may use
    at least two CPUs per intra-op thread of the policy, never with "torch"
    or in a forked child. Computed once (see `refresh`)."""
    global _parallel_cached
    if _parallel_cached is None:
        if _python_parallel is not None:
            wanted = _python_parallel
        elif os.environ.get(PARALLEL_ENV_VAR, "").strip():
            wanted = parse_switch(os.environ[PARALLEL_ENV_VAR],
                                  f"environment variable {PARALLEL_ENV_VAR}")
        elif _config_parallel is not None:
            wanted = _config_parallel
        else:
            wanted = DEFAULT_PARALLEL
        n_threads = policy_threads()
        _parallel_cached = bool(
            wanted and not _in_forked_child and n_threads is not None
            and available_cpus() >= 2 * n_threads
        )
    return _parallel_cached


def set_parallel_directions(enabled: Optional[bool]) -> None:
    """Switch the two-direction threads from Python (True / False), or None to
    go back to the environment variable, config or default (on). Overrides
    the environment variable and the config."""
    global _python_parallel
    _python_parallel = None if enabled is None else parse_switch(
        enabled, "set_parallel_directions")
    refresh()


def set_config_parallel_directions(enabled: Optional[bool]) -> None:
    """The config-level switch (what `spacy_rnn.torch_threads.v2` applies)."""
    global _config_parallel
    _config_parallel = None if enabled is None else parse_switch(
        enabled, "spacy_rnn.torch_threads.v2: parallel_directions")
    refresh()


def _worker_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spacy-rnn")
    return _pool


def run_pair(
    first: Callable[[], T], second: Callable[[], T], threaded: bool = True
) -> Tuple[T, T]:
    """(first(), second()): with `parallel_directions` (and `threaded`: the
    caller's say that the work is large enough to hand over), `second` runs in
    the worker thread (with the caller's grad mode and the policy's intra-op
    threads) while `first` runs here; else one after the other. Each returns
    exactly what it would alone: the two share no state."""
    if not threaded or not parallel_directions() or _state.in_worker:
        # (in the worker itself, a nested pair would wait for its own thread)
        return first(), second()
    grad_enabled = torch.is_grad_enabled()

    def in_worker() -> T:
        _state.in_worker = True
        try:
            with torch.set_grad_enabled(grad_enabled), torch_threads():
                return second()
        finally:
            _state.in_worker = False

    future = _worker_pool().submit(in_worker)
    try:
        result = first()
    except BaseException:
        future.exception()  # wait: the worker reads the caller's tensors
        raise
    return result, future.result()


class torch_threads:
    """Context manager around one of our torch computations: torch runs with
    the policy's number of intra-op threads inside and the calling thread's
    own number is put back on exit. When the numbers already agree it costs
    two `torch.get_num_threads` calls."""

    __slots__ = ("_entered",)

    def __init__(self) -> None:
        self._entered = False

    def __enter__(self) -> "torch_threads":
        n_threads = _cached if _cached != 0 else (policy_threads() or _LEAVE)
        if n_threads == _LEAVE:
            return self
        state = _state
        if state.depth == 0:
            state.saved = torch.get_num_threads()
            if state.saved != n_threads:
                torch.set_num_threads(n_threads)
        state.depth += 1
        self._entered = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._entered:
            return
        self._entered = False
        state = _state
        if state.depth == 0:  # reset by a fork in between
            return
        state.depth -= 1
        if state.depth == 0 and torch.get_num_threads() != state.saved:
            torch.set_num_threads(state.saved)


@registry.callbacks("spacy_rnn.torch_threads.v1")
def create_torch_threads_callback(n_threads: Optional[Union[int, str]] = None) -> Callable:
    """A callback for `[nlp.before_creation]` (applied at `spacy.load` and
    `spacy train`) or `[initialize.before_init]` (applied at training only)
    that sets the number of torch intra-op threads our layers use:

        [nlp.before_creation]
        @callbacks = "spacy_rnn.torch_threads.v1"
        n_threads = 1

    n_threads: a positive int (capped by the CPUs available), "torch" to
        leave torch's own setting alone, or null for the default (1). The
        environment variable SPACY_RNN_TORCH_THREADS and `set_torch_threads`
        override it.
    """
    setting = None if n_threads is None else parse_setting(
        n_threads, "spacy_rnn.torch_threads.v1: n_threads")

    def apply_torch_threads(obj: Any) -> Any:
        set_config_torch_threads(setting)
        return obj

    return apply_torch_threads


@registry.callbacks("spacy_rnn.torch_threads.v2")
def create_torch_threads_callback_v2(
    n_threads: Optional[Union[int, str]] = None, parallel_directions: Optional[bool] = None
) -> Callable:
    """spacy_rnn.torch_threads.v1 with the directions switch:

        [nlp.before_creation]
        @callbacks = "spacy_rnn.torch_threads.v2"
        n_threads = 1
        parallel_directions = false

    parallel_directions: run the two directions of our bidirectional layers
        in two threads where two CPUs are free to this process (null: the
        default, on). SPACY_RNN_PARALLEL_DIRECTIONS and
        `set_parallel_directions` override it."""
    apply_threads = create_torch_threads_callback(n_threads)
    switch = None if parallel_directions is None else parse_switch(
        parallel_directions, "spacy_rnn.torch_threads.v2: parallel_directions")

    def apply_torch_threads(obj: Any) -> Any:
        set_config_parallel_directions(switch)
        return apply_threads(obj)

    return apply_torch_threads


def _after_fork_in_child() -> None:
    global _in_forked_child, _state, _pool
    _in_forked_child = True
    _state = _ScopeState()
    _pool = None  # the parent's worker thread does not exist here
    refresh()
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
