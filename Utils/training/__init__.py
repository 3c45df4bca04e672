"""The training engine behind Train.py: build the components, run the loop, log, evaluate, checkpoint, resume.

    build.py      Config -> Components (data, sampler, loader, networks, wrappers, optimizer, schedule, scaler)
    session.py    setup(): components + run directory + resume + verification sets + sinks; train() = setup + run
    loop.py       the loop: epochs, steps, counters, log/eval/save cadence, StopReason
    policy.py     what logging, evaluating and saving do; the summary
    state.py      TrainState, the checkpoint's contents, resume
    reshard.py    resume on another number of ranks (Partial-FC class centres re-cut per rank)
    distributed.py, optim.py, sampler.py, run_dir.py, log.py, curves.py, sinks/ (visdom, tensorboard)
"""
from .build import Components, build_components
from .loop import RunResult, StopReason, run
from .session import Session, setup, train

__all__ = ["Components", "RunResult", "Session", "StopReason", "build_components", "run", "setup", "train"]
