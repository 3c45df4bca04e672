"""What happens between training steps: log lines, curves, evaluation, checkpoints, and the final summary.

`TrainRun.after_step` is called by the loop after every optimizer step; every rank calls it (the counters are
all-reduced at log time), but only rank 0 writes, plots and saves (ranks > 0 keep a small per-rank sidecar file
with their RNGs and, under Partial-FC, their class-centre shard).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

from .checkpoint import save_checkpoint
from .distributed import all_reduce_sum, barrier
from .run_dir import append_history, read_history, write_history
from .train_log import RunLogger, format_duration, format_table
from .train_state import TrainState, make_checkpoint, rank_sidecar
from .trainer import Components, StepResult, evaluate

__all__ = ["TrainRun", "load_sidecar"]


class TrainRun:
    """Logging, evaluation and checkpoint policy of one run.

    Args:
        comp: the built components.
        state: progress (fresh or restored).
        run_dir: the run directory, or None in para_adj_mode (nothing is written).
        logger: console + train.log.
        val_sets: loaded verification sets (rank 0), evaluated every cfg.eval_every iterations / at epoch ends.
        verify_fn: Utils.evaluation.verify or a stand-in with its signature.
        visdom: a VisdomLogger or None.
    """

    def __init__(self, comp: Components, state: TrainState, run_dir: Path | None, logger: RunLogger,
                 val_sets: list, verify_fn: Callable | None = None, visdom=None, bar=None):
        self.comp, self.cfg, self.state = comp, comp.cfg, state
        self.run_dir, self.logger = run_dir, logger
        self.val_sets, self.verify_fn, self.visdom, self.bar = val_sets, verify_fn, visdom, bar
        self.history: list[dict] = []
        if run_dir is not None and comp.ctx.is_main:
            # records logged after the checkpoint being resumed will be logged again by this run
            self.history = read_history(run_dir, state.iteration)
            write_history(run_dir, self.history)
        self._reset_window()
        self._clock = time.perf_counter()
        self._session_start_iter = state.iteration
        self._session_seconds = 0.0

    # ------------------------------------------------------------------ per step
    def _reset_window(self) -> None:
        self._w_loss = self._w_steps = self._w_correct = self._w_count = self._w_bad = 0.0
        self._w_iters = 0
        self._w_seconds = 0.0

    def start_clock(self) -> None:
        """Exclude what happened since the last step (evaluation, saving, loader start) from training time."""
        self._clock = time.perf_counter()

    def after_step(self, state: TrainState, result: StepResult) -> None:
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
        it = state.iteration
        if it % self.cfg.log_every == 0 or it == self.comp.total_iters:
            self.flush(state)
        if self.cfg.eval_every and it % self.cfg.eval_every == 0:
            self.flush(state)
            self.run_evaluation(state)
        if self.cfg.save_every and it % self.cfg.save_every == 0:
            self.flush(state)
            self.save_last(state)

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
        record = {"kind": "train", "iteration": state.iteration,
                  "epoch": round(state.epoch + state.epoch_iteration / comp.iters_per_epoch, 4),
                  "loss": mean_loss, "accuracy": accuracy, "lr": lr, "images_per_s": ips}
        self._record(record)
        eta = self.eta(state)
        self.logger.info(f"epoch {record['epoch']:.2f} iter {state.iteration}/{comp.total_iters} "
                         f"loss {mean_loss:.4f} acc {accuracy:.2%} lr {lr:.3e} {ips:.1f} img/s "
                         f"eta {format_duration(eta)}")
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {mean_loss:.3f} acc {accuracy:.1%} lr {lr:.2e} {ips:.0f} img/s "
                                     f"run eta {format_duration(eta)}", refresh=False)
        if self.visdom is not None:
            for win, value in (("loss", mean_loss), ("train_accuracy", accuracy), ("lr", lr)):
                if math.isfinite(value):
                    self.visdom.line(win, state.iteration, value)

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
    def run_evaluation(self, state: TrainState) -> dict[str, float]:
        """Verify on every loaded set (rank 0), track the best per set, keep best.pt on a new best mean."""
        if not self.cfg.val_sets and not self.val_sets:
            return {}
        accs: dict[str, float] = {}
        if self.comp.ctx.is_main and self.val_sets:
            t0 = time.perf_counter()
            results = evaluate(self.comp, self.val_sets, self.verify_fn)
            accs = {name: float(r["accuracy"]) for name, r in results.items()}
            parts = []
            for name, r in results.items():
                state.best[name] = max(state.best.get(name, -1.0), accs[name])
                parts.append(f"{name} {accs[name]:.2%} +- {float(r.get('std', 0.0)):.2%} "
                             f"(best {state.best[name]:.2%})")
            state.last_eval = accs
            self.logger.info(f"eval iter {state.iteration}: " + ", ".join(parts)
                             + f" [{time.perf_counter() - t0:.1f} s]")
            self._record({"kind": "eval", "iteration": state.iteration,
                          "epoch": round(state.epoch + state.epoch_iteration / self.comp.iters_per_epoch, 4),
                          "accuracies": accs})
            if self.visdom is not None:
                for name, acc in accs.items():
                    self.visdom.line(f"val_{name}", state.iteration, acc, title=f"verification accuracy {name}")
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
            save_checkpoint(rank_sidecar(self.comp), path.with_name(f"last.rank{ctx.rank}.pt"))
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

    def epoch_end(self, state: TrainState) -> None:
        """Evaluate (every epoch when eval_every is 0, else after the last one) and save last.pt."""
        self.flush(state)
        just_evaluated = bool(self.cfg.eval_every) and state.iteration % self.cfg.eval_every == 0
        if (not self.cfg.eval_every or state.epoch == self.cfg.epochs) and not just_evaluated:
            self.run_evaluation(state)
        self.save_last(state)

    # ------------------------------------------------------------------ end of run
    def summary(self, state: TrainState, status: str) -> str:
        rows = [("status", status), ("run directory", str(self.run_dir) if self.run_dir else "(para_adj_mode: none)"),
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
        from .train_plots import plot_training_curves

        return plot_training_curves(self.history, self.run_dir / "curves.png", title=self.run_dir.name)


def load_sidecar(run_dir: Path, rank: int) -> dict | None:
    path = run_dir / f"last.rank{rank}.pt"
    if not path.is_file():
        return None
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)

