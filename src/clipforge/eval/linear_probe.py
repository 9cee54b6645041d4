"""Linear probe: multinomial logistic regression on frozen image features (CLIP paper, sec. 3.2, appendix A.3).

Features are standardized with the fitting set's mean and standard deviation, then a full-batch L-BFGS fit
minimizes mean cross-entropy + l2 · ||W||² (the bias is not penalized). The L2 strength is chosen by
validation accuracy over a small log-spaced sweep on a held-out part of the training set (ties go to the
stronger regularization); the model is then refit on train + validation with that strength and scored
once on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from clipforge.eval.datasets import DatasetConfig, load_classification
from clipforge.eval.features import FeatureCache, cached_image_features
from clipforge.pipeline import Pipeline

# 1e-6 … 1e2: from practically unregularized to weights shrunk towards the class prior.
DEFAULT_L2_SWEEP = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class LinearProbeConfig:
    """Linear probe on frozen image features.

    Args:
        train: the labelled images the classifier is fitted on (its class names define the classes).
        test: the labelled images it is scored on (same class list).
        val_fraction: part of ``train`` held out to choose the L2 strength.
        l2_sweep: L2 strengths tried.
        max_iter: L-BFGS iterations per fit.
        seed: seeds the train/validation split.
        batch_size: images per forward pass while extracting features.
        progress: show progress bars while embedding images.
    """

    train: DatasetConfig = field(default_factory=lambda: DatasetConfig(split="train"))
    test: DatasetConfig = field(default_factory=DatasetConfig)
    val_fraction: float = 0.2
    l2_sweep: tuple[float, ...] = DEFAULT_L2_SWEEP
    max_iter: int = 300
    seed: int = 0
    batch_size: int = 128
    progress: bool = False


@dataclass
class ProbeResult:
    accuracy: float
    l2: float
    val_accuracy: dict[float, float]
    n_train: int
    n_test: int

    def metrics(self) -> dict[str, float]:
        return {
            "accuracy": self.accuracy,
            "l2": self.l2,
            "val_accuracy": self.val_accuracy[self.l2],
            "n_train": float(self.n_train),
            "n_test": float(self.n_test),
        }


@dataclass
class LogisticModel:
    """A fitted probe: standardization followed by a linear layer. ``predict`` gives class indices."""

    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.double() - self.mean) / self.std  # (N, D)
        return z @ self.weight.T + self.bias  # (N, C)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        # argmax returns the first maximal index: ties go to the lower class index, as in zero-shot.
        return self.logits(x).argmax(dim=1)


def objective(model: LogisticModel, x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy + l2 · ||W||² (what ``fit_logistic`` minimizes)."""
    return F.cross_entropy(model.logits(x), y) + l2 * model.weight.pow(2).sum()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, max_iter: int = 300) -> LogisticModel:
    """Fit multinomial logistic regression with L-BFGS on standardized features, in float64.

    Args:
        x: (N, D) features.
        y: (N,) class indices in ``[0, num_classes)``.
        num_classes: C (classes absent from ``y`` get weights pushed down, never predicted unless tied).
        l2: L2 penalty on the weights.
        max_iter: L-BFGS iterations.
    """
    x = x.double()
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)  # a constant feature must not divide by zero
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    model = LogisticModel(mean, std, weight, bias)
    opt = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
        history_size=20, line_search_fn="strong_wolfe",
    )  # fmt: skip

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(model, x, y, l2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LogisticModel(mean, std, weight.detach(), bias.detach())


def accuracy(model: LogisticModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model.predict(x) == y).double().mean())


def probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    val_fraction: float = 0.2,
    l2_sweep: tuple[float, ...] = DEFAULT_L2_SWEEP,
    max_iter: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Choose L2 on a validation split of the training features, refit on all of them, score the test set.

    Args:
        train_x, train_y: (N, D) features and (N,) labels to fit on.
        test_x, test_y: (M, D) features and (M,) labels to score.
        num_classes: number of classes.
        val_fraction: fraction of the training set held out for the sweep.
        l2_sweep: L2 strengths tried.
        max_iter: L-BFGS iterations per fit.
        seed: seeds the split.
    """
    n = len(train_y)
    n_val = int(round(n * val_fraction))
    if n_val < 1 or n - n_val < 1:
        raise ValueError(f"cannot split {n} training samples with val_fraction={val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, fit = order[:n_val], order[n_val:]
    val_acc = {}
    for l2 in l2_sweep:
        model = fit_logistic(train_x[fit], train_y[fit], num_classes, l2, max_iter)
        val_acc[l2] = accuracy(model, train_x[val], train_y[val])
    best_acc = max(val_acc.values())
    best_l2 = max(l2 for l2, acc in val_acc.items() if acc == best_acc)
    final = fit_logistic(train_x, train_y, num_classes, best_l2, max_iter)
    return ProbeResult(accuracy(final, test_x, test_y), best_l2, val_acc, n, len(test_y))


def run_detailed(pipeline: Pipeline, cfg: LinearProbeConfig, cache: FeatureCache | None = None) -> ProbeResult:
    """Extract frozen features of ``cfg.train`` and ``cfg.test`` (or take them from ``cache``) and probe them."""
    train, test = load_classification(cfg.train), load_classification(cfg.test)
    if train.classnames != test.classnames:
        raise ValueError("linear probe: train and test sets have different class lists")
    tx, tkept = cached_image_features(
        cache, ("classification", cfg.train), pipeline, train.images, cfg.batch_size,
        f"probe train {train.source}", cfg.progress,
    )  # fmt: skip
    vx, vkept = cached_image_features(
        cache, ("classification", cfg.test), pipeline, test.images, cfg.batch_size,
        f"probe test {test.source}", cfg.progress,
    )  # fmt: skip
    ty = torch.tensor(train.labels, dtype=torch.long)[tkept]
    vy = torch.tensor(test.labels, dtype=torch.long)[vkept]
    return probe(tx, ty, vx, vy, len(train.classnames), cfg.val_fraction, cfg.l2_sweep, cfg.max_iter, cfg.seed)


def run(pipeline: Pipeline, cfg: LinearProbeConfig) -> dict[str, float]:
    """Test ``accuracy`` (fraction), chosen ``l2``, its ``val_accuracy``, ``n_train``, ``n_test``."""
    return run_detailed(pipeline, cfg).metrics()
