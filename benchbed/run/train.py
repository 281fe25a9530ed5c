"""The training loop: minibatches, extra players, checkpoints, divergence checks; plain
enough to cost what a hand-written PyTorch loop costs (``benchmarks/harness_overhead.py``)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from benchbed.plugin_api.components import Codes, Corruption, Metric, Objective
from benchbed.errors import BenchbedError, RunDiverged
from benchbed.events import EpochEnded, OnEvent, Resumed, Stepped, ignore
from benchbed.files import atomic_torch_save
from benchbed.run.model import Autoencoder
from benchbed.suite.protocol import Converge, Optimiser, Training

CHECKPOINT = "checkpoint.pt"


# Adam's fused kernel (one pass over each parameter instead of a chain of tensor
# ops): the same update, float operations in another order; 0.87-0.94x the step
# time of the CPU profiles' nets at 1 thread (benchmarks/step_speed.py).
FUSED_ADAM_DEVICES = ("cpu", "cuda")


def fused_adam(params: list[torch.nn.Parameter]) -> bool | None:
    """True where torch has a fused Adam for every parameter; None: torch's default."""
    ok = bool(params) and all(p.device.type in FUSED_ADAM_DEVICES and p.is_floating_point()
                              for p in params)
    return True if ok else None


def make_optimiser(spec: Optimiser, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if not params:  # torch would say only "optimizer got an empty parameter list"
        raise BenchbedError("the model has no trainable parameters: its encoder and decoder (and objective) "
                            "give nothing to train")
    if spec.name in ("adam", "adamw"):
        adam = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
        return adam(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay,
                    fused=fused_adam(params))
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay)
    return torch.optim.RMSprop(params, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle (and dynamic binarisation) of an epoch depends only on
    (seed, epoch), so a run resumed mid-epoch sees the same batches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def heldout_generator(seed: int) -> torch.Generator:
    """The held-out examples' one view (e.g. binarisation), apart from every epoch's."""
    return torch.Generator().manual_seed(seed * 100_003 + 100_002)


@dataclass
class Schedule:
    batches_per_epoch: int
    total_steps: int
    epochs: int

    @classmethod
    def of(cls, training: Training, n_train: int) -> "Schedule":
        # The last partial batch is dropped: minibatch divergences (MMD, Stein)
        # are noisy on a handful of codes.
        per_epoch = n_train // training.batch_size
        if per_epoch == 0:
            raise ValueError(f"batch_size {training.batch_size} exceeds the {n_train} training examples")
        total = training.steps if training.steps is not None else training.epochs * per_epoch
        return cls(per_epoch, total, math.ceil(total / per_epoch))


@dataclass
class TrainResult:
    curves: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    convergence: dict[str, Any] | None = None  # None: trained the fixed budget, no check


class ConvergenceCheck:
    """``Converge``'s rule over the held-out losses L_0 (before training), L_1, ...

    Progress is counted from L_1, not L_0: the first epoch's fall from a random
    initialisation dwarfs everything after it, and measured against it a run
    whose codes are still moving would look converged at once."""

    def __init__(self, spec: Converge, max_epochs: int, losses: list[float] | None = None):
        self.spec = spec
        self.max_epochs = max_epochs
        self.losses = list(losses or [])

    def best(self, upto: int) -> float:
        return min(self.losses[:upto + 1])

    def converged(self) -> bool:
        e, patience = len(self.losses) - 1, self.spec.patience
        if e < patience + 1:
            return False
        progress = self.losses[1] - self.best(e)
        return self.best(e - patience) - self.best(e) <= self.spec.tolerance * max(progress, 0.0)

    def summary(self) -> dict[str, Any]:
        converged = self.converged()
        epochs = len(self.losses) - 1
        return {"converged": converged, "stop": "converged" if converged else "budget",
                "epochs": epochs, "max_epochs": self.max_epochs,
                "best_epoch": min(range(len(self.losses)), key=self.losses.__getitem__),
                "heldout_loss": self.losses[-1],
                "heldout_losses": list(self.losses),  # L_0 ... L_E: the page fits its floor
                "criterion": (f"held-out objective on {self.spec.holdout} training examples; "
                              f"stop when {self.spec.patience} epochs bring < {self.spec.tolerance:g} "
                              f"of the progress since the first epoch")}


def heldout_loss(model: Autoencoder, objective: Objective, x: Tensor, batch_size: int, seed: int) -> float:
    """The objective on held-out data, in eval mode and under a fixed seed (the
    training RNG stream is left as it was)."""
    was_training = model.training, objective.training
    model.eval()
    objective.eval()
    total, n = 0.0, 0
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, x.shape[0] - batch_size + 1, batch_size):
            loss = objective.loss(model, x[start:start + batch_size])
            total += float(_total(loss, objective, grad=False)) * batch_size
            n += batch_size
    model.train(was_training[0])
    objective.train(was_training[1])
    return total / max(n, 1)


