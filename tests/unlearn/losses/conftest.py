import pytest
import torch


@pytest.fixture
def batch():
    """A small (B, T, V) batch with prompt tokens, padding and one sequence without answer tokens."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 4, 9, 13
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :3] = -100          # prompt
    labels[1, 7:] = -100          # padding
    labels[3] = -100              # no answer token at all
    return logits, labels


def naive_ce(logits, labels):
    """Reference per-token CE with the causal shift, written plainly."""
    B, T, _ = logits.shape
    ce = torch.zeros(B, T - 1, dtype=logits.dtype)
    mask = torch.zeros(B, T - 1, dtype=torch.bool)
    for b in range(B):
        for t in range(T - 1):
            y = int(labels[b, t + 1])
            if y != -100:
                ce[b, t] = -torch.log_softmax(logits[b, t], -1)[y]
                mask[b, t] = True
    return ce, mask
