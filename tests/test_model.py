"""Model invariants on the tiny preset: output keys and shapes, gradients, batching, losses."""

import pytest
import torch

from longvmnet.config import preset
from longvmnet.inference import empty_memory, write_clip
from longvmnet.model import LongVMNet
from longvmnet.model.losses import Criterion


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LongVMNet(preset("tiny"))


def random_memory(model, b=2):
    c = model.config
    rows, cols = model.grid_positions(c.memory_frames)
    return {
        "tokens": torch.randn(b, c.memory_size, c.d_model),
        "times": torch.rand(b, c.memory_size) * 60,
        "rows": rows.repeat(b, 1),
        "cols": cols.repeat(b, 1),
    }


def query_inputs(model, kind, b=2, length=12):
    c = model.config
    times = torch.arange(length).float().repeat(b, 1)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[1, length - 3 :] = False
    obj = torch.randn(b, c.tokens_per_frame, c.d_model) if kind in ("activity", "time") else None
    act = torch.tensor([0, 3]) if kind in ("object", "time") else None
    return times, mask, obj, act


@pytest.mark.parametrize(
    "kind,shapes",
    [
        ("activity", {"activity_logits": (2, 10), "acted": (2, 64), "reader_features": (2, 11 * 32 + 3)}),
        ("object", {"boxes": (2, 12, 4), "presence_logits": (2, 12), "token_logits": (2, 64)}),
        (
            "time",
            {
                "start_logits": (2, 12),
                "end_logits": (2, 12),
                "inside_logits": (2, 12),
                "token_logits": (2, 64),
            },
        ),
    ],
)
def test_output_keys_and_shapes(model, kind, shapes):
    model.eval()
    times, mask, obj, act = query_inputs(model, kind)
    out = model(random_memory(model), kind, times, mask, object_tokens=obj, activity=act)
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert all(torch.isfinite(v).all() for v in out.values())


def test_wrong_inputs_for_kind_are_refused(model):
    times, mask, obj, _ = query_inputs(model, "activity")
    with pytest.raises(ValueError, match="object query"):
        model(random_memory(model), "object", times, mask, object_tokens=obj)
    with pytest.raises(ValueError, match="Unknown query kind"):
        model(random_memory(model), "colour", times, mask)


def test_batched_equals_unbatched(model):
    model.eval()
    times, mask, obj, act = query_inputs(model, "time", length=40)
    mem = random_memory(model)
    with torch.no_grad():
        both = model(mem, "time", times, mask, object_tokens=obj, activity=act)
        one = model({k: v[1:] for k, v in mem.items()}, "time", times[1:, :37], mask[1:, :37],
                    object_tokens=obj[1:], activity=act[1:])  # fmt: skip
    assert torch.allclose(both["start_logits"][1, :37], one["start_logits"][0], atol=1e-4)


def test_gradients_reach_sampler_scores(model):
    model.train()
    model.zero_grad()
    mem = random_memory(model)
    clip = random_memory(model)
    new = model.write_memory(mem, clip)
    times, mask, obj, act = query_inputs(model, "activity")
    out = model(new, "activity", times, mask, object_tokens=obj, activity=act)
    loss, _ = Criterion()("activity", out, {"activity": torch.zeros(2, 10)})
    loss.backward()
    grad = model.sampler.score[1].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()


def test_memory_write_keeps_size_and_provenance(model):
    model.eval()
    mem = random_memory(model)
    clip = random_memory(model)
    clip["times"] = clip["times"] + 1000.0
    with torch.no_grad():
        new = model.write_memory(mem, clip, noise=False)
    assert new["tokens"].shape == mem["tokens"].shape
    # every kept token is one of the candidates, with its own provenance
    cand_t = torch.cat([mem["times"], clip["times"]], 1)
    for b in range(2):
        assert set(new["times"][b].tolist()) <= set(cand_t[b].tolist())


