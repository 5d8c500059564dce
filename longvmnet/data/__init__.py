"""Benchmarks: the synthetic ReST-style generator (`synth`) and the ADL converter (`adl`), sharing the on-disk
format of docs/CONTRACTS.md (`benchmark`)."""
