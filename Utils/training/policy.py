"""What logging, evaluating and saving do in a run: log lines, history, curves, sinks, best-per-set tracking,
best.pt and last.pt, the closing summary. When each happens is the loop's decision (Utils/training/loop.py).

Every rank calls `record` and `flush` (the counters are all-reduced at flush time), but only rank 0 writes, plots
and saves (ranks > 0 keep a small per-rank sidecar file with their RNGs and, under Partial-FC, their class-centre
shard).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable


from ..checkpoint import read_torch_file, save_checkpoint
from ..evaluation.verify import verify
from .build import Components
from .curves import plot_training_curves
from .distributed import all_reduce_sum, barrier, unwrap
from .log import RunLogger, format_duration, format_table
from .run_dir import append_history, read_history, write_history
from .sinks import Sinks
from .state import TrainState, make_checkpoint, rank_sidecar
from .watch import effective_log_every, evaluation_command

__all__ = ["RunPolicy", "load_sidecar"]


class RunPolicy:
    """Logging, evaluation and checkpoint writing of one run.

    Args:
        comp: the built components.
        state: progress (fresh or restored).
        run_dir: the run directory, or None with write_nothing (nothing is written).
        logger: console + train.log.
        val_sets: loaded verification sets (rank 0).
        verify_fn: Utils.evaluation.verify (the default) or a stand-in with its signature.
        sinks: live dashboards (visdom).
    """

    def __init__(self, comp: Components, state: TrainState, run_dir: Path | None, logger: RunLogger,
                 val_sets: list, verify_fn: Callable | None = None, sinks: Sinks | None = None):
        self.comp, self.cfg = comp, comp.cfg
        self.run_dir, self.logger = run_dir, logger
        self.val_sets = val_sets
        self.verify_fn = verify_fn or verify  # with its own progress bar: a large set takes minutes on CPU
        self.sinks = sinks or Sinks([])
        self.bar = None  # the loop's progress bar while it runs
        self.compiling = False  # the first step of a compiled backbone is still to come (the loop's bar says so)
        self.run_name = run_dir.name if run_dir else f"{self.cfg.backbone}_{self.cfg.head}_write_nothing"
        self.history: list[dict] = []
        if run_dir is not None and comp.ctx.is_main:
            # records logged after the checkpoint being resumed will be logged again by this run
            self.history = read_history(run_dir, state.iteration)
            write_history(run_dir, self.history)
        self._reset_window()
        self._clock = time.perf_counter()
        self._session_start_iter = state.iteration
        self._session_seconds = 0.0
        self.log_every = effective_log_every(self.cfg.log_every, comp.total_iters)

    def describe(self) -> str:
        """The run's first log line: model, data, where, precision, batch and length."""
        comp, cfg = self.comp, self.cfg
        precision = f"autocast {str(comp.amp_dtype).replace('torch.', '')}" if comp.amp_dtype is not None \
            else "float32"
        where = f"{comp.ctx.device}"
        if comp.ctx.distributed:
            where += f" x {comp.ctx.world_size} processes (DDP)"
        elif comp.ctx.data_parallel_gpus and len(comp.ctx.data_parallel_gpus) > 1:
            where += f" DataParallel over GPUs {list(comp.ctx.data_parallel_gpus)}"
        head = f"{cfg.head}" + (f" (Partial-FC, sample rate {cfg.partial_fc_sample_rate:g})" if comp.partial_fc
                                else "")
        return (f"{cfg.backbone} ({comp.embedding_size}-d) + {head}: {len(comp.dataset)} images, {comp.num_classes} "
                f"classes | {where}, {precision} | batch {comp.global_batch}, {comp.iters_per_epoch} "
                f"iterations/epoch, {comp.total_iters} in all | run dir: "
                f"{self.run_dir or '(write_nothing: nothing written)'}")

    # ------------------------------------------------------------------ per step
    def _reset_window(self) -> None:
        self._w_loss = self._w_steps = self._w_correct = self._w_count = self._w_bad = 0.0
        self._w_iters = 0
        self._w_seconds = 0.0

    def start_clock(self) -> None:
        """Exclude what happened since the last step (evaluation, saving, loader start) from training time."""
        self._clock = time.perf_counter()

    def record(self, state: TrainState, result) -> None:
        """Add one step's numbers (a loop StepResult) to the window the next flush reports."""
        now = time.perf_counter()
        elapsed, self._clock = now - self._clock, now
        state.train_seconds += elapsed
        self._session_seconds += elapsed
        self._w_seconds += elapsed
        self._w_iters += 1
        if result.finite:
            self._w_loss += result.loss
            self._w_steps += 1
            self._w_correct += result.correct
            self._w_count += result.count
        else:
            self.logger.warn(f"non-finite loss at iteration {state.iteration}: step skipped "
                             f"({state.bad_in_row} in a row, {state.skipped_steps} in all)")
        self._w_bad += result.bad_files

    def flush(self, state: TrainState) -> None:
        """Reduce the counters since the last flush over ranks; log, record and plot them."""
        if self._w_iters == 0:
            return
        comp = self.comp
        if comp.partial_fc:  # loss and accuracy are already over the global batch on every rank
            loss, steps, correct, count = self._w_loss, self._w_steps, self._w_correct, self._w_count
            (bad,) = all_reduce_sum([self._w_bad], comp.ctx)
        else:
            loss, steps, correct, count, bad = all_reduce_sum(
                [self._w_loss, self._w_steps, self._w_correct, self._w_count, self._w_bad], comp.ctx)
            loss /= comp.ctx.world_size
            steps /= comp.ctx.world_size
        state.skipped_files += int(bad)
        seconds = self._w_seconds
        iters = self._w_iters
        self._reset_window()
        if not comp.ctx.is_main:
            return
        mean_loss = loss / steps if steps else float("nan")
        accuracy = correct / count if count else float("nan")
        state.last_loss, state.last_accuracy = mean_loss, accuracy
        lr = comp.optimizer.param_groups[0]["lr"]
        ips = iters * comp.global_batch / max(seconds, 1e-9)
        record = {"kind": "train", "iteration": state.iteration, "epoch": self._epoch(state),
                  "loss": mean_loss, "accuracy": accuracy, "lr": lr, "images_per_s": ips}
        self._record(record)
        eta = self.eta(state)
        self.logger.info(f"epoch {record['epoch']:.2f} iter {state.iteration}/{comp.total_iters} "
                         f"loss {mean_loss:.4f} acc {accuracy:.2%} lr {lr:.3e} {ips:.1f} img/s "
                         f"eta {format_duration(eta)}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {mean_loss:.3f} acc {accuracy:.1%} lr {lr:.2e} {ips:.0f} img/s "
                                     f"run eta {format_duration(eta)}", refresh=False)
        for tag, value in (("loss", mean_loss), ("train_accuracy", accuracy), ("lr", lr), ("images_per_s", ips)):
            self.sinks.scalar(tag, state.iteration, value)

    def _epoch(self, state: TrainState) -> float:
        return round(state.epoch + state.epoch_iteration / self.comp.iters_per_epoch, 4)

    def eta(self, state: TrainState) -> float:
        done = state.iteration - self._session_start_iter
        if done <= 0:
            return float("nan")
        return (self.comp.total_iters - state.iteration) * self._session_seconds / done

    def _record(self, record: dict) -> None:
        self.history.append(record)
        if self.run_dir is not None:
            append_history(self.run_dir, record)

    # ------------------------------------------------------------------ evaluation
    def _verify_all(self) -> dict[str, dict]:
        """Verification of the current backbone (eval mode, then its mode restored) on every loaded set."""
        backbone = unwrap(self.comp.backbone)
        was_training = backbone.training
        backbone.eval()
        try:
            return {vset.name: self.verify_fn(backbone, vset, protocol=self.cfg.eval_protocol,
                                              batch_size=self.cfg.eval_batch_size, device=self.comp.ctx.device,
                                              amp_dtype=self.comp.amp_dtype)
                    for vset in self.val_sets}
        finally:
            backbone.train(was_training)

    def evaluate(self, state: TrainState) -> dict[str, float]:
        """Verify on every loaded set (rank 0), track the best per set, keep best.pt on a new best mean."""
        if not self.cfg.val_sets and not self.val_sets:
            return {}
        accs: dict[str, float] = {}
        if self.comp.ctx.is_main and self.val_sets:
            t0 = time.perf_counter()
            results = self._verify_all()
            accs = {name: float(r["accuracy"]) for name, r in results.items()}
            parts = []
            for name, r in results.items():
                state.best[name] = max(state.best.get(name, -1.0), accs[name])
                parts.append(f"{name} {accs[name]:.2%} +- {float(r.get('std', 0.0)):.2%} "
                             f"(best {state.best[name]:.2%})")
            state.last_eval = accs
            self.logger.info(f"eval iter {state.iteration}: " + ", ".join(parts)
                             + f" [{time.perf_counter() - t0:.1f} s]")
            self._record({"kind": "eval", "iteration": state.iteration, "epoch": self._epoch(state),
                          "accuracies": accs})
            for name, acc in accs.items():
                self.sinks.scalar(f"val_{name}", state.iteration, acc, title=f"verification accuracy {name}")
            mean = sum(accs.values()) / len(accs)
            if mean > state.best_mean:
                state.best_mean = mean
                self.save_best(state, accs)
        barrier(self.comp.ctx)
        self.start_clock()
        return accs

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, name: str = "last") -> Path | None:
        return None if self.run_dir is None else self.run_dir / f"{name}.pt"

    def save_last(self, state: TrainState) -> Path | None:
        """The resumable checkpoint (atomic); ranks > 0 write their sidecar beside it."""
        path = self.checkpoint_path("last")
        if path is None:
            return None
        ctx = self.comp.ctx
        if ctx.is_main:
            save_checkpoint(make_checkpoint(self.comp, state), path)
        elif ctx.distributed:
            save_checkpoint(rank_sidecar(self.comp, state), path.with_name(f"last.rank{ctx.rank}.pt"))
        barrier(ctx)
        self.start_clock()
        return path

    def save_best(self, state: TrainState, accs: dict[str, float]) -> None:
        """Weights and metadata of the best evaluation (what the evaluation scripts load), without optimizer."""
        path = self.checkpoint_path("best")
        if path is None:
            return
        full = make_checkpoint(self.comp, state)
        keep = {k: full[k] for k in ("backbone", "head", "meta", "config", "epoch", "iteration", "num_classes")}
        keep["accuracies"] = accs
        save_checkpoint(keep, path)

    # ------------------------------------------------------------------ end of run
    def summary(self, state: TrainState, status: str) -> str:
        rows = [("status", status),
                ("run directory", str(self.run_dir) if self.run_dir else "(write_nothing: none)"),
                ("epochs", f"{state.epoch + state.epoch_iteration / self.comp.iters_per_epoch:.2f} / "
                           f"{self.cfg.epochs}"),
                ("iterations", f"{state.iteration} / {self.comp.total_iters}"),
                ("final loss", f"{state.last_loss:.4f}"), ("final train accuracy", f"{state.last_accuracy:.2%}")]
        for name, acc in state.best.items():
            last = state.last_eval.get(name)
            rows.append((f"best {name}", f"{acc:.2%}" + (f" (last {last:.2%})" if last is not None else "")))
        rows += [("training time", format_duration(state.train_seconds)),
                 ("images/s", f"{state.images / max(state.train_seconds, 1e-9):.1f}"),
                 ("skipped files", str(state.skipped_files)), ("skipped steps", str(state.skipped_steps))]
        if self.run_dir is not None:
            rows.append(("checkpoints", ", ".join(p.name for p in (self.run_dir / "last.pt",
                                                                   self.run_dir / "best.pt") if p.exists())))
        return format_table(rows, title="training summary")

    def plot(self) -> Path | None:
        if self.run_dir is None or not self.comp.ctx.is_main:
            return None
        return plot_training_curves(self.history, self.run_dir / "curves.png", title=self.run_dir.name)

    def finish(self, state: TrainState, status: str) -> str:
        """Log the summary table and the curves PNG, close the sinks; returns the summary."""
        summary = self.summary(state, status) if self.comp.ctx.is_main else ""
        self.logger.info(summary)
        png = self.plot()
        if png is not None:
            self.logger.info(f"curves: {png}")
        command = evaluation_command(self.cfg, self.run_dir) if self.comp.ctx.is_main else ""
        if command:
            self.logger.info(f"evaluate the best checkpoint: {command}")
        self.sinks.close()
        return summary


def load_sidecar(run_dir: Path, rank: int, trust: bool = False) -> dict | None:
    path = run_dir / f"last.rank{rank}.pt"
    if not path.is_file():
        return None
    return read_torch_file(path, trust)