def test_memory_size_independent_of_video_length(model):
    model.eval()
    c = model.config
    sizes = []
    for n_clips in (1, 3, 9):
        memory = empty_memory(model)
        with torch.no_grad():
            for i in range(n_clips):
                frames = torch.randint(0, 255, (c.clip_len, c.image_size, c.image_size, 3), dtype=torch.uint8)
                rows, cols = model.grid_positions(c.clip_len)
                times = (
                    (i * c.clip_len + torch.arange(c.clip_len)).float().repeat_interleave(c.tokens_per_frame)
                )
                clip = {"tokens": model.embed_frames(frames).reshape(1, -1, c.d_model), "times": times[None],
                        "rows": rows[None], "cols": cols[None]}  # fmt: skip
                memory = write_clip(model, memory, clip)
        sizes.append(tuple(memory["tokens"].shape))
        assert memory["times"].max() < n_clips * c.clip_len
    assert sizes == [(1, c.memory_size, c.d_model)] * 3


@pytest.mark.parametrize("kind", ["activity", "object", "time"])
def test_losses_finite(model, kind):
    model.train()
    times, mask, obj, act = query_inputs(model, kind)
    out = model(random_memory(model), kind, times, mask, object_tokens=obj, activity=act)
    box_mask = mask.clone()
    box_mask[:, :4] = False
    tgt = {
        "activity": torch.tensor([[1.0] + [0.0] * 9, [0.0, 1.0] + [0.0] * 8]),
        "boxes": torch.tensor([0.1, 0.1, 0.4, 0.5]).expand(2, 12, 4),
        "box_mask": box_mask,
        "mask": mask,
        "start_idx": torch.tensor([2, 3]),
        "end_idx": torch.tensor([5, 7]),
    }
    total, terms = Criterion()(kind, out, tgt)
    assert torch.isfinite(total) and total > 0
    assert all(torch.isfinite(v) for v in terms.values())
    total.backward()
    model.eval()


@pytest.mark.parametrize("fusion", ["paper", "pooled"])
def test_fusions(fusion):
    torch.manual_seed(0)
    m = LongVMNet(preset("tiny", fusion=fusion)).eval()
    times, mask, obj, act = query_inputs(m, "activity")
    out = m(random_memory(m), "activity", times, mask, object_tokens=obj)
    out2 = m(random_memory(m), "activity", times, mask, object_tokens=obj * 2)
    assert not torch.allclose(out["activity_logits"], out2["activity_logits"])


def test_crop_centre_is_the_mean_of_the_middle_tokens():
    from longvmnet.measure.probe import crop_centre

    g, d = 4, 8
    obj = torch.randn(1, g * g, d)
    obj.view(1, g, g, d)[:, 1:4, 1:4] = 2.0  # the middle 3 x 3 of the 4 x 4 crop: one vector
    assert torch.allclose(crop_centre(obj, g), torch.full((1, 1, d), 2.0))


def test_time_bias_makes_the_decoder_look_near_its_times():
    """With steep slopes, a time query's answer ignores memory tokens far from its time; without the bias
    (the paper's decoder) it does not."""
    torch.manual_seed(0)
    near_only = LongVMNet(preset("tiny")).eval()
    with torch.no_grad():
        near_only.time_slope.fill_(50.0)  # softplus(50) = 50 per second: tokens 1 s away are ignored
    paper = LongVMNet(preset("tiny", time_bias=False)).eval()
    paper.load_state_dict({k: v for k, v in near_only.state_dict().items() if k != "time_slope"})
    memory = random_memory(near_only, b=1)
    memory["times"] = torch.linspace(0, 60, memory["times"].shape[1])[None]
    times, mask = torch.tensor([[5.0, 6.0]]), torch.ones(1, 2, dtype=torch.bool)
    far = dict(memory, tokens=memory["tokens"].clone())
    far["tokens"][:, memory["times"][0] > 30] += 5.0  # change only tokens more than 24 s away
    for m in (near_only, paper):
        with torch.no_grad():
            # the object kind's decoder reads the encoder output; compare at the decoder (encoder mixes all)
            enc = m.encode(memory, activity=torch.tensor([0]))
            enc_far = enc.clone()
            enc_far[:, : memory["times"].shape[1]][:, memory["times"][0] > 30] += 5.0
            key_times = torch.cat([memory["times"], torch.full((1, 1), float("nan"))], 1)
            a = m.decode(enc, times, mask, "object", key_times=key_times)
            b = m.decode(enc_far, times, mask, "object", key_times=key_times)
        if m is near_only:
            assert torch.allclose(a, b, atol=1e-5)
        else:
            assert not torch.allclose(a, b, atol=1e-3)
    with pytest.raises(ValueError, match="key_times"):
        near_only.decode(enc, times, mask, "object")


