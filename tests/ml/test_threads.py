"""The torch thread policy (spacy_rnn/ml/threads.py): the policy's number is
set during a real layer's forward and backprop and the caller's own setting
is put back after; the environment variable, the config callback (also
through spacy.load) and Python set it, in that order of precedence upwards;
the affinity mask and the cgroup CPU quota cap it; "torch" leaves torch
alone; bad values name their source; a forked child runs one thread. The
two-direction threads (`run_pair`): the second function runs in another
thread, with the caller's grad mode and the policy's threads, only where two
CPUs per intra-op thread are free, switched the same three ways."""
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.util import registry
from thinc.api import Config, fix_random_seed

from spacy_rnn.ml import threads

ENV = threads.ENV_VAR


@pytest.fixture(autouse=True)
def clean_policy(monkeypatch):
    """Each test starts from the default policy and torch's own setting, and
    leaves them as it found them."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(threads.PARALLEL_ENV_VAR, raising=False)
    before = torch.get_num_threads()
    threads.set_torch_threads(None)
    threads.set_config_torch_threads(None)
    threads.set_parallel_directions(None)
    threads.set_config_parallel_directions(None)
    yield
    threads.set_torch_threads(None)
    threads.set_config_torch_threads(None)
    threads.set_parallel_directions(None)
    threads.set_config_parallel_directions(None)
    torch.set_num_threads(before)


@pytest.fixture
def four_cpus(monkeypatch):
    """Pretend the process may use 4 CPUs, so that settings above this
    machine's core count are not capped."""
    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 4)
    threads.refresh()


class Record(torch.autograd.Function):
    """Identity that records torch's thread count in forward and backward."""

    seen = {"forward": [], "backward": []}

    @staticmethod
    def forward(ctx, X):
        Record.seen["forward"].append(torch.get_num_threads())
        return X.view_as(X)

    @staticmethod
    def backward(ctx, dY):
        Record.seen["backward"].append(torch.get_num_threads())
        return dY


def make_recording_encoder():
    """A BiRNNEncoder.v1 whose torch module records the thread count while
    its forward and its backward run."""
    fix_random_seed(0)
    model = registry.architectures.get("spacy_rnn.BiRNNEncoder.v1")(
        width=6, depth=1, cell="lstm", bidirectional=True, dropout=0.0
    )
    X = [numpy.random.default_rng(0).normal(size=(n, 5)).astype("float32") for n in (7, 3)]
    model.initialize(X=X)
    module = model.shims[0]._model
    original = module.forward

    def forward(*args):
        return Record.apply(original(*args))

    module.forward = forward
    Record.seen = {"forward": [], "backward": []}
    return model, X


def run_layer(caller_threads):
    """Forward and backprop through the encoder with torch set to
    `caller_threads` outside; returns the counts seen inside and checks that
    the caller's setting is back after each call."""
    model, X = make_recording_encoder()
    torch.set_num_threads(caller_threads)
    Y, backprop = model.begin_update(X)
    assert torch.get_num_threads() == caller_threads
    backprop([numpy.ones_like(y) for y in Y])
    assert torch.get_num_threads() == caller_threads
    model.predict(X)
    assert torch.get_num_threads() == caller_threads
    return Record.seen


def test_default_is_one_thread_inside_and_callers_setting_after():
    seen = run_layer(caller_threads=2)
    assert seen == {"forward": [1, 1], "backward": [1]}


def test_python_setting_inside_and_restored(four_cpus):
    threads.set_torch_threads(3)
    seen = run_layer(caller_threads=1)
    assert seen == {"forward": [3, 3], "backward": [3]}


def test_torch_setting_leaves_torch_alone(monkeypatch):
    monkeypatch.setenv(ENV, "torch")
    threads.refresh()
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    seen = run_layer(caller_threads=2)
    assert seen == {"forward": [2, 2], "backward": [2]}
    assert calls == [2]  # only the test's own call
    assert threads.policy_threads() is None


