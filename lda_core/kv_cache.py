"""Row surgery on a transformers `DynamicCache`: keep some rows, append another batch's rows, and drop
key columns no row attends to any more.

Continuous batching needs all three: a row that ends leaves the batch, a new row's prefilled cache
joins it, and the left padding a departed long prompt forced on everyone is cut away. Each layer
holds keys and values as `[rows, heads, keys, head_dim]`; a `DynamicCache()` made without a config
has only such plain layers (a sliding window is then enforced by the mask, not by the cache).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


def _filled_layers(cache: DynamicCache) -> list[DynamicLayer]:
    return [layer for layer in cache.layers if layer.is_initialized and layer.keys.numel()]


def select_rows(cache: DynamicCache, rows: torch.Tensor) -> None:
    """Keep only `rows` (int64 indices, in the order given); each layer on its own device (a sharded model)."""
    for layer in _filled_layers(cache):
        layer.keys = layer.keys.index_select(0, rows.to(layer.keys.device))
        layer.values = layer.values.index_select(0, rows.to(layer.values.device))


def drop_leading_columns(cache: DynamicCache, columns: int) -> None:
    """Remove the first `columns` key positions of every row (padding that nobody attends to)."""
    if columns <= 0:
        return
    for layer in _filled_layers(cache):
        layer.keys = layer.keys[:, :, columns:, :]
        layer.values = layer.values[:, :, columns:, :]


def _left_pad(tensor: torch.Tensor, columns: int) -> torch.Tensor:
    return F.pad(tensor, (0, 0, columns, 0)) if columns else tensor


def append_rows(cache: DynamicCache, other: DynamicCache) -> None:
    """Append `other`'s rows after `cache`'s, left-padding the shorter of the two with zero keys.

    The caller pads its attention mask the same way, so the zero keys are never attended to.
    """
    if not _filled_layers(cache):  # nothing running yet: take the newcomers' layers as they are
        cache.layers = other.layers
        return
    for layer, incoming in zip(cache.layers, other.layers, strict=True):
        length, incoming_length = layer.keys.shape[2], incoming.keys.shape[2]
        width = max(length, incoming_length)
        layer.keys = torch.cat([_left_pad(layer.keys, width - length), _left_pad(incoming.keys, width - incoming_length)])
        layer.values = torch.cat(
            [_left_pad(layer.values, width - length), _left_pad(incoming.values, width - incoming_length)]
        )
