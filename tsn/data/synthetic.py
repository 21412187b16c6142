"""Procedural multi-task scenes: the built-in ``synthetic`` dataset, rendered by vectorised ray casting.

A pinhole camera (fixed 50-degree field of view, random height, distance and look-at point) looks down at a
finite textured ground plane, sometimes with a textured back wall, with the sky beyond. On the ground stand 2-5
objects of four classes (sphere, box, cylinder, cone), each with a random position, rotation about the vertical
axis, size, two random colours and a procedural texture (stripes, checker or smooth noise) in its own frame. One
random directional light plus ambient gives Lambertian shading; objects occlude each other; the ground carries
painted discs in object-like colours as distractors, and the image gets Gaussian noise. Every target comes from
the analytic geometry of the first surface each pixel's ray hits:

- ``semseg`` (5 classes): 0 background (ground, wall, sky), 1 sphere, 2 box, 3 cylinder, 4 cone. Colours and
  textures are drawn per object, not per class, and painted discs share the objects' palette, so colour alone
  does not give the class: shape (silhouette, shading pattern) does.
- ``parts`` (4 classes): 0 background; 1 ``top`` where the object-space normal points up (n_y > 0.8: a box's or
  cylinder's top face, a sphere's cap); 3 ``bottom`` for the rest of the surface in the lowest quarter of the
  object's height; 2 ``side`` elsewhere. Parts need the normal and the height within the object, not appearance.
- ``edge`` (binary): a pixel is an edge when its instance id (sky, ground, wall, each object) differs from its
  right or lower neighbour: one-pixel-thin boundaries of the label map, as PASCAL's edges are label boundaries.
  Texture and shading edges inside an object are not edges, so a plain gradient detector fails.
- ``normals``: unit camera-space normals (OpenCV frame: x right, y down, z forward; visible surfaces have
  n_z < 0) from the analytic surfaces; they vary continuously on spheres, cylinders and cones; zero on sky.
- ``saliency`` (binary): the object whose centre is nearest the camera, plus any object painted in the reserved
  saliency red (hue within 0.03 of red; no other surface uses hues within 0.08 of red). Nearness needs depth
  reasoning, not size in the image.
- ``depth``: distance along the camera z axis; 0 (invalid) on the sky. Normals are consistent with it.

Sample ``i`` of a split depends only on ``(seed, split, i)`` through ``np.random.default_rng([seed, split_id, i])``;
distinct split ids make the splits disjoint whatever their seeds (the ``pretrain`` split never meets train or val).
"""

from __future__ import annotations

import colorsys
from typing import Callable

import numpy as np

GENERATOR_VERSION = 1
SPLIT_IDS = {"train": 0, "val": 1, "pretrain": 2}  # pretrain: the encoder's own split (tsn.pretrain)
DEFAULT_SIZES = {"train": 1024, "val": 256}
FOV_DEG = 50.0
SKY, GROUND, WALL, FIRST_OBJECT = 0, 1, 2, 3  # instance ids; object k has id FIRST_OBJECT + k
TOP, SIDE, BOTTOM = 1, 2, 3
EPS = 1e-6


def focal_length(size: int) -> float:
    """Focal length in pixels of the square ``size`` x ``size`` image (principal point at the centre)."""
    return 0.5 * size / np.tan(np.radians(FOV_DEG) / 2)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), EPS)


def _hue_colour(rng: np.random.Generator, salient: bool) -> np.ndarray:
    hue = rng.uniform(-0.03, 0.03) % 1.0 if salient else rng.uniform(0.08, 0.92)
    sat = rng.uniform(0.75, 1.0) if salient else rng.uniform(0.2, 0.9)
    return np.array(colorsys.hsv_to_rgb(hue, sat, rng.uniform(0.55, 1.0)))


# --- ray / surface intersections in an object's local frame (base at y = 0); each returns (t, local normal) ---


