"""The Lin et al. attribute files: where they are cached, and fetching them from their publishers.

    >>> from mosaic.data.download import get_attributes
    >>> get_attributes()            # both files, verified, into the user cache

The cache is ``$MOSAIC_DATA_DIR/attributes`` when that variable is set, otherwise
``$XDG_CACHE_HOME/mosaic/attributes`` (``~/.cache/mosaic/attributes`` without it). Each dataset's
files sit in a folder named after its attribute file, as the publishers name them:
``market_attribute/market_attribute.mat`` and ``duke_attribute/duke_attribute.mat``, with the
licence files, a ``NOTICE.md`` (source, commit, citation, licence, checksums) and
``SOURCE_COMMIT.txt`` beside them. ``mosaic data check`` and training look there when neither
the command line nor the config names an attribute file and none lies beside the images.

Downloads come from the published repositories at pinned commits, as raw files
(``<base>/<owner>/<repository>/<commit>/<file>``) and are verified against pinned SHA-256 sums.
The base URL can be changed (a mirror, or a local server in tests) with ``base_url`` or the
environment variable ``MOSAIC_ATTRIBUTES_URL``. Everything is downloaded and verified into a
temporary folder first; the cache changes only when every file of every requested dataset
arrived intact.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from mosaic.core.diskspace import OUT_FIX, write_error, write_errors
from mosaic.core.errors import MosaicError
from mosaic.core.fileio import ensure_writable_dir, give_default_permissions, sha256_file, write_text_atomic

DATA_DIR_ENV = "MOSAIC_DATA_DIR"
BASE_URL_ENV = "MOSAIC_ATTRIBUTES_URL"
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
DEFAULT_TIMEOUT_S = 30.0
MAX_FILE_BYTES = 64 * 2**20  # the real files are about 10 KB; anything this large is not one of them
CHUNK = 1 << 16


@dataclass(frozen=True)
class PinnedFile:
    name: str  # path in the repository, and the file name in the cache
    sha256: str


@dataclass(frozen=True)
class AttributeSource:
    """One published attribute file and what travels with it."""

    dataset: str  # schema / format name
    folder: str  # cache sub-folder, the attribute file's stem
    repository: str  # owner/name of the published repository
    commit: str
    files: tuple[PinnedFile, ...]  # the attribute file first
    licence: str  # one line
    citation: str  # BibTeX of the work to cite

    @property
    def attribute_file(self) -> PinnedFile:
        return self.files[0]

    def url(self, base_url: str, file: PinnedFile) -> str:
        return f"{base_url.rstrip('/')}/{self.repository}/{self.commit}/{file.name}"


_LIN_ET_AL = """@article{lin2019improving,
  title={Improving Person Re-identification by Attribute and Identity Learning},
  author={Lin, Yutian and Zheng, Liang and Zheng, Zhedong and Wu, Yu and Hu, Zhilan and Yan, Chenggang and Yang, Yi},
  journal={Pattern Recognition},
  doi={10.1016/j.patcog.2019.06.006},
  year={2019}
}"""

ATTRIBUTE_SOURCES: dict[str, AttributeSource] = {
    source.dataset: source
    for source in (
        AttributeSource(
            dataset="market1501",
            folder="market_attribute",
            repository="vana77/Market-1501_Attribute",
            commit="9832cddc0903c2cf02d8eb23b509be06d8a73237",
            files=(PinnedFile("market_attribute.mat", "d9fdbdd2e33ed2c4e3a073b77b1d16ac9fae5d93dd597ccd4e38bf75b2efaa95"),),
            licence="the source repository publishes no licence file; its README asks users to cite Lin et al. "
            "(Pattern Recognition 2019)",
            citation=_LIN_ET_AL,
        ),
        AttributeSource(
            dataset="dukemtmc",
            folder="duke_attribute",
            repository="vana77/DukeMTMC-attribute",
            commit="68b86df48443bd14f5e5163e237bdf75e75544fe",
            files=(
                PinnedFile("duke_attribute.mat", "06b9833be1c6339362ccf2112a8cf885c7c64db8f038da9e12896f86bec51e8c"),
                PinnedFile("LICENSE_DukeMTMC-attribute.txt", "4b96a68c36743ecaab7cd3031939da4c4c6639592c55d1a7f99a9c12f0acf881"),
                PinnedFile("LICENSE_DukeMTMC.txt", "5bcd2810f5d045b771ea82a466b1e1245e79fdb5b058d7f31e6517091ba6209a"),
            ),
            licence="CC BY-NC-SA 4.0 with the attribution protocol in LICENSE_DukeMTMC-attribute.txt and "
            "LICENSE_DukeMTMC.txt, which must travel with the data; the DukeMTMC dataset itself was withdrawn "
            "by its creators in 2019",
            citation=_LIN_ET_AL + """
