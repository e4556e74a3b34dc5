"""The result tables: the spec mechanism (:mod:`analysis.tables.registry`), the built-in specs and their docs."""
