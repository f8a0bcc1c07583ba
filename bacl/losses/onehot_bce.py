"""Summed sigmoid BCE against one-hot targets given as integer labels, in one pass.

``onehot_bce_sum(logits, labels)`` equals
``F.binary_cross_entropy_with_logits(logits, one_hot(labels), reduction="sum")`` but never
builds the dense ``(N, C+1)`` target: ``BCE(z, t) = softplus(z) - t * z``, so the loss is
the softplus of every element with the labelled one replaced by ``softplus(-z)`` (summed
per element, so there is no cancellation between two large sums), and the gradient is
``sigmoid(z) - onehot``, built in place.

``row_values`` lets a loss replace whole rows by values that carry no gradient to those
rows' logits beyond the identity: FCBL passes its positive rows as ``z + margin`` (or
-1e4 for dropped channels) while the gradient still flows to ``logits`` as
``sigmoid(z + margin) - onehot``. A channel set to -1e4 gets exactly zero loss and
gradient in every float type.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


class _OneHotBCESum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, rows, row_values):  # noqa: D102 - see onehot_bce_sum
        work = logits.detach()
        work = work.index_copy(0, rows, row_values) if rows is not None else work.clone()
        hit = labels[:, None]
        per_element = F.softplus(work)
        per_element.scatter_(1, hit, F.softplus(-work.gather(1, hit)))
        ctx.save_for_backward(work, labels)
        return per_element.sum()

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        work, labels = ctx.saved_tensors
        grad = torch.sigmoid(work)
        grad.scatter_add_(1, labels[:, None], grad.new_full((labels.numel(), 1), -1.0))
        grad.mul_(grad_output)
        return grad, None, None, None


def onehot_bce_sum(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    rows: Optional[torch.Tensor] = None,
    row_values: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``sum_ij BCE(z_ij, [j == labels_i])`` where ``z = logits`` with ``z[rows] = row_values``.

    Args:
        logits: ``(N, K)`` float; half precision is computed in float32 (as autocast
            does for ``binary_cross_entropy_with_logits``).
        labels: ``(N,)`` int64 in ``[0, K)``: the channel whose target is 1.
        rows, row_values: optional ``(R,)`` row indices and their ``(R, K)`` replacement
            values (no gradient flows into ``row_values``; the gradient of ``logits`` on
            those rows is taken at the replaced values).

    Returns a scalar with the gradient ``sigmoid(z) - onehot`` for ``logits``.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if (rows is None) != (row_values is None):
        raise ValueError("onehot_bce_sum: pass rows and row_values together")
    if row_values is not None:
        row_values = row_values.detach().to(logits.dtype)
    return _OneHotBCESum.apply(logits, labels, rows, row_values)