def test_env_variable(monkeypatch, four_cpus):
    monkeypatch.setenv(ENV, " 3 ")
    threads.refresh()
    assert threads.policy_threads() == 3
    assert run_layer(caller_threads=1)["backward"] == [3]


def test_env_variable_read_once_until_refresh(monkeypatch, four_cpus):
    assert threads.policy_threads() == 1
    monkeypatch.setenv(ENV, "2")
    assert threads.policy_threads() == 1
    threads.refresh()
    assert threads.policy_threads() == 2


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_bad_env_value_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    threads.refresh()
    with pytest.raises(ValueError, match=f"environment variable {ENV}.*{value!r}"):
        threads.policy_threads()
    model, X = make_recording_encoder()
    with pytest.raises(ValueError, match=ENV):
        model.predict(X)


@pytest.mark.parametrize("value", [0, "x", True, 2.0])
def test_bad_python_and_callback_values(value):
    with pytest.raises(ValueError, match="set_torch_threads"):
        threads.set_torch_threads(value)
    with pytest.raises(ValueError, match="spacy_rnn.torch_threads.v1: n_threads"):
        threads.create_torch_threads_callback(value)


def test_precedence_python_over_env_over_config(monkeypatch, four_cpus):
    callback = registry.callbacks.get("spacy_rnn.torch_threads.v1")(n_threads=2)
    marker = object()
    assert callback(marker) is marker  # usable in nlp.before_creation etc.
    assert threads.policy_threads() == 2
    monkeypatch.setenv(ENV, "3")
    threads.refresh()
    assert threads.policy_threads() == 3
    threads.set_torch_threads(4)
    assert threads.policy_threads() == 4
    threads.set_torch_threads(None)
    assert threads.policy_threads() == 3
    monkeypatch.delenv(ENV)
    threads.refresh()
    assert threads.policy_threads() == 2
    registry.callbacks.get("spacy_rnn.torch_threads.v1")(n_threads=None)(marker)
    assert threads.policy_threads() == 1


NLP_CONFIG = """
[nlp]
lang = "en"
pipeline = []

[nlp.before_creation]
@callbacks = "spacy_rnn.torch_threads.v1"
n_threads = {n_threads}

[components]
"""


def test_config_callback_saved_with_the_pipeline(tmp_path, four_cpus):
    config = Config().from_str(NLP_CONFIG.format(n_threads=3))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    assert threads.policy_threads() == 3
    nlp.to_disk(tmp_path / "model")
    threads.set_config_torch_threads(None)
    assert threads.policy_threads() == 1
    spacy.load(tmp_path / "model")
    assert threads.policy_threads() == 3
    config = Config().from_str(NLP_CONFIG.format(n_threads='"torch"'))
    spacy.util.load_model_from_config(config, auto_fill=True)
    assert threads.policy_threads() is None


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cgroup_v2_quota(tmp_path):
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    root = tmp_path / "cg"
    assert threads.cgroup_cpu_quota(root, proc) is None  # no files: no quota
    write(root / "cpu.max", "max 100000\n")
    assert threads.cgroup_cpu_quota(root, proc) is None
    write(root / "cpu.max", "150000 100000\n")
    assert threads.cgroup_cpu_quota(root, proc) == 1.5
    # a lower quota on the process's own cgroup further down counts
    write(proc, "0::/user.slice/job\n")
    write(root / "user.slice/job/cpu.max", "50000 100000\n")
    assert threads.cgroup_cpu_quota(root, proc) == 0.5


