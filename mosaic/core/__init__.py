"""The torch-free basics every layer builds on, and the only part of ``mosaic`` besides the
trace file contract (:mod:`mosaic.tracefile`) and the conditions (:mod:`mosaic.conditions`) that
``analysis`` and ``reports`` may import.

:mod:`.errors` (the one user-error type), :mod:`.fileio` (atomic outputs) and :mod:`.diskspace`
(space checks, write errors in one line), :mod:`.settings` (the one validation engine),
:mod:`.schema` (attribute schemas; shipped ones in ``schemas/``) and :mod:`.shipped` (package data
found by name), :mod:`.metrics` (the ReID evaluation protocol), :mod:`.router_names`,
:mod:`.provenance` and :mod:`.jsonsafe`.
"""
