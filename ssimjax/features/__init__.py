"""Features: what the model reads from an image, and the caches that keep it.

``stats`` (image statistics at the image's own resolution, shared with the bridge), ``inputs``
(a manifest's model inputs: backbone features, statistics, map scores; the on-disk caches) and
``vtsim`` (VTracer's colour clustering simulated under each setting, for the settings model).
"""
