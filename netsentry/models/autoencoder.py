"""PyTorch MLP autoencoder on per-feature benign tail surprise; anomaly score = largest excess surprise.

torch is imported only inside :meth:`AutoencoderDetector._fit_matrix` (training). The trained weights are kept as
float64 numpy arrays and scoring is a numpy forward pass, so a fitted detector (trained on CPU or GPU) pickles small,
and unpickles and scores identically on any machine without importing torch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.utils import check_random_state

from netsentry.models.base import Detector
from netsentry.models.scaling import TailSurprise
from netsentry.pipeline.core.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# Early stopping: an epoch counts as an improvement when validation loss drops by more than this (relative).
_MIN_REL_IMPROVEMENT = 1e-4


class AutoencoderDetector(Detector):
    """Fully connected autoencoder (ReLU between layers, linear output) trained with Adam on benign rows.

    ``hidden`` lists the hidden layer widths (encoder, bottleneck, decoder). Inputs are the
    :class:`~netsentry.models.scaling.TailSurprise` of each feature against the benign training rows (nats: how rare
    upward); training uses MSE on them, mini-batches of ``batch_size``, ``weight_decay``, and early
    stopping on a seeded random ``validation_fraction`` of the training rows (best epoch kept; ``patience`` epochs).
    ``device``: "cpu", "cuda" (or "cuda:N") or "auto" (cuda when available); scoring always runs on CPU in numpy.
    ``n_threads``: torch CPU threads while training (restored afterwards); ``None`` leaves torch's setting.
    Training is seeded from ``random_state`` without touching torch's global RNG state. ``n_members`` networks are
    trained, each from its own seed and validation split, and reconstruct together as their mean (``members_``;
    ``weights_``/``biases_`` and the loss curves are the first one's). Why: one network's quality varies with the
    seed, the mean of five much less; see docs/experiments.md#autoencoder-ensemble.

    Score: the largest *excess surprise* of a row, ``max_j (x_j - x̂_j)``, floored at 0: how much rarer than the
    benign model expects, given the other features, the most unexpected feature is. One-sided (being less rare than
    expected is no evidence) and a max rather than a mean, so one decisive feature (a timer-regular beacon, an idle
    held-open connection) is not averaged away over dozens of normal ones; see docs/experiments.md#tail-surprise-inputs.
    ``explain``: per-feature excess surprise; ``feature_importances``: each feature's share of it.
    Detectors fitted before ``surprise_`` existed keep scoring as they were fitted (scaled inputs, MSE).
    """

    kind = "unsupervised"

    def __init__(
        self,
        hidden: Sequence[int] = (32, 8, 32),
        epochs: int = 60,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        validation_fraction: float = 0.1,
        patience: int = 8,
        device: str = "cpu",
        n_threads: int | None = 1,
        n_members: int = 5,
        target_fpr: float = 0.01,
        calibration_fraction: float = 0.25,
        random_state: Any = 0,
    ) -> None:
        super().__init__(target_fpr=target_fpr, calibration_fraction=calibration_fraction, random_state=random_state)
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.n_threads = n_threads
        self.n_members = n_members

    # ------------------------------------------------------------------ training
    def _fit_matrix(self, X: np.ndarray, y: np.ndarray | None, benign: np.ndarray) -> None:
        import torch

        hidden = self._check_params()
        device = resolve_device(self.device, torch)
        self.surprise_ = TailSurprise().fit(X[benign])
        data = self.surprise_.transform(X[benign]).astype(np.float32)
        rng = check_random_state(self.random_state)
        n_val = round(self.validation_fraction * len(data)) if len(data) >= 20 else 0
        self.members_ = []
        for _ in range(self.n_members):
            seed = int(rng.randint(0, 2**31 - 1))
            order = np.random.default_rng(seed).permutation(len(data))
            train, val = data[order[n_val:]], data[order[:n_val]]
            with _seeded_torch(torch, seed, self.n_threads, device):
                net = _build(torch, data.shape[1], hidden).to(device)
                history = _train(torch, net, train, val, self, device)
                layers = [m for m in net if isinstance(m, torch.nn.Linear)]
                weights = [m.weight.detach().cpu().numpy().astype(np.float64) for m in layers]
                biases = [m.bias.detach().cpu().numpy().astype(np.float64) for m in layers]
            self.members_.append((weights, biases))
            if len(self.members_) == 1:
                self.weights_, self.biases_ = weights, biases
                self.loss_curve_, self.validation_loss_curve_, self.best_epoch_ = history
        self.device_ = str(device)
        self.n_epochs_ = len(self.loss_curve_)

    def _check_params(self) -> tuple[int, ...]:
        """Validated training parameters; returns ``hidden`` as a tuple of ints."""
        hidden = tuple(self.hidden) if isinstance(self.hidden, Sequence) else ()
        if not hidden or not all(isinstance(h, int | np.integer) and h > 0 for h in hidden):
            raise ConfigError(f"hidden must be a non-empty sequence of positive layer widths, got {self.hidden!r}")
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.validation_fraction, int | float) and 0.0 <= self.validation_fraction < 1.0):
            raise ConfigError(f"validation_fraction must be a number in [0, 1), got {self.validation_fraction!r}")
        return tuple(int(h) for h in hidden)

    # ------------------------------------------------------------------ scoring (numpy, CPU)
    def reconstruct(self, X_scaled: np.ndarray) -> np.ndarray:
        """Reconstruction of already-scaled rows: the mean of the members' numpy forward passes (float64)."""
        members = getattr(self, "members_", None) or [(self.weights_, self.biases_)]
        return np.mean([_forward(X_scaled, w, b) for w, b in members], axis=0)

    def _errors(self, X: np.ndarray) -> np.ndarray:
        """Per-feature evidence: excess surprise ``max(x - x̂, 0)``; squared error for pre-``surprise_`` fits."""
        inputs = self.inputs(X)
        residual = inputs - self.reconstruct(inputs)
        if getattr(self, "surprise_", None) is None:
            return residual**2
        return np.maximum(residual, 0.0)

    def _score_matrix(self, X: np.ndarray) -> np.ndarray:
        errors = self._errors(X)
        return errors.mean(axis=1) if getattr(self, "surprise_", None) is None else errors.max(axis=1)

    def _explain_matrix(self, X: np.ndarray) -> np.ndarray:
        return self._errors(X)


def _forward(X: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray]) -> np.ndarray:
    """One network's forward pass in float64 (ReLU between layers, linear output)."""
    h = np.asarray(X, dtype=np.float64)
    last = len(weights) - 1
    for i, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        h = h @ weight.T + bias
        if i < last:
            np.maximum(h, 0.0, out=h)
    return h


