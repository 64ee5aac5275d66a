"""Data: from icon sets and manifests to labelled images.

``images`` (the one read-hash-decode path and the model's preprocessing), ``manifest`` (labelled
sets on disk, their validation, the seeded split), ``labelling`` (VTracer -> SVG -> resvg ->
SSIM), ``npm`` (pinned packages from the npm registry), ``icons`` (icon sets to rasters by seeded
recipes), ``logoset`` (the built-in real-logo set), ``wordmarks`` (synthetic wordmarks for the
map network), ``demo`` (the offline generated set).
"""
