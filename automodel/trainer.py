"""Train one genome on in-memory data within a budget and report a result.

The data stays on the training device as uint8 tensors for the whole search; each batch is
cut from them by index, scaled, augmented on the device and fed to the network — no
DataLoader, no per-image work in the loop. On a GPU the loop uses channels-last memory, bf16
autocast and cuDNN autotuning. A candidate that fails (out of memory, NaN loss, time limit,
too many parameters) becomes a :class:`TrainResult` with a status and a reason; it never
raises into the search. A stop request is checked between batches.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import ConfigError
from .data import ImageData
from .genome import Genome
from .model import build_model, count_parameters, estimate_parameters

OK, OOM, NAN, TIMEOUT, TOO_LARGE, ERROR, STOPPED, PRUNED = (
    "ok", "oom", "nan", "timeout", "too_large", "error", "stopped", "pruned")


@dataclass
class TrainSettings:
    """The training budget and tricks for one candidate (gathered from the search config)."""

    epochs: int = 2
    batch_size: int = 32
    device: str = "cpu"
    time_limit_s: float = 600.0
    max_params: int = 20_000_000
    augment: str = "none"           # none | crop | flip_crop (already resolved from "auto")
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.1    # linear warm-up, then linear decay to zero
    eval_batch_size: int = 1024
    progress_every_s: float = 0.25
    # CPU threads for this training (torch.set_num_threads, restored after); None: the process's
    # setting. CPU sums, hence losses and sometimes scores, differ in the last bits with the
    # thread count, so back ends that must agree on CPU set the same number here.
    threads: int | None = None


@dataclass
class TrainResult:
    status: str
    fitness: float                 # accuracy on the evaluation split; 0 for a failed candidate
    params: int = 0
    seconds: float = 0.0
    epochs_done: int = 0
    train_loss: float | None = None
    first_epoch_fitness: float | None = None   # measured only when pruning is on
    reason: str = ""
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)


class DeviceData:
    """An :class:`ImageData`'s splits moved once to the training device (still uint8)."""

    def __init__(self, data: ImageData, device: torch.device):
        self.device = device
        self.input_shape = data.input_shape
        self.classes = list(data.classes)
        self.mean, self.std = tuple(data.mean), tuple(data.std)
        self.train_x, self.train_y = data.train_x.to(device), data.train_y.to(device)
        self.val_x, self.val_y = data.val_x.to(device), data.val_y.to(device)
        self.test_x, self.test_y = data.test_x.to(device), data.test_y.to(device)

    def splits(self, final: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train x, train y, eval x, eval y): the search scores on validation; the final model
        trains on train + validation and is scored once on the test split."""
        if not final:
            return self.train_x, self.train_y, self.val_x, self.val_y
        return (torch.cat([self.train_x, self.val_x]), torch.cat([self.train_y, self.val_y]),
                self.test_x, self.test_y)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use auto or cpu.")
    return torch.device(name)


def resolve_augment(setting: str, dataset_name: str) -> str:
    """``auto``: flips only where mirror images keep their class (not for digits or letters)."""
    if setting != "auto":
        return setting
    return "crop" if dataset_name in ("digits", "mnist", "fashion-mnist") else "flip_crop"


def augment_batch(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random translation (reflect-pad then crop, per image) and horizontal flips, on x's device."""
    if mode == "none":
        return x
    n, _, h, w = x.shape
    pad = max(1, min(h, w) // 8)
    if min(h, w) > pad:
        padded = nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if mode == "flip_crop":
        flip = torch.rand(n, device=x.device, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def make_optimizer(genome: Genome, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if genome.optimizer == "sgd":
        return torch.optim.SGD(params, lr=genome.learning_rate, momentum=0.9, nesterov=True,
                               weight_decay=genome.weight_decay)
    if genome.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=genome.learning_rate, weight_decay=genome.weight_decay)
    return torch.optim.Adam(params, lr=genome.learning_rate, weight_decay=genome.weight_decay)


def warmup_linear_decay(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then linear decay to zero at the last step —
    a schedule that suits budgets of a few epochs."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in large batches; x is uint8."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = _to_float(x[start:start + batch_size])
        with _autocast(x.device):
            correct += (model(xb).argmax(1) == y[start:start + batch_size]).sum().item()
    return correct / max(1, len(x))


def train_candidate(genome: Genome, data: DeviceData, settings: TrainSettings, seed: int, *,
                    final: bool = False, keep_weights: bool = False, prune_below: float | None = None,
                    on_progress: Callable[[dict], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train ``genome`` and score it. Never raises for a candidate's own failure.

    With ``prune_below``, the candidate is scored after its first epoch and, if that score is
    below the threshold, stops there as ``pruned`` with the partial score as its fitness.
    """
    started = time.monotonic()
    num_classes = len(data.classes)
    params = estimate_parameters(genome, data.input_shape, num_classes)
    if params > settings.max_params:
        return TrainResult(TOO_LARGE, 0.0, params=params,
                           reason=f"{params:,} parameters exceed the cap of {settings.max_params:,}")
    model = optimizer = None
    threads_before = torch.get_num_threads()
    try:
        if settings.threads is not None and settings.threads != threads_before:
            torch.set_num_threads(settings.threads)
        torch.manual_seed(seed)
        generator = torch.Generator(device=data.device).manual_seed(seed)
        model = build_model(genome, data.input_shape, data.classes, data.mean, data.std)
        model = model.to(data.device, memory_format=torch.channels_last)
        optimizer = make_optimizer(genome, model)
        return _fit(model, optimizer, genome, data, settings, generator, started, final, keep_weights,
                    prune_below, on_progress, should_stop)
    except torch.cuda.OutOfMemoryError as exc:
        return TrainResult(OOM, 0.0, params=params, seconds=time.monotonic() - started,
                           reason=f"out of GPU memory: {str(exc).splitlines()[0][:200]}")
    except MemoryError:
        return TrainResult(OOM, 0.0, params=params, seconds=time.monotonic() - started,
                           reason="out of memory (host)")
    except Exception as exc:  # one bad candidate must never end the search
        text = str(exc)
        status = OOM if ("out of memory" in text or "can't allocate memory" in text) else ERROR
        return TrainResult(status, 0.0, params=params, seconds=time.monotonic() - started,
                           reason=f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else ''}")
    finally:
        # Free the candidate's memory before the next one, above all after an OOM on the GPU.
        del model, optimizer
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
        gc.collect()
        if data.device.type == "cuda":
            torch.cuda.empty_cache()


def _fit(model, optimizer, genome, data, settings, generator, started, final, keep_weights,
         prune_below, on_progress, should_stop) -> TrainResult:
    train_x, train_y, eval_x, eval_y = data.splits(final)
    n = len(train_x)
    batches = math.ceil(n / settings.batch_size)
    if n % settings.batch_size == 1 and batches > 1:
        batches -= 1  # a last batch of one image breaks batch norm; skip it
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(settings.epochs * batches, settings.warmup_fraction))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    if data.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    params = count_parameters(model)
    last_report, epoch_loss, first_epoch = 0.0, None, None
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(n, device=data.device, generator=generator)
        loss_sum = torch.zeros((), device=data.device)
        for batch in range(batches):
            if should_stop is not None and should_stop():
                return TrainResult(STOPPED, 0.0, params=params, seconds=time.monotonic() - started,
                                   epochs_done=epoch, reason="stop requested")
            elapsed = time.monotonic() - started
            if elapsed > settings.time_limit_s:
                return TrainResult(TIMEOUT, 0.0, params=params, seconds=elapsed, epochs_done=epoch,
                                   reason=f"time limit of {settings.time_limit_s:g} s reached in epoch {epoch + 1}")
            index = order[batch * settings.batch_size:(batch + 1) * settings.batch_size]
            xb = augment_batch(train_x[index].float().div_(255), settings.augment, generator)
            xb = xb.contiguous(memory_format=torch.channels_last)
            with _autocast(data.device):
                loss = loss_fn(model(xb), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach()
            now = time.monotonic()
            if on_progress is not None and (now - last_report >= settings.progress_every_s or batch == batches - 1):
                last_report = now
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    return _nan_result(params, started, epoch)
                done = epoch * batches + batch + 1
                on_progress({"epoch": epoch + 1, "epochs": settings.epochs, "batch": batch + 1,
                             "batches": batches, "loss": loss_value, "elapsed_s": now - started,
                             "eta_s": (now - started) / done * (settings.epochs * batches - done)})
        epoch_loss = (loss_sum / batches).item()
        if not math.isfinite(epoch_loss):
            return _nan_result(params, started, epoch)
        if epoch == 0 and prune_below is not None and settings.epochs > 1:
            first_epoch = accuracy(model, eval_x, eval_y, settings.eval_batch_size)
            if first_epoch < prune_below:
                return TrainResult(PRUNED, first_epoch, params=params, seconds=time.monotonic() - started,
                                   epochs_done=1, train_loss=epoch_loss, first_epoch_fitness=first_epoch,
                                   reason=f"first-epoch accuracy {first_epoch:.3f} below {prune_below:.3f}")
    fitness = accuracy(model, eval_x, eval_y, settings.eval_batch_size)
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()} if keep_weights else None
    return TrainResult(OK, fitness, params=params, seconds=time.monotonic() - started,
                       epochs_done=settings.epochs, train_loss=epoch_loss, first_epoch_fitness=first_epoch,
                       state_dict=state)


def _nan_result(params: int, started: float, epoch: int) -> TrainResult:
    return TrainResult(NAN, 0.0, params=params, seconds=time.monotonic() - started, epochs_done=epoch,
                       reason=f"loss became NaN or infinite in epoch {epoch + 1}")


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255).contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