@inproceedings{ristani2016MTMC,
  title={Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking},
  author={Ristani, Ergys and Solera, Francesco and Zou, Roger and Cucchiara, Rita and Tomasi, Carlo},
  booktitle={European Conference on Computer Vision workshop on Benchmarking Multi-Target Tracking},
  year={2016}
}""",
        ),
    )
}


# --------------------------------------------------------------------------------- the cache
def data_dir() -> Path:
    """Root of the files mosaic downloads for the user."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home).expanduser() / "mosaic"


def attribute_cache_dir() -> Path:
    """Folder that ``mosaic data get-attributes`` fills by default."""
    return data_dir() / "attributes"


def cached_attribute_file(filename: str) -> Path | None:
    """``<cache>/<stem>/<filename>`` when it exists (e.g. ``market_attribute.mat``), else None."""
    path = attribute_cache_dir() / Path(filename).stem / filename
    return path if path.is_file() else None


# -------------------------------------------------------------------------------- downloading
def get_attributes(
    out: str | os.PathLike | None = None,
    *,
    datasets: Iterable[str] | None = None,
    sources: Mapping[str, AttributeSource] | None = None,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download, verify and store the Lin et al. attribute files; return their paths.

    Parameters
    ----------
    out : folder to write into; default the user cache (:func:`attribute_cache_dir`).
    datasets : names of ``sources``; default all.
    sources : what to fetch, by dataset name; default :data:`ATTRIBUTE_SOURCES`.
    base_url : where the raw files are served; default ``$MOSAIC_ATTRIBUTES_URL``, else GitHub's.
    timeout : seconds to wait for a connection or for the next bytes of a file.
    progress : called with one line per step.

    Files already present with the pinned checksum are kept, not downloaded again. On any
    failure (network, HTTP status, timeout, checksum) a one-line :class:`MosaicError` is raised
    and ``out`` is left exactly as it was.
    """
    sources = ATTRIBUTE_SOURCES if sources is None else sources
    names = list(sources) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise MosaicError(f"no published attribute file for {unknown}: choose from {', '.join(sources)}")
    if not timeout > 0:
        raise MosaicError(f"timeout must be a positive number of seconds, got {timeout!r}")
    base = base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    out = Path(out).expanduser() if out is not None else attribute_cache_dir()
    created = _first_missing(out)  # removed again on failure, so that a failed run leaves no trace
    out = ensure_writable_dir(out, create=True)
    say = progress or (lambda line: None)

    with write_errors(out, fix=OUT_FIX):
        staging = Path(tempfile.mkdtemp(prefix=".get-attributes.", suffix=".partial", dir=out))
    try:
        placed: list[tuple[Path, Path]] = []  # (staged file, final path)
        for source in (sources[n] for n in names):
            folder = out / source.folder
            for file in source.files:
                target = folder / file.name
                if target.is_file() and sha256_file(target) == file.sha256:
                    say(f"{source.folder}/{file.name}: present, checksum verified")
                    continue
                staged = staging / source.folder / file.name
                staged.parent.mkdir(exist_ok=True)
                url = source.url(base, file)
                say(f"{source.folder}/{file.name}: downloading {url}")
                _download(url, staged, target, timeout=timeout)
                _verify(staged, file, url)
                placed.append((staged, target))
        for staged, target in placed:  # every file arrived intact: only now touch the cache
            target.parent.mkdir(parents=True, exist_ok=True)
            give_default_permissions(staged)
            os.replace(staged, target)
        for source in (sources[n] for n in names):
            write_text_atomic(out / source.folder / "NOTICE.md", notice_text(source), fix=OUT_FIX)
            write_text_atomic(out / source.folder / "SOURCE_COMMIT.txt", source_commit_text(source), fix=OUT_FIX)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        error = write_error(out, exc, fix=OUT_FIX)  # a full disk: one line, not a traceback
        if error is not None:
            raise error from None
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return [out / sources[n].folder / sources[n].attribute_file.name for n in names]


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None if ``path`` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _download(url: str, dest: Path, target: Path, *, timeout: float) -> None:
    """``url`` into ``dest`` (staged for ``target``); a one-line MosaicError for anything but a complete 200 answer."""
    hint = f"check the network, or set {BASE_URL_ENV} (or --base-url) to a mirror; nothing was written"
    request = urllib.request.Request(url, headers={"User-Agent": "mosaic-get-attributes"})
    with write_errors(target, fix=OUT_FIX), open(dest, "wb") as handle:
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                size = 0
                while block := response.read(CHUNK):
                    size += len(block)
                    if size > MAX_FILE_BYTES:
                        raise MosaicError(f"{url} sent more than {MAX_FILE_BYTES // 2**20} MiB, not an attribute file: {hint}")
                    with write_errors(target, fix=OUT_FIX):  # the disk's failure, not the network's
                        handle.write(block)
        except urllib.error.HTTPError as exc:
            raise MosaicError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; {hint}") from None
        except (socket.timeout, TimeoutError):
            raise MosaicError(f"cannot download {url}: no answer within {timeout:g} s; {hint}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise MosaicError(f"cannot download {url}: no answer within {timeout:g} s; {hint}") from None
            raise MosaicError(f"cannot download {url}: {getattr(reason, 'strerror', None) or reason}; {hint}") from None
        except OSError as exc:
            raise MosaicError(f"cannot download {url}: {exc.strerror or exc}; {hint}") from None


def _verify(path: Path, file: PinnedFile, url: str) -> None:
    got = sha256_file(path)
    if got != file.sha256:
        raise MosaicError(
            f"{file.name} from {url} has SHA-256 {got[:16]}…, expected {file.sha256[:16]}…: the download is damaged "
            "or the source changed; nothing was written"
        )


def notice_text(source: AttributeSource) -> str:
    sums = "\n".join(f"    {f.sha256}  {f.name}" for f in source.files)
    return (
        f"# {source.attribute_file.name}: Lin et al. identity-level attribute annotations ({source.dataset})\n\n"
        f"Downloaded by `mosaic data get-attributes` from https://github.com/{source.repository} at commit\n"
        f"{source.commit}.\n\n"
        f"Licence: {source.licence}.\n\n"
        f"Cite:\n\n```bibtex\n{source.citation}\n```\n\n"
        f"SHA-256 (verified on download):\n\n{sums}\n"
    )


def source_commit_text(source: AttributeSource) -> str:
    return (
        f"source: https://github.com/{source.repository}\n"
        f"commit: {source.commit}\n"
        f"files: {', '.join(f.name for f in source.files)}\n"
    )


__all__ = [
    "ATTRIBUTE_SOURCES",
    "AttributeSource",
    "BASE_URL_ENV",
    "DATA_DIR_ENV",
    "PinnedFile",
    "attribute_cache_dir",
    "cached_attribute_file",
    "data_dir",
    "get_attributes",
]
