"""How good and how fast: evaluation, the accuracy ladder, backbone probes, the report and `longvmnet bench`.

metrics      Recall@1x, tIoU, vIoU
ladder       the methods evaluated side by side (prior, blind, oracle, baseline, random, uniform)
evaluate     a model (or a ladder rung) on a benchmark split -> the paper's Table 2 cells
probe        linear probes of backbone and memory tokens (which backbone; what the memory keeps)
report       the recipe's tables and figures, written as the model card
bench        `longvmnet bench`: stage times, throughput, constant memory; bench_child runs one part
resources    wall time, process memory and the machine, as bench reads them
"""
