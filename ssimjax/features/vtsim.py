"""What VTracer's colour clustering does to an image under each setting, without converting it.

VTracer (through visioncortex) first groups pixels into clusters of near-equal colour (channels
compared after dropping ``8 - color_precision`` low bits, neighbours within one step), then merges
clusters from the smallest up, each into the neighbour of closest mean colour (the sum of the
absolute RGB differences). A cluster is kept as a shape of its own when it is larger than
``filter_speckle`` squared, is not thread-like (fewer boundary pixels than pixels) and differs
from that neighbour by more than ``layer_difference``; otherwise its pixels take the colour of the
shape it merged into. Which cluster merges into which depends only on the image and
``color_precision``, so one merge tree per colour precision serves every ``filter_speckle`` and
``layer_difference``: each setting is then a cheap pass that paints every pixel with the mean
colour of its nearest kept ancestor.

:func:`simulate_settings` gives, per setting, the luminance SSIM of that painted image against the
original (computed as the labels' SSIM is, at a working resolution) and its number of shapes. It
misses what comes after the clustering (curve fitting, anti-aliased rendering), so it says little
about small differences between settings and much about settings that wipe out a part of the logo
(a thin line dissolved into the background, two colours merged): the settings model can cap its
predictions by it (:class:`ssimjax.models.setting_head.SettingsModel`, ``sim_cap``, off by
default).
Not simulated: binary colour mode (NaN), and layer_difference 0 (VTracer then also joins pixels
diagonally; simulated as without). NumPy and SciPy only.
"""

from __future__ import annotations

import heapq
from typing import Sequence

import numpy as np
from PIL import Image

# Settings are simulated at this longest side at most (filter_speckle's area scaled with it): the
# merge loop is Python, once per cluster; at 256 px the 84 candidates of a 512 px logo cost about
# 0.1 s, and up to 1.5 s for an image that splits into tens of thousands of clusters.
SIM_MAX_SIDE = 256


