"""Token probes and the backbone's instance AUC: what frozen tokens tell, with no query model in the way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longvmnet.config import SYNTH_ACTIVITIES, preset
from longvmnet.data import synth
from longvmnet.data.rest import ReSTData
from longvmnet.measure.probe import instance_auc, rank_auc
from longvmnet.model import LongVMNet

ACTIVITIES = list(SYNTH_ACTIVITIES)


def stand_in_config(**overrides):
    """The default preset's layout (7 x 7 tokens) without its ImageNet weights: the tests swap the backbone."""
    return preset("lite", activities=ACTIVITIES, backbone_pretrained=False, **overrides)


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> ReSTData:
    """Two 40-second videos of scenes with many activities."""
    root = tmp_path_factory.mktemp("pool") / "p"
    synth.generate(root, videos=2, minutes=40 / 60, seed=1000, split=(1.0, 0.0, 0.0), progress=False,
                   activity_share=0.5)  # fmt: skip
    return ReSTData(root)


def test_rank_auc():
    assert rank_auc([2, 3], [0, 1]) == 1.0 and rank_auc([0], [1, 2]) == 0.0
    assert rank_auc([1, 1], [1]) == 0.5 and rank_auc([1, 3], [2]) == 0.5 and np.isnan(rank_auc([], [1]))


class PatchColours(torch.nn.Module):
    """A stand-in backbone whose token is its patch's mean colour: objects differ in hue, so it tells them
    apart; `shuffle` moves every token to another patch, so the tokens no longer lie under their boxes."""

    def __init__(self, grid: int, shuffle: bool = False):
        super().__init__()
        self.grid = grid
        self.order = (
            torch.randperm(grid * grid, generator=torch.Generator().manual_seed(0)) if shuffle else None
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().permute(0, 3, 1, 2) - 128
        tokens = F.adaptive_avg_pool2d(x, self.grid).flatten(2).transpose(1, 2)
        return tokens if self.order is None else tokens[:, self.order]


def test_instance_auc_ranks_the_crops_own_object_first(pool):
    model = LongVMNet(stand_in_config())
    model.backbone = PatchColours(model.config.grid)
    assert instance_auc(model, pool, "all", fps=0.5, progress=False) > 0.8
    model.backbone = PatchColours(model.config.grid, shuffle=True)
    assert instance_auc(model, pool, "all", fps=0.5, progress=False) < 0.6


def test_token_probes_find_the_hand_in_tokens_under_their_patches(pool, tmp_path):
    """Fit on one scene and scored on another (5 frames a second: the hand covers few patch centres), the hand
    probe scores a stand-in backbone of patch colours well (the hand is skin-coloured), and near chance once
    its tokens are moved off their patches; every token is scored."""
    from longvmnet.data.features import FeatureCache
    from longvmnet.measure.probe import kept_tokens, probe_tokens

    videos = pool.split("all")
    results = []
    for shuffle in (False, True):
        torch.manual_seed(0)
        model = LongVMNet(stand_in_config(d_model=16, memory_fps=5.0))
        model.backbone = PatchColours(model.config.grid, shuffle=shuffle)
        model.proj = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 16))
        cache = FeatureCache(tmp_path / str(shuffle), model)  # same key for both stand-ins: own folders
        results.append(
            probe_tokens(model, cache, videos[:1], videos[1:], motion=1, steps=300, progress=False)
        )
    true, moved = results
    # measured over model seeds 0-3: 0.74-0.92 against 0.45-0.60 (only a few hand tokens to fit on)
    assert true["hand_auc"] > 0.7 and moved["hand_auc"] < 0.65 and true["hand_auc"] - moved["hand_auc"] > 0.1
    s = true["samples"]
    assert s["scored_hand_tokens"] > 0 and s["hand"]["scored"] == 49 * 5 * round(videos[1].duration)
    assert s["token"]["scored"] > s["scored_hand_tokens"] and 0 <= true["token_activity_accuracy"] <= 1
    segments = [g for g in videos[1].annotations["segments"] if g["end"] - g["start"] >= 0.4]
    assert s["segment"]["scored"] == len(segments) > 0 and 0 <= true["segment_activity_accuracy"] <= 1
    assert (
        0 <= true["trajectory_activity_accuracy"] <= 1
        and 0 <= true["memory_trajectory_activity_accuracy"] <= 1
        and 0 <= true["memory_segment_activity_accuracy"] <= 1
    )
    assert 0 <= true["memory_activity_share"] <= 1 and true["memory_tokens_per_segment"] >= 0
    # the last stand-in's stage 1 keeps a full memory of distinct tokens
    times = cache.video(videos[1].path).times
    assert kept_tokens(model, cache, videos[1], times).sum() == model.config.memory_size < 49 * len(times)
    assert true["activity_chance"] == 0.1 and true["motion"] == 1


def test_segment_trajectory_follows_the_patches():
    """A patch moving right along the top row, missing on one frame: the path's end minus start, mean step
    and halves are those of its columns (centred: where it is does not count); rows do not move; 3 of 4
    frames show it."""
    from longvmnet.measure.probe import segment_trajectory

    on = np.zeros((4, 16), bool)
    on[0, 0], on[1, 1], on[3, 2] = True, True, True  # grid 4: columns 0, 1, (missing), 2 of row 0
    f = segment_trajectory(on, 4).numpy()  # x path 0, .25, .25 (the mean of the seen), .5, less its mean .25
    assert f.shape == (16,)
    assert f[[0, 3, 6, 12]] == pytest.approx([0, 0.5, 1 / 6, -0.25])
    assert f[[1, 4, 7, 10, 13]] == pytest.approx([0, 0, 0, 0, 0]) and f[15] == 0.75
    still = np.zeros((4, 16), bool)
    still[:, 5] = True
    g = segment_trajectory(still, 4).numpy()
    assert g[3:15] == pytest.approx(np.zeros(12)) and g[15] == 1.0 and g[2] == pytest.approx(1 / 16)


