"""The one configuration dataclass, saved inside every checkpoint (config.json), and its presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

# ADL-style activity classes used by the synthetic benchmark (index = class id).
SYNTH_ACTIVITIES = [
    "pick up", "put down", "open", "close", "pour", "wash", "stir", "shake", "push", "rotate",
]  # fmt: skip


@dataclass
class ModelConfig:
    # --- backbone (frozen) ---
    backbone: str = "swinv2_cr_small_ns_224"  # timm model name
    backbone_kwargs: dict = field(
        default_factory=dict
    )  # extra timm.create_model kwargs (img_size, depth, ...)
    backbone_pretrained: bool = True  # fetch timm's ImageNet weights when a fresh model is built
    backbone_weights: str | None = None  # local weight file instead of the Hub (timm pretrained_cfg file=)
    image_size: int = 224  # square input side in pixels
    grid: int = 7  # backbone tokens per frame = grid * grid
    backbone_dim: int = 768  # channels of the backbone's tokens
    # --- model width and transformer ---
    d_model: int = 256  # d: model width after projecting backbone tokens
    n_heads: int = 8
    ffn_dim: int = 1024
    enc_layers: int = 2  # N in the paper
    dec_layers: int = 2
    sampler_layers: int = 1  # transformer encoder layers inside the neural sampler
    dropout: float = 0.2
    attn_dropout: float | None = (
        None  # dropout on attention weights (None: `dropout`); 0 keeps flash attention
    )
    decoder_chunk: int = 256  # decoder self-attention runs within chunks of this many time queries
    activity_max_queries: int = 0  # >0: activity queries decode at most this many evenly spaced times
    # --- memory and clips ---
    clip_len: int = 120  # T: frames per non-overlapping clip
    memory_frames: int = 120  # memory size m = memory_frames * grid * grid tokens
    memory_fps: float = 1.0  # frames per second scanned into memory
    query_fps: float = 1.0  # decoder time queries per second for activity and time queries
    object_fps: float = 5.0  # decoder time queries (boxes) per second for object queries
    max_video_s: float = 4 * 3600.0  # longest video the temporal encoding is laid out for
    # --- sampler ---
    topk: str = "chunked"  # relaxed top-k: "exact" (Xie & Ermon, k softmaxes), "chunked", "softmax"
    topk_steps: int = 16  # softmax steps of the "chunked" relaxation
    selection: str = "neural"  # what writes memory: "neural" sampler, "random" tokens, "uniform" whole frames
    # --- decoder ---
    time_bias: bool = False  # time-local cross-attention: per-head bias -slope_h * |t_query - t_token| (ours)
    pointer: bool = False  # object and time heads read query-matched memory tokens near each time (ours)
    activity_conv: int = 0  # >0: the activity head convolves its time queries (this kernel), then mean + max
    # the readers (ours, fit in the reader phase): activity logits also read straight from the window's memory
    # tokens; object and time answers pick among their best runs by a reader of each run's memory frames
    window_reader: bool = False
    # --- query fusion ---
    # "paper": memory frames x object tokens element-wise; "pooled": x the mean object token
    fusion: str = "paper"
    # --- task ---
    activities: list[str] = field(default_factory=lambda: list(SYNTH_ACTIVITIES))

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def memory_size(self) -> int:
        return self.memory_frames * self.tokens_per_frame

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {
    # The paper's numbers (NOTES §1): Swin-V2 backbone, T = 120, m = k = 5880.
    "paper": ModelConfig(),
    # The bundled CPU model: ImageNet EfficientNet-Lite0 (weights from a registry package), its stride-32
    # block's 320 channels as 7 x 7 tokens at 224 px; a small memory model trained on the synthetic benchmark.
    "lite": ModelConfig(
        backbone="tf_efficientnet_lite0",
        backbone_kwargs={"features_only": True, "out_indices": [4]},
        backbone_pretrained=True,
        image_size=224,
        backbone_dim=320,
        d_model=128,
        n_heads=4,
        ffn_dim=256,
        enc_layers=2,
        dec_layers=2,
        sampler_layers=1,
        dropout=0.1,
        attn_dropout=0.0,
        time_bias=True,
        clip_len=16,
        memory_frames=16,
        activity_max_queries=120,
        fusion="pooled",
        pointer=True,
        activity_conv=9,
        window_reader=True,
    ),
    # Seconds-fast for tests: a 1-layer ViT at 32 px (4 x 4 tokens), random weights.
    "tiny": ModelConfig(
        backbone="vit_tiny_patch16_224",
        backbone_kwargs={"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2},
        backbone_pretrained=False,
        image_size=32,
        grid=4,
        backbone_dim=32,
        d_model=32,
        n_heads=2,
        ffn_dim=64,
        enc_layers=1,
        dec_layers=1,
        sampler_layers=1,
        dropout=0.0,
        time_bias=True,
        pointer=True,
        activity_conv=3,
        window_reader=True,
        decoder_chunk=32,
        clip_len=4,
        memory_frames=4,
        max_video_s=3600.0,
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A copy of a named preset with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides)