def test_chunked_decoder_is_the_transformer_decoder_when_one_chunk_holds_all_queries():
    """decode runs nn.TransformerDecoder's layers step by step; with one chunk and no time bias it must give
    the same output, padded time queries included (they are masked as keys, not as queries)."""
    torch.manual_seed(0)
    m = LongVMNet(preset("tiny", time_bias=False)).eval()
    enc = torch.randn(2, 30, m.config.d_model)
    times, mask, _, _ = query_inputs(m, "object", length=12)
    with torch.no_grad():
        ours = m.decode(enc, times, mask, "object")
        tgt = m.time_pe(times) + m.kind_embed.weight[1]
        torch_out = m.decoder(tgt, enc, tgt_key_padding_mask=~mask)
    assert m.config.decoder_chunk >= times.shape[1]
    assert torch.allclose(ours, torch_out, atol=1e-5)


def test_attention_dropout_is_separate_from_dropout():
    m = LongVMNet(preset("tiny", dropout=0.3, attn_dropout=0.0))
    attn = [x for x in m.modules() if isinstance(x, torch.nn.MultiheadAttention)]
    drop = [
        x
        for part in (m.sampler, m.encoder, m.decoder)
        for x in part.modules()
        if isinstance(x, torch.nn.Dropout)
    ]
    assert attn and all(x.dropout == 0.0 for x in attn)
    assert drop and all(x.p == 0.3 for x in drop)
    assert all(x.dropout == 0.3 for x in LongVMNet(preset("tiny", dropout=0.3)).modules()
               if isinstance(x, torch.nn.MultiheadAttention))  # fmt: skip


