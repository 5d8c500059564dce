"""Decoding and drawing for the demo in child processes: uploads are untrusted, and a crashing or hanging
FFmpeg must not take the server down (the functions run are longvmnet.demo.render's)."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from concurrent.futures.process import BrokenProcessPool

from longvmnet.demo import render
from longvmnet.video import DecoderCrashedError


class Worker:
    """Runs decoding and drawing jobs (functions of longvmnet.demo.render) in spawned child processes.

    A crash (BrokenProcessPool) or a hang (timeout) in FFmpeg kills only the children; the pool is replaced
    for the next job and the caller gets a DecoderCrashedError with one sentence.
    """

    def __init__(self, *, processes: int = 2, timeout_s: float = 300.0) -> None:
        self.processes, self.timeout_s = processes, timeout_s
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _get(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=mp.get_context("spawn"),
                    initializer=render.worker_init,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def warm_up(self) -> None:
        """Start the children now (importing numpy, PyAV and matplotlib takes a few seconds)."""
        pool = self._get()
        for _ in range(self.processes):
            pool.submit(os.getpid)

    def __call__(self, fn, /, *args, **kwargs):
        return self.submit(fn, *args, **kwargs).result()

    def submit(self, fn, /, *args, **kwargs) -> Job:
        """Start a job and return at once; `Job.result()` waits for it (several jobs then run side by side)."""
        pool = self._get()
        try:
            return Job(self, pool, pool.submit(fn, *args, **kwargs))
        except BrokenProcessPool as e:
            raise self._crashed(pool) from e

    def _crashed(self, pool: ProcessPoolExecutor) -> DecoderCrashedError:
        self._discard(pool)
        return DecoderCrashedError(
            "The decoder crashed while reading the video; the file is probably damaged, "
            "so re-encode it as MP4 (H.264) and try again."
        )

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        if kill:  # the executor has no public way to stop a job that hangs
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Job:
    """A job running in a Worker's child process."""

    def __init__(self, worker: Worker, pool: ProcessPoolExecutor, future) -> None:
        self.worker, self.pool, self.future = worker, pool, future

    def result(self):
        """The job's return value; a crash or a hang in the child -> DecoderCrashedError with one sentence."""
        try:
            return self.future.result(timeout=self.worker.timeout_s)
        except BrokenProcessPool as e:
            raise self.worker._crashed(self.pool) from e
        except FuturesTimeout as e:
            self.worker._discard(self.pool, kill=True)
            raise DecoderCrashedError(
                f"Reading the video took longer than {self.worker.timeout_s:.0f} s; "
                "try a shorter range or re-encode the video as MP4 (H.264)."
            ) from e
