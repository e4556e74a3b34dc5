"""A full disk: every writer ends in one MosaicError line (exit 2), leaves nothing behind, and the
trace and training runs refuse before any work when their outputs cannot fit.

Two kinds of test: a real tiny file system (a 160 KiB tmpfs, mounted as root on Linux, skipped
elsewhere) where the operating system itself says "no space left", and a simulated ENOSPC
(a monkeypatched write) for each writer, which runs everywhere.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mosaic.app.cli import main
from mosaic.core.diskspace import SpaceNeed, require_space, write_error, write_errors
from mosaic.core.errors import MosaicError
from test_data_download import fixture_sources, route, server  # noqa: F401  (the download tests' fixtures)
from test_trace_cli import one_torch_thread, toy_run

TMPFS_BYTES = 160 * 2**10
NO_TMPFS = "mounting a 160 KiB tmpfs needs root on Linux (and a container allowed to mount)"


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def small_disk(tmp_path):
    """A 160 KiB tmpfs, unmounted afterwards; skipped where it cannot be mounted."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip(NO_TMPFS)
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES // 1024}k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(NO_TMPFS)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


def fill(disk: Path, leave: int) -> None:
    """Take all but ``leave`` bytes of ``disk``'s free space (a file named ``filler``)."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * max(0, free - leave))


def left_on(disk: Path) -> list[str]:
    return sorted(str(p.relative_to(disk)) for p in disk.rglob("*") if p.name != "filler")


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def traced_setup(tmp_path_factory):
    """A small manifest dataset and a micro checkpoint (as in test_trace_cli), one torch thread."""
    root = tmp_path_factory.mktemp("disk_full")
    with one_torch_thread():
        yield root, toy_run(root, seed=0, learned=True)[1]


TRACE_ARGS = ["--top-k", "3", "--max-rank", "5", "--device", "cpu", "-q"]


# ------------------------------------------------------------------------------ the mechanism

def test_write_errors_name_the_path_the_bytes_and_the_fix(tmp_path):
    target = tmp_path / "out.bin"
    full = write_error(target, OSError(errno.ENOSPC, "No space left on device"), needed=3 * 2**20, fix="pass --out elsewhere")
    text = str(full)
    assert text.startswith(f"cannot write {target}: no space left on the device (3.0 MiB needed, ")
    assert f"free in {tmp_path}" in text and text.endswith("free space there, or pass --out elsewhere")
    assert "disk quota exceeded" in str(write_error(target, OSError(errno.EDQUOT, "quota")))
    assert str(write_error(target, OSError(errno.EROFS, "ro"), fix="F")) == f"cannot write {target}: read-only file system; F"
    assert str(write_error(target, OSError(errno.EACCES, "no"), fix="F")) == f"cannot write {target}: permission denied; F"
    # torch.save into a Python file re-raises the write's OSError as a RuntimeError
    try:
        try:
            _enospc()
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    except RuntimeError as wrapped:
        assert "no space left" in str(write_error(target, wrapped))
    # numpy's tofile: an OSError without errno, a full disk when the file system lacks the bytes
    short = OSError("100000 requested and 5104 written")
    assert "no space left" in str(write_error(target, short, needed=2**62))
    # not I/O errors: a MosaicError (already one line), a bug, a context suppressed with `from None`
    assert write_error(target, MosaicError("x")) is None and write_error(target, ValueError("bug")) is None
    try:
        try:
            _enospc()
        except OSError:
            raise KeyError("k") from None
    except KeyError as suppressed:
        assert write_error(target, suppressed) is None
    with pytest.raises(ValueError):
        with write_errors(target):
            raise ValueError("a bug keeps its traceback")


def test_required_space_adds_up_per_file_system(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    require_space([SpaceNeed(tmp_path / "a", 1000, "trace")])
    half = SpaceNeed(tmp_path / "a" / "b.h5", free // 2 + 2**20, "trace", "pass --out elsewhere")
    other = SpaceNeed(tmp_path / "c", free // 2 + 2**20, "image cache", "move the cache")
    require_space([half])
    with pytest.raises(MosaicError) as refused:
        require_space([half, other])
    text = str(refused.value)
    assert text.startswith(f"not enough space for the trace {half.path} (") and f"and the image cache {other.path} (" in text
    assert ", together " in text and f"free in {tmp_path}" in text
    assert text.endswith("free space there, or pass --out elsewhere; or move the cache")


def test_atomic_write_failing_for_space_leaves_the_old_file(tmp_path, monkeypatch):
    from mosaic.core.fileio import write_text_atomic

    target = tmp_path / "kept.txt"
    target.write_text("old")
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    with pytest.raises(MosaicError, match=r"cannot write .*kept\.txt: no space left on the device \(3 bytes needed"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


# ------------------------------------------------------------------------------ the trace

def test_trace_refused_by_the_space_check_runs_no_model_and_reads_no_image(traced_setup, small_disk, monkeypatch, capsys):
    root, ckpt = traced_setup
    fill(small_disk, 40 * 2**10)

    def forbidden(*args, **kwargs):
        raise AssertionError("the model ran or an image was decoded before the space check")

    monkeypatch.setattr("mosaic.tracing.engine.compute_trunk", forbidden)
    monkeypatch.setattr("mosaic.data.images.decode_images", forbidden)
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(small_disk / "t.h5"), *TRACE_ARGS]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: not enough space for the trace {small_disk / 't.h5'} (")
    assert "free in" in line and line.endswith("pass --out on another disk")
    assert left_on(small_disk) == []


def test_trace_writer_meeting_a_full_disk_exits_2_without_a_crash(traced_setup, small_disk):
    """HDF5 crashed (SIGSEGV) when its own writes met a full disk; the checks are switched off here
    so that the write itself meets it, in a fresh process as a user runs it."""
    root, ckpt = traced_setup
    fill(small_disk, 40 * 2**10)
    script = textwrap.dedent(
        """
        import sys
        import mosaic.core.diskspace, mosaic.core.fileio, mosaic.data.images, mosaic.tracing.token_cache
        for module in (mosaic.core.diskspace, mosaic.core.fileio, mosaic.data.images, mosaic.tracing.token_cache):
            module.require_space = lambda needs: None  # the disk fills after the checks
        from mosaic.app.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, "trace", "--ckpt", str(ckpt), "--out", str(small_disk / "t.h5"),
                           *TRACE_ARGS], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and one_error_line(done.stderr).startswith(
        f"error: cannot write {small_disk / 't.h5'}: no space left on the device (")
    assert left_on(small_disk) == []


