"""The streaming-state protocol that every stateful delaykit module follows.

A streaming module processes a long signal one chunk at a time (one 80 ms frame in practice) and keeps what
it needs from the past in an explicit state object. The state lives on the module only while inside
``with module.streaming(batch_size):``; outside it the module runs offline on whole sequences, and the two
give the same result.

Every state carries an ``exec_mask`` of shape ``[B]``: a batch item whose mask is False must leave its state
untouched by the current call, so independent streams can share one batch and advance at their own pace.
``reset_streaming(mask)`` rewinds chosen batch items to their initial state.
"""

from __future__ import annotations

import contextlib
import typing as tp
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class StreamState:
    """Base state: batch size, device and the per-item execution mask."""

    batch_size: int
    device: torch.device
    exec_mask: torch.Tensor = field(init=False)  # [B] bool
    all_executing: bool = field(init=False, default=True)  # host copy of exec_mask.all(), for fast paths

    def __post_init__(self) -> None:
        self.exec_mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)

    def set_exec_mask(self, exec_mask: torch.Tensor, all_executing: bool) -> None:
        self.exec_mask.copy_(exec_mask)
        self.all_executing = all_executing

    def reset(self, reset_mask: torch.Tensor) -> None:
        """Rewind the items where ``reset_mask`` is True; subclasses extend this."""
        self.exec_mask[reset_mask] = True
        self.all_executing = bool(self.exec_mask.all())

    def reset_all(self) -> None:
        """Rewind every item; subclasses may override with something cheaper than a masked reset."""
        self.reset(torch.ones(self.batch_size, dtype=torch.bool, device=self.device))

    def close(self) -> None:
        """Called once when the streaming context exits."""


StateT = tp.TypeVar("StateT", bound=StreamState)


class StreamingModule(nn.Module, tp.Generic[StateT]):
    """An ``nn.Module`` with an explicit, optional streaming state.

    Subclasses implement ``init_state(batch_size)``. Entering ``streaming(batch_size)`` on a module gives a
    fresh state to it and to every streaming descendant, except descendants marked ``detached`` (they
    stream over another axis, e.g. the depth transformer over codebooks, and manage their own state).
    """

    def __init__(self) -> None:
        super().__init__()
        self.state: StateT | None = None
        self.detached = False
        self._streaming_members: list[StreamingModule] | None = None  # set while streaming

    @property
    def is_streaming(self) -> bool:
        return self.state is not None

    def init_state(self, batch_size: int) -> StateT:
        raise NotImplementedError

    def streaming_modules(self) -> list[StreamingModule]:
        """This module and its streaming descendants, stopping at detached ones."""
        found: list[StreamingModule] = []

        def visit(module: nn.Module, is_root: bool) -> None:
            if isinstance(module, StreamingModule):
                if module.detached and not is_root:
                    return
                found.append(module)
            for child in module.children():
                visit(child, False)

        visit(self, True)
        return found

    @contextlib.contextmanager
    def streaming(self, batch_size: int) -> tp.Iterator[None]:
        """Stream with ``batch_size`` independent items; the state is dropped on exit."""
        modules = self.streaming_modules()
        for module in modules:
            if module.state is not None:
                raise RuntimeError(f"{type(module).__name__} is already streaming")
        try:
            for module in modules:
                module.state = module.init_state(batch_size)
            self._streaming_members = modules
            yield
        finally:
            self._streaming_members = None
            for module in modules:
                if module.state is not None:
                    module.state.close()
                module.state = None

    def _require_state(self) -> StateT:
        if self.state is None:
            raise RuntimeError(f"{type(self).__name__} is not streaming: use `with module.streaming(B):`")
        return self.state

    def reset_streaming(self, reset_mask: torch.Tensor | None = None) -> None:
        """Rewind the batch items where ``reset_mask`` ([B] bool) is True; all of them when None."""
        root = self._require_state()
        members = self._streaming_members or self.streaming_modules()
        if reset_mask is None:
            for module in members:
                module._require_state().reset_all()
            return
        reset_mask = reset_mask.to(root.device)
        for module in members:
            module._require_state().reset(reset_mask)

    def set_exec_mask(self, exec_mask: torch.Tensor) -> None:
        """Choose which batch items the next calls advance ([B] bool); the others keep their state."""
        root = self._require_state()
        exec_mask = exec_mask.to(root.device)
        all_executing = bool(exec_mask.all())
        for module in self._streaming_members or self.streaming_modules():
            module._require_state().set_exec_mask(exec_mask, all_executing)


class StreamingContainer(StreamingModule[StreamState]):
    """A streaming module with no state of its own, grouping streaming children."""

    def init_state(self, batch_size: int) -> StreamState:
        device = next(self.parameters()).device
        return StreamState(batch_size, device)
