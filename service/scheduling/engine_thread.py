"""The one thread a model's engine runs on, and the serving task that feeds it.

Each scheduler runs its engine on a dedicated thread: the event loop stays free, and one model
never runs two engine calls at once (a stepper is not thread-safe, and two batches would only
compete for the same cores).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class EngineThread:
    """One model's engine thread and the asyncio task of its scheduler's serve loop."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{model}")
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self, serve: Coroutine[Any, Any, None]) -> None:
        """Run the scheduler's serve loop as a task on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(serve, name=f"scheduler-{self.model}")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the engine thread, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def stop(self) -> None:
        """Cancel the serve loop (wait for it to unwind) and release the thread."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)
