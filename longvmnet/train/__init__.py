"""Training: the loop, its inputs and resumable state, and the recipe that trains the bundled checkpoint.

trainer  TrainConfig and Trainer (single process or torchrun); `python -m longvmnet.train` runs it
inputs   what a training step reads from cached tokens: its clip, its memory, its queries' inputs and targets
state    resumable training state: weights, optimiser, the loop's position, the memories
recipe   the whole recipe behind checkpoints/longvmnet-synth: data, probes, training, evaluation, model card
"""
