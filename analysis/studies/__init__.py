"""Several runs side by side: :func:`analysis.study`, its runs and labels."""
