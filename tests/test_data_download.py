"""`mosaic data get-attributes` against a local HTTP server on 127.0.0.1: success, a wrong checksum,
a 404, a server that stalls; and the cache that `mosaic data check` reads by default."""

from __future__ import annotations

import hashlib
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import find_real_file
from mosaic.app.cli import main
from mosaic.data import load_dataset
from mosaic.data.download import ATTRIBUTE_SOURCES, BASE_URL_ENV, DATA_DIR_ENV, AttributeSource, PinnedFile, get_attributes
from mosaic.core.errors import MosaicError
from test_data_folders import MARKET_FILES, make_tree

STALL = object()


@pytest.fixture
def server(monkeypatch):
    """Serves ``routes`` (URL path -> bytes, or STALL to never answer); anything else is a 404."""
    routes: dict[str, object] = {}
    requests: list[str] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            requests.append(self.path)
            body = routes.get(self.path)
            if body is None:
                self.send_error(404, "Not Found")
            elif body is STALL:
                release.wait(20)  # until the test is over: the client must give up first
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", routes=routes, requests=requests)
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def route(source: AttributeSource, name: str) -> str:
    return f"/{source.repository}/{source.commit}/{name}"


def serve_registry(server, contents: dict[str, bytes]) -> None:
    """Serve every pinned file of the shipped registry, with the given bytes by file name."""
    for source in ATTRIBUTE_SOURCES.values():
        for file in source.files:
            if file.name in contents:
                server.routes[route(source, file.name)] = contents[file.name]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys, *args):
    code = main(["data", "get-attributes", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fixture_sources(synthetic_market_attribute_file, tmp_path):
    """A registry pinned to fixture files: a synthetic market_attribute.mat and a licence text."""
    licence = b"Fixture licence: keep this file with the data.\n"
    mat = synthetic_market_attribute_file.read_bytes()
    source = AttributeSource(
        dataset="market1501", folder="market_attribute", repository="example/attributes",
        commit="0123456789abcdef0123456789abcdef01234567",
        files=(PinnedFile("market_attribute.mat", hashlib.sha256(mat).hexdigest()),
               PinnedFile("LICENSE.txt", hashlib.sha256(licence).hexdigest())),
        licence="fixture licence", citation="@misc{fixture, title={Fixture}}",
    )
    return {"market1501": source}, {"market_attribute.mat": mat, "LICENSE.txt": licence}


# ------------------------------------------------------------------------------- success
def test_download_verifies_and_writes_the_notices(server, fixture_sources, tmp_path):
    sources, contents = fixture_sources
    source = sources["market1501"]
    for name, body in contents.items():
        server.routes[route(source, name)] = body
    out = tmp_path / "cache"
    (path,) = get_attributes(out, sources=sources, base_url=server.url, timeout=5)
    assert path == out / "market_attribute" / "market_attribute.mat"
    assert path.read_bytes() == contents["market_attribute.mat"]
    folder = path.parent
    assert (folder / "LICENSE.txt").read_bytes() == contents["LICENSE.txt"]
    notice = (folder / "NOTICE.md").read_text()
    assert source.commit in notice and "@misc{fixture" in notice and source.files[0].sha256 in notice
    assert source.commit in (folder / "SOURCE_COMMIT.txt").read_text()
    assert sorted(p.name for p in out.iterdir()) == ["market_attribute"]  # no staging left behind
    # present with the right checksum: kept, not fetched again
    n = len(server.requests)
    get_attributes(out, sources=sources, base_url=server.url, timeout=5)
    assert len(server.requests) == n
    assert load_dataset(make_tree(tmp_path / "m", MARKET_FILES), attributes=path).format == "market1501"


@pytest.mark.real_attributes  # served as they are: the command checks the published checksums
def test_the_real_files_by_the_command_into_the_default_cache(server, tmp_path, capsys, monkeypatch):
    real = {name: find_real_file(name) for name in ("market_attribute", "duke_attribute")}
    contents = {p.name: p.read_bytes() for p in real.values()}
    for p in real.values():
        contents.update({f.name: f.read_bytes() for f in p.parent.glob("LICENSE_*.txt")})
    serve_registry(server, contents)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    monkeypatch.setenv(BASE_URL_ENV, server.url)  # the variable alone points the command at the server
    code, out, err = run(capsys, "--timeout", 5)
    assert code == 0, err
    cache = tmp_path / "data" / "attributes"
    assert out.splitlines() == [str(cache / "market_attribute" / "market_attribute.mat"),
                                str(cache / "duke_attribute" / "duke_attribute.mat")]
    assert (cache / "duke_attribute" / "LICENSE_DukeMTMC.txt").is_file()
    assert "CC BY-NC-SA 4.0" in (cache / "duke_attribute" / "NOTICE.md").read_text()
    # `mosaic data check` finds the cached file without --attributes
    tree = make_tree(tmp_path / "market", MARKET_FILES)
    assert main(["data", "check", str(tree), "--json"]) == 0
    assert str(cache / "market_attribute" / "market_attribute.mat") in capsys.readouterr().out


def test_the_cache_is_the_last_place_looked(tmp_path, synthetic_market_attribute_file, monkeypatch):
    tree = make_tree(tmp_path / "market", MARKET_FILES)
    with pytest.raises(MosaicError, match=r"run `mosaic data get-attributes` or pass --attributes"):
        load_dataset(tree)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    cached = tmp_path / "data" / "attributes" / "market_attribute" / "market_attribute.mat"
    cached.parent.mkdir(parents=True)
    shutil.copyfile(synthetic_market_attribute_file, cached)
    assert load_dataset(tree).attribute_file == cached.resolve()
    beside = tree / "market_attribute.mat"  # a file beside the images still wins
    shutil.copyfile(synthetic_market_attribute_file, beside)
    assert load_dataset(tree).attribute_file == beside.resolve()


# ------------------------------------------------------------------------------- failures
def failing(server, tmp_path, capsys, *extra):
    """Run the command into a cache holding an older file; return stderr and check nothing changed."""
    out = tmp_path / "cache"
    (out / "market_attribute").mkdir(parents=True)
    (out / "market_attribute" / "NOTICE.md").write_text("an older download\n")
    before = snapshot(out)
    code, stdout, err = run(capsys, "--quiet", "--out", out, "--base-url", server.url, *extra)
    assert code == 2 and stdout == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["market_attribute"]
    return err


def test_wrong_checksum(server, tmp_path, capsys):
    serve_registry(server, {"market_attribute.mat": b"MATLAB 5.0 MAT-file, but not the published one"})
    err = failing(server, tmp_path, capsys, "--dataset", "market1501")
    assert "market_attribute.mat from http://127.0.0.1" in err and "has SHA-256" in err
    assert "expected d9fdbdd2e33ed2c4" in err and "nothing was written" in err


def test_not_found(server, tmp_path, capsys):
    err = failing(server, tmp_path, capsys)
    assert "/vana77/Market-1501_Attribute/9832cddc0903c2cf02d8eb23b509be06d8a73237/market_attribute.mat" in err
    assert "HTTP 404" in err and BASE_URL_ENV in err


def test_server_that_stalls(server, tmp_path, capsys):
    serve_registry(server, {"market_attribute.mat": STALL})
    err = failing(server, tmp_path, capsys, "--timeout", "0.3")
    assert "no answer within 0.3 s" in err


def test_a_later_failure_keeps_the_earlier_files_out(server, tmp_path, capsys, fixture_sources):
    """Market served correctly, Duke missing: the cache gets neither."""
    sources, contents = fixture_sources
    market = sources["market1501"]
    for name, body in contents.items():
        server.routes[route(market, name)] = body
    duke = ATTRIBUTE_SOURCES["dukemtmc"]
    with pytest.raises(MosaicError, match="HTTP 404") as info:
        get_attributes(tmp_path / "new" / "cache", sources={"market1501": market, "dukemtmc": duke},
                       base_url=server.url, timeout=5)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "new").exists()  # folders it created are removed again


def test_nothing_listens(tmp_path, capsys):
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run(capsys, "-q", "--out", tmp_path / "c", "--base-url", f"http://127.0.0.1:{port}", "--timeout", 2)
    assert code == 2 and err.startswith("error: cannot download http://127.0.0.1:") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_bad_arguments(tmp_path, capsys):
    code, _, err = run(capsys, "--out", tmp_path / "c", "--dataset", "cuhk03")
    assert code == 2 and "choose from market1501, dukemtmc" in err
    code, _, err = run(capsys, "--out", tmp_path / "c", "--timeout", 0)
    assert code == 2 and "timeout must be a positive number" in err


@pytest.mark.parametrize("config", ["market1501_clip_vitb16.yaml", "dukemtmc_clip_vitb16.yaml"])
def test_shipped_real_data_configs_leave_the_attribute_file_to_the_lookup(config):
    from mosaic.train.config import load_config

    cfg = load_config(config)
    assert cfg.data.attributes is None  # beside the images, else the download cache