def test_pointer_reads_matching_tokens_near_each_time():
    torch.manual_seed(0)
    model = LongVMNet(preset("tiny")).eval()
    c = model.config
    d, m = c.d_model, 8
    with torch.no_grad():  # match_j = gelu(feature 0 of token j): token 5 matches, the others do not
        for layer in (model.match_in, model.match_q, model.match_out):
            layer.weight.zero_(), layer.bias.zero_()
        model.match_in.weight.copy_(torch.eye(d))
        model.match_out.weight[0, 0] = 1.0
        enc = torch.zeros(1, m, d)
        enc[0, 5, 0] = 6.0
        memory = {"times": torch.arange(m).float()[None] * 10,  # tokens at 0, 10, ..., 70 s
                  "rows": torch.arange(m)[None] % c.grid, "cols": torch.arange(m)[None] // 2}  # fmt: skip
        ev = model.localise(enc, torch.zeros(1, 1, d), memory, torch.tensor([[0.0, 50.0, 70.0]]))
    assert ev["token_logits"].argmax() == 5
    assert ev["evidence"][0, 1] > ev["evidence"][0, 0] + 3 and ev["evidence"][0, 1] > ev["evidence"][0, 2]
    x, y = (memory["cols"][0, 5] + 0.5) / c.grid, (memory["rows"][0, 5] + 0.5) / c.grid
    assert torch.allclose(ev["centre"][0, 1], torch.tensor([x, y]), atol=0.02)  # the box sits on token 5


def test_pointer_is_ours_not_the_papers():
    assert not preset("paper").pointer and preset("lite").pointer and preset("tiny").pointer


def test_object_answers_read_the_memory_at_one_fps_and_give_a_box_per_frame(model, monkeypatch):
    """The decoder reads the memory at READ_FPS["object"]; the answer still has a box per frame at object_fps,
    equal to the decoder's at the times it read and linear in between."""
    from longvmnet import inference
    from longvmnet.memory import Memory, MemoryMeta
    from longvmnet.queries import ObjectQuery

    c = model.config
    mem = random_memory(model, b=1)
    memory = Memory(
        mem["tokens"][0], mem["times"][0], mem["rows"][0], mem["cols"][0], MemoryMeta(duration_s=60)
    )
    query = ObjectQuery(c.activities[1], 10.0, 14.0)
    ans = inference.answer(model.eval(), memory, [query])[0]
    assert ans.times == pytest.approx([10 + i / c.object_fps for i in range(int(4 * c.object_fps) + 1)])
    read = inference.read_grid(model, "object")[1]
    assert read == min(c.object_fps, inference.READ_FPS["object"]) < c.object_fps
    with torch.inference_mode():
        times = torch.arange(10.0, 14.0 + 1e-6, 1 / read)[None]
        out = model(memory.batched(), "object", times, torch.ones_like(times, dtype=torch.bool),
                    activity=torch.tensor([1]))  # fmt: skip
    from longvmnet.model.box_ops import cxcywh_to_xyxy

    boxes = cxcywh_to_xyxy(out["boxes"][0]).clamp(0, 1)
    step = round(c.object_fps / read)
    assert torch.tensor(ans.boxes[::step]) == pytest.approx(boxes, abs=1e-5)  # the times it read
    k = torch.arange(len(ans.boxes) - 1)  # every frame before the last read: linear between its two reads
    f = (k % step).float()[:, None] / step
    between = (1 - f) * out["boxes"][0, k // step] + f * out["boxes"][0, k // step + 1]
    assert torch.tensor(ans.boxes[:-1]) == pytest.approx(cxcywh_to_xyxy(between).clamp(0, 1), abs=1e-5)


def test_long_windows_are_read_at_most_read_max_times(model, monkeypatch):
    """An object query over a long window is read at READ_MAX evenly spaced times (not READ_FPS), and its
    answer still has a box per frame at object_fps, within the read boxes' range."""
    from longvmnet import inference
    from longvmnet.memory import Memory, MemoryMeta
    from longvmnet.queries import ObjectQuery

    c = model.config
    mem = random_memory(model, b=1)
    memory = Memory(
        mem["tokens"][0], mem["times"][0], mem["rows"][0], mem["cols"][0], MemoryMeta(duration_s=60)
    )
    monkeypatch.setitem(inference.READ_MAX, "object", 6)
    read, decode = [], model.decode
    monkeypatch.setattr(
        model, "decode", lambda enc, times, *a, **k: read.append(times) or decode(enc, times, *a, **k)
    )
    ans = inference.answer(model.eval(), memory, [ObjectQuery(c.activities[1], 0.0, 50.0)])[0]
    assert len(read) == 1 and read[0][0].tolist() == pytest.approx(torch.linspace(0.0, 50.0, 6).tolist())
    assert len(ans.times) == len(ans.boxes) == int(50 * c.object_fps) + 1 and ans.boxes.shape[1] == 4
    monkeypatch.setitem(inference.READ_MAX, "object", 1000)  # more than READ_FPS gives: every 1 / READ_FPS s
    read.clear()
    inference.answer(model, memory, [ObjectQuery(c.activities[1], 0.0, 50.0)])
    assert read[0].shape[1] == int(50 * inference.READ_FPS["object"]) + 1


def test_the_segment_reader_picks_among_the_best_runs(model):
    """Object and time answers: an unfit segment reader leaves the best run; one that reads the query's
    activity in another candidate run moves the answer there (its weight against the runs' sums)."""
    import copy

    from torch import nn

    from longvmnet import inference
    from longvmnet.queries import ObjectQuery

    model = copy.deepcopy(model)  # its segment reader is swapped below
    c = model.config
    memory = random_memory(model, b=1)
    times = torch.arange(0.0, 40.0)[None]
    logits = torch.full((1, 40), -4.0)
    logits[0, 2:5], logits[0, 20:23] = 3.0, 2.0  # runs 2..4 (sum 9) and 20..22 (6), then a lone -4
    grid, out = (
        {"times": times, "mask": torch.ones_like(times, dtype=torch.bool)},
        {"presence_logits": logits},
    )
    query = [ObjectQuery(c.activities[1], 0.0, 39.0)]
    assert inference.rerank(model.eval(), memory, "object", query, out, grid, fps=1.0) == [(2, 4)]

    class Reads(nn.Module):  # the query's activity read in the second candidate only
        def forward(self, x):
            seen.append(x)
            y = torch.zeros(len(x), len(c.activities) + 1)
            y[1, 1] = strength
            return y

    seen, strength = [], 10.0
    model.segment_reader = Reads()
    assert inference.rerank(model, memory, "object", query, out, grid, fps=1.0) == [(20, 22)]  # 6/9 + 2 > 1
    assert seen[0].shape == (inference.RERANK_RUNS, 5 * c.d_model + 1)
    strength = 1.0  # 6/9 + 0.2 < 1: the best run stays
    assert inference.rerank(model, memory, "object", query, out, grid, fps=1.0) == [(2, 4)]
    assert inference.rerank(model, memory, "activity", query, out, grid, fps=1.0) is None


def test_acting_spans_are_the_best_runs_of_the_window_frames():
    from longvmnet.model.reader import acting_spans

    times = torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 50.0])
    scores = torch.tensor(
        [-1.0, 2.0, -9.0, 3.0, -5.0, -5.0, -5.0, 1.0, -5.0, 99.0]
    )  # a frame: its best token
    inside = times < 10
    assert acting_spans(times, inside, scores, k=2, gap=2) == [(1.0, 2.0), (6.0, 6.0)]
    assert acting_spans(times, times > 99, scores) == []


