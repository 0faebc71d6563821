"""Micro-batching: the texts of requests that arrive together go through the model in one call.

A model predicts 64 texts in little more time than one, so a server that called it once per request would
spend its time on per-call overhead as soon as clients are many. Each served model has one
:class:`MicroBatcher`: requests wait in an asyncio queue; one worker takes the first waiting request, adds
those that are already waiting or arrive within ``max_wait`` seconds (0 by default: the requests that
arrived while the model computed the previous call), up to ``max_batch`` texts, runs the
model once on all their texts in a thread (one call at a time per model: the event loop stays free to
accept requests meanwhile), and gives each request its own slice of the answer, in order.

A request with more texts than ``max_batch`` still runs, alone; a request that would make the batch too
large waits for the next one. Stopping answers every request queued before the stop, then ends the worker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatcherStopped", "MicroBatcher"]

log = logging.getLogger(__name__)

R = TypeVar("R")


class BatcherStopped(RuntimeError):
    """A request that arrived after the batcher stopped (the server is shutting down)."""


@dataclass
class _Waiting(Generic[R]):
    """One request in the queue: its texts, and the future its answer goes to."""

    texts: list[str]
    answer: asyncio.Future[list[R]]


class MicroBatcher(Generic[R]):
    """One model's queue and worker: ``await submit(texts)`` answers ``predict(texts)``, batched with others.

    ``predict`` takes a list of texts and returns one result per text, in order; it runs in a thread of its
    own, one call at a time. :meth:`start` and :meth:`stop` run inside the event loop that serves requests.
    """

    def __init__(
        self, name: str, predict: Callable[[list[str]], Sequence[R]], *, max_batch: int, max_wait: float
    ) -> None:
        self.name = name
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: asyncio.Queue[_Waiting[R] | None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False

    # -- the requests' side -------------------------------------------------------------------------

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ajuste-serve-{self.name}")
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batcher {self.name}")

    async def submit(self, texts: list[str]) -> list[R]:
        """The results for ``texts``, in order, computed in one model call with the texts of other requests."""
        if self._queue is None or self._stopping:
            raise BatcherStopped(f"model {self.name} is not serving: the server is stopping, or has not started")
        if not texts:
            return []
        answer: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Waiting(texts, answer))
        return await answer

    async def stop(self) -> None:
        """Answer every request queued so far, then end the worker (cancelling this cancels it)."""
        if self._queue is None or self._worker is None or self._stopping:
            return
        self._stopping = True
        self._queue.put_nowait(None)  # behind every request already queued: they are answered first
        try:
            await self._worker
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)

    # -- the worker's side --------------------------------------------------------------------------

    async def _work(self) -> None:
        if self._queue is None:
            return
        held: _Waiting[R] | None = None
        try:
            while True:
                first = held if held is not None else await self._queue.get()
                if first is None:
                    return
                batch, held, stop = await self._gather(first)
                await self._run(batch)
                if stop:
                    return
        finally:  # cancelled (a forced shutdown): nobody will answer what is still queued
            if held is not None:
                held.answer.cancel()
            while not self._queue.empty():
                waiting = self._queue.get_nowait()
                if waiting is not None:
                    waiting.answer.cancel()

    async def _gather(self, first: _Waiting[R]) -> tuple[list[_Waiting[R]], _Waiting[R] | None, bool]:
        """The batch that starts with ``first``: the requests already queued, then those that arrive before
        ``max_wait`` has passed, up to ``max_batch`` texts. Also returns the request held over for the next
        batch (it would make this one too large), and whether the stop came."""
        if self._queue is None:
            return [first], None, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        batch, size = [first], len(first.texts)
        while size < self.max_batch:
            try:
                # What is already queued joins however late it is: waiting never splits a burst.
                waiting = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    waiting = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if waiting is None:
                return batch, None, True
            if size + len(waiting.texts) > self.max_batch:
                return batch, waiting, False
            batch.append(waiting)
            size += len(waiting.texts)
        return batch, None, False

    async def _run(self, batch: list[_Waiting[R]]) -> None:
        """One model call for the texts of ``batch``; each request's future gets its slice, or the error."""
        batch = [waiting for waiting in batch if not waiting.answer.done()]
        if not batch:
            return
        texts = [text for waiting in batch for text in waiting.texts]
        log.info("model %s: %d texts from %d requests in one call", self.name, len(texts), len(batch))
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.predict, texts)
        except Exception as exc:
            log.exception("model %s failed on a batch of %d texts", self.name, len(texts))
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        except BaseException:  # cancelled while the model computed: these requests get no answer
            for waiting in batch:
                waiting.answer.cancel()
            raise
        start = 0
        for waiting in batch:
            end = start + len(waiting.texts)
            if not waiting.answer.done():
                waiting.answer.set_result(list(results[start:end]))
            start = end
