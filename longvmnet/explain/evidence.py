"""Why an answer: the memory tokens that weighed most in it, and how well the memory covers the query's range.

With the pointer (config.pointer), the model scores every memory token for how well it matches the query
(`token_logits` (m,), trained against the tokens that show the answer); object and time answers read those
scores near each time. An activity answer with the window reader reads the frames where the crop's object is
likeliest acted on (`LongVMNet.acted_on`, `reader.select_frames`): its evidence is those frames' tokens, most
like the crop first (no others). `answer_with_tokens` answers one query exactly as `inference.answer` does and keeps
those scores; `top_tokens` ranks them. A model without them falls back to a gradient-free attribution that
says what it is: the cosine similarity of each memory token to the query's crop (`find.similarity`). Nothing
here imports Gradio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from longvmnet.explain.find import crop_vector, similarity
from longvmnet.inference import answer_batch
from longvmnet.memory import Memory
from longvmnet.model.reader import select_frames
from longvmnet.queries import Answer, Query, validate

MATCH = "the model's match score"  # what Token.score is, for each source
SIMILAR = "cosine similarity to the crop"
ACTED = "cosine similarity to the crop, in the frames the reader reads as the crop's object acted on"


@dataclass(frozen=True)
class Token:
    """One memory token and how much it weighed."""

    index: int  # position in the memory
    time: float  # seconds: the frame it was cut from
    row: int  # patch row and column in the frame's grid
    col: int
    score: float  # higher weighed more (see `Evidence.source`)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Evidence:
    tokens: list[Token]  # best first
    source: str  # MATCH or SIMILAR: what the scores are

    def to_dict(self) -> dict:
        return {"source": self.source, "tokens": [t.to_dict() for t in self.tokens]}


@dataclass(frozen=True)
class Coverage:
    """How many memory tokens lie in a query's range; fewer than one frame's worth makes answers there weak."""

    start: float
    end: float
    tokens: int  # memory tokens whose frame lies in [start, end]
    frames: int  # distinct frames among them
    per_frame: int  # tokens per frame (grid^2)

    @property
    def weak(self) -> bool:
        return self.tokens < self.per_frame

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "tokens": self.tokens, "frames": self.frames,
                "weak": self.weak}  # fmt: skip


@torch.inference_mode()
def answer_with_tokens(model, memory: Memory, query: Query, *,
                       crops: Callable | None = None) -> tuple[Answer, torch.Tensor | None]:  # fmt: skip
    """Stage 2 for one query, the same computation as `inference.answer`, also returning the model's per-token
    scores (m,) when it has them (else None): the pointer's `token_logits` for object and time answers, the
    reader's `acted` for activity answers. `crops` maps crops to their tokens (default `crop_tokens`; an
    `inference.CropTokens` cache)."""
    if model.training:
        model.eval()
    validate(query, duration_s=memory.meta.duration_s, activities=model.config.activities)
    mem = {k: v.to(model.device) for k, v in memory.batched().items()}
    answers, out = answer_batch(model, mem, query.kind, [query], crops)
    logits = out.get("acted" if query.kind == "activity" else "token_logits")
    return answers[0], None if logits is None else logits[0].float().cpu()


def top_tokens(memory: Memory, scores: torch.Tensor, *, k: int = 6, start: float | None = None,
               end: float | None = None) -> list[Token]:  # fmt: skip
    """The k memory tokens with the highest scores (m,), among those whose frame lies in [start, end] when
    any does (else among all), best first."""
    times = memory.times
    keep = torch.ones_like(times, dtype=torch.bool)
    if start is not None and end is not None:
        inside = (times >= start - 1e-3) & (times <= end + 1e-3)
        keep = inside if inside.any() else keep
    masked = scores.float().masked_fill(~keep, float("-inf"))
    order = masked.argsort(descending=True)[: min(k, int(keep.sum()))]
    return [Token(int(i), round(float(times[i]), 3), int(memory.rows[i]), int(memory.cols[i]),
                  round(float(scores[i]), 4)) for i in order]  # fmt: skip


def explain(
    model,
    memory: Memory,
    query: Query,
    token_logits: torch.Tensor | None,
    *,
    k: int = 6,
    crops: Callable | None = None,
) -> Evidence | None:
    """The answer's evidence: its top tokens by the model's match score; for an activity answer with the
    reader's `acted` scores, the tokens of the frames the reader reads (`select_frames` in the range), most
    like the crop first; else by similarity to the query's crop; None when neither exists (an object query
    without a pointer)."""
    if token_logits is not None and query.kind == "activity":
        sims = similarity(memory, crop_vector(model, query.crop, crops=crops))
        inside = (memory.times >= query.start - 1e-3) & (memory.times <= query.end + 1e-3)
        read = torch.nonzero(select_frames(memory.times, inside, token_logits)).flatten()
        order = read[sims[read].argsort(descending=True)][:k].tolist()
        return Evidence([Token(i, round(float(memory.times[i]), 3), int(memory.rows[i]), int(memory.cols[i]),
                               round(float(sims[i]), 4)) for i in order], ACTED)  # fmt: skip
    if token_logits is not None:
        scores, source = token_logits, MATCH
    elif getattr(query, "crop", None) is not None:
        scores, source = similarity(memory, crop_vector(model, query.crop, crops=crops)), SIMILAR
    else:
        return None
    return Evidence(top_tokens(memory, scores, k=k, start=query.start, end=query.end), source)


def coverage(memory: Memory, start: float, end: float, per_frame: int) -> Coverage:
    inside = (memory.times >= start - 1e-3) & (memory.times <= end + 1e-3)
    frames = len(torch.unique(memory.times[inside]))
    return Coverage(float(start), float(end), int(inside.sum()), frames, per_frame)