def test_cgroup_v1_quota(tmp_path):
    proc = write(tmp_path / "proc_cgroup", "4:memory:/x\n3:cpu,cpuacct:/\n")
    root = tmp_path / "cg"
    write(root / "cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert threads.cgroup_cpu_quota(root, proc) is None
    write(root / "cpu,cpuacct/cpu.cfs_quota_us", "250000\n")
    assert threads.cgroup_cpu_quota(root, proc) == 2.5


def test_available_cpus_capped_by_quota_and_affinity(tmp_path, monkeypatch):
    proc = write(tmp_path / "proc_cgroup", "0::/\n")
    root = tmp_path / "cg"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert threads.available_cpus(root, proc) == 8
    write(root / "cpu.max", "350000 100000\n")
    assert threads.available_cpus(root, proc) == 3  # rounded down
    write(root / "cpu.max", "50000 100000\n")
    assert threads.available_cpus(root, proc) == 1  # at least one
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5})
    write(root / "cpu.max", "max 100000\n")
    assert threads.available_cpus(root, proc) == 2


def test_policy_capped_by_available_cpus(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 2)
    threads.set_torch_threads(16)
    assert threads.policy_threads() == 2
    assert run_layer(caller_threads=1)["forward"] == [2, 2]


def test_nested_scopes_and_exceptions_restore(four_cpus):
    threads.set_torch_threads(3)
    torch.set_num_threads(2)
    with threads.torch_threads():
        with threads.torch_threads():
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with threads.torch_threads():
            raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


def test_scopes_in_concurrent_python_threads(four_cpus):
    """Torch's thread count is per Python thread (OpenMP's): a scope in a
    second thread sets the policy's number for that thread, though the first
    thread's scope is open, and puts back the second thread's own number."""
    import threading

    threads.set_torch_threads(3)
    inside_first = threading.Event()
    second_done = threading.Event()
    seen = {}

    def second():
        inside_first.wait(30)
        torch.set_num_threads(2)  # the second thread's own code, during the first's scope
        with threads.torch_threads():
            seen["inside"] = torch.get_num_threads()
        seen["after"] = torch.get_num_threads()
        second_done.set()

    worker = threading.Thread(target=second)
    worker.start()
    torch.set_num_threads(1)
    with threads.torch_threads():
        inside_first.set()
        second_done.wait(30)
        seen["first inside"] = torch.get_num_threads()
    worker.join(30)
    assert torch.get_num_threads() == 1
    assert seen == {"inside": 3, "after": 2, "first inside": 3}


