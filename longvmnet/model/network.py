"""Long-VMNet: backbone, neural sampler, memory write, encoder, heads and the pointer (the decoder's reading
of the encoder output is in `decoding.py`, identity and loading in `checkpoint.py`).

Letters: b batch, m memory tokens, k clip tokens, p tokens per frame (grid^2), l time queries, d width,
c activity classes.

Model outputs are dicts with fixed keys:
  activity: activity_logits (b, c)
  object:   boxes (b, l, 4) normalised cxcywh, presence_logits (b, l)
  time:     start_logits (b, l), end_logits (b, l)
With the pointer (config.pointer) object and time outputs add token_logits (b, m), how well each memory
token matches the query (activity outputs too in training, for TrainConfig.activity_pointer), and time
outputs add inside_logits (b, l). Padded time queries carry heads.NEG. With the window reader
(config.window_reader, `reader.py`) activity logits add the reader's, outside training: it is fit in a phase
of its own (`train/reader.py`); activity outputs then add acted (b, m), how likely each memory token's time
shows the crop's object acted on (`acted_on`), and reader_features (b, 11 d + 3), the reader's input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from longvmnet.config import ModelConfig
from longvmnet.model.backbone import Backbone
from longvmnet.model.checkpoint import CheckpointIO
from longvmnet.model.decoding import KINDS, TimeQueryDecoding, sdpa_attention
from longvmnet.model.heads import ActivityHead, ObjectHead, TimeHead
from longvmnet.model.position_encoding import spatial_encoding, temporal_encoding
from longvmnet.model.reader import ReaderInputs, WindowReader
from longvmnet.model.sampler import NeuralSampler, relaxed_topk

MemoryTensors = dict[str, torch.Tensor]  # tokens (b, m, d), times (b, m), rows (b, m), cols (b, m)

# The window reader's dropout while it is fit (the reader phase, `train/reader.py`): 0.5 read unseen videos'
# activities better than 0.2 (README, Training and results; only used in training mode).
READER_DROPOUT = 0.5
# The weight of the segment reader's reading of an activity query's acting runs (`segment_logits`) in its
# logits: of 0.5, 1, 2 and 5, 1 read two sets of unseen videos best together (README, Training and results).
SEGMENT_WEIGHT = 1.0


class LongVMNet(
    CheckpointIO,
    TimeQueryDecoding,
    ReaderInputs,
    nn.Module,
    PyTorchModelHubMixin,
    library_name="longvmnet",
    tags=["video", "long-video-understanding", "long-vmnet"],
    license="apache-2.0",
):
    def __init__(self, config: ModelConfig):
        super().__init__()
        if isinstance(config, dict):
            config = ModelConfig(**config)
        self.config = c = config
        d = c.d_model
        self.backbone = Backbone(
            c.backbone,
            image_size=c.image_size,
            grid=c.grid,
            kwargs=c.backbone_kwargs,
            pretrained=c.backbone_pretrained,
            weights=c.backbone_weights,
        )
        self.proj = nn.Sequential(nn.LayerNorm(c.backbone_dim), nn.Linear(c.backbone_dim, d))
        self.activity_embed = nn.Sequential(nn.Linear(len(c.activities), d), nn.GELU(), nn.Linear(d, d))
        self.sampler = NeuralSampler(
            d_model=d, n_heads=c.n_heads, ffn_dim=c.ffn_dim, layers=c.sampler_layers, dropout=c.dropout
        )
        enc_layer = nn.TransformerEncoderLayer(
            d, c.n_heads, c.ffn_dim, c.dropout, batch_first=True, norm_first=True
        )
        dec_layer = nn.TransformerDecoderLayer(
            d, c.n_heads, c.ffn_dim, c.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(enc_layer, c.enc_layers, enable_nested_tensor=False)
        self.decoder = nn.TransformerDecoder(dec_layer, c.dec_layers, norm=nn.LayerNorm(d))
        self.role_embed = nn.Embedding(3, d)  # encoder input roles: memory, object, activity
        self.kind_embed = nn.Embedding(len(KINDS), d)  # which query type the decoder answers
        self.heads = nn.ModuleDict(
            {"activity": ActivityHead(d, len(c.activities), c.activity_conv), "object": ObjectHead(d, c.grid),
             "time": TimeHead(d, c.pointer)}
        )  # fmt: skip
        if c.pointer:  # query-matched memory tokens, read near each time query (`localise`)
            self.match_in = nn.Linear(d, d)
            self.match_q = nn.Linear(d, d)
            self.match_out = nn.Linear(d, 1)
            self.point_slope = nn.Parameter(torch.tensor(0.2).expm1().log())  # softplus -> 0.2 per second
        if c.window_reader:  # activity logits read straight from the window's memory tokens
            self.reader = WindowReader(d, len(c.activities), dropout=READER_DROPOUT)
            # a span's memory frames -> its activity or none (the last class): ranks object and time runs
            self.segment_reader = WindowReader(
                d, len(c.activities) + 1, dropout=READER_DROPOUT, width=5 * d + 1
            )
        if c.attn_dropout is not None:  # attention-weight dropout apart from the other dropout
            for module in self.modules():
                if isinstance(module, nn.MultiheadAttention):
                    module.dropout = c.attn_dropout
        if c.time_bias:  # per-head slopes (per second) from local to nearly global, learnt through softplus
            slopes = torch.logspace(0, -3, c.n_heads)
            self.time_slope = nn.Parameter(slopes.expm1().log())
        self.temperature = 1.0  # Gumbel top-k temperature, annealed by training (not saved)
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ embeddings
    @property
    def device(self) -> torch.device:
        return self.proj[1].weight.device

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(b, h, w, 3) uint8 -> (b, p, d) projected backbone tokens."""
        return self.proj(self.backbone(frames.to(self.device)))

    def project(self, backbone_tokens: torch.Tensor) -> torch.Tensor:
        """Cached backbone tokens (..., backbone_dim) -> (..., d)."""
        return self.proj(backbone_tokens.to(self.device, torch.float32))

    def embed_activity(self, idx: torch.Tensor) -> torch.Tensor:
        """(b,) class ids -> (b, 1, d) through a one-hot and a feed-forward layer."""
        one_hot = F.one_hot(idx.to(self.device), len(self.config.activities)).float()
        return self.activity_embed(one_hot).unsqueeze(1)

    def time_pe(self, times: torch.Tensor) -> torch.Tensor:
        c = self.config
        pe_fps = max(c.query_fps, c.object_fps, c.memory_fps)
        return temporal_encoding(times.to(self.device), c.d_model, fps=pe_fps, max_video_s=c.max_video_s)

    def token_pe(self, times: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """2D spatial + video-level temporal encoding of token provenance. (b, n) x3 -> (b, n, d)"""
        c = self.config
        return self.time_pe(times) + spatial_encoding(
            rows.to(self.device), cols.to(self.device), c.d_model, c.grid
        )

    def grid_positions(self, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column of each token of n_frames frames in backbone order. -> (n_frames*p,), (n_frames*p,)"""
        g = self.config.grid
        rows = torch.arange(g, device=self.device).repeat_interleave(g)
        cols = torch.arange(g, device=self.device).repeat(g)
        return rows.repeat(n_frames), cols.repeat(n_frames)

    # ------------------------------------------------------------------ stage 1: memory write
    def write_memory(
        self,
        memory: MemoryTensors,
        clip: MemoryTensors,
        *,
        clip_mask: torch.Tensor | None = None,
        noise: bool | None = None,
        size: int | None = None,
    ) -> MemoryTensors:
        """The sampler reads m memory + k clip tokens and keeps m of them.

        memory, clip: tokens (b, m|k, d), times, rows, cols (b, m|k); clip_mask (b, k) True = real token.
        `size` is the number kept (default: the memory's size; the first write starts from an empty memory).
        Returns the new memory (same keys, (b, size, ...)) plus "scores" (b, m + k) and "idx" (b, size).
        """
        m = memory["tokens"].shape[1] if size is None else size
        cand = {key: torch.cat([memory[key].to(self.device), clip[key].to(self.device)], 1) for key in clip}
        if self.config.selection == "neural":
            x = cand["tokens"] + self.token_pe(cand["times"], cand["rows"], cand["cols"])
            with sdpa_attention():
                scores = self.sampler(x)
        else:  # "random" (an ablation) and "uniform" (stage 1 picks whole frames itself): random scores
            scores = torch.rand(cand["times"].shape, device=self.device)
        if clip_mask is not None:
            keep = torch.cat(
                [torch.ones_like(memory["times"], dtype=torch.bool), clip_mask.to(self.device)], 1
            )
            scores = scores.masked_fill(~keep, float("-inf"))
        c = self.config
        idx, weight = relaxed_topk(
            scores,
            m,
            temperature=self.temperature,
            noise=self.training if noise is None else noise,
            method=c.topk,
            steps=c.topk_steps,
        )
        out = {key: cand[key].gather(1, idx) for key in ("times", "rows", "cols")}
        tokens = cand["tokens"].gather(1, repeat(idx, "b m -> b m d", d=c.d_model))
        out["tokens"] = tokens * weight.unsqueeze(
            -1
        )  # forward: x 1.0 exactly; backward: the relaxed gradient
        out["scores"] = scores
        out["idx"] = idx  # (b, size) which candidates were kept (memory first, then clip)
        return out

    # ------------------------------------------------------------------ stage 2: queries
    def encode(
        self,
        memory: MemoryTensors,
        *,
        object_tokens: torch.Tensor | None = None,
        activity: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder over memory tokens fused with the query inputs. -> (b, m [+ p] [+ 1], d)"""
        c = self.config
        mem = memory["tokens"].to(self.device)
        b = mem.shape[0]
        parts = []
        if object_tokens is not None:
            obj = object_tokens.to(self.device)
            mem = self.fuse(mem, obj)
            rows, cols = self.grid_positions(1)
            obj_pe = spatial_encoding(rows, cols, c.d_model, c.grid)
            parts.append(obj + obj_pe + self.role_embed.weight[1])
        pe = self.token_pe(memory["times"], memory["rows"], memory["cols"])
        parts.insert(0, mem + pe + self.role_embed.weight[0])
        if activity is not None:
            parts.append(self.embed_activity(activity) + self.role_embed.weight[2])
        assert all(p.shape[0] == b for p in parts)
        with sdpa_attention():
            return self.encoder(torch.cat(parts, 1))

    def fuse(self, mem: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
        """Memory tokens (b, m, d) fused with a query crop's tokens (b, p, d) as config.fusion says."""
        c = self.config
        if c.fusion == "paper":  # memory viewed as frames of p tokens, times the object's p tokens
            mem = rearrange(mem, "b (f p) d -> b f p d", p=c.tokens_per_frame) * obj.unsqueeze(1)
            return rearrange(mem, "b f p d -> b (f p) d")
        if c.fusion == "pooled":
            return mem * obj.mean(1, keepdim=True)
        raise ValueError(f"Unknown fusion {c.fusion!r}; use paper or pooled.")

    def forward(
        self,
        memory: MemoryTensors,
        kind: str,
        times: torch.Tensor,
        mask: torch.Tensor,
        *,
        object_tokens: torch.Tensor | None = None,
        activity: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Answer a batch of queries of one kind from memory alone.

        memory: tokens (b, m, d), times/rows/cols (b, m); times (b, l) seconds of the decoder's time queries,
        mask (b, l); object_tokens (b, p, d) for activity and time queries; activity (b,) for object and time.
        """
        if kind not in KINDS:
            raise ValueError(f"Unknown query kind {kind!r}; use one of {', '.join(KINDS)}.")
        needs_object, needs_activity = kind in ("activity", "time"), kind in ("object", "time")
        if needs_object != (object_tokens is not None) or needs_activity != (activity is not None):
            raise ValueError(f"A {kind} query takes {'an object crop' if needs_object else 'no crop'} and "
                             f"{'an activity' if needs_activity else 'no activity'}.")  # fmt: skip
        crop = None if object_tokens is None else object_tokens.mean(1)
        return self.read(self.encode(memory, object_tokens=object_tokens, activity=activity), memory, kind,
                         times, mask, crop=crop)  # fmt: skip

    def read(
        self,
        enc: torch.Tensor,
        memory: MemoryTensors,
        kind: str,
        times: torch.Tensor,
        mask: torch.Tensor,
        crop: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The decoder and the kind's head over an encoder output (`encode`): enc (b, m + q, d), the memory
        it encoded, times and mask (b, l). The encoder output does not depend on the query's range, so
        queries with the same inputs and other ranges can share one (`inference.answer`). An activity
        query's crop (b, d), its tokens' mean, is the window reader's (`config.window_reader`)."""
        key_times = self.key_times(enc, memory)
        h = self.decode(enc, times, mask, kind, key_times=key_times)
        ev = None
        if self.config.pointer and (kind != "activity" or self.training):  # activity: a training target only
            m = memory["times"].shape[1]
            ev = self.localise(enc[:, :m], enc[:, m:], memory, times)
        out = self.heads[kind](h, mask.to(self.device), ev)
        if kind == "activity" and self.config.window_reader and not self.training:  # fit in its own phase
            if crop is None:
                raise ValueError("The window reader reads an activity query's crop: pass read(..., crop=).")
            out["acted"] = acted = self.acted_on(enc, memory, times, mask, key_times)
            out["reader_features"] = self.window_features(memory, times, mask, crop, acted)
            out["activity_logits"] = (out["activity_logits"] + self.reader(out["reader_features"])
                                      + SEGMENT_WEIGHT * self.segment_logits(memory, times, mask, acted))  # fmt: skip
        if ev is not None:
            out["token_logits"] = ev["token_logits"]
        return out

    def key_times(self, enc: torch.Tensor, memory: MemoryTensors) -> torch.Tensor:
        """Seconds of each encoder output token (b, n): the memory tokens' times, NaN for the query's tokens."""
        mem_times = memory["times"].to(self.device, torch.float32)
        extra = mem_times.new_full((mem_times.shape[0], enc.shape[1] - mem_times.shape[1]), float("nan"))
        return torch.cat([mem_times, extra], 1)

    def localise(
        self, enc_mem: torch.Tensor, enc_query: torch.Tensor, memory: MemoryTensors, times: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """How well each memory token matches the query, and the evidence near each time query.

        enc_mem (b, m, d) and enc_query (b, q, d): encoder outputs of the memory and of the query's crop /
        activity tokens; memory times / rows / cols (b, m); times (b, l) seconds. A time query weighs the
        tokens by w = softmax(-slope * |t - t_token|) and reads
          evidence (b, l) = log sum_j w_j exp(match_j)    (high when matching tokens lie near t)
          centre (b, l, 2) = sum_j softmax(log w + match)_j * (x, y) of token j's patch centre
        -> {"token_logits": (b, m), "evidence": (b, l), "centre": (b, l, 2)}
        """
        g = self.config.grid
        match = self.match_in(enc_mem) + self.match_q(enc_query.mean(1)).unsqueeze(1)
        match = self.match_out(F.gelu(match)).squeeze(-1)
        dt = (
            times.to(self.device)[:, :, None] - memory["times"].to(self.device, torch.float32)[:, None]
        ).abs()
        logits = (-F.softplus(self.point_slope) * dt).log_softmax(-1) + match[:, None]
        xy = torch.stack([memory["cols"], memory["rows"]], -1).to(self.device, torch.float32)
        centre = logits.softmax(-1) @ ((xy + 0.5) / g)
        return {"token_logits": match, "evidence": logits.logsumexp(-1), "centre": centre}


def build_model(config: ModelConfig) -> LongVMNet:
    return LongVMNet(config)
