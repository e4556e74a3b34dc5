"""Statistical primitives that know nothing of traces: GLM fits, CR2 cluster-robust errors, clustered tests,
identity resampling, multiple-testing corrections, random-effects meta-analysis, Kendall's W, and the status vocabulary
of a test row."""