FORK_SCRIPT = """
import os, torch
from spacy_rnn.ml import threads
threads.set_torch_threads(2)
torch.set_num_threads(2)
with threads.torch_threads():
    torch.ones(1000, 1000).sum()
pid = os.fork()
if pid == 0:
    with threads.torch_threads():
        inside = torch.get_num_threads()
    print(threads.policy_threads(), inside, torch.get_num_threads(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def run_fork_script(script: str):
    """The words a script that forks prints (its child prints them)."""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_one_thread():
    assert run_fork_script(FORK_SCRIPT) == ["1", "1", "1"]


def test_optimizer_update_and_averages_run_with_policy_threads(monkeypatch):
    """finish_update (thinc's update zeroes torch gradients) and use_params
    (loads the averaged weights) are torch work under the policy too."""
    from thinc.api import Adam
    from thinc.shims.pytorch import PyTorchShim

    seen = {"finish_update": [], "load_state_dict": []}
    original_update = PyTorchShim.finish_update

    def finish_update(self, optimizer):
        seen["finish_update"].append(torch.get_num_threads())
        return original_update(self, optimizer)

    monkeypatch.setattr(PyTorchShim, "finish_update", finish_update)
    model, X = make_recording_encoder()
    module = model.shims[0]._model
    original_load = module.load_state_dict

    def load_state_dict(*args, **kwargs):
        seen["load_state_dict"].append(torch.get_num_threads())
        return original_load(*args, **kwargs)

    module.load_state_dict = load_state_dict
    torch.set_num_threads(2)
    optimizer = Adam(0.001, use_averages=True)
    Y, backprop = model.begin_update(X)
    backprop([numpy.ones_like(y) for y in Y])
    model.finish_update(optimizer)
    assert torch.get_num_threads() == 2
    with model.use_params(optimizer.averages):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2
    assert seen == {"finish_update": [1], "load_state_dict": [1, 1]}


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 2)
    threads.refresh()


def where_they_ran():
    """run_pair over two functions that record their thread, grad mode and
    torch threads."""
    import threading

    def record():
        return (threading.get_ident(), torch.is_grad_enabled(), torch.get_num_threads())

    with threads.torch_threads():
        with torch.no_grad():
            first, second = threads.run_pair(record, record)
    return first, second


def test_run_pair_uses_a_second_thread_with_callers_grad_mode(two_cpus):
    import threading

    assert threads.parallel_directions()
    first, second = where_they_ran()
    assert first[0] == threading.get_ident()
    assert second[0] != first[0]
    # the worker has the caller's grad mode (no_grad) and the policy's one thread
    assert first[1:] == second[1:] == (False, 1)


def test_run_pair_in_turn_where_one_cpu_or_switched_off(monkeypatch, two_cpus):
    threads.set_parallel_directions(False)
    first, second = where_they_ran()
    assert first == second
    threads.set_parallel_directions(None)
    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 1)
    threads.refresh()
    assert not threads.parallel_directions()
    first, second = where_they_ran()
    assert first == second
    # two CPUs but two intra-op threads each: no room for a second direction thread
    monkeypatch.setattr(threads, "available_cpus", lambda *args, **kwargs: 2)
    threads.set_torch_threads(2)
    assert not threads.parallel_directions()
    threads.set_torch_threads("torch")
    assert not threads.parallel_directions()


def test_run_pair_passes_exceptions_on(two_cpus):
    def fails():
        raise KeyError("second")

    with pytest.raises(KeyError, match="second"):
        threads.run_pair(lambda: 1, fails)
    with pytest.raises(KeyError, match="second"):
        threads.run_pair(fails, lambda: 1)
    assert threads.run_pair(lambda: 1, lambda: 2) == (1, 2)


def test_parallel_switch_precedence_and_bad_values(monkeypatch, two_cpus):
    marker = object()
    callback = registry.callbacks.get("spacy_rnn.torch_threads.v2")(
        n_threads=1, parallel_directions=False)
    assert callback(marker) is marker
    assert not threads.parallel_directions()
    monkeypatch.setenv(threads.PARALLEL_ENV_VAR, "1")
    threads.refresh()
    assert threads.parallel_directions()
    threads.set_parallel_directions(False)
    assert not threads.parallel_directions()
    threads.set_parallel_directions(None)
    monkeypatch.setenv(threads.PARALLEL_ENV_VAR, "maybe")
    threads.refresh()
    with pytest.raises(ValueError, match=threads.PARALLEL_ENV_VAR):
        threads.parallel_directions()
    with pytest.raises(ValueError, match="parallel_directions"):
        registry.callbacks.get("spacy_rnn.torch_threads.v2")(parallel_directions="sometimes")


PAIR_FORK_SCRIPT = """
import os, torch
from spacy_rnn.ml import threads
threads.available_cpus = lambda *args, **kwargs: 2
threads.refresh()
assert threads.parallel_directions()
threads.run_pair(lambda: torch.ones(10).sum(), lambda: torch.ones(10).sum())
pid = os.fork()
if pid == 0:
    a, b = threads.run_pair(lambda: 1, lambda: 2)
    print(threads.parallel_directions(), a, b, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_directions_in_turn():
    assert run_fork_script(PAIR_FORK_SCRIPT) == ["False", "1", "2"]


def test_run_pair_nested_in_the_worker_runs_in_turn(two_cpus):
    import threading

    def inner():
        return threads.run_pair(threading.get_ident, threading.get_ident)

    here, (worker_first, worker_second) = threads.run_pair(threading.get_ident, inner)
    assert worker_first == worker_second != here


def test_run_pair_not_threaded_when_the_caller_says_so(two_cpus):
    import threading

    here, there = threads.run_pair(threading.get_ident, threading.get_ident, threaded=False)
    assert here == there == threading.get_ident()
