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

from automodel.config import Config, ConfigError
from automodel.data import ImageData
from automodel.errors import first_line
from automodel.evolution.genome import Genome
from automodel.evolution.throttle import Throttle
from automodel.store.records import CandidateStatus
from automodel.training.inheritance import inherit_weights
from automodel.training.model import build_model, count_parameters, estimate_parameters

OK, OOM, NAN, TIMEOUT = CandidateStatus.OK, CandidateStatus.OOM, CandidateStatus.NAN, CandidateStatus.TIMEOUT
TOO_LARGE, TOO_SLOW, ERROR = CandidateStatus.TOO_LARGE, CandidateStatus.TOO_SLOW, CandidateStatus.ERROR
STOPPED, PRUNED, STALLED = CandidateStatus.STOPPED, CandidateStatus.PRUNED, CandidateStatus.STALLED
PROBED = "probed"  # a probe's timing, never recorded as a candidate
PROBE_WARMUP = 3  # a probe's first steps (allocations, kernel choices) are not timed

REFERENCE_BATCH_SIZE = 64  # the batch size the search space's learning rates are given for


_CONFIG = Config()  # the search's defaults: a training outside a search (tests, benchmarks) uses the same


@dataclass
class TrainSettings:
    """The training budget and recipe for one candidate (gathered from the search config)."""

    epochs: int = _CONFIG.epochs
    batch_size: int = REFERENCE_BATCH_SIZE
    device: str = "cpu"
    time_limit_s: float = _CONFIG.time_limit_s
    max_params: int = _CONFIG.max_params
    augment: str = "none"  # none | crop | flip_crop (already resolved from "auto")
    label_smoothing: float = _CONFIG.label_smoothing
    clip_grad_norm: float = _CONFIG.clip_grad_norm  # 0: no clipping
    warmup_fraction: float = 0.1  # linear warm-up, then linear decay to zero
    # A candidate whose training loss is still at the loss of guessing after this many steps (checked
    # at the end of the epoch that passes it, if more epochs follow) is stopped as not learning.
    stall_after_steps: int = 300
    compile: bool = _CONFIG.compile  # torch.compile the network (the weights are saved without the wrapper)
    measure_latency: bool = False  # time inference at batch 1 before training (a latency objective or limit)
    max_latency_ms: float | None = None  # refuse, before training, a network slower than this per image
    eval_batch_size: int = 1024
    progress_every_s: float = 0.25
    # CPU threads for this training (torch.set_num_threads, restored after); None: the process's
    # setting. CPU sums, hence losses and sometimes scores, differ in the last bits with the
    # thread count, so back ends that must agree on CPU set the same number here.
    threads: int | None = None


@dataclass
class Checkpoint:
    """A training paused after ``epoch`` epochs: all it needs to go on exactly as if never paused
    (weights, optimizer, the batch-order generator and torch's generator for dropout)."""

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict
    generator: torch.Tensor
    torch_rng: torch.Tensor
    history: list[dict]
    seconds: float


@dataclass
class TrainResult:
    status: str
    fitness: float  # accuracy on the evaluation split; 0 for a failed candidate
    params: int = 0
    seconds: float = 0.0
    epochs_done: int = 0
    train_loss: float | None = None
    first_epoch_fitness: float | None = None  # measured only when pruning is on
    reason: str = ""
    latency_ms: float | None = None  # inference per image at batch 1 on the training device (when measured)
    history: list[dict] = field(default_factory=list)  # per epoch: train_loss, val_accuracy, seconds
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    checkpoint: Checkpoint | None = field(default=None, repr=False)  # set when paused before the last epoch
    step_seconds: float | None = None  # a probe's median seconds per training step (after its warm-up steps)
    inherited: float | None = None  # share of the parameters that started from a parent's weights
    node: str | None = None  # the cluster node it trained on (the Ray back end; None: this machine)
    worker: str | None = None  # the process that trained it ("pid N", on this machine or on its node)


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
        return (torch.cat([self.train_x, self.val_x]), torch.cat([self.train_y, self.val_y]), self.test_x, self.test_y)


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


def scaled_learning_rate(genome: Genome, batch_size: int) -> float:
    """The genome's learning rate (given for a batch of 64) at ``batch_size``: linearly for SGD
    (Goyal et al. 2017), by the square root for Adam and AdamW."""
    ratio = batch_size / REFERENCE_BATCH_SIZE
    return genome.learning_rate * (ratio if genome.optimizer == "sgd" else math.sqrt(ratio))