def test_frame_grid_reads_each_memory_frame_of_the_window():
    from longvmnet.model.reader import frame_grid

    mem_times = torch.tensor([[5.0, 1.0, 1.0, 9.0, 30.0, 3.0], [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]])
    times = torch.tensor([[0.0, 5.0, 10.0], [0.0, 10.0, 20.0]])  # windows 0-10 s and 0-20 s
    mask = torch.tensor([[True, True, True], [True, True, False]])  # the second one ends at 10 s
    out, keep = frame_grid(mem_times, times, mask)
    assert keep.tolist() == [[True] * 4, [True, True, False, False]]
    assert out[0].tolist() == [1.0, 3.0, 5.0, 9.0]  # distinct, in order, the frame at 30 s left out
    assert out[1, :2].tolist() == [0.0, 10.0]  # no memory frame in the window: its own time queries


def test_acting_frames_are_read_at_the_memory_frames(model, monkeypatch):
    """The time head's pass behind `acted`: one time query per memory frame of the window, whatever the
    activity query's own grid, so each memory token gets its own frame's score."""
    import copy

    model = copy.deepcopy(model).eval()
    times, mask, obj, _ = query_inputs(model, "activity")
    memory = random_memory(model)
    frame = torch.arange(model.config.memory_size).div(8, rounding_mode="floor")  # 8 frames of 8 tokens
    memory["times"] = (frame * 1.5).float().repeat(2, 1)  # at 0, 1.5, ... 10.5 s
    read, decode = [], model.decode
    monkeypatch.setattr(
        model,
        "decode",
        lambda enc, t, m, kind, **k: read.append((kind, t, m)) or decode(enc, t, m, kind, **k),
    )
    with torch.no_grad():
        out = model(memory, "activity", times, mask, object_tokens=obj)
    ((_, t, m),) = [r for r in read if r[0] == "time"]
    frames = [1.5 * f for f in range(8)]
    assert t[0].tolist() == frames  # window 0-11 s: every frame
    assert m[1].tolist() == [True] * 6 + [False] * 2 and t[1, :6].tolist() == frames[:6]  # window 0-8 s
    acted = out["acted"]
    assert torch.equal(acted[0], acted[0][frame * 8])  # a frame's tokens share its score
    assert not torch.equal(acted[0][:8], acted[0][8:16])


