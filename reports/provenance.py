"""Where a report's numbers come from: the trace (hash, schema version, its own provenance) and the
software that analysed and rendered it.

Only the creation timestamp varies between two renderings of the same trace with the same
settings; everything else here is a function of the inputs and the installed versions.
"""

from __future__ import annotations

import json
from typing import Any

from mosaic.core.jsonsafe import jsonable

# Distributions whose versions decide the numbers in a report.
REPORTED_PACKAGES = ("mosaic-reid", "numpy", "scipy", "pandas", "h5py", "statsmodels", "scikit-learn",
                     "xgboost-cpu", "xgboost", "shap", "pillow")


def package_versions() -> dict[str, str]:
    from mosaic.core.provenance import package_versions as installed

    return installed(REPORTED_PACKAGES)


def source_commit() -> str:
    """Git commit of the checkout (``+dirty`` with local changes, as a trace records it), or ""."""
    from mosaic.core.provenance import git_commit

    return git_commit() or ""


def mosaic_version() -> str:
    from mosaic import __version__

    return __version__


def report_metadata(trace, results, command: str, created: str) -> dict[str, Any]:
    """The JSON-ready description of one report: trace identity, settings, software, command, time."""
    path = getattr(trace, "path", None)
    return {
        "created": created,
        "command": command,
        "mosaic_version": mosaic_version(),
        "git_commit": source_commit(),
        "package_versions": package_versions(),
        "trace": {
            "file": path.name if path is not None else "(in memory)",
            "sha256": getattr(trace, "sha256", None),
            "schema_version": getattr(trace, "schema_version", None),
            "sizes": {k: int(v) for k, v in trace.data.sizes.items()},
            "dataset": _plain(trace.dataset),
            "schema": trace.schema.name,
            "schema_fingerprint": trace.schema.fingerprint(),
            "provenance": _plain(trace.provenance),
        },
        "analysis_settings": _plain(results.settings),
    }


def _plain(value: Any) -> Any:
    """JSON-safe copy (mosaic.core.jsonsafe): numpy scalars as numbers, unknown objects as text."""
    return jsonable(value)


def provenance_items(trace, command: str, created: str = "") -> list[tuple[str, str]]:
    """The footer: one (label, text) pair per fact, in a fixed order."""
    prov = dict(trace.provenance or {})
    path = getattr(trace, "path", None)
    items = [
        ("trace", str(path) if path is not None else "(in memory)"),
        ("trace sha256", str(getattr(trace, "sha256", None) or "(in memory)")),
        ("trace schema version", str(getattr(trace, "schema_version", ""))),
        ("attribute schema", f"{trace.schema.name} ({trace.schema.fingerprint()})"),
        ("dataset", json.dumps(_plain(trace.dataset), sort_keys=True)),
    ]
    for key in ("command", "git_commit", "checkpoint_sha256", "seed"):
        if key in prov:
            items.append((f"trace {key.replace('_', ' ')}", str(prov[key])))
    if "config" in prov:
        items.append(("trace config", json.dumps(_plain(prov["config"]), sort_keys=True)))
    if "versions" in prov:
        items.append(("trace package versions", json.dumps(_plain(prov["versions"]), sort_keys=True)))
    for key in sorted(set(prov) - {"command", "git_commit", "checkpoint_sha256", "seed", "config", "versions"}):
        items.append((f"trace {key}", json.dumps(_plain(prov[key]), sort_keys=True)))
    items += [
        ("report created", created),
        ("report command", command or "(library call)"),
        ("report mosaic version", mosaic_version()),
        ("report git commit", source_commit() or "(not a git checkout)"),
        ("report package versions", ", ".join(f"{k} {v}" for k, v in package_versions().items())),
    ]
    return items