def make_optimizer(genome: Genome, model: nn.Module, batch_size: int = REFERENCE_BATCH_SIZE) -> torch.optim.Optimizer:
    params = model.parameters()
    lr = scaled_learning_rate(genome, batch_size)
    if genome.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=genome.weight_decay)
    if genome.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=genome.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=genome.weight_decay)


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
def measure_latency(model: nn.Module, input_shape, device: torch.device, repeats: int = 15) -> float:
    """Median milliseconds of one forward pass of one image (batch 1, eval mode) on ``device``,
    after a few warm-up passes; the model is left in the mode it was in."""
    was_training = model.training
    model.eval()
    x = torch.rand(1, *input_shape, device=device).contiguous(memory_format=torch.channels_last)
    times = []
    for i in range(repeats + 3):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= 3:
            times.append((time.perf_counter() - started) * 1000)
    model.train(was_training)
    return sorted(times)[len(times) // 2]


def chance_loss(labels: torch.Tensor, num_classes: int) -> float:
    """The cross-entropy of always answering the class frequencies: a network whose training loss
    is not below it has learned nothing about the images."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy in large batches; x is uint8."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = _to_float(x[start : start + batch_size])
        with _autocast(x.device):
            correct += (model(xb).argmax(1) == y[start : start + batch_size]).sum().item()
    return correct / max(1, len(x))


def train_candidate(
    genome: Genome,
    data: DeviceData,
    settings: TrainSettings,
    seed: int,
    *,
    final: bool = False,
    keep_weights: bool = False,
    prune_below: float | None = None,
    pause_after: int | None = None,
    resume: Checkpoint | None = None,
    on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    probe_steps: int | None = None,
    inherit: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``genome`` and score it. Never raises for a candidate's own failure.

    The schedule (warm-up, decay) always spans ``settings.epochs``. With ``pause_after`` the
    training stops after that many epochs and returns its score there with a :class:`Checkpoint`;
    passing that checkpoint back as ``resume`` goes on exactly as an unpaused training would (on
    the CPU, bit for bit). Without the checkpoint (e.g. after a restart) the same result comes
    from training again from the start: the training is a function of genome, data, settings and
    seed.

    With ``prune_below``, the candidate is scored after its first epoch and, if that score is
    below the threshold, stops there as ``pruned`` with the partial score as its fitness.

    With ``probe_steps`` it trains only that many steps and returns, as ``probed``, the median
    seconds of one step after the first ``PROBE_WARMUP`` (``step_seconds``): what a time budget is
    planned from.

    With ``inherit`` (a parent's trained weights), every tensor whose name and shape match starts
    from the parent's value instead of a fresh one (``result.inherited`` says which share of the
    parameters did); a ``resume`` checkpoint already holds them.
    """
    started = time.monotonic()
    num_classes = len(data.classes)
    params = estimate_parameters(genome, data.input_shape, num_classes)
    if params > settings.max_params:
        return TrainResult(
            TOO_LARGE, 0.0, params=params, reason=f"{params:,} parameters exceed the cap of {settings.max_params:,}"
        )
    model = optimizer = None
    threads_before = torch.get_num_threads()
    try:
        if settings.threads is not None and settings.threads != threads_before:
            torch.set_num_threads(settings.threads)
        torch.manual_seed(seed)
        generator = torch.Generator(device=data.device).manual_seed(seed)
        model = build_model(genome, data.input_shape, data.classes, data.mean, data.std)
        model = model.to(data.device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        inherited = inherit_weights(model, inherit) if inherit is not None and resume is None else None
        optimizer = make_optimizer(genome, model, settings.batch_size)
        latency = None
        if settings.measure_latency:
            # The weights do not change the time, so an untrained network measures the trained one,
            # and a network over the limit is refused before it trains.
            latency = measure_latency(model, data.input_shape, data.device)
            if settings.max_latency_ms is not None and latency > settings.max_latency_ms:
                return TrainResult(
                    TOO_SLOW,
                    0.0,
                    params=params,
                    latency_ms=latency,
                    seconds=time.monotonic() - started,
                    reason=f"inference takes {latency:.2f} ms per image, over the limit of "
                    f"{settings.max_latency_ms:g} ms",
                )
        if resume is not None:
            model.load_state_dict(resume.model)
            optimizer.load_state_dict(resume.optimizer)
            generator.set_state(resume.generator)
            _set_torch_rng(resume.torch_rng, data.device)
        trained: nn.Module = _Compiled(model) if settings.compile else model
        run = _Run(
            trained,
            optimizer,
            genome,
            data,
            settings,
            generator,
            started=started,
            final=final,
            keep_weights=keep_weights,
            prune_below=prune_below,
            pause_after=pause_after,
            resume=resume,
            on_progress=on_progress,
            should_stop=should_stop,
            probe_steps=probe_steps,
        )
        result = run.fit()
        result.latency_ms = latency
        result.inherited = inherited
        return result
    except torch.cuda.OutOfMemoryError as exc:
        return TrainResult(
            OOM, 0.0, params=params, seconds=time.monotonic() - started, reason=f"out of GPU memory: {first_line(exc)}"
        )
    except MemoryError:
        return TrainResult(OOM, 0.0, params=params, seconds=time.monotonic() - started, reason="out of memory (host)")
    except Exception as exc:  # one bad candidate must never end the search
        text = str(exc)
        status = OOM if ("out of memory" in text or "can't allocate memory" in text) else ERROR
        return TrainResult(
            status,
            0.0,
            params=params,
            seconds=time.monotonic() - started,
            reason=f"{type(exc).__name__}: {first_line(exc) if text.strip() else ''}",
        )
    finally:
        # Free the candidate's memory before the next one, above all after an OOM on the GPU.
        del model, optimizer
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)
        gc.collect()
        if data.device.type == "cuda":
            torch.cuda.empty_cache()


class _Compiled(nn.Module):
    """A network run through ``torch.compile`` whose weights keep the network's own names."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model
        self.compiled = torch.compile(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.compiled(x)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        return self.inner.load_state_dict(*args, **kwargs)


class _Run:
    """One call of :func:`train_candidate`: the loop and the bookkeeping around it."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        genome: Genome,
        data: DeviceData,
        settings: TrainSettings,
        generator: torch.Generator,
        *,
        started: float,
        final: bool,
        keep_weights: bool,
        prune_below: float | None,
        pause_after: int | None,
        resume: Checkpoint | None,
        on_progress: Callable[[dict], None] | None,
        should_stop: Callable[[], bool] | None,
        probe_steps: int | None = None,
    ):
        self.model, self.optimizer, self.data, self.settings = model, optimizer, data, settings
        self.probe_steps = probe_steps
        self.generator, self.final, self.keep_weights = generator, final, keep_weights
        self.prune_below, self.on_progress, self.should_stop = prune_below, on_progress, should_stop
        self.first_epoch = resume.epoch if resume is not None else 0
        self.stop_epoch = settings.epochs if pause_after is None else min(settings.epochs, pause_after)
        self.history = list(resume.history) if resume is not None else []
        # Seconds of the epochs trained before a pause count towards the candidate's time and limit.
        self.started = started - (resume.seconds if resume is not None else 0.0)
        self.params = count_parameters(model)
        self.base_lr = scaled_learning_rate(genome, settings.batch_size)

    def result(self, status: str, fitness: float, reason: str = "", **extra) -> TrainResult:
        return TrainResult(
            status,
            fitness,
            params=self.params,
            seconds=time.monotonic() - self.started,
            epochs_done=len(self.history),
            reason=reason,
            history=list(self.history),
            train_loss=self.history[-1]["train_loss"] if self.history else None,
            **extra,
        )

    def fit(self) -> TrainResult:
        s, data = self.settings, self.data
        train_x, train_y, eval_x, eval_y = data.splits(self.final)
        n = len(train_x)
        batches = math.ceil(n / s.batch_size)
        if n % s.batch_size == 1 and batches > 1:
            batches -= 1  # a last batch of one image breaks batch norm; skip it
        schedule = warmup_linear_decay(s.epochs * batches, s.warmup_fraction)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=s.label_smoothing)
        chance = chance_loss(train_y, len(data.classes))
        if data.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        reports, first_epoch_fitness, call_started = Throttle(s.progress_every_s), None, time.monotonic()
        step_times: list[float] = []
        for epoch in range(self.first_epoch, self.stop_epoch):
            epoch_started = time.monotonic()
            self.model.train()
            order = torch.randperm(n, device=data.device, generator=self.generator)
            losses = torch.zeros(batches, device=data.device)
            for batch in range(batches):
                if self.probe_steps is not None:
                    if data.device.type == "cuda":
                        torch.cuda.synchronize(data.device)
                    step_times.append(time.perf_counter())
                    if len(step_times) > self.probe_steps:
                        return self._probed(step_times)
                if self.should_stop is not None and self.should_stop():
                    return self.result(STOPPED, 0.0, "stop requested")
                elapsed = time.monotonic() - self.started
                if elapsed > s.time_limit_s:
                    return self.result(TIMEOUT, 0.0, f"time limit of {s.time_limit_s:g} s reached in epoch {epoch + 1}")
                index = order[batch * s.batch_size : (batch + 1) * s.batch_size]
                xb = augment_batch(train_x[index].float().div_(255), s.augment, self.generator)
                xb = xb.contiguous(memory_format=torch.channels_last)
                with _autocast(data.device):
                    loss = loss_fn(self.model(xb), train_y[index])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if s.clip_grad_norm > 0:
                    nn.utils.clip_grad_norm_(self.model.parameters(), s.clip_grad_norm)
                lr = self.base_lr * schedule(epoch * batches + batch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.step()
                losses[batch] = loss.detach()
                now = time.monotonic()
                if self.on_progress is not None and reports.ready(force=batch == batches - 1):
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        return self._nan(epoch)
                    done = (epoch - self.first_epoch) * batches + batch + 1
                    todo = (self.stop_epoch - self.first_epoch) * batches - done
                    self.on_progress(
                        {
                            "epoch": epoch + 1,
                            "epochs": s.epochs,
                            "batch": batch + 1,
                            "batches": batches,
                            "loss": loss_value,
                            "elapsed_s": now - self.started,
                            "eta_s": (now - call_started) / done * todo,
                        }
                    )
            epoch_loss = losses.mean().item()
            if not math.isfinite(epoch_loss):
                return self._nan(epoch)
            # Validation accuracy after every epoch (the learning curve; successive halving reads it).
            # The final training never looks at its test split before the end.
            last = epoch == self.stop_epoch - 1
            val = None if self.final and not last else accuracy(self.model, eval_x, eval_y, s.eval_batch_size)
            self.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": round(epoch_loss, 6),
                    "val_accuracy": None if self.final else val,
                    "seconds": round(time.monotonic() - epoch_started, 3),
                }
            )
            steps = (epoch + 1) * batches
            if not self.final and steps >= s.stall_after_steps > epoch * batches and epoch + 1 < s.epochs:
                recent = losses[-max(1, batches // 4) :].mean().item()
                if recent >= 0.99 * chance:
                    assert val is not None  # a candidate (not the final) is scored every epoch
                    return self.result(
                        STALLED,
                        val,
                        f"not learning: training loss {recent:.3f} after {steps} "
                        f"steps is not below the {chance:.3f} of guessing by class "
                        f"frequency",
                    )
            if epoch == 0 and self.prune_below is not None and s.epochs > 1:
                assert val is not None  # only candidates are pruned, and they are scored every epoch
                first_epoch_fitness = val
                if val < self.prune_below:
                    return self.result(
                        PRUNED,
                        val,
                        f"first-epoch accuracy {val:.3f} below {self.prune_below:.3f}",
                        first_epoch_fitness=val,
                    )
        if self.probe_steps is not None:  # fewer steps in the whole training than the probe wanted
            step_times.append(time.perf_counter())
            return self._probed(step_times)
        fitness = self.history[-1]["val_accuracy"] if not self.final else val
        assert fitness is not None  # the last epoch is always scored
        paused = self.stop_epoch < s.epochs
        checkpoint = self._checkpoint() if paused else None
        state = None
        if self.keep_weights and not paused:
            state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.model.state_dict().items()}
        return self.result(
            OK, fitness, first_epoch_fitness=first_epoch_fitness, state_dict=state, checkpoint=checkpoint
        )

    def _checkpoint(self) -> Checkpoint:
        def cpu(tree):
            if isinstance(tree, torch.Tensor):
                return tree.detach().to("cpu", copy=True)
            if isinstance(tree, dict):
                return {k: cpu(v) for k, v in tree.items()}
            if isinstance(tree, list):
                return [cpu(v) for v in tree]
            return tree

        return Checkpoint(
            epoch=self.stop_epoch,
            model=cpu(self.model.state_dict()),
            optimizer=cpu(self.optimizer.state_dict()),
            generator=self.generator.get_state(),
            torch_rng=_get_torch_rng(self.data.device),
            history=list(self.history),
            seconds=time.monotonic() - self.started,
        )

    def _probed(self, marks: list[float]) -> TrainResult:
        """A probe's end: nothing is scored, only its steps timed (``marks``: when each step began)."""
        steps = sorted(b - a for a, b in zip(marks[PROBE_WARMUP:], marks[PROBE_WARMUP + 1 :]))
        return self.result(
            PROBED, 0.0, f"timed {len(marks) - 1} steps", step_seconds=steps[len(steps) // 2] if steps else None
        )

    def _nan(self, epoch: int) -> TrainResult:
        return self.result(NAN, 0.0, f"loss became NaN or infinite in epoch {epoch + 1}")


def _get_torch_rng(device: torch.device) -> torch.Tensor:
    """The state of the generator dropout draws from on ``device``."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_torch_rng(state: torch.Tensor, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(255).contiguous(memory_format=torch.channels_last)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