def test_activity_logits_add_the_segment_readers_reading_of_the_acting_runs(model):
    """An activity answer's logits: head + window reader + SEGMENT_WEIGHT x the segment reader's largest
    logit per activity over the window's acting runs (zero for an unfit reader)."""
    import copy

    from torch import nn

    from longvmnet.model import network

    model = copy.deepcopy(model).eval()
    times, mask, obj, _ = query_inputs(model, "activity")
    memory = random_memory(model)
    memory["times"] = torch.arange(model.config.memory_size).float().div(8).floor().repeat(2, 1)
    c = len(model.config.activities)
    with torch.no_grad():
        before = model(memory, "activity", times, mask, object_tokens=obj)["activity_logits"]

        class Reads(nn.Module):  # activity j read with logit j in every span
            def forward(self, x):
                return torch.arange(c + 1.0).expand(len(x), -1)

        model.segment_reader = Reads()
        after = model(memory, "activity", times, mask, object_tokens=obj)["activity_logits"]
    assert torch.allclose(
        after - before, network.SEGMENT_WEIGHT * torch.arange(float(c)).expand(2, -1), atol=1e-5
    )


def test_time_answers_keep_a_score_per_second_when_the_decoder_reads_fewer(model):
    import numpy as np

    from longvmnet import inference
    from longvmnet.memory import Memory, MemoryMeta
    from longvmnet.queries import TimeQuery

    c = model.config
    assert inference.read_grid(model, "time")[1] < c.query_fps
    mem = random_memory(model, b=1)
    memory = Memory(
        mem["tokens"][0], mem["times"][0], mem["rows"][0], mem["cols"][0], MemoryMeta(duration_s=60)
    )
    crop = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    ans = inference.answer(model.eval(), memory, [TimeQuery(c.activities[0], crop, 10.0, 20.0)])[0]
    assert ans.times == pytest.approx([10.0 + i / c.query_fps for i in range(int(10 * c.query_fps) + 1)])
    assert len(ans.start_scores) == len(ans.end_scores) == len(ans.inside_scores) == len(ans.times)
    assert sum(ans.start_scores) == pytest.approx(1.0, abs=1e-4) and 10.0 <= ans.start < ans.end <= 21.0


def test_a_crop_asked_about_twice_goes_through_the_backbone_once(model, monkeypatch):
    import numpy as np

    from longvmnet.inference import crop_tokens

    seen = []
    embed = model.embed_frames
    monkeypatch.setattr(model, "embed_frames", lambda frames: seen.append(len(frames)) or embed(frames))
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(2))
    with torch.inference_mode():
        tokens = crop_tokens(model, [a, b, a.copy(), a])
        alone = [crop_tokens(model, [x])[0] for x in (a, b)]
        distinct = crop_tokens(model, [a, b])
    assert seen == [2, 1, 1, 2]
    assert torch.equal(tokens[0], tokens[2]) and torch.equal(tokens[0], tokens[3])
    for i in range(2):  # each crop keeps its own tokens, whether or not the batch repeats a crop
        assert torch.allclose(tokens[i], alone[i], atol=1e-5) and torch.allclose(
            distinct[i], alone[i], atol=1e-5
        )


