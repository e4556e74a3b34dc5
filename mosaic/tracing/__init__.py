"""The tracing engine (torch): a model's retrieval under every routing condition, into a trace.

:mod:`.engine` computes the trunk once and each condition's expert head, distances and metrics
(:class:`~mosaic.tracing.settings.TraceSettings`, :func:`~mosaic.tracing.engine.trace_model`);
:mod:`.token_cache` keeps the trunk tokens (spilling to disk), :mod:`.image_set` the query and
gallery images, :mod:`.routing` fills the routes of unannotated images, and :mod:`.checkpoint`
traces a checkpoint end to end with every input checked before the first image.
"""
