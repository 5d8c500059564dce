"""The parts of `longvmnet bench` that run in a fresh interpreter (`bench._child`), so that their peaks are
their own: stage 1's memory on one video (part 3) and one sampler training step at the paper's size (part 5).
Each prints one JSON line.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from longvmnet.config import preset
from longvmnet.hub import load_model
from longvmnet.inference import build_memory
from longvmnet.measure.resources import Every, amp, descendants, reset_peak, status_mb, timed
from longvmnet.model.sampler import NeuralSampler, relaxed_topk


def _stage1_child(source: str, video: str) -> dict:
    """Stage 1 with the peaks of this process and of its children (the decoder, multiprocessing's tracker),
    whose VmHWM is polled every 20 ms: a reaped child's ru_maxrss is no use, it counts the parent's pages
    copied at fork. tree_max_mb: the largest simultaneous RSS of the whole process tree."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(source or None, device=device)
    hwm, tree = {}, [0.0]

    def poll():
        kids = descendants(os.getpid())
        for k in kids:
            hwm[k] = max(hwm.get(k, 0.0), status_mb("VmHWM", k))
        tree[0] = max(tree[0], status_mb("VmRSS") + sum(status_mb("VmRSS", k) for k in kids))

    poller = Every(0.02, poll)
    with amp(device):
        memory, dt = timed(build_memory, model, video)
    poller.stop()
    main, kids = status_mb("VmHWM"), sum(hwm.values())
    return {"seconds": round(dt, 2), "frames": memory.meta.frames_seen, "main_peak_mb": round(main, 1),
            "children_peak_mb": round(kids, 1), "tree_max_mb": round(tree[0], 1), "peak_mb": round(main + kids, 1)}  # fmt: skip


def _sampler_child(tokens: int, methods: str, steps: int, paper_dropout: int) -> dict:
    """Part 5: NeuralSampler + top-k forward and backward at m = k = tokens, the paper preset's widths, batch 1.

    The top-k variants run with attention dropout off (scaled_dot_product_attention then uses flash
    attention on the CPU; the other dropouts stay at the preset's 0.2): with it on, PyTorch materialises the
    (heads, n, n) attention matrix, which `with_attention_dropout` measures for "chunked" when memory allows.
    "hard": top-k without relaxation; the kept tokens get gradients but the scores do not (the sampler is not
    trained). peak_mb = VmHWM over the steps minus the RSS before them; topk_only: the top-k alone."""
    c = preset("paper")
    n = 2 * tokens
    torch.manual_seed(0)

    def sampler_with(attention_dropout: float) -> NeuralSampler:
        net = NeuralSampler(d_model=c.d_model, n_heads=c.n_heads, ffn_dim=c.ffn_dim, layers=c.sampler_layers,
                            dropout=c.dropout).train()  # fmt: skip
        for layer in net.encoder.layers:
            layer.self_attn.dropout = attention_dropout
        return net

    def step(net, x, k, method):
        scores = net(x)
        if method == "hard":
            idx, weight = scores.topk(k, dim=-1).indices.sort(dim=-1).values, torch.ones(1, k)
        else:
            idx, weight = relaxed_topk(
                scores, k, temperature=1.0, noise=True, method=method, steps=c.topk_steps
            )
        kept = x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1])) * weight[..., None]
        kept.square().mean().backward()  # a stand-in for the query losses downstream of the memory

    def measure(fn, repeats: int) -> tuple[float, float]:
        reset_peak()
        before = status_mb("VmRSS")
        secs = [timed(fn)[1] for _ in range(repeats)]
        return float(np.median(secs)), status_mb("VmHWM") - before

    def topk_only(scores, method):
        if method == "hard":
            return scores.topk(tokens)
        relaxed_topk(scores, tokens, method=method, steps=c.topk_steps)[1].sum().backward()

    net = sampler_with(0.0)
    step(
        net, torch.randn(1, 64, c.d_model, requires_grad=True), 32, "chunked"
    )  # warm-up: thread pools, kernels
    out: dict = {"tokens_m_k": tokens, "d_model": c.d_model, "candidates": n, "attention_dropout": 0.0}
    for method in methods.split(","):
        x = torch.randn(1, n, c.d_model, requires_grad=True)
        secs, peak = measure(lambda m=method, x=x: step(net, x, tokens, m), steps)
        scores = torch.randn(1, n, requires_grad=True)
        topk_s, topk_peak = measure(lambda m=method, s=scores: topk_only(s, m), 1)
        out[method] = {"step_s": round(secs, 3), "peak_mb": round(peak, 1), "topk_only_ms": round(1e3 * topk_s, 2),
                       "topk_only_peak_mb": round(topk_peak, 1)}  # fmt: skip
    if paper_dropout:
        need_mb = 4 * c.n_heads * n * n * 4 / 2**20  # attention matrix, its dropout mask, softmax, gradient
        if status_mb("MemAvailable", "meminfo") < 1.15 * need_mb:
            out["with_attention_dropout"] = {"skipped": f"needs about {need_mb:.0f} MB"}
        else:
            x = torch.randn(1, n, c.d_model, requires_grad=True)
            secs, peak = measure(lambda: step(sampler_with(c.dropout), x, tokens, "chunked"), 1)
            out["with_attention_dropout"] = {"chunked": {"step_s": round(secs, 3), "peak_mb": round(peak, 1)}}
    return out


def main(argv: list[str]) -> None:
    parts = {
        "stage1": lambda a: _stage1_child(a[0], a[1]),
        "sampler": lambda a: _sampler_child(int(a[0]), a[1], int(a[2]), int(a[3])),
    }
    print(json.dumps(parts[argv[0]](argv[1:])))