def test_trace_size_estimate_is_within_a_quarter_of_the_written_file(traced_setup, tmp_path, monkeypatch):
    from mosaic.tracing import checkpoint as trace_checkpoint

    root, ckpt = traced_setup
    seen: list[SpaceNeed] = []
    real = trace_checkpoint.space_needs
    monkeypatch.setattr(trace_checkpoint, "space_needs", lambda *args: seen.extend(real(*args)) or seen)
    out = tmp_path / "t.h5"
    assert main(["trace", "--ckpt", str(ckpt), "--out", str(out), *TRACE_ARGS]) == 0
    (need,) = [n for n in seen if n.what == "trace"]
    assert 0.8 <= need.nbytes / out.stat().st_size <= 1.25, (need.nbytes, out.stat().st_size)


@pytest.mark.parametrize("shape", [dict(n_ids=5, n_subsets=2), dict(n_ids=60, n_subsets=60, n_layers=4)], ids=["small", "many-conditions"])
def test_trace_size_estimate_of_simulated_traces(shape, tmp_path):
    """The layout-derived estimate against the real writer at other sizes (one-hot gates, as traced)."""
    from analysis.simulation.trace import simulate_data
    from mosaic.tracefile import write_trace
    from mosaic.tracefile.size import estimate_trace_bytes
    from mosaic.tracefile.write import attribute_json

    data = simulate_data(seed=3, **shape)
    path = write_trace(data, tmp_path / "sim.h5")
    routed = sum(1 for kind, on in zip(data.condition_kind, data.enabled_groups) if on.any() and kind != "code")
    estimate = estimate_trace_bytes(
        data.sizes, query_paths=list(data.query_path), gallery_paths=list(data.gallery_path),
        condition_names=list(data.condition_name), routed_conditions=routed,
        metadata_bytes=len(attribute_json(data.provenance)) + len(data.schema.to_json()),
    )
    assert 0.8 <= estimate / path.stat().st_size <= 1.25, (estimate, path.stat().st_size)


def test_trunk_tokens_that_cannot_spill_are_refused_before_the_trunk_runs(small_disk, monkeypatch):
    from mosaic.tracing.token_cache import TokenCache

    with pytest.raises(MosaicError, match=r"not enough space for the spilled trunk tokens .* --spill-dir on another disk"):
        TokenCache(64, (33, 64), device=torch.device("cpu"), budget_bytes=0, spill_dir=small_disk / "spill")
    # past the check (the disk filled meanwhile): the memmap's blocks are allocated up front, so the
    # shortage is an error line, not a SIGBUS at the first page written
    monkeypatch.setattr("mosaic.tracing.token_cache.require_space", lambda needs: None)
    with pytest.raises(MosaicError, match=r"cannot write .*spill: no space left on the device \(528\.0 KiB needed"):
        TokenCache(64, (33, 64), device=torch.device("cpu"), budget_bytes=0, spill_dir=small_disk / "spill")
    assert left_on(small_disk) == ["spill"]  # the folder the user named; no tokens in it


