"""Speed and calibration benchmarks; each module runs with ``python -m benchmarks.<name>``."""
