"""The analysis methods that :func:`analysis.analyze` runs on a trace (paired, configuration-level, query-level,
decomposition, the embedding audit) and the ranking that rolls their tables up."""
