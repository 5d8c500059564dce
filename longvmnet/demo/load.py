"""Load test of the running demo: N gradio_client clients ask questions while another memory is being built.

    python -m longvmnet.demo.load [--clients 8] [--queries 20] [--video V] [--build-video V] [--no-build] [--json F]
    python -m longvmnet.demo.load --sessions 50 [--video V] [--json F]

The app runs as its own process (`app.py`, the bundled checkpoint). One client builds a memory of `--video`
and saves it; every client then loads that memory into its own session. A builder client starts a build of
`--build-video`, and while it runs the clients send their queries in turn (activity, object, time, the memory
view, a memory load), the builder building again and again until they are done. Latencies are end to end,
as a browser sees them: p50 / p95 per kind, of the requests sent while builds were running. The targets (issue 19): p95 <= 1 s for activity and time,
<= 3 s for object and the memory view, <= 2 s for a load.

With `--sessions N`, N sessions instead load the memory with its video one after another and ask one question
each, and the server's resident memory (with its child processes) and its temporary files are sampled: both
must stay bounded (the session cap, videos stored once, temporary files swept). The README quotes both runs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"
KINDS = ("activity", "object", "time", "memory view", "load")
TARGETS_S = {"activity": 1.0, "time": 1.0, "object": 3.0, "memory view": 3.0, "load": 2.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: str | None, port: int, log: Path, tmp: Path | None = None) -> subprocess.Popen:
    """app.py in a child process; returns once it answers HTTP (or raises with its log's tail). With `tmp`, the
    server keeps its temporary files (Gradio's cache, the session folders) there."""
    import httpx

    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    env = dict(os.environ)
    if tmp is not None:
        tmp.mkdir(parents=True, exist_ok=True)
        env |= {"TMPDIR": str(tmp), "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    out = log.open("w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"The demo did not start; its log ends:\n{log.read_text()[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()


def request(examples: dict, memory_file: str, kind: str, shift: float):
    """One request of a kind: (api name, arguments). The example queries' ranges are moved by `shift` seconds,
    so that no two requests are the same question (nothing is answered from a cache)."""
    from gradio_client import handle_file

    q = {x["type"]: x for x in examples["queries"]}.get(kind, examples["queries"][0])
    a, b = max(0.0, q["start"] + shift), q["end"] + shift
    if kind == "activity":
        return "/ask_activity", (handle_file(str(EXAMPLES / q["crop"])), a, b)
    if kind == "object":
        return "/ask_object", (q["activity"], a, b)
    if kind == "time":
        return "/ask_time", (q["activity"], handle_file(str(EXAMPLES / q["crop"])), a, b)
    if kind == "memory view":
        return "/show_memory", (a,)
    return "/load_memory", (handle_file(memory_file), None)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def run(*, clients: int, queries: int, video: Path, build_video: Path, checkpoint: str | None, workdir: Path,
        build: bool = True) -> dict:  # fmt: skip
    from gradio_client import Client, handle_file

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = start_server(checkpoint, port, workdir / "server.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        connect = lambda: Client(url, analytics_enabled=False, verbose=False)  # noqa: E731
        first = connect()
        t0 = time.monotonic()
        first.predict(handle_file(str(video)), api_name="/build_memory")
        warm_build_s = time.monotonic() - t0
        saved = first.predict(api_name="/save_memory")
        memory_file = str(workdir / "load-test.memory.safetensors")
        Path(memory_file).write_bytes(Path(saved).read_bytes())
        examples = json.loads((EXAMPLES / "queries.json").read_text())
        users = [connect() for _ in range(clients)]
        for c in tqdm(users, desc="loading memories", unit="client"):
            c.predict(handle_file(memory_file), None, api_name="/load_memory")

        builder, stop, builds = connect(), threading.Event(), []  # builds: (start, end) of each

        def build_again() -> None:  # one build after another until the clients are done
            while not stop.is_set():
                began = time.monotonic()
                builder.predict(handle_file(str(build_video)), api_name="/build_memory")
                builds.append((began, time.monotonic()))

        building = threading.Thread(target=build_again, daemon=True)
        if build:
            building.start()
            time.sleep(2.0)  # the first build is under way
        records: list[tuple[str, float, float, str | None]] = []  # (kind, sent, seconds, error)
        lock = threading.Lock()
        bar = tqdm(total=clients * queries, desc="queries during the build", unit="query")

        def user(k: int, c) -> None:
            rng = np.random.default_rng(k)
            for i in range(queries):
                kind = KINDS[(k + i) % len(KINDS)]
                api, args = request(examples, memory_file, kind, float(rng.uniform(-40, 40)))
                sent = time.monotonic()
                err = None
                try:
                    c.predict(*args, api_name=api)
                except Exception as e:  # noqa: BLE001 (a failure is a figure of the test)
                    err = f"{type(e).__name__}: {e}"
                with lock:
                    records.append((kind, sent, time.monotonic() - sent, err))
                bar.update()

        threads = [threading.Thread(target=user, args=(k, c)) for k, c in enumerate(users)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bar.close()
        stop.set()
        if build:
            building.join(timeout=3600)
    finally:
        stop_server(server)
    end = builds[-1][1] if builds else 0.0
    during = [r for r in records if r[1] < end] if build else records
    result = {
        "build": build,
        "clients": clients,
        "queries_per_client": queries,
        "build_video": build_video.name,
        "builds": len(builds),
        "build_s": [round(b - a, 1) for a, b in builds],
        "first_build_s": round(warm_build_s, 1),
        "requests_during_build": len(during),
        "failures": [r[3] for r in records if r[3]],
        "latency_s": {},
        "cpus": os.cpu_count(),
    }
    for kind in KINDS:
        values = [r[2] for r in during if r[0] == kind and not r[3]]
        p95 = percentile(values, 95)
        result["latency_s"][kind] = {"n": len(values), "p50": percentile(values, 50), "p95": p95,
                                     "target_p95": TARGETS_S[kind],
                                     "met": None if p95 is None else p95 <= TARGETS_S[kind]}  # fmt: skip
    return result


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            continue
    return round(total / 2**20, 1)


def disk(folder: Path) -> tuple[float, int, int]:
    """(MB on disk, files, empty files) under a folder; hard links count once."""
    stats = [f.stat() for f in folder.rglob("*") if f.is_file()]
    inodes = {st.st_ino: st.st_size for st in stats}
    return round(sum(inodes.values()) / 2**20, 1), len(stats), sum(1 for st in stats if st.st_size == 0)


def sessions(*, n: int, video: Path, checkpoint: str | None, workdir: Path, every: int = 5) -> dict:
    """`n` sessions one after another, each loading a memory with its video and asking one question: the
    server's resident memory (with its child processes) and its temporary files, sampled every `every`."""
    import shutil

    from gradio_client import Client, handle_file

    tmp = workdir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    port = free_port()
    server = start_server(checkpoint, port, workdir / "server-sessions.log", tmp=tmp)
    connect = lambda: Client(f"http://127.0.0.1:{port}/", analytics_enabled=False, verbose=False)  # noqa: E731
    samples = []
    try:
        first = connect()
        first.predict(handle_file(str(video)), api_name="/build_memory")
        memory_file = workdir / "sessions.memory.safetensors"
        memory_file.write_bytes(Path(first.predict(api_name="/save_memory")).read_bytes())
        act = {x["type"]: x for x in json.loads((EXAMPLES / "queries.json").read_text())["queries"]}[
            "activity"
        ]
        for i in tqdm(range(1, n + 1), desc="sessions", unit="session"):
            c = connect()
            c.predict(handle_file(str(memory_file)), handle_file(str(video)), api_name="/load_memory")
            c.predict(
                handle_file(str(EXAMPLES / act["crop"])), act["start"], act["end"], api_name="/ask_activity"
            )
            if i % every == 0 or i == n:
                mb, files, empty = disk(tmp)
                samples.append({"sessions": i, "rss_mb": tree_rss_mb(server.pid), "disk_mb": mb, "files": files,
                                "empty_files": empty})  # fmt: skip
    finally:
        stop_server(server)
    return {"sessions": n, "video_mb": round(video.stat().st_size / 2**20, 1), "samples": samples}


def format_sessions(r: dict) -> str:
    rows = [f"{r['sessions']} sessions, each loading a memory with its {r['video_mb']} MB video:",
            f"{'sessions':>9}{'RSS MB':>9}{'disk MB':>9}{'files':>7}{'empty':>7}"]  # fmt: skip
    for x in r["samples"]:
        rows.append(
            f"{x['sessions']:>9}{x['rss_mb']:>9.0f}{x['disk_mb']:>9.1f}{x['files']:>7}{x['empty_files']:>7}"
        )
    return "\n".join(rows)


def format_result(r: dict) -> str:
    during = (
        f"while building {r['build_video']} ({r['builds']} builds, s: {r['build_s']}; "
        f"{r['requests_during_build']} requests sent during them; "
        if r["build"]
        else "with no build ("
    )
    rows = [f"{r['clients']} clients x {r['queries_per_client']} requests {during}"
            f"{len(r['failures'])} failures; {r['cpus']} CPUs)",
            f"{'request':<13}{'n':>5}{'p50 s':>9}{'p95 s':>9}{'target':>9}  met"]  # fmt: skip
    for kind, v in r["latency_s"].items():
        fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        rows.append(f"{kind:<13}{v['n']:>5}{fmt(v['p50']):>9}{fmt(v['p95']):>9}{v['target_p95']:>9.1f}  "
                    f"{'-' if v['met'] is None else 'yes' if v['met'] else 'no'}")  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--queries", type=int, default=20, help="requests per client")
    p.add_argument("--video", type=Path, default=EXAMPLES / "kitchen.mp4", help="the clients' memory")
    p.add_argument("--build-video", type=Path, default=None, help="built meanwhile (default: --video)")
    p.add_argument("--checkpoint", default=None, help="as app.py's (default: the bundled checkpoint)")
    p.add_argument("--workdir", type=Path, default=Path("runs/load"))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--no-build", action="store_true", help="no build meanwhile (the same requests, for comparison)"
    )
    p.add_argument("--sessions", type=int, default=0,
                   help="instead: this many sessions one after another, with RSS and disk sampled")  # fmt: skip
    args = p.parse_args(argv)
    if args.sessions:
        result = sessions(n=args.sessions, video=args.video, checkpoint=args.checkpoint, workdir=args.workdir)
        print(format_sessions(result))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
        return result
    result = run(clients=args.clients, queries=args.queries, video=args.video,
                 build_video=args.build_video or args.video, checkpoint=args.checkpoint,
                 workdir=args.workdir, build=not args.no_build)  # fmt: skip
    print(format_result(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
