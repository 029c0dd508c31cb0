"""Turning a researcher's prompt into the exact text the models see."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

DEFAULT_TEMPLATE = "User: {prompt}\nAssistant:"


def format_prompt(
    prompt: str, tokenizer: PreTrainedTokenizerBase, template: str | None = None, chat_template: bool = False
) -> str:
    """Apply the tokenizer's chat template, or a `{prompt}` template, or neither."""
    if chat_template:
        messages = [{"role": "user", "content": prompt}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return template.replace("{prompt}", prompt) if template else prompt
