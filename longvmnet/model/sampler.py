"""The neural sampler: scores the memory + clip tokens and keeps the best m (relaxed top-k, Xie & Ermon 2019).

Letters: b batch, n = m + k candidate tokens, m memory size, d model width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-9


def gumbel_like(x: torch.Tensor) -> torch.Tensor:
    u = torch.rand_like(x).clamp_(_EPS, 1 - _EPS)
    return -torch.log(-torch.log(u))


def soft_topk(scores: torch.Tensor, k: int, temperature: float, *, method: str = "chunked", steps: int = 16):
    """Relaxed top-k weights with mass k. scores: (b, n) -> (b, n) in [0, 1].

    "exact": Xie & Ermon's k sequential softmaxes (memory grows with k: small k only).
    "chunked": the same recursion in `steps` softmaxes, each taking k/steps of the mass (clipped at 1).
    "softmax": one softmax scaled to mass k and clipped at 1 (the cheapest straight-through estimator).
    """
    if method == "exact":
        steps = k
    elif method == "softmax":
        return (k * F.softmax(scores / temperature, dim=-1)).clamp(max=1.0)
    elif method != "chunked":
        raise ValueError(f"Unknown top-k relaxation {method!r}; use exact, chunked or softmax.")
    steps = max(1, min(steps, k))
    share = k / steps
    alpha = scores
    total = torch.zeros_like(scores)
    a = torch.zeros_like(scores)
    for _ in range(steps):
        alpha = alpha + torch.log((1.0 - a).clamp(min=_EPS))
        a = (share * F.softmax(alpha / temperature, dim=-1)).clamp(max=1.0)
        total = total + a
    return total.clamp(max=1.0)


def relaxed_topk(
    scores: torch.Tensor,
    k: int,
    *,
    temperature: float = 1.0,
    noise: bool = True,
    method: str = "chunked",
    steps: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through top-k: hard selection forward, relaxed gradient backward.

    scores: (b, n)  ->  idx (b, k) kept token indices in ascending order,
                        weight (b, k) equal to 1.0 in the forward pass, carrying the soft gradient.
    """
    r = scores + gumbel_like(scores) if noise else scores
    idx = r.topk(k, dim=-1).indices.sort(dim=-1).values
    if not torch.is_grad_enabled() or not scores.requires_grad:
        return idx, torch.ones(idx.shape, dtype=scores.dtype, device=scores.device)
    soft = soft_topk(r, k, temperature, method=method, steps=steps).gather(-1, idx)
    return idx, soft - soft.detach() + 1.0


class NeuralSampler(nn.Module):
    """Transformer encoder over memory + clip tokens, then an MLP score per token.

    forward: tokens (b, n, d) with positional encodings added  ->  scores (b, n)
    """

    def __init__(self, *, d_model: int, n_heads: int, ffn_dim: int, layers: int, dropout: float):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, ffn_dim, dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.score = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.score(self.encoder(tokens)).squeeze(-1)