def _codes_for_adversaries(loss_codes: Codes | None, model: Autoencoder, x: Tensor) -> Codes:
    if loss_codes is None:
        with torch.no_grad():
            loss_codes = model.codes(x)
    return Codes(x=loss_codes.x, posterior=loss_codes.posterior, z=loss_codes.z.detach(),
                 prior=loss_codes.prior)


def _total(loss: Any, objective: Objective, grad: bool = True) -> Tensor:
    """The number to minimise, as the Objective contract gives it, or a message naming the objective."""
    total = getattr(loss, "total", None)
    if isinstance(total, Tensor) and total.dim() == 0 and (total.requires_grad or not grad):
        return total
    got = (f"a tensor of shape {tuple(total.shape)}{'' if total.requires_grad else ' without gradients'}"
           if isinstance(total, Tensor) else f"{type(total if total is not None else loss).__name__}")
    raise BenchbedError(f"objective {type(objective).__name__}.loss gave {got} as its total; it returns a Loss "
                        "whose total is one number (a 0-d tensor) that carries gradients")


def train(model: Autoencoder, objective: Objective, x_train: Tensor, train_view: Callable,
          training: Training, seed: int, run_dir: Path, device: torch.device,
          on_event: OnEvent = ignore,
          probes: dict[str, Metric] | None = None, probe_x: Tensor | None = None,
          corruption: Corruption | None = None) -> TrainResult:
    """Train ``model`` with ``objective``; resume from ``run_dir/checkpoint.pt``."""
    probes = probes or {}
    model.to(device).train()
    objective.to(device).train()
    adversaries = objective.adversaries()
    adversary_ids = {id(p) for a in adversaries for p in a.module.parameters()}
    ae_params = [p for p in [*model.parameters(), *objective.parameters()] if id(p) not in adversary_ids]
    optimiser = make_optimiser(training.optimiser, ae_params)
    adv_optimisers = [torch.optim.Adam(a.module.parameters(), lr=a.lr, betas=a.betas,
                                       fused=fused_adam(list(a.module.parameters())))
                      for a in adversaries]
    converge = training.converge
    if converge is not None:
        if converge.holdout >= x_train.shape[0]:
            raise ValueError(f"converge.holdout {converge.holdout} leaves no training examples "
                             f"(there are {x_train.shape[0]})")
        # The held-out examples are viewed once (e.g. one fixed binarisation).
        x_heldout = train_view(x_train[-converge.holdout:], heldout_generator(seed)).to(device)
        x_train = x_train[:-converge.holdout]
    schedule = Schedule.of(training, x_train.shape[0])
    check = ConvergenceCheck(converge, schedule.epochs) if converge is not None else None

    def measure() -> None:
        check.losses.append(heldout_loss(model, objective, x_heldout, training.batch_size, seed))

    result = TrainResult()
    start_epoch, start_batch, step = 0, 0, 0
    resumed_generator: Tensor | None = None  # the epoch generator's state, mid-epoch
    resumed_running: dict[str, Any] | None = None
    checkpoint_path = run_dir / CHECKPOINT
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimiser.load_state_dict(state["optimiser"])
        for opt, opt_state in zip(adv_optimisers, state["adversaries"]):
            opt.load_state_dict(opt_state)
        start_epoch, start_batch, step = state["epoch"], state["batch"], state["step"]
        result.curves = list(state["curves"])
        result.seconds = float(state["seconds"])
        # RNG states must be CPU byte tensors (map_location may have moved them).
        torch.set_rng_state(state["rng"].cpu())
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            cuda_states = [s.cpu() for s in state["cuda_rng"]]
            if len(cuda_states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda_states)
        if state.get("generator") is not None:  # absent in older checkpoints
            resumed_generator = state["generator"].cpu()
        resumed_running = state.get("running")  # the log interval the kill cut short
        if check is not None:
            check.losses = list(state.get("heldout", []))
            if len(check.losses) > 1 and check.converged():
                start_epoch = schedule.epochs  # killed between convergence and model.pt
        on_event(Resumed(step=step, epoch=start_epoch))

    def save_checkpoint(epoch: int, batch: int) -> None:
        state = {
            "model": model.state_dict(), "objective": objective.state_dict(),
            "optimiser": optimiser.state_dict(),
            "adversaries": [o.state_dict() for o in adv_optimisers],
            "epoch": epoch, "batch": batch, "step": step, "curves": result.curves,
            "seconds": result.seconds + (time.perf_counter() - started), "rng": torch.get_rng_state(),
            # The epoch generator also feeds the training corruption batch by
            # batch, so a mid-epoch resume needs its state, not a fresh one.
            "generator": generator.get_state(),
            # Only when this process uses CUDA (else nothing drew from it, and
            # asking would start a CUDA context in every CPU worker).
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
            "heldout": check.losses if check is not None else [],
            # The sums since the last logged row, so the first row after a resume is the same row.
            "running": {"loss": running, "n": running_n, "terms": terms_sum},
        }
        atomic_torch_save(state, checkpoint_path)  # never half a checkpoint

    started = time.perf_counter()
    if check is not None and not check.losses:
        measure()  # L_0, before any step
    batch_size = training.batch_size
    running, running_n = torch.zeros((), device=device), 0
    terms_sum: dict[str, float] = {}
    if resumed_running is not None:
        running, running_n = resumed_running["loss"].to(device), int(resumed_running["n"])
        terms_sum = dict(resumed_running["terms"])
    for epoch in range(start_epoch, schedule.epochs):
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(x_train.shape[0], generator=generator).to(device)
        # The epoch's view is drawn on the CPU (seeded generators live there) and
        # moved to the device once, not batch by batch.
        x_epoch = train_view(x_train, generator).to(device)
        first = start_batch if epoch == start_epoch else 0
        if first and resumed_generator is not None:
            # Mid-epoch: the corruption draws go on where the checkpoint left them.
            generator.set_state(resumed_generator)
        for batch in range(first, schedule.batches_per_epoch):
            xb = x_epoch[order[batch * batch_size:(batch + 1) * batch_size]]
            if corruption is not None:
                xb = corruption(xb, generator)
            loss = objective.loss(model, xb)
            optimiser.zero_grad(set_to_none=True)
            _total(loss, objective).backward()
            optimiser.step()
            if adversaries:
                codes = _codes_for_adversaries(getattr(loss, "codes", None), model, xb)
                for adversary, opt in zip(adversaries, adv_optimisers):
                    for _ in range(adversary.steps_per_batch):
                        opt.zero_grad(set_to_none=True)
                        adversary.loss(codes).backward()
                        opt.step()
            step += 1
            running += loss.total.detach()
            running_n += 1
            for name, value in loss.terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + float(value)

            if step % training.log_every == 0 or step == schedule.total_steps:
                if not torch.isfinite(running).all():
                    raise RunDiverged(f"loss became {running.item()} at step {step} (training loss, checked "
                                      f"every {training.log_every} steps, so it may have turned earlier)")
                row = {"step": step, "epoch": epoch + (batch + 1) / schedule.batches_per_epoch,
                       "loss": running.item() / running_n,
                       **{k: v / running_n for k, v in terms_sum.items()}}
                result.curves.append(row)
                on_event(Stepped(step=step, steps=schedule.total_steps, epoch=epoch + 1,
                                 epochs=schedule.epochs, loss=row["loss"]))
                running, running_n, terms_sum = torch.zeros((), device=device), 0, {}
            if probes and probe_x is not None and (step % training.track_every == 0 or step == 1):
                result.curves.append(_probe_row(model, objective, probes, probe_x, step, epoch))
            if training.checkpoint_every and step % training.checkpoint_every == 0:
                save_checkpoint(epoch, batch + 1)
            if step >= schedule.total_steps:
                break
        stop = step >= schedule.total_steps
        if check is not None:
            measure()
            result.curves.append({"step": step, "epoch": float(epoch + 1), "heldout_loss": check.losses[-1]})
            stop = stop or check.converged()
        save_checkpoint(epoch + 1, 0)
        on_event(EpochEnded(epoch=epoch + 1, epochs=schedule.epochs, step=step,
                            steps=schedule.total_steps))
        if stop:
            break
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise RunDiverged(f"parameter {name} is not finite after training")
    result.steps = step
    result.seconds += time.perf_counter() - started
    result.convergence = check.summary() if check is not None else None
    return result


def _probe_row(model: Autoencoder, objective: Objective, probes: dict[str, Metric],
               probe_x: Tensor, step: int, epoch: int) -> dict[str, float]:
    model.eval()
    row: dict[str, float] = {"step": step, "epoch": float(epoch)}
    with torch.no_grad():
        for key, metric in probes.items():
            try:
                values = {name: float(value) for name, value in
                          metric.probe(model, probe_x.to(model.device)).items()}
            except Exception as exc:  # a plugin's bug: say whose, and where
                raise BenchbedError(f"the training-curve probe of metric {key!r} ({type(metric).__name__}) "
                                    f"failed at step {step}: {type(exc).__name__}: {exc}") from exc
            row.update({f"probe/{key}/{name}": value for name, value in values.items()})
    model.train()
    return row