def test_space_check_counts_the_trace_its_image_cache_and_its_spill(traced_setup, tmp_path, monkeypatch):
    root, ckpt = traced_setup
    needs: list[SpaceNeed] = []

    def record(found):
        needs.extend(found)
        raise MosaicError("stop here")

    monkeypatch.setattr("mosaic.core.diskspace.require_space", record)  # imported by the tracer when it checks
    main(["trace", "--ckpt", str(ckpt), "--out", str(tmp_path / "t.h5"), "--cache-budget", "0", "--spill-dir",
          str(tmp_path / "spill"), "--image-cache", str(tmp_path / "images"), *TRACE_ARGS])
    kinds = {n.what: n for n in needs}
    assert set(kinds) == {"trace", "image cache", "spilled trunk tokens"}
    assert kinds["spilled trunk tokens"].nbytes == 15 * 33 * 64 * 4  # query + gallery images x tokens x width x float32
    assert kinds["image cache"].path == tmp_path / "images"


# ------------------------------------------------------------------------------ reports and studies

def test_report_on_a_full_disk(small_disk, tmp_path, monkeypatch, capsys):
    import analysis
    from analysis import simulate

    trace = tmp_path / "sim.h5"
    simulate(trace, n_ids=8, groups=2, n_subsets=3, seed=5)
    # the analysis is not what is tested: the paired tests alone keep it fast
    monkeypatch.setattr(analysis, "analyze", functools.partial(analysis.analyze, methods=("paired",)))
    fill(small_disk, 40 * 2**10)
    assert main(["report", str(trace), "--out", str(small_disk / "r.html"), "--bootstrap", "100", "--permutations", "100"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: not enough space for the file {small_disk / 'r.html'} (")
    # the disk fills between the check and the write: the write's own error, one line
    monkeypatch.setattr("mosaic.core.fileio.require_space", lambda needs: None)
    assert main(["report", str(trace), "--out", str(small_disk / "r.html"), "--bootstrap", "100", "--permutations", "100"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: cannot write {small_disk / 'r.html'}: no space left on the device (")
    assert line.endswith("pass --out on another disk") and left_on(small_disk) == []


def test_study_write_failing_for_space(tmp_path, monkeypatch, capsys):
    from analysis import simulate

    traces = [str(simulate(tmp_path / f"s{seed}.h5", n_ids=8, groups=2, n_subsets=3, seed=seed).path) for seed in (1, 2)]
    monkeypatch.setattr(Path, "write_bytes", _enospc)
    assert main(["study", *traces, "--out", str(tmp_path / "study.html"), "--bootstrap", "100"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"error: cannot write {tmp_path / 'study.html'}: no space left")
    assert not list(tmp_path.glob("*study*"))


# ------------------------------------------------------------------------------ training

def _tiny_config(world: Path, cache: Path, **extra):
    from mosaic.train.config import load_config
    from test_train_loop import tiny_overrides

    return load_config(None, tiny_overrides(world, cache, **extra))


def test_train_refused_before_decoding_an_image(tiny_world, small_disk, tmp_path, monkeypatch, capsys):
    from mosaic.core.fileio import write_text_atomic

    config = write_text_atomic(tmp_path / "tiny.yaml", _tiny_config(tiny_world, small_disk / "images").to_yaml())
    monkeypatch.setattr("mosaic.data.images.decode_images", lambda *a, **k: pytest.fail("an image was decoded"))
    assert main(["train", "--config", str(config), "--out", str(small_disk / "run"), "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: not enough space for the image cache {small_disk / 'images'} (")
    assert f"and the checkpoints (last.pt and one staged copy) in {small_disk / 'run' / 'checkpoints'} (" in line
    assert left_on(small_disk) == []


def test_checkpoint_on_a_full_disk_keeps_the_previous_one(small_disk):
    from mosaic.train.checkpoint import read_checkpoint, save_checkpoint

    path = small_disk / "last.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(10)})
    with pytest.raises(MosaicError, match=r"cannot write .*last\.pt: no space left on the device"):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(100_000)})  # through torch's real writer
    assert read_checkpoint(path)["step"] == 1 and left_on(small_disk) == ["last.pt", "last.pt.sha256"]


def test_metrics_log_on_a_full_disk(small_disk):
    from mosaic.train.monitor import MetricsLog

    fill(small_disk, 0)
    log = MetricsLog(small_disk / "metrics.jsonl")
    with pytest.raises(MosaicError, match=r"metrics\.jsonl: no space left on the device .*mosaic train --resume"):
        log.write({"kind": "train", "step": 1, "loss": 1.0, "note": "x" * 5000})


def test_a_failed_checkpoint_write_resumes_from_the_previous_checkpoint(tiny_world, tmp_path, monkeypatch):
    """The checkpoint after epoch 2 meets a full disk: the run stops with one line, last.pt stays
    the epoch-1 checkpoint, and resuming from it ends where an uninterrupted run ends."""
    from mosaic.train import checkpoint as checkpoint_module
    from mosaic.train.checkpoint import checkpoint_bytes, read_checkpoint
    from mosaic.train.loop import Trainer
    from test_train_loop import assert_same_weights, loss_lines

    config = functools.partial(_tiny_config, tiny_world, tmp_path / "images", **{"optim.steps": 9})
    straight = Trainer(config(), tmp_path / "straight", progress=False)
    assert straight.steps_per_epoch == 3
    straight.fit()
    size = (tmp_path / "straight" / "checkpoints" / "last.pt").stat().st_size
    assert 1.0 <= checkpoint_bytes(straight.model) / size <= 1.25  # the upper bound the space check uses

    real_save, saves = torch.save, []

    def full_at_the_second(data, handle):
        saves.append(data["step"])
        if len(saves) == 2:
            handle.write(b"PK\x03\x04")  # a little, then the disk is full
            _enospc()
        real_save(data, handle)

    monkeypatch.setattr(checkpoint_module.torch, "save", full_at_the_second)
    run = tmp_path / "run"
    with pytest.raises(MosaicError) as stopped:
        Trainer(config(), run, progress=False).fit()
    text = str(stopped.value)
    assert text.startswith(f"cannot write {run / 'checkpoints' / 'last.pt'}: no space left on the device")
    assert text.endswith(f"`mosaic train --resume {run}` continues from step 3")
    assert read_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt", "last.pt.sha256"]

    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    resumed = Trainer(config(), run, resume=True, progress=False)
    assert resumed.step == 3
    assert resumed.fit().finished
    assert_same_weights(tmp_path / "straight" / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    assert loss_lines(tmp_path / "straight") == loss_lines(run)


# ------------------------------------------------------------------------------ caches, worlds, downloads

def test_image_cache_refused_before_decoding_and_a_failed_write_leaves_nothing(tiny_world, small_disk, monkeypatch):
    from mosaic.data import images
    from mosaic.data import load_dataset

    paths = load_dataset(tiny_world).split("train")["path"].tolist()
    need = images.cache_need(paths, (128, 64), small_disk / "cache")
    assert need.nbytes == 128 + len(paths) * 3 * 128 * 64  # the .npy header and the pixels
    real_decode = images.decode_images
    monkeypatch.setattr(images, "decode_images", lambda *a, **k: pytest.fail("decoded before the space check"))
    with pytest.raises(MosaicError, match=r"not enough space for the image cache .*data\.cache_dir for training"):
        images.load_image_tensor(paths, (128, 64), cache_dir=small_disk / "cache", progress=False)
    monkeypatch.setattr(images, "decode_images", real_decode)
    monkeypatch.setattr(images, "require_space", lambda needs: None)  # the disk fills after the check
    monkeypatch.setattr("mosaic.core.fileio.require_space", lambda needs: None)
    with pytest.raises(MosaicError, match=r"cannot write .*\.npy: no space left on the device \("):
        images.load_image_tensor(paths, (128, 64), cache_dir=small_disk / "cache", progress=False)
    assert left_on(small_disk) == ["cache"]


def test_synthetic_world_on_a_full_disk(small_disk):
    from mosaic.synth import WorldConfig, synthesize

    with pytest.raises(MosaicError, match=r"cannot write .*world: no space left on the device .*pass --out on another disk"):
        synthesize(small_disk / "world", WorldConfig(n_ids=12, images_per_id=8, seed=7))
    assert left_on(small_disk) == []


def test_download_on_a_full_disk(server, fixture_sources, small_disk, monkeypatch):
    from mosaic.data.download import get_attributes

    sources, contents = fixture_sources
    for name, body in contents.items():
        server.routes[route(sources["market1501"], name)] = body
    out = small_disk / "attributes"
    out.mkdir()
    fill(small_disk, 0)
    with pytest.raises(MosaicError, match=r"cannot write .*market_attribute\.mat: no space left .*--out on another disk"):
        get_attributes(out, sources=sources, base_url=server.url, timeout=5)
    assert left_on(small_disk) == ["attributes"]

