"""The package as users install it: a wheel and an sdist that hold every file a command reads, and
a wheel installed into a fresh environment that runs the pipeline from a folder of its own.

Both build from a clone of the committed state (``python -m build --no-isolation``, the build
tools come with the ``dev`` extra). The install test is slow-marked (`.ci/run` runs it): it makes a
new virtual environment with the pinned CPU set, and an audit hook in that environment records
every file or folder a command opens under this checkout; none may be.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, clone_checkout

PACKAGES = ("mosaic", "analysis", "reports")


def _tracked_package_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", *PACKAGES], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [line for line in listed.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A wheel and an sdist built from a clone of HEAD, the clone removed afterwards."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout to build from its committed state")
    pytest.importorskip("build", reason="the build tools come with the dev extra: pip install '.[dev]'")
    base = tmp_path_factory.mktemp("package")
    source = clone_checkout(base / "source")
    dist = base / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shutil.rmtree(source)
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_the_wheel_and_the_sdist_hold_every_file_the_packages_ship(built):
    tracked = _tracked_package_files()
    data = [path for path in tracked if not path.endswith(".py")]
    assert {"mosaic/core/schemas/market1501.yaml", "mosaic/synth/dukemtmc_priors.yaml",
            "mosaic/configs/synthetic_micro.yaml"} <= set(data)
    with zipfile.ZipFile(built["wheel"]) as wheel:
        in_wheel = set(wheel.namelist())
    assert set(tracked) <= in_wheel, sorted(set(tracked) - in_wheel)
    assert not [name for name in in_wheel if name.split("/")[0] in ("tests", "benchmarks", "docs", "configs")]
    with tarfile.open(built["sdist"]) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    expected = set(tracked) | {"README.md", "LICENSE", "pyproject.toml", "Makefile", "constraints/cpu.txt",
                               "docs/trace-format.md", "tests/conftest.py"}
    assert expected <= in_sdist, sorted(expected - in_sdist)


def test_the_metadata_reads_well_on_an_index_page(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(name).decode("utf-8"))
    assert metadata["Name"] == "mosaic-reid" and metadata["License-Expression"] == "MIT"
    assert "re-identification" in metadata["Summary"] and metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "Intended Audience :: Science/Research" in classifiers
    assert {"xarray", "dev"} <= set(metadata.get_all("Provides-Extra"))
    assert any(url.startswith("Paper, https://arxiv.org/") for url in metadata.get_all("Project-URL"))
    pytest.importorskip("twine", reason="twine comes with the dev extra")
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(built["wheel"]), str(built["sdist"])],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


# A Markdown link's target, an autolink, or an HTML href: everything a renderer turns into a link.
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)|<(\w+://[^>\s]+)>|href=[\"']([^\"']+)")
# A file of the source tree named by its path in code type, how the README refers to the docs.
NAMED_FILE = re.compile(r"`((?:docs|tests|benchmarks|constraints)/[^`\s]*)`")


def _readme_links(text: str) -> list[str]:
    return [next(group for group in match.groups() if group) for match in LINK.finditer(text)]


def test_readme_links_resolve_wherever_the_readme_is_shown():
    """A package index shows README.md alone, without docs/: a relative link there points at nothing.

    The project has no public source URL to make them absolute (pyproject lists none), so the README
    links only to absolute addresses and names the docs by path; every file it names exists here,
    and ships in the sdist (checked on the built sdist below).
    """
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    links = _readme_links(text)
    assert not [link for link in links if not link.startswith("https://")], links
    assert _readme_links("[a](docs/a.md) <https://x.org> <a href='b.md'>") == ["docs/a.md", "https://x.org", "b.md"]
    named = set(NAMED_FILE.findall(text))
    assert {"docs/market1501.md", "docs/trace-format.md", "docs/study.md"} <= named
    assert not [path for path in named if not (REPO_ROOT / path).exists()]


def test_the_files_the_readme_names_ship_in_the_sdist(built):
    named = set(NAMED_FILE.findall((REPO_ROOT / "README.md").read_text(encoding="utf-8")))
    with tarfile.open(built["sdist"]) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {path.rstrip("/") for path in named} <= in_sdist, sorted({p.rstrip("/") for p in named} - in_sdist)
    with zipfile.ZipFile(built["wheel"]) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        description = Parser().parsestr(wheel.read(name).decode("utf-8")).get_payload()
    assert "docs/market1501.md" in description  # the README is the index page's description
    assert not [link for link in _readme_links(description) if not link.startswith("https://")]


# An audit hook, installed by the environment's sitecustomize, that logs every path under the
# checkout a process opens or lists. os.write (unaudited) on a descriptor opened before the hook.
CHECKOUT_WATCH = '''
import os, sys
_roots = os.environ.get("MOSAIC_TEST_CHECKOUTS")
if _roots:
    _log = os.open(os.environ["MOSAIC_TEST_READ_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    _roots = tuple(os.path.join(r, "") for r in _roots.split(os.pathsep))
    _busy = []

    def _watch(event, args):
        if _busy or event not in ("open", "os.listdir", "os.scandir") or not args or isinstance(args[0], int):
            return
        _busy.append(1)
        try:
            path = os.path.abspath(os.fsdecode(args[0] if args[0] is not None else "."))
            if os.path.join(path, "").startswith(_roots):
                os.write(_log, f"{event} {path} ({' '.join(sys.argv)})\\n".encode())
        finally:
            _busy.pop()

    sys.addaudithook(_watch)
'''


def _fresh_environment(venv: Path, wheel: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(REPO_ROOT / "constraints" / "cpu.txt"),
         str(wheel)], capture_output=True, text=True, timeout=1800,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "sitecustomize.py").write_text(CHECKOUT_WATCH, encoding="utf-8")
    return venv / "bin"


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_runs_the_pipeline_from_an_empty_folder(built, tmp_path):
    bin_dir = _fresh_environment(tmp_path / "venv", built["wheel"])
    work = tmp_path / "work"
    work.mkdir()
    read_log = tmp_path / "checkout-reads.log"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("MOSAIC_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path / "home"),
               XDG_CACHE_HOME=str(tmp_path / "home" / ".cache"), OMP_NUM_THREADS="1",
               MOSAIC_TEST_CHECKOUTS=str(REPO_ROOT), MOSAIC_TEST_READ_LOG=str(read_log))

    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    run("python", "-c", f"open({str(REPO_ROOT / 'pyproject.toml')!r}).close()")  # the watch sees a read
    assert "pyproject.toml" in read_log.read_text()
    read_log.unlink()

    where = run("python", "-c", "import mosaic, analysis, reports; print(mosaic.__file__, analysis.__file__, reports.__file__)")
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where.split()), where
    assert "synthetic_micro" in run("mosaic", "configs", "list")

    tiny = ["--set", "optim.epochs=1", "--set", "optim.warmup_epochs=0", "--set", "sampler.p=4",
            "--set", "eval.every=1", "--set", "run.checkpoint_every=1"]
    run("mosaic", "synth", "--out", "world", "--ids", "16", "--images-per-id", "8", "--quiet")
    run("mosaic", "train", "--config", "synthetic_micro", "--set", "data.root=world", *tiny, "--out", "run", "--no-progress")
    run("mosaic", "trace", "--ckpt", "run", "--out", "trace.h5", "--quiet")
    run("mosaic", "report", "trace.h5", "--format", "html")
    assert (work / "report.html").stat().st_size > 10_000

    assert "--layout" in run("mosaic", "demo", "--help")
    run("mosaic", "configs", "copy", "synthetic_micro", "tiny.yaml")
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    config["optim"].update(epochs=1, warmup_epochs=0)
    config["eval"]["every"] = 1
    config["sampler"]["p"] = 4
    config["run"]["checkpoint_every"] = 1
    (work / "tiny.yaml").write_text(yaml.safe_dump(config))
    out = run("mosaic", "demo", "--out", "demo", "--config", "tiny.yaml", "--ids", "16", "--images-per-id", "8",
              "--no-progress")
    assert "demo finished" in out and (work / "demo" / "report.html").is_file()

    reads = read_log.read_text() if read_log.exists() else ""
    assert not reads, "commands read the checkout:\n" + reads[:3000]
