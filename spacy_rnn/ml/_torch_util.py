"""Plumbing shared by the torch-backed layers (embed, encode).

The layers hold their `torch.nn.Module` in thinc's `PyTorchShim`, so the
optimizer updates the torch parameters in `finish_update` and the weights
travel with `to_bytes`/`to_disk`/pickle. We call the shim directly instead of
going through `PyTorchWrapper`: the layers convert their own inputs (one flat
array per batch, index tensors for packing), which avoids the wrapper's
recursive conversions and per-sequence padding. `run_shim` runs the forward
pass and the backprop under the thread policy (threads.py).
"""
import contextlib
from io import BytesIO
from typing import Any, Callable, Sequence, Tuple

import torch
from thinc.api import ArgsKwargs, PyTorchShim, get_torch_default_device, xp2torch

# threads.py also sets one torch thread in forked children (nlp.pipe(n_process=N)
# on Linux), where GNU OpenMP would otherwise deadlock.
from .threads import torch_threads

_FLUSH_DENORMAL_SET = False


def flush_denormal() -> None:
    """Flush subnormal floats to zero on CPU. Without it, CPU training of the
    recurrent layers slows down by 30-50% over the epochs as small weights and
    gradients become subnormal."""
    global _FLUSH_DENORMAL_SET
    if not _FLUSH_DENORMAL_SET:
        torch.set_flush_denormal(True)
        _FLUSH_DENORMAL_SET = True


class AveragingPyTorchShim(PyTorchShim):
    """thinc's PyTorchShim whose `use_params` finds the optimizer's parameter
    averages. The optimizer keys the averages of a shim's torch parameters by
    `(shim.id, name)` (`PyTorchShim.finish_update`), but `PyTorchShim.use_params`
    only looks for `"pytorch_{id}_{name}"` strings, so with `use_averages` the
    averages of the torch layers were kept and never used: spaCy evaluated and
    saved averaged thinc weights beside the last torch weights."""

    @contextlib.contextmanager
    def use_params(self, params):
        averaged = {
            name: xp2torch(params[(self.id, name)], device=self.device)
            for name, _ in self._model.named_parameters()
            if (self.id, name) in params
        }
        if not averaged:
            with super().use_params(params):
                yield
            return
        with torch_threads():
            backup = {name: value.clone() for name, value in self._model.state_dict().items()}
            self._model.load_state_dict(averaged, strict=False)
        try:
            yield
        finally:
            with torch_threads():
                self._model.load_state_dict(backup)

    def finish_update(self, optimizer: Any) -> None:
        """thinc's update (the gradients' `zero_` is torch work) under the
        thread policy."""
        with torch_threads():
            super().finish_update(optimizer)


def make_shim(module: torch.nn.Module) -> PyTorchShim:
    """Wrap a module whose submodules may be built late (at initialize, once
    the input width is known). On deserialization the module is first rebuilt
    from the shapes in the saved state, if it has not been built yet."""
    return AveragingPyTorchShim(
        module,
        serialize_model=_serialize,
        deserialize_model=_deserialize,
    )


def _serialize(module: torch.nn.Module) -> bytes:
    filelike = BytesIO()
    torch.save(module.state_dict(), filelike)
    return filelike.getvalue()


def _deserialize(module: Any, state_bytes: bytes, device: "torch.device") -> Any:
    state = torch.load(BytesIO(state_bytes), map_location=device)
    if hasattr(module, "build_from_state"):
        module.build_from_state(state)
    module.load_state_dict(state)
    module.to(device)
    return module


def run_shim(
    shim: PyTorchShim, args: Sequence[Any], is_train: bool
) -> Tuple["torch.Tensor", Callable[["torch.Tensor"], ArgsKwargs]]:
    """Run the shim's module on positional tensors. Returns the output tensor and
    a callback that takes the output's gradient (a tensor of the same shape),
    backpropagates it through the module (accumulating parameter gradients for
    `finish_update`) and returns the gradients of the inputs as ArgsKwargs.
    Both run with the policy's number of torch threads (`torch_threads`)."""
    with torch_threads():
        Y, torch_backprop = shim(ArgsKwargs(args=tuple(args), kwargs={}), is_train)

    def backprop(dY: "torch.Tensor") -> ArgsKwargs:
        with torch_threads():
            return torch_backprop(ArgsKwargs(args=((Y,),), kwargs={"grad_tensors": (dY,)}))

    return Y, backprop


def default_device() -> "torch.device":
    return get_torch_default_device()
