"""DML: the mutual loss."""

import math

import torch

from kdforge.methods.peers import mutual_loss


def test_mutual_loss_is_each_peers_mean_kl_to_the_others():
    torch.manual_seed(0)
    peers, T = [torch.randn(3, 4) for _ in range(3)], 2.0

    def softmax(row):
        z = [math.exp(v / T) for v in row]
        return [v / sum(z) for v in z]

    expected = 0.0
    for i, z_i in enumerate(peers):
        for j, z_j in enumerate(peers):
            if i == j:
                continue
            kl = 0.0
            for a, b in zip(z_j.tolist(), z_i.tolist()):  # KL(p_j || p_i), per sample, then the batch mean
                p, q = softmax(a), softmax(b)
                kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q)) / len(z_i)
            expected += T * T * kl / (len(peers) - 1)
    assert abs(mutual_loss(peers, T).item() - expected) < 1e-5
