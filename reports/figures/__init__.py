"""The report's pictures: deterministic SVG, charts, figures from analysis tables, thumbnails, ranked lists."""
