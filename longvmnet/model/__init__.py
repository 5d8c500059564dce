"""The network of the paper, one part per file: nothing here reads files, videos or the training data.

  backbone           frozen image backbone -> (p, d) tokens per frame
  position_encoding  2D spatial and temporal sinusoidal encodings
  sampler            neural sampler: scores memory + clip tokens, relaxed top-k keeps m of them
  heads              activity, object and time heads
  network            LongVMNet: sampler, memory write, encoder-decoder, heads; `build_model(config)`
  losses             the criterion: named loss terms combined by a weight dict
  box_ops            box conversions and IoUs (pure tensor functions)

`from longvmnet.model import LongVMNet` is the public path; the classes live in `network`.
"""

from longvmnet.model.network import KINDS, LongVMNet, MemoryTensors, build_model, sdpa_attention

__all__ = ["KINDS", "LongVMNet", "MemoryTensors", "build_model", "sdpa_attention"]