def test_token_features_add_the_change_of_each_patch_and_repeat_the_ends():
    from types import SimpleNamespace

    from longvmnet.data.features import VideoFeatures
    from longvmnet.measure.probe import token_features

    model = LongVMNet(stand_in_config(d_model=16))
    model.proj = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 3))  # tokens pass unchanged
    with torch.no_grad():
        model.proj[1].weight.copy_(torch.eye(3))
        model.proj[1].bias.zero_()
    tokens = np.random.default_rng(0).normal(size=(3, 49, 3)).astype(np.float16)
    cache = SimpleNamespace(video=lambda path: VideoFeatures(np.arange(3.0, dtype=np.float32), tokens))
    video = SimpleNamespace(path="v.mp4")
    times, x = token_features(model, cache, video, motion=1)
    t = torch.from_numpy(tokens).float()
    assert x.shape == (3, 49, 9) and torch.allclose(x[..., :3], t)
    assert torch.allclose(x[1, :, 3:6], t[1] - t[0]) and torch.allclose(x[1, :, 6:], t[2] - t[1])
    assert torch.allclose(x[0, :, 3:6], torch.zeros(49, 3)) and torch.allclose(
        x[2, :, 6:], torch.zeros(49, 3)
    )
    _, far = token_features(model, cache, video, motion=5)  # longer than the video: its ends stand in
    assert torch.allclose(far[:, :, 3:6], t - t[0]) and torch.allclose(far[:, :, 6:], t[2] - t)


@pytest.mark.parametrize("keep", [True, False])
def test_memory_probes_count_what_the_memory_keeps(pool, tmp_path, monkeypatch, keep):
    """With a memory that keeps every scanned token, the memory's share of acting tokens is the video's and
    each segment keeps all its acting tokens, so the memory's segment probe sees nearly what the segment probe
    sees and scores nearly the same; with a memory that keeps none, no segment can be traced and every one is
    a miss."""
    from longvmnet.data.features import FeatureCache
    from longvmnet.data.rest import patch_activities
    from longvmnet.measure import probe

    monkeypatch.setattr(
        probe, "kept_tokens", lambda model, cache, video, times: np.full((len(times), 49), keep)
    )
    videos = pool.split("all")
    torch.manual_seed(0)
    model = LongVMNet(stand_in_config(d_model=16, memory_fps=5.0))
    model.backbone = PatchColours(model.config.grid)
    model.proj = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 16))
    cache = FeatureCache(tmp_path, model)
    out = probe.probe_tokens(model, cache, videos[:1], videos[1:], steps=200, progress=False)
    times = cache.video(videos[1].path).times
    act = patch_activities(videos[1].annotations, times, model.config.grid, model.config.activities)
    on = [
        int((act[(times >= s["start"]) & (times <= s["end"])] == 1 + ACTIVITIES.index(s["activity"])).sum())
        for s in videos[1].annotations["segments"]
        if ((times >= s["start"]) & (times <= s["end"])).sum() >= 2
    ]
    if keep:
        assert out["memory_activity_share"] == pytest.approx((act > 0).mean(), abs=1e-4)
        assert out["memory_tokens_per_segment"] == torch.tensor(on, dtype=torch.float).median().item() > 0
        # the same segments, their features differing only where a frame shows no acting token (the memory's
        # probe leaves such frames out): at most one scored segment apart
        diff = out["memory_segment_activity_accuracy"] - out["segment_activity_accuracy"]
        assert abs(diff) <= 1 / len(on) + 1e-6
    else:
        assert out["memory_tokens_per_segment"] == out["memory_activity_share"] == 0
        assert out["memory_segment_activity_accuracy"] == out["memory_trajectory_activity_accuracy"] == 0


def test_reader_probe_scores_every_activity_query_with_each_weighting(pool, tmp_path):
    from longvmnet.data.features import FeatureCache
    from longvmnet.measure.metrics import recall_at_kx
    from longvmnet.measure.readers import probe_readers

    torch.manual_seed(0)
    model = LongVMNet(stand_in_config(d_model=16))
    model.backbone = PatchColours(model.config.grid)
    model.proj = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Linear(3, 16))
    cache = FeatureCache(tmp_path, model)
    first, second = pool.split("all")
    out = probe_readers(model, cache, [(pool, [first])], (pool, [second]), steps=50, progress=False)
    asked = [[q for q in v.queries if q["type"] == "activity"] for v in (first, second)]
    assert out["queries"] == {"train": len(asked[0]), "scored": len(asked[1])} and all(asked)
    r = out["activity_r1x"]
    assert set(r) == {"annotated", "uniform", "pointer", "prior"}
    assert all(0 <= x <= 100 for row in r.values() for x in row.values())
    # the prior row ranks the classes by their share of the training answers
    freq = np.zeros(len(ACTIVITIES))
    for q in asked[0]:
        for a in q["answer"]["activities"]:
            freq[ACTIVITIES.index(a)] += 1
    by_window = {}
    for q in asked[1]:
        hit = recall_at_kx(list(freq), [ACTIVITIES.index(a) for a in q["answer"]["activities"]])
        by_window.setdefault(q["window"], []).append(hit)
    assert r["prior"] == {w: round(100 * float(np.mean(h)), 1) for w, h in by_window.items()}