def pixel_clusters(rgb: np.ndarray, color_precision: int) -> tuple[int, np.ndarray]:
    """``(n, labels)``: visioncortex's first stage, the pixels grouped as its raster scan groups
    them (without diagonals, as VTracer asks unless layer_difference is 0). Two colours are the
    same when, with ``8 - color_precision`` low bits dropped, they differ by at most one step in
    every channel; a pixel joins the cluster above it when it is the same as the pixels above and
    above-left, else the one on its left when the same as those on its left and above-left; the
    clusters on its left and above merge when those two pixels are the same and it is the same as
    both. A union of clusters does not depend on the order it is made in, so the groups are the
    connected components of those links."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    h, w, _ = rgb.shape
    q = (rgb >> (8 - color_precision)).astype(np.int16)
    idx = np.arange(h * w).reshape(h, w)

    def same(a, b):
        return (np.abs(a - b) <= 1).all(-1)

    p, up, left, upleft = q[1:, 1:], q[:-1, 1:], q[1:, :-1], q[:-1, :-1]
    s_up, s_left, s_upleft = same(p, up), same(p, left), same(p, upleft)
    to_up = s_up & s_upleft
    to_left = ~to_up & s_left & s_upleft
    left_up = same(left, up) & s_left & s_up
    i_p, i_up, i_left = idx[1:, 1:], idx[:-1, 1:], idx[1:, :-1]
    rows = np.concatenate([i_p[to_up], i_p[to_left], i_left[left_up]])
    cols = np.concatenate([i_up[to_up], i_left[to_left], i_up[left_up]])
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(h * w, h * w))
    n, labels = connected_components(graph, directed=False)
    return int(n), labels.reshape(h, w)


def _neighbours(labels: np.ndarray, n: int) -> list[set]:
    a = np.concatenate([labels[:, 1:].ravel(), labels[1:].ravel()])
    b = np.concatenate([labels[:, :-1].ravel(), labels[:-1].ravel()])
    differ = a != b
    pairs = np.unique(np.stack([np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])], 1), axis=0)
    out = [set() for _ in range(n)]
    for x, y in pairs.tolist():
        out[x].add(y)
        out[y].add(x)
    return out


def _boundary_pixels(pixels: np.ndarray, owner: np.ndarray, me: int, shape: tuple) -> int:
    """How many of a cluster's pixels have a 4-neighbour outside it (or lie on the image's edge)."""
    h, w = shape
    y, x = pixels // w, pixels % w
    inside = np.ones(len(pixels), bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        yy, xx = y + dy, x + dx
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        same = np.zeros(len(pixels), bool)
        same[ok] = owner[yy[ok] * w + xx[ok]] == me
        inside &= same
    return int((~inside).sum())


def merge_tree(rgb: np.ndarray, labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(events, roots)``: clusters merged from the smallest up, each into its neighbour of closest
    mean colour (ties: the lower index). ``events`` (M, 5) int64: cluster, the cluster it merged
    into, its area, its colour difference to it and its boundary pixels then (its area where it
    is 4 pixels or fewer, or within 4 of its colour: no setting keeps those); ``roots``: clusters
    never merged (the background)."""
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n).tolist()
    sums = np.stack([np.bincount(flat, rgb[..., k].ravel().astype(np.float64), minlength=n) for k in range(3)],
                    1).tolist()
    nb = _neighbours(labels, n)
    order = np.argsort(flat, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(area)])
    chunks = [[order[bounds[i]:bounds[i + 1]]] for i in range(n)]  # a cluster's pixels, joined when read
    owner = flat.copy()
    heap = [(a, i) for i, a in enumerate(area)]
    heapq.heapify(heap)
    alive = [True] * n
    events = []
    # Python scalars, not NumPy's, in this loop: it runs once per cluster and neighbour
    while heap:
        a, i = heapq.heappop(heap)
        if not alive[i] or a != area[i] or not nb[i]:
            continue
        r, g, b = (v // a for v in sums[i])
        diff, into = min((abs(r - sums[j][0] // area[j]) + abs(g - sums[j][1] // area[j])
                          + abs(b - sums[j][2] // area[j]), j) for j in nb[i])
        diff = int(diff)
        pixels = np.concatenate(chunks[i]) if len(chunks[i]) > 1 else chunks[i][0]
        perimeter = _boundary_pixels(pixels, owner, i, labels.shape) if a > 4 and diff > 4 else a
        events.append((i, into, a, diff, perimeter))
        owner[pixels] = into
        chunks[into].append(pixels)
        chunks[i] = None
        area[into] += a
        sums[into] = [x + y for x, y in zip(sums[into], sums[i])]
        alive[i] = False
        for j in nb[i]:
            nb[j].discard(i)
            if j != into:
                nb[j].add(into)
                nb[into].add(j)
        nb[into].discard(into)
        heapq.heappush(heap, (area[into], into))
    return np.asarray(events, np.int64).reshape(-1, 5), np.flatnonzero(alive)


def painted_cluster(events: np.ndarray, roots: np.ndarray, n: int, min_area: float, layer_difference: float,
                    max_area: int) -> tuple[np.ndarray, np.ndarray]:
    """``(painted, kept)``: for each pixel cluster, the kept shape whose colour it is painted with
    (its nearest kept ancestor in the merge tree), and which clusters are kept."""
    kept = np.zeros(n, bool)
    kept[roots] = True
    parent = np.arange(n)
    if len(events):
        c, into, area, diff, perimeter = events.T
        solid = (min_area == 0) | (perimeter < area)  # not thread-like (visioncortex skips this without a minimum)
        good = (area > min_area) & (area < max_area) & solid & (diff > layer_difference)
        kept[c[good]] = True
        parent[c] = into
    painted = np.where(kept, np.arange(n), parent)
    while True:  # pointer jumping: each step halves the distance to the kept ancestor
        step = np.where(kept[painted], painted, painted[painted])
        if np.array_equal(step, painted):
            return painted, kept
        painted = step


def luminance(rgb: np.ndarray) -> np.ndarray:
    """PIL's 'L' conversion (ITU-R 601-2) in [0, 1], as the labels' SSIM reads images."""
    rgb = rgb.astype(np.float64)
    return (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000.0 / 255.0


def _window(a: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(a, 1.5, truncate=3.5, mode="reflect")


class SSIMReference:
    """scikit-image's SSIM against one [0, 1] luminance image, as the labels compute it (Gaussian
    window, sigma 1.5, population covariance), with SciPy filters; the reference's own windowed
    moments are computed once, so each comparison filters three images, not five."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.mx = _window(x)
        self.vx = _window(x * x) - self.mx * self.mx

    def __call__(self, y: np.ndarray) -> float:
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        mx, my = self.mx, _window(y)
        vy, cxy = _window(y * y) - my * my, _window(self.x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (self.vx + vy + c2))
        from ssimjax.data.labelling import SSIM_MAP_BORDER as b

        return float(s[b:-b, b:-b].mean() if min(s.shape) > 2 * b else s.mean())


def working_image(img: Image.Image, max_side: int = SIM_MAX_SIDE) -> tuple[np.ndarray, float]:
    """``(rgb uint8, scale)``: the image as VTracer is given it (transparency on white,
    :func:`ssimjax.data.images.to_rgb`) at ``max_side`` at most (area-averaged)."""
    from ssimjax.data.images import to_rgb

    im = to_rgb(img)
    scale = min(1.0, max_side / max(im.size))
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BOX)
    return np.asarray(im), scale


def simulate_settings(img: Image.Image, settings: Sequence[dict], max_side: int = SIM_MAX_SIDE) -> dict:
    """``{"ssim", "shapes"}`` float64 arrays over ``settings`` (dicts of
    :data:`ssimjax.data.vtsettings.PARAMETER_SPACE`): the simulated clustering's luminance SSIM
    against the image and its number of shapes. NaN for binary colour mode. Deterministic."""
    rgb, scale = working_image(img, max_side)
    lum = luminance(rgb)
    ssim = SSIMReference(lum)
    out = {"ssim": np.full(len(settings), np.nan), "shapes": np.full(len(settings), np.nan)}
    by_precision = {}
    for i, s in enumerate(settings):
        if s["colormode"] == "color":
            by_precision.setdefault(int(s["color_precision"]), []).append(i)
    for precision, members in sorted(by_precision.items()):
        n, labels = pixel_clusters(rgb, precision)
        events, roots = merge_tree(rgb, labels, n)
        flat = labels.ravel()
        count, lum_sum = np.bincount(flat, minlength=n), np.bincount(flat, lum.ravel(), minlength=n)
        seen = {}
        for i in members:
            fs, ld = settings[i]["filter_speckle"], settings[i]["layer_difference"]
            painted, kept = painted_cluster(events, roots, n, fs * fs * scale * scale, ld, labels.size)
            key = kept.tobytes()
            if key not in seen:  # settings keeping the same shapes paint the same image
                pixels = np.maximum(np.bincount(painted, count, minlength=n), 1)
                mean = np.bincount(painted, lum_sum, minlength=n) / pixels
                y = np.round(mean[painted[flat]].reshape(lum.shape) * 255) / 255
                seen[key] = (ssim(y), float(kept.sum()))
            out["ssim"][i], out["shapes"][i] = seen[key]
    return out
