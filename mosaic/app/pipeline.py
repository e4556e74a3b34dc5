"""Stages that are redone only when what they depend on has changed.

A stage is *fresh* when the ledger (``OUT/stages.json``) records the same fingerprint of its
settings and upstream outputs, and every output still exists with the digest recorded when it
was made. Digests are of file contents, so a file edited, truncated or replaced by hand makes
the stage (and everything downstream, through the fingerprints) run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mosaic.core.fileio import sha256_file, write_text_atomic

LEDGER_NAME = "stages.json"


def digest_path(path: Path) -> str | None:
    """Content digest of a file, or of every file under a folder (names and bytes); None if absent."""
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def fingerprint(settings: Any) -> str:
    """Stable hash of JSON-able settings (dict order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Stage:
    """One step of a pipeline: what it depends on, what it writes, and how to make it."""

    name: str
    settings: dict[str, Any]
    outputs: list[Path]
    run: Callable[[], None]
    upstream: list["Stage"] = field(default_factory=list)

    def fingerprint(self, ledger: "Ledger") -> str:
        upstream = {s.name: ledger.output_digests(s) for s in self.upstream}
        return fingerprint({"settings": self.settings, "upstream": upstream})


class Ledger:
    """The record of which stage made which outputs from which inputs."""

    def __init__(self, folder: Path):
        self.path = folder / LEDGER_NAME
        self.entries: dict[str, Any] = {}
        if self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self.entries = {}  # a damaged ledger only costs a re-run

    def output_digests(self, stage: Stage) -> dict[str, str | None]:
        return self.entries.get(stage.name, {}).get("outputs", {})

    def is_fresh(self, stage: Stage) -> bool:
        entry = self.entries.get(stage.name)
        if not entry or entry.get("fingerprint") != stage.fingerprint(self):
            return False
        recorded = entry.get("outputs", {})
        return all(
            recorded.get(str(out)) is not None and recorded.get(str(out)) == digest_path(out) for out in stage.outputs
        )

    def record(self, stage: Stage) -> None:
        self.entries[stage.name] = {
            "fingerprint": stage.fingerprint(self),
            "outputs": {str(out): digest_path(out) for out in stage.outputs},
        }
        write_text_atomic(self.path, json.dumps(self.entries, indent=2, sort_keys=True))

    def forget(self, stage: Stage) -> None:
        if self.entries.pop(stage.name, None) is not None:
            write_text_atomic(self.path, json.dumps(self.entries, indent=2, sort_keys=True))


def run_stages(
    stages: list[Stage],
    ledger: Ledger,
    *,
    fresh: bool = False,
    announce: Callable[[str], None] = print,
) -> list[str]:
    """Run the stages in order, skipping fresh ones; returns the names of the stages that ran."""
    ran = []
    for stage in stages:
        if not fresh and ledger.is_fresh(stage):
            announce(f"[{stage.name}] up to date, reusing {', '.join(str(o) for o in stage.outputs)}")
            continue
        announce(f"[{stage.name}] running")
        ledger.forget(stage)
        stage.run()
        ledger.record(stage)
        ran.append(stage.name)
        # Everything downstream depends on this stage's new outputs through its fingerprint.
    return ran
