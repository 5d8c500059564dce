"""How `longvmnet bench` measures: wall time (GPU-synchronised), process memory from /proc (RSS, its peak,
child processes), the machine and what else loaded it, and a prefetching iterator. Linux only for memory
figures (they read 0 elsewhere)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import queue
import subprocess
import threading
import time
from pathlib import Path

import torch


def amp(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def timed(fn, *args, **kwargs):
    """(fn's result, wall seconds), synchronising the GPU if there is one."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else lambda: None
    sync()
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t0


def status_mb(key: str, pid: int | str = "self") -> float:
    """VmRSS / VmHWM of a process in MiB (0 once it has gone); pid "meminfo": a /proc/meminfo field."""
    with contextlib.suppress(OSError):
        path = "/proc/meminfo" if pid == "meminfo" else f"/proc/{pid}/status"
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def descendants(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for kid in map(int, (task / "children").read_text().split()):
                    out += [kid, *descendants(kid)]
    return out


class Every(threading.Thread):
    """Calls fn() now and every `period` seconds in a daemon thread, until stop()."""

    def __init__(self, period: float, fn):
        super().__init__(daemon=True)
        self.period, self.fn, self.done = period, fn, threading.Event()
        self.start()

    def run(self):
        while True:
            self.fn()
            if self.done.wait(self.period):
                return

    def stop(self) -> None:
        self.done.set()
        self.join()


def reset_peak() -> None:
    """Hand freed heap back to the OS and restart VmHWM from the current RSS (Linux clear_refs 5)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def length_label(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds / 60:g}min" if seconds >= 60 else f"{seconds:g}s"


def machine() -> dict:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), platform.processor()
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}  # fmt: skip


def machine_load() -> dict:
    """What else was running: the load average and the busiest other processes (ps)."""
    out: dict = {"loadavg": Path("/proc/loadavg").read_text().split()[:3], "busy": []}
    cmd = ["ps", "-eo", "pid,pcpu,etime,args", "--sort=-pcpu"]
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, IndexError):
        ps = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.splitlines()[1:]
        others = [p for p in ps if int(p.split()[0]) != os.getpid() and p.split()[3:] != cmd]  # not ps itself
        out["busy"] = [p[:110] for p in others if float(p.split()[1]) >= 10][:4]
    return out


def prefetch(it, depth: int):
    """Iterate `it` in a thread, up to `depth` items ahead (PyAV releases the GIL while decoding)."""
    box: queue.Queue = queue.Queue(maxsize=depth)
    end = object()

    def work():
        try:
            for x in it:
                box.put(x)
            box.put(end)
        except BaseException as e:  # re-raised in the consumer
            box.put(e)

    threading.Thread(target=work, daemon=True).start()
    while (x := box.get()) is not end:
        if isinstance(x, BaseException):
            raise x
        yield x
