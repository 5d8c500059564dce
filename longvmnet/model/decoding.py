"""The decoder's reading of an encoder output: time queries self-attend within chunks and cross-attend the
encoder output at once, with an optional time-local bias. A mixin of `LongVMNet` (it reads the model's
config, `decoder` layers, `time_slope`, `time_pe` and `kind_embed`).

Letters: b batch, n encoder tokens, l time queries, d width.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

KINDS = ("activity", "object", "time")


@contextlib.contextmanager
def sdpa_attention():
    """Turn off the inference "fast path" of nn.TransformerEncoderLayer / nn.MultiheadAttention while inside:
    it computes attention with bmm + (masked) softmax, where the regular path calls
    scaled_dot_product_attention (flash attention on the CPU). Same math; on a 2-core CPU the sampler runs
    2.2x, the encoder 1.5x and the decoder 1.6-1.9x faster (longvmnet bench). No effect with grad enabled."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


class TimeQueryDecoding:
    """`decode(enc, times, mask, kind, key_times)` -> (b, l, d), and its time-local bias."""

    def time_bias(self, times: torch.Tensor, key_times: torch.Tensor) -> torch.Tensor:
        """Cross-attention bias -slope_h * |t_query - t_key| in seconds; keys without a time (NaN) get 0.

        times (b, l), key_times (b, n)  ->  (b * heads, l, n), the layout of nn.MultiheadAttention's attn_mask
        """
        dt = (times.to(self.device)[:, :, None] - key_times.to(self.device)[:, None, :]).abs().nan_to_num(0.0)
        bias = -F.softplus(self.time_slope)[None, :, None, None] * dt[:, None]
        return rearrange(bias, "b h l n -> (b h) l n")

    def decode(
        self,
        enc: torch.Tensor,
        times: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        key_times: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Temporal-encoding queries cross-attend the encoder output, self-attending within chunks.

        enc (b, n, d), times (b, l), mask (b, l) True = real query, key_times (b, n) seconds of the encoder
        tokens (NaN: no time), used by the time-local bias when the config has it  ->  (b, l, d)
        """
        b, length = times.shape
        chunk = min(self.config.decoder_chunk, length)
        pad = (-length) % chunk
        tgt = self.time_pe(times) + self.kind_embed.weight[KINDS.index(kind)]
        valid = mask.to(self.device)
        if pad:
            tgt = F.pad(tgt, (0, 0, 0, pad))
            valid = F.pad(valid, (0, pad), value=False)
            times = F.pad(times.to(self.device), (0, pad), mode="replicate")
        bias = None
        if self.config.time_bias:
            if key_times is None:
                raise ValueError("A time-biased decoder needs the times of the encoder tokens (key_times).")
            bias = self.time_bias(times, key_times).to(tgt.dtype)
        valid = rearrange(valid, "b (n c) -> (b n) c", c=chunk)
        valid = valid | ~valid.any(1, keepdim=True)  # a chunk of padding only attends to itself (no NaN)
        # nn.TransformerDecoder's layers (norm_first) step by step: self-attention within chunks, but every
        # time query cross-attends the encoder output at once, so its keys/values are projected once, not
        # once per chunk (same math; with sdpa_attention, object queries over long windows ~2x faster).
        x = tgt  # (b, l, d)
        with sdpa_attention():
            for layer in self.decoder.layers:
                xc = rearrange(x, "b (n c) d -> (b n) c d", c=chunk)
                xc = xc + self._self_attention(layer, layer.norm1(xc), ~valid)
                x = rearrange(xc, "(b n) c d -> b (n c) d", b=b)
                x = x + self._cross_attention(layer, layer.norm2(x), enc, bias)
                h = layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm3(x)))))
                x = x + layer.dropout3(h)
        return self.decoder.norm(x)[:, :length]

    @staticmethod
    def _self_attention(
        layer: nn.TransformerDecoderLayer, x: torch.Tensor, pad: torch.Tensor
    ) -> torch.Tensor:
        out = layer.self_attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]
        return layer.dropout1(out)

    @staticmethod
    def _cross_attention(
        layer: nn.TransformerDecoderLayer, x: torch.Tensor, enc: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        out = layer.multihead_attn(x, enc, enc, attn_mask=bias, need_weights=False)[0]
        return layer.dropout2(out)