def test_activity_conv_head_starts_as_the_mean_head_and_ignores_padding():
    from longvmnet.model.heads import ActivityHead

    torch.manual_seed(0)
    plain, conv = ActivityHead(16, 5), ActivityHead(16, 5, conv=9)
    conv.fc.load_state_dict(plain.fc.state_dict())  # a model trained without the convolution, loaded
    h, mask = torch.randn(2, 12, 16), torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    before = conv(h, mask)["activity_logits"]
    assert torch.allclose(before, plain(h, mask)["activity_logits"])  # the new parts start at zero
    for p in conv.parameters():
        torch.nn.init.normal_(p, std=0.1)
    out = conv(h, mask)["activity_logits"]
    padded = h.clone()
    padded[1, 7:] = 100.0  # what padding holds must not matter
    assert torch.allclose(conv(padded, mask)["activity_logits"], out, atol=1e-5)
    flipped = conv(h.flip(1), torch.ones_like(mask))["activity_logits"]  # unlike the mean, it sees the order
    assert not torch.allclose(flipped[0], out[0], atol=1e-4)


def test_queries_with_the_same_inputs_share_one_encoder_pass(model, monkeypatch):
    """Queries that differ only in their range share an encoder pass, and answer as they would alone; at most
    `max_encoded` distinct inputs are held at a time."""
    import numpy as np

    from longvmnet import inference
    from longvmnet.memory import Memory, MemoryMeta
    from longvmnet.queries import ActivityQuery, ObjectQuery, TimeQuery

    c = model.config
    mem = random_memory(model, b=1)
    memory = Memory(
        mem["tokens"][0], mem["times"][0], mem["rows"][0], mem["cols"][0], MemoryMeta(duration_s=60)
    )
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 255, (20, 30, 3), dtype=np.uint8) for _ in range(2))
    queries = [ActivityQuery(a, 0.0, 20.0), ActivityQuery(b, 5.0, 50.0), ActivityQuery(a.copy(), 30.0, 59.0),
               ObjectQuery(c.activities[1], 0.0, 10.0), ObjectQuery(c.activities[1], 20.0, 40.0),
               TimeQuery(c.activities[0], a, 0.0, 30.0), TimeQuery(c.activities[2], a, 10.0, 40.0),
               TimeQuery(c.activities[0], a, 30.0, 60.0)]  # fmt: skip
    encoded = []
    encode = model.encode
    monkeypatch.setattr(
        model, "encode", lambda mem, **kw: encoded.append(len(mem["tokens"])) or encode(mem, **kw)
    )
    model.eval()
    together = inference.answer(model, memory, queries)
    assert encoded == [2, 1, 2]  # activity: crops a, b; object: one activity; time: (a, 0), (a, 2)
    encoded.clear()
    alone = [inference.answer(model, memory, [q])[0] for q in queries]
    assert len(encoded) == len(queries)

    def close(x, y):  # answers equal up to float rounding
        if isinstance(x, float):
            return x == pytest.approx(y, abs=1e-4)
        if isinstance(x, (list, tuple)):
            return len(x) == len(y) and all(close(u, v) for u, v in zip(x, y))
        if isinstance(x, np.ndarray):
            return x.shape == y.shape and np.allclose(x, y, atol=1e-4)
        return x == y

    for x, y in zip(together, alone):
        assert type(x) is type(y) and all(close(v, getattr(y, k)) for k, v in vars(x).items())
    encoded.clear()
    inference.answer(model, memory, queries, max_encoded=1)
    assert encoded == [1, 1, 1, 1, 1]


def test_window_summary_averages_each_memory_frame_inside_the_window():
    from longvmnet.model.reader import time_summary, window_summary

    tokens = torch.arange(12.0).reshape(6, 2)
    times = torch.tensor([5.0, 1.0, 1.0, 3.0, 9.0, 3.0])  # frames at 1, 3, 5 s inside; 9 s outside
    inside = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    frames = torch.stack([tokens[[1, 2]].mean(0), tokens[[3, 5]].mean(0), tokens[0]])  # in time order
    out = window_summary(tokens, times, inside)
    assert torch.allclose(out, torch.cat([time_summary(frames), torch.tensor([3.0])]))
    one = window_summary(tokens, times, (times == 9.0).float())  # one frame: a still pair, finite
    assert torch.isfinite(one).all() and one[-1] == 1.0
    assert window_summary(tokens, times, torch.zeros(6)).abs().sum() == 0  # no frame in the window


