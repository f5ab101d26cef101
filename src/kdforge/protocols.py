"""Evaluation protocols beyond plain top-1, for the settings REFILLED names: accuracy by class group (one-step
incremental learning: old / new / all classes) and N-way K-shot nearest-centroid episodes (few-shot learning
on classes the model never trained on), with 95 % intervals."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from kdforge.errors import ConfigError
from kdforge.models import TappedModel


@torch.no_grad()
def outputs(model: torch.nn.Module, stream) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, embeddings, labels) of a whole stream, in eval mode."""
    view = TappedModel(model, ("embedding",))
    was_training = model.training
    model.eval()
    logits, embeddings, labels = [], [], []
    try:
        for batch in stream.epoch(0):
            out = view(batch.input)
            logits.append(out.logits.float())
            embeddings.append(out.features["embedding"].float())
            labels.append(batch.target)
    finally:
        view.taps.remove()
        model.train(was_training)
    return torch.cat(logits), torch.cat(embeddings), torch.cat(labels)


def group_accuracy(logits: torch.Tensor, labels: torch.Tensor, groups: dict[str, list[int]]) -> dict[str, float]:
    """Top-1 (%) over the test samples of each group of classes; the prediction ranges over every class
    (an incremental learner must tell old from new, not only classes within a group)."""
    hits = logits.argmax(1) == labels
    out = {}
    for name, classes in groups.items():
        member = torch.isin(labels, torch.as_tensor(classes, device=labels.device))
        if not member.any():
            raise ConfigError(f"group {name!r} ({classes}) has no test sample")
        out[name] = 100.0 * hits[member].float().mean().item()
    return out


def parse_groups(text: str) -> dict[str, list[int]]:
    """'old=0-4,new=5-9' or 'base=0,1,2;novel=3' -> {name: [classes]}."""
    groups = {}
    for part in text.replace(";", " ").replace(",", " ").split():
        if "=" in part:
            name, _, span = part.partition("=")
            groups[name] = []
        elif not groups:
            raise ConfigError(f"groups must look like old=0-4,new=5-9, got {text!r}")
        else:
            span = part
        a, _, b = span.partition("-")
        try:
            groups[name] += list(range(int(a), int(b) + 1)) if b else [int(a)]
        except ValueError:
            raise ConfigError(f"groups must look like old=0-4,new=5-9, got {text!r}") from None
    return groups


def fewshot_episodes(features: torch.Tensor, labels: torch.Tensor, way: int = 5, shot: int = 1, queries: int = 15,
                     episodes: int = 600, seed: int = 0) -> dict:
    """Mean accuracy (%) and 95 % interval of nearest-centroid classification (cosine) over random episodes:
    `way` classes, `shot` support and `queries` query images per class, drawn without overlap."""
    feats = F.normalize(features.float(), dim=1).cpu()
    labels = labels.cpu().numpy()
    classes = np.unique(labels)
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    if len(classes) < way:
        raise ConfigError(f"{way}-way episodes need {way} classes; the data has {len(classes)}")
    short = [c for c in classes if len(by_class[c]) < shot + queries]
    if short:
        raise ConfigError(f"class {short[0]} has {len(by_class[short[0]])} images; an episode needs shot + queries "
                          f"= {shot + queries}")
    rng = np.random.RandomState(seed)
    accuracies = []
    for _ in range(episodes):
        chosen = rng.choice(classes, way, replace=False)
        support, query, query_label = [], [], []
        for k, c in enumerate(chosen):
            picked = rng.choice(by_class[c], shot + queries, replace=False)
            support.append(feats[picked[:shot]].mean(0))
            query.append(feats[picked[shot:]])
            query_label += [k] * queries
        centroids = F.normalize(torch.stack(support), dim=1)
        predicted = (torch.cat(query) @ centroids.T).argmax(1).numpy()
        accuracies.append(100.0 * np.mean(predicted == np.array(query_label)))
    accuracies = np.array(accuracies)
    half = 1.96 * accuracies.std(ddof=1) / math.sqrt(len(accuracies)) if len(accuracies) > 1 else float("nan")
    return {"way": way, "shot": shot, "queries": queries, "episodes": episodes, "mean": float(accuracies.mean()),
            "ci95": float(half)}
