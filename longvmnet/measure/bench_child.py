"""The parts of `longvmnet bench` that run in a fresh interpreter (`bench._child`), so that their peaks are
their own: stage 1's memory on one video or a synthetic stream of a given length (part 3) and one sampler
training step at the paper's size (part 5). Each prints one JSON line.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from longvmnet.config import preset
from longvmnet.hub import load_model
from longvmnet.inference import scan
from longvmnet.measure.resources import amp, reset_peak, status_mb, timed
from longvmnet.model.sampler import NeuralSampler, relaxed_topk


def _moving_frames(n: int, size: int):
    """Cheap long-video content: a gradient with a square moving on a Lissajous path. -> (size, size, 3) uint8"""
    yy, xx = np.mgrid[0:size, 0:size]
    bg = np.stack([xx * 255 // size, yy * 255 // size, np.full_like(xx, 96)], -1).astype(np.uint8)
    box = max(4, size // 8)
    for i in range(n):
        f = bg.copy()
        x, y = (int((np.sin(i * a) * 0.45 + 0.5) * (size - box)) for a in (0.05, 0.031))
        f[y : y + box, x : x + box] = (255, (7 * i) % 256, 0)
        yield f


@torch.inference_mode()
def _stream_child(source: str, seconds: float) -> dict:
    """Stage 1 (backbone, projection, sampler) on `seconds` of synthetic video made frame by frame at the
    memory fps and the backbone's input size: nothing is stored, so the peak is stage 1's own."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(source or None, device=device).eval()
    c = model.config
    n = int(seconds * c.memory_fps)
    frames = _moving_frames(n, c.image_size)

    def clips():
        for start in range(0, n, c.clip_len):
            batch = np.stack([next(frames) for _ in range(min(c.clip_len, n - start))])
            times = torch.arange(start, start + len(batch)) / c.memory_fps
            yield times, model.embed_frames(torch.from_numpy(batch).to(device))

    with amp(device):
        (_, seen), dt = timed(scan, model, clips(), seconds)
    return {"seconds": round(dt, 2), "frames": seen, "peak_mb": round(status_mb("VmHWM"), 1)}


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
        "stream": lambda a: _stream_child(a[0], float(a[1])),
        "sampler": lambda a: _sampler_child(int(a[0]), a[1], int(a[2]), int(a[3])),
    }
    print(json.dumps(parts[argv[0]](argv[1:])))
