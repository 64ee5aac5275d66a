"""Features: what the model reads from an image, and the caches that keep it.

``stats`` (image statistics at the image's own resolution, shared with the bridge) and ``inputs``
(a manifest's model inputs: backbone features, statistics, map scores; the on-disk caches).
"""