def _sphere(o: np.ndarray, d: np.ndarray, r: float, _h: float) -> tuple[np.ndarray, np.ndarray]:
    oc = o - np.array([0.0, r, 0.0])
    b = d @ oc
    disc = b * b - (oc @ oc - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    hit = (disc > 0) & (t > EPS)
    return np.where(hit, t, np.inf), (oc + np.where(hit, t, 0)[:, None] * d) / r


def _box(o: np.ndarray, d: np.ndarray, r: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    half = np.array([r, h / 2, r * 0.8])
    centre = np.array([0.0, h / 2, 0.0])
    inv = 1.0 / np.where(np.abs(d) < EPS, EPS, d)
    t1, t2 = (centre - half - o) * inv, (centre + half - o) * inv
    near = np.minimum(t1, t2)
    tmin, tmax = near.max(axis=1), np.maximum(t1, t2).min(axis=1)
    t = np.where((tmax >= tmin) & (tmin > EPS), tmin, np.inf)
    axis = near.argmax(axis=1)
    n = np.zeros_like(d)
    n[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return t, n


def _quadric_first(a: np.ndarray, b: np.ndarray, c: np.ndarray, y0: np.ndarray, dy: np.ndarray, h: float):
    """First root of a t^2 + 2 b t + c = 0 with t > 0 and height y0 + t dy within [0, h]."""
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    a = np.where(np.abs(a) < EPS, EPS, a)
    r1, r2 = (-b - root) / a, (-b + root) / a
    best = np.full(a.shape, np.inf)
    for t in (np.maximum(r1, r2), np.minimum(r1, r2)):  # the nearer valid root wins
        y = y0 + t * dy
        best = np.where((disc > 0) & (t > EPS) & (y >= 0) & (y <= h), t, best)
    return best


def _cylinder(o: np.ndarray, d: np.ndarray, r: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[0] * d[:, 0] + o[2] * d[:, 2]
    t_side = _quadric_first(a, b, np.full_like(a, o[0] ** 2 + o[2] ** 2 - r * r), o[1], d[:, 1], h)
    t_cap = (h - o[1]) / np.where(np.abs(d[:, 1]) < EPS, EPS, d[:, 1])
    p_cap = o + np.clip(t_cap, -1e6, 1e6)[:, None] * d
    t_cap = np.where((t_cap > EPS) & (p_cap[:, 0] ** 2 + p_cap[:, 2] ** 2 <= r * r), t_cap, np.inf)
    t = np.minimum(t_side, t_cap)
    p = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    side_n = np.stack([p[:, 0], np.zeros_like(a), p[:, 2]], axis=1) / r
    n = np.where((t_cap < t_side)[:, None], np.array([0.0, 1.0, 0.0]), side_n)
    return t, n


def _cone(o: np.ndarray, d: np.ndarray, r: float, h: float) -> tuple[np.ndarray, np.ndarray]:
    k2 = (r / h) ** 2
    a = d[:, 0] ** 2 + d[:, 2] ** 2 - k2 * d[:, 1] ** 2
    b = o[0] * d[:, 0] + o[2] * d[:, 2] + k2 * (h - o[1]) * d[:, 1]
    c = o[0] ** 2 + o[2] ** 2 - k2 * (h - o[1]) ** 2
    t = _quadric_first(a, b, np.full_like(a, c), o[1], d[:, 1], h)
    p = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    return t, _unit(np.stack([p[:, 0], k2 * (h - p[:, 1]), p[:, 2]], axis=1))


SHAPES: tuple[Callable[..., tuple[np.ndarray, np.ndarray]], ...] = (_sphere, _box, _cylinder, _cone)  # class 1..4


def _texture(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """A random procedural texture: a function from 3-D points [P, 3] to a mixing weight in [0, 1]."""
    kind = rng.integers(3)
    freq = rng.uniform(2.0, 7.0)
    dirs = _unit(rng.normal(size=(3, 3)))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    if kind == 0:  # stripes
        return lambda p: (np.sin(freq * p @ dirs[0] + phase[0]) > 0).astype(float)
    if kind == 1:  # checker
        return lambda p: (np.floor(freq / 2 * p).sum(axis=1) % 2).astype(float)
    return lambda p: 0.5 + np.sin(freq * p @ dirs.T + phase).sum(axis=1) / 6  # smooth noise


def _camera(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera centre, unit ray directions [P, 3] and the world-to-camera rotation (rows: x right, y down, z fwd)."""
    eye = np.array([rng.uniform(-0.8, 0.8), rng.uniform(2.5, 4.5), rng.uniform(-6.5, -4.5)])
    target = np.array([rng.uniform(-0.4, 0.4), 0.0, rng.uniform(0.0, 1.2)])
    fwd = _unit(target - eye)
    right = _unit(np.cross(np.array([0.0, 1.0, 0.0]), fwd))
    down = np.cross(right, fwd)
    pix = (np.arange(size) + 0.5 - size / 2) / focal_length(size)
    v, u = np.meshgrid(pix, pix, indexing="ij")
    dirs = _unit(fwd + u.reshape(-1, 1) * right + v.reshape(-1, 1) * down)
    return eye, dirs, np.stack([right, down, fwd])


def _place_objects(rng: np.random.Generator) -> list[dict]:
    """2-5 non-overlapping objects: class, position, yaw, radius, height, colours, texture."""
    objects: list[dict] = []
    n = rng.integers(2, 6)
    salient_colour = rng.random() < 0.3
    for _ in range(40):
        if len(objects) == n:
            break
        cls = int(rng.integers(1, 5))
        r = rng.uniform(0.35, 0.85)
        h = rng.uniform(max(r, 0.7), 2.0) if cls == 4 else (2 * r if cls == 1 else rng.uniform(0.5, 1.8))
        pos = np.array([rng.uniform(-2.5, 2.5), 0.0, rng.uniform(-1.5, 2.8)])
        if any(np.hypot(*(pos - ob["pos"])[[0, 2]]) < 1.3 * (r + ob["r"]) for ob in objects):
            continue
        salient = salient_colour and not objects
        c1 = _hue_colour(rng, salient)
        c2 = _hue_colour(rng, salient) if rng.random() < 0.5 or salient else c1 * rng.uniform(0.3, 0.7)
        objects.append(dict(cls=cls, pos=pos, yaw=rng.uniform(0, 2 * np.pi), r=r, h=h, c1=c1, c2=c2,
                            tex=_texture(rng), red=salient))
    return objects


def render(seed: int, split: str, index: int, size: int) -> dict[str, np.ndarray]:
    """Render sample ``index`` of ``split``: image uint8 [H,W,3] plus every target and the instance map."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    eye, dirs, world_to_cam = _camera(rng, size)
    objects = _place_objects(rng)
    p_count = size * size
    surfaces: list[tuple] = []  # (t, world normal, colour, instance id, class, part) per surface

    def add_surface(t: np.ndarray, n: np.ndarray, colour: np.ndarray, ident: int, c: int, prt) -> None:
        surfaces.append((t, n, colour, ident, c, np.broadcast_to(prt, t.shape)))

    # Ground (finite square) with painted-disc distractors, then an optional back wall.
    t_ground = np.where(dirs[:, 1] < -EPS, -eye[1] / np.minimum(dirs[:, 1], -EPS), np.inf)
    pg = eye + np.where(np.isfinite(t_ground), t_ground, 0)[:, None] * dirs
    extent = rng.uniform(3.5, 6.0)
    t_ground[(np.abs(pg[:, 0]) > extent) | (np.abs(pg[:, 2]) > extent)] = np.inf
    g1, g2, g_tex = _hue_colour(rng, False), _hue_colour(rng, False), _texture(rng)
    g_col = g1 + (g2 - g1) * g_tex(pg * 0.5)[:, None]
    for _ in range(rng.integers(0, 4)):
        centre, radius = rng.uniform([-3, 0, -2], [3, 0, 3.5]), rng.uniform(0.2, 0.6)
        disc = ((pg[:, 0] - centre[0]) ** 2 + (pg[:, 2] - centre[2]) ** 2 < radius**2)[:, None]
        g_col = np.where(disc, _hue_colour(rng, False), g_col)
    add_surface(t_ground, np.broadcast_to([0.0, 1.0, 0.0], (p_count, 3)), g_col, GROUND, 0, 0)
    if rng.random() < 0.5:
        wall_z = rng.uniform(3.5, 5.5)
        t_wall = np.where(dirs[:, 2] > EPS, (wall_z - eye[2]) / np.maximum(dirs[:, 2], EPS), np.inf)
        pw = eye + np.where(np.isfinite(t_wall), t_wall, 0)[:, None] * dirs
        t_wall[(pw[:, 1] < 0) | (pw[:, 1] > rng.uniform(2, 4))] = np.inf
        w1, w2, w_tex = _hue_colour(rng, False), _hue_colour(rng, False), _texture(rng)
        w_col = w1 + (w2 - w1) * w_tex(pw)[:, None]
        add_surface(t_wall, np.broadcast_to([0.0, 0.0, -1.0], (p_count, 3)), w_col, WALL, 0, 0)

    for k, ob in enumerate(objects):
        cy, sy = np.cos(ob["yaw"]), np.sin(ob["yaw"])
        rot = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])  # local -> world
        o_local, d_local = rot.T @ (eye - ob["pos"]), dirs @ rot
        t, n_local = SHAPES[ob["cls"] - 1](o_local, d_local, ob["r"], ob["h"])
        p_local = o_local + np.where(np.isfinite(t), t, 0)[:, None] * d_local
        prt = np.where(n_local[:, 1] > 0.8, TOP, np.where(p_local[:, 1] < 0.25 * ob["h"], BOTTOM, SIDE))
        colour = ob["c1"] + (ob["c2"] - ob["c1"]) * ob["tex"](p_local)[:, None]
        add_surface(t, n_local @ rot.T, colour, FIRST_OBJECT + k, ob["cls"], prt)

    # Z-buffer: the nearest surface along each ray (ties go to the surface listed first).
    t_all = np.stack([sf[0] for sf in surfaces])
    first, pixels = t_all.argmin(axis=0), np.arange(p_count)
    best_t = t_all[first, pixels]
    hit = np.isfinite(best_t)
    inst = np.where(hit, np.array([sf[3] for sf in surfaces])[first], SKY)
    cls = np.where(hit, np.array([sf[4] for sf in surfaces])[first], 0)
    part = np.where(hit, np.stack([sf[5] for sf in surfaces])[first, pixels], 0)
    normal = np.where(hit[:, None], np.stack([sf[1] for sf in surfaces])[first, pixels], 0.0)
    albedo = np.stack([sf[2] for sf in surfaces])[first, pixels]

    # Lambertian shading, sky, noise.
    light = _unit(np.array([rng.uniform(-1, 1), rng.uniform(0.5, 1.5), rng.uniform(-1, 1)]))
    ambient = rng.uniform(0.15, 0.45)
    shade = ambient + (1 - ambient) * np.clip(normal @ light, 0, None)
    sky = np.array(colorsys.hsv_to_rgb(rng.uniform(0.5, 0.65), rng.uniform(0.1, 0.5), rng.uniform(0.7, 1.0)))
    image = np.where((inst == SKY)[:, None], sky * (1 - 0.3 * np.abs(dirs[:, 1:2])), albedo * shade[:, None])
    image = image + rng.normal(0, rng.uniform(0.0, 0.04), image.shape)

    valid = inst != SKY
    depth = np.where(valid, best_t, 0.0) * (dirs @ world_to_cam[2])
    normals_cam = normal @ world_to_cam.T
    centres = [np.linalg.norm(ob["pos"] + [0, ob["h"] / 2, 0] - eye) for ob in objects]
    salient = {int(np.argmin(centres))} | {k for k, ob in enumerate(objects) if ob["red"]}
    salient_ids = [FIRST_OBJECT + k for k in salient]
    inst2d = inst.reshape(size, size)
    return {
        "image": (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(size, size, 3),
        "semseg": cls.reshape(size, size).astype(np.uint8),
        "parts": part.reshape(size, size).astype(np.uint8),
        "edge": label_edges(inst2d).astype(np.uint8),
        "normals": normals_cam.reshape(size, size, 3).transpose(2, 0, 1).astype(np.float32),
        "saliency": np.isin(inst2d, salient_ids).astype(np.uint8),
        "depth": depth.reshape(size, size).astype(np.float32),
        "instance": inst2d.astype(np.uint8),
    }


def label_edges(labels: np.ndarray) -> np.ndarray:
    """Boolean [H, W]: pixels whose label differs from their right or lower neighbour (1-pixel-thin boundaries).

    This stands in for ASTMT's ``thin(|Laplacian(LabelMap)| > 0)`` (no OpenCV / scikit-image here): both mark
    one-pixel-wide lines on label changes; this one puts the line on the upper/left side of each boundary.
    """
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def render_split(seed: int, split: str, size: int, num_samples: int) -> dict[str, np.ndarray]:
    """All samples of a split stacked along a new first axis (the arrays ``cache.py`` stores)."""
    samples = [render(seed, split, i, size) for i in range(num_samples)]
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
