"""Speed of the embedding audit at Market-1501 size.

    .venv/bin/python -m benchmarks.bench_audit

Planted embeddings (:func:`analysis.simulation.embeddings.planted_embeddings`) of Market-1501's test
size: 750 identities, 4 queries and 21 gallery images each (3,000 queries, 15,750 gallery images),
512 dimensions, 20 sampled pairs per query (60,000 pairs). Timed: building the trace
(:func:`mosaic.tracefile.embedding.embedding_trace`: L2 normalisation, distances, the protocol, top-k,
pairs) against the baseline of the protocol alone on the same distance matrix
(:func:`mosaic.core.metrics.evaluate`, as every toolkit's evaluation), then the two audit methods with
1,000 identity resamples.
"""

from __future__ import annotations

import time

import numpy as np


def main() -> None:
    from analysis import Trace
    from analysis.methods.audit.embedding import attribute_confusion, distance_sharing
    from analysis.settings import AnalysisSettings
    from analysis.simulation.embeddings import planted_embeddings
    from mosaic.core.metrics import evaluate

    start = time.perf_counter()
    data = planted_embeddings(n_ids=750, queries_per_id=4, gallery_per_id=21, dim=512, seed=0)
    build = time.perf_counter() - start
    # the baseline: the protocol alone on the distance matrix of features of the same size
    rng = np.random.default_rng(0)
    q = rng.normal(size=(data.n_queries, 512)).astype(np.float32)
    g = rng.normal(size=(data.n_gallery, 512)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    start = time.perf_counter()
    evaluate(1.0 - q @ g.T, data.query_pid, data.gallery_pid, data.query_camid, data.gallery_camid, topk=10)
    baseline = time.perf_counter() - start
    settings = AnalysisSettings(n_bootstrap=1000, seed=0)
    trace = Trace(data)
    start = time.perf_counter()
    attribute_confusion(trace, settings)
    confusion = time.perf_counter() - start
    start = time.perf_counter()
    distance_sharing(trace, settings)
    sharing = time.perf_counter() - start
    print(f"{data.n_queries} queries x {data.n_gallery} gallery, {data.n_pairs} pairs")
    print(f"baseline: the protocol alone (evaluate, top-10)     {baseline:7.2f} s  1.00x")
    print(f"embedding_trace (simulation included)              {build:7.2f} s  {build / baseline:.2f}x")
    print(f"attribute_confusion, 12 groups, 1000 resamples     {confusion:7.2f} s")
    print(f"distance_sharing, 12 groups, 1000 resamples        {sharing:7.2f} s")


if __name__ == "__main__":
    main()