def resolve_device(device: str, torch_module: Any) -> torch.device:
    """``torch.device`` for "cpu", "cuda[:N]" or "auto"; :class:`ConfigError` when CUDA is asked for but absent."""
    if device == "auto":
        device = "cuda" if torch_module.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ConfigError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch_module.cuda.is_available():
        raise ConfigError(
            f"device={device!r} but CUDA is not available to torch {torch_module.__version__} "
            "(CPU-only build or no GPU); use device='cpu' or 'auto'"
        )
    return torch_module.device(device)


@contextlib.contextmanager
def _seeded_torch(torch: Any, seed: int, n_threads: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch inside a forked RNG, deterministic algorithms on (warn only), thread count set; all restored."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    gpus = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):  # manual_seed reseeds every GPU, so fork them all
        torch.manual_seed(seed)
        try:
            if n_threads is not None:
                torch.set_num_threads(int(n_threads))
            torch.use_deterministic_algorithms(True, warn_only=True)
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.set_num_threads(threads)


def _build(torch: Any, n_features: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    layers: list[Any] = []
    widths = [n_features, *hidden]
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(widths[-1], n_features))
    return torch.nn.Sequential(*layers)


def _train(
    torch: Any, net: Any, train: np.ndarray, val: np.ndarray, params: AutoencoderDetector, device: torch.device
) -> tuple[list[float], list[float], int]:
    """Adam on MSE with early stopping on ``val``; leaves the best epoch's weights in ``net``."""
    x_train = torch.from_numpy(train).to(device)
    x_val = torch.from_numpy(val).to(device) if len(val) else None
    optimiser = torch.optim.Adam(net.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    generator = torch.Generator().manual_seed(int(torch.initial_seed()))
    batch = max(1, int(params.batch_size))
    losses: list[float] = []
    val_losses: list[float] = []
    best, best_epoch, best_state, stale = np.inf, 0, None, 0
    for epoch in range(int(params.epochs)):
        net.train()
        total = 0.0
        for idx in torch.randperm(len(x_train), generator=generator).split(batch):
            xb = x_train[idx.to(device)]
            optimiser.zero_grad()
            loss = torch.mean((net(xb) - xb) ** 2)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(x_train))
        if x_val is None:
            best_epoch = epoch
            continue
        net.eval()
        with torch.no_grad():
            current = float(torch.mean((net(x_val) - x_val) ** 2))
        val_losses.append(current)
        if current < best * (1 - _MIN_REL_IMPROVEMENT):
            best, best_epoch, stale = current, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= params.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    log.debug("autoencoder: %d epochs, best epoch %d, validation loss %.4g", len(losses), best_epoch, best)
    return losses, val_losses, best_epoch