def test_window_feature_reads_the_weighted_tokens_frame_by_frame():
    from longvmnet.model.reader import time_summary, window_feature

    tokens = torch.arange(12.0).reshape(6, 2)  # 3 frames (t = 0, 1, 2) of 2 tokens
    times = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    first = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])  # the first token of each frame
    f = window_feature(tokens, times, first)
    assert torch.allclose(f[:-2], time_summary(tokens[[0, 2, 4]])) and f[-2:].tolist() == [3.0, 3.0]
    both = window_feature(tokens, times, torch.ones(6))  # a frame's tokens are averaged
    assert torch.allclose(both[:2], tokens.reshape(3, 2, 2).mean((0, 1)))
    one = window_feature(tokens, times, torch.tensor([0.0, 0.0, 2.0, 2.0, 0.0, 0.0]))  # one frame: still
    assert one[-2:].tolist() == [1.0, 4.0] and torch.allclose(one[2:4], torch.zeros(2))
    assert not window_feature(tokens, times, torch.zeros(6)).any()


def test_select_frames_keeps_the_best_scored_share_of_the_window_frames():
    from longvmnet.model.reader import select_frames

    times = torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 30.0])
    inside = times < 10  # 9 frames in the window; the one at 30 s outside
    scores = torch.tensor([0.0, 5.0, 1.0, 2.0, 2.0, -1.0, 3.0, 0.5, 0.2, 0.1, -2.0, 99.0])
    picked = select_frames(times, inside, scores, share=0.3)  # 3 of 9 frames: 0 s (its best token), 4 s, 2 s
    assert picked.tolist() == [1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    few = select_frames(times, times < 1.5, scores, share=0.3)  # at least 2 frames
    assert few.tolist() == [1, 1, 1] + [0] * 9
    assert not select_frames(times, times > 99, scores).any()  # an empty window


def test_window_reader_starts_at_zero_and_reads_only_the_queried_window(model):
    """An unfit reader adds nothing to the activity head; a fit one reads the memory tokens inside the window
    of each query, not those outside, and answers a batch as it answers each query alone."""
    import copy

    model = copy.deepcopy(model).eval()
    times, mask, obj, _ = query_inputs(model, "activity")
    memory = random_memory(model)
    memory["times"] = (
        torch.arange(model.config.memory_size).float().div(8).floor().repeat(2, 1)
    )  # 8 s of frames
    with torch.no_grad():
        before = model(memory, "activity", times, mask, object_tokens=obj)["activity_logits"]
        feats = model(memory, "activity", times, mask, object_tokens=obj)["reader_features"]
        assert feats.shape == (2, 11 * model.config.d_model + 3)
        assert torch.allclose(model.reader(feats), torch.zeros_like(before))
        for p in model.reader.mlp.parameters():
            torch.nn.init.normal_(p, std=0.5)
        after = model(memory, "activity", times, mask, object_tokens=obj)["activity_logits"]
        assert not torch.allclose(after, before)
        outside = {k: v.clone() for k, v in memory.items()}
        outside["tokens"][:, memory["times"][0] > 11] += 5.0  # after the first row's last time query (11 s)
        moved = model(outside, "activity", times, mask, object_tokens=obj)["activity_logits"]
        assert torch.allclose(moved[0], after[0], atol=1e-5)
        inside = {k: v.clone() for k, v in memory.items()}
        inside["tokens"][:, memory["times"][0] < 4] += 5.0
        assert not torch.allclose(model(inside, "activity", times, mask, object_tokens=obj)["activity_logits"][0],
                                  after[0], atol=1e-3)  # fmt: skip
        single = model({k: v[1:] for k, v in memory.items()}, "activity", times[1:], mask[1:],
                       object_tokens=obj[1:])["activity_logits"]  # fmt: skip
        assert torch.allclose(single[0], after[1], atol=1e-5)
        enc = model.encode(memory, object_tokens=obj)
        with pytest.raises(ValueError, match="crop"):
            model.read(enc, memory, "activity", times, mask)
