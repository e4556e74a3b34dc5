"""Configuration-level analysis: one row per routing configuration, GLMs, surrogate and t-tests."""
