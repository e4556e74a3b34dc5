"""A scheduler's stop signals and two jobs in one run folder.

SIGTERM and SIGUSR1 mid-epoch checkpoint like Ctrl-C, exit with a status of their own, and the
resumed run ends bitwise equal to an uninterrupted one; trace, report and study stop on SIGTERM with
nothing at the target; a second process into a busy run folder is refused naming the holder.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mosaic.app.cli import main
from mosaic.core import runlock
from mosaic.core.errors import MosaicError
from mosaic.core.runlock import RunFolderBusy, hold_folder
from mosaic.train.checkpoint import read_checkpoint
from mosaic.train.loop import Trainer
from test_train_loop import assert_same_weights, cfg_factory, config_file, loss_lines, straight_run  # noqa: F401  (fixtures)


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_stop_signal_mid_epoch_checkpoints_and_the_resumed_run_is_bitwise_equal(
        signum, status, config_file, straight_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    original = Trainer.train_step

    def signalled(self, indices):
        out = original(self, indices)
        if self.step == 3:  # the fifth step's work, in the second epoch (three steps per epoch)
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(Trainer, "train_step", signalled)
    run = tmp_path / "stopped"
    assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == status
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    line = [x for x in err.splitlines() if x.startswith("error:")]
    assert line == [f"error: stopped by {name} at step 4; checkpoint written to {run / 'checkpoints' / 'last.pt'}; "
                    f"resume with: mosaic train --resume {run}"]
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4  # mid-epoch: 4 = 3 + 1
    assert signal.getsignal(signum) is signal.SIG_DFL and not (run / "run.lock").exists()  # handlers restored

    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert_same_weights(straight_run / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    assert loss_lines(straight_run) == loss_lines(run)


def test_the_stop_signals_are_configurable(cfg_factory):  # noqa: F811
    from mosaic.train.interrupt import StopFlag

    cfg = cfg_factory(**{"run.stop_signals": "[TERM, usr2]"})
    assert cfg.run.stop_signals == ("SIGTERM", "SIGUSR2")
    with StopFlag(announce=False, signals=cfg.run.stop_signals) as flag:
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not configured: left alone
        os.kill(os.getpid(), signal.SIGUSR2)
        assert flag.requested and flag.signal == signal.SIGUSR2
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal leaves the checkpoint being written alone
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    with pytest.raises(MosaicError, match="run.stop_signals has 'KILL', not a signal a process can catch"):
        cfg_factory(**{"run.stop_signals": "[KILL]"})


def _commands(tmp_path: Path, ckpt: Path) -> dict[str, tuple[list[str], Path]]:
    from analysis import simulate

    trace, other = tmp_path / "in.h5", tmp_path / "other.h5"
    simulate(trace, n_ids=12, groups=2, kinds=("oracle", "none", "drop"), seed=1)
    simulate(other, n_ids=12, groups=2, kinds=("oracle", "none", "drop"), seed=2)
    return {
        "trace": (["trace", "--ckpt", str(ckpt), "-c", "oracle,none", "--device", "cpu", "-q"], tmp_path / "t.h5"),
        "report": (["report", str(trace), "--quiet", "--bootstrap", "100", "--permutations", "100", "--no-images"],
                   tmp_path / "r.html"),
        "study": (["study", str(trace), str(other), "--bootstrap", "100"], tmp_path / "s.html"),
    }


@pytest.mark.parametrize("command", ["trace", "report", "study"])
def test_sigterm_stops_trace_report_and_study_with_nothing_at_the_target(
        command, straight_run, tmp_path, monkeypatch, capsys):  # noqa: F811
    """SIGTERM arrives as the output is being written: the command ends in one line, exit 143, and
    neither the target nor a temporary file is left."""
    from mosaic.core import fileio

    args, target = _commands(tmp_path, straight_run / "checkpoints" / "last.pt")[command]
    real_fsync = fileio._fsync

    def fsync_then_sigterm(path, *, directory=False):
        real_fsync(path, directory=directory)
        if not directory and Path(path).name.endswith(".partial"):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(fileio, "_fsync", fsync_then_sigterm)
    assert main(args + ["--out", str(target)]) == 143
    err = capsys.readouterr().err
    assert "error: stopped by SIGTERM: nothing was left half-written at the target" in err and "Traceback" not in err
    assert not target.exists() and not list(tmp_path.glob(".*.partial"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command line's handler is gone again


# ----------------------------------------------------------------------------- one process per run folder


def _hold_in_another_process(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; from mosaic.core.runlock import hold_folder\n"
            "with hold_folder(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_train_or_resume_into_a_busy_folder_is_refused_naming_the_holder(
        config_file, straight_run, capsys):  # noqa: F811
    holder = _hold_in_another_process(straight_run)
    try:
        for args in (["train", "--resume", str(straight_run)],
                     ["train", "--config", str(config_file), "--out", str(straight_run)]):
            assert main(args + ["--no-progress"]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith(f"error: run folder {straight_run} is in use by another mosaic process "
                                  f"(PID {holder.pid} on {socket.gethostname()} since 20")
            assert " UTC)" in err and "\n" not in err
        info = json.loads((straight_run / "run.lock").read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
    finally:
        holder.kill()  # no chance to release: the lock must be recognised as stale
        holder.wait()
    assert (straight_run / "run.lock").exists()  # left behind by the killed holder
    with hold_folder(straight_run) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (straight_run / "run.lock").exists()


@pytest.mark.slow
def test_two_train_processes_into_one_folder(config_file, tmp_path, capsys):  # noqa: F811
    """A second `mosaic train` while a first one trains; then a scheduler's SIGTERM to the first,
    sent from outside."""
    run = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    first = subprocess.Popen([sys.executable, "-m", "mosaic", "train", "--config", str(config_file), "--out", str(run),
                              "--no-progress", "--set", "optim.steps=100000"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() is not None else "slow"
            time.sleep(0.2)
        assert main(["train", "--config", str(config_file), "--out", str(run), "--no-progress"]) == 2
        assert f"is in use by another mosaic process (PID {first.pid} on {socket.gethostname()}" in capsys.readouterr().err
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    assert "stopped by SIGTERM at step" in err and f"mosaic train --resume {run}" in err
    step = read_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert f"stopped by SIGTERM at step {step};" in err and not (run / "run.lock").exists()


def test_without_flock_a_dead_holder_on_this_host_is_stale_and_another_host_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "_has_fcntl", lambda: False)
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / "run.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "2026-01-01 00:00:00 UTC"}))
    with hold_folder(folder):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderBusy, match=rf"PID {os.getpid()} on {socket.gethostname()} since .*: wait for it"):
            with hold_folder(folder):
                pass
    lock.write_text(json.dumps({"pid": 1, "host": "gpu-node-07", "since": "2026-01-01 00:00:00 UTC"}))
    with pytest.raises(MosaicError, match=rf"PID 1 on gpu-node-07 since 2026-01-01 00:00:00 UTC\): if that process has ended, delete {lock}"):
        with hold_folder(folder):
            pass


def test_a_new_folder_that_stays_empty_is_removed_with_its_lock(tmp_path):
    folder = tmp_path / "new" / "run"
    with pytest.raises(ValueError):
        with hold_folder(folder):
            raise ValueError("set-up failed")
    assert not folder.exists() and folder.parent.exists()
    with hold_folder(folder, enabled=False) as lock:  # the other ranks of a torchrun job hold nothing
        assert lock is None and not folder.exists()
