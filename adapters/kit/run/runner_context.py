"""What every step of running an operation shares: the mesh, the executor, progress reporting,
the operations' tasks and the slots bounding how many run (and render) at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from adapters.kit.run.operation_progress import OperationProgress
from adapters.kit.run.operation_tasks import OperationTasks
from adapters.kit.run.seam import ClusterExecutor

__all__ = ["RENDERING_SLOTS", "RunnerContext"]

RENDERING_SLOTS = 2
"""RenderOperation calls rendered at once (chart rendering is CPU work); more wait."""


@dataclass(frozen=True, kw_only=True)
class RunnerContext:
    """The runner's shared parts, given to each of its steps."""

    mesh: str
    executor: ClusterExecutor
    progress: OperationProgress
    tasks: OperationTasks
    slots: asyncio.Semaphore
    """Operations and dry runs running at once."""
    rendering: asyncio.Semaphore
    """Renders running at once."""
