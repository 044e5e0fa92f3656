"""CLIP: the maths the CLIP tab teaches (cosine similarity, temperature, InfoNCE and the lecture's worked example,
kept finite at any temperature; the shared space, zero-shot, prompt ensembles) and the shapes of the two towers, on top
of open_clip.

Both tiers are `open_clip.CLIP` models loaded by the same call: the bundled `clip-shapes` (BUNDLED_CONFIG, trained
by `python -m mmcore.train clip`, read from a `local-dir:` folder) and ViT-B-32 / laion2b_s34b_b79k from the hub.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmcore.models import ModelSpec, folder_mb, register

# The bundled model, as open_clip's own JSON config. The text tower keeps CLIP's 49,408-token BPE vocabulary so that
# the real tokenizer (shipped inside open_clip) works offline; the token table is most of its 3.9 M parameters.
BUNDLED_CONFIG = {
    "model_cfg": {
        "embed_dim": 64,  # the shared image-text space
        "vision_cfg": {"image_size": 64, "patch_size": 8, "width": 128, "layers": 4, "head_width": 32,
                       "mlp_ratio": 2.0},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 3,
                     "mlp_ratio": 4.0},
    },
    "preprocess_cfg": {"size": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic",
                       "resize_mode": "shortest"},
}


# The lecture's worked example: rows are images I1..I3, columns are texts T1..T3, matched pairs on the diagonal.
LECTURE_S: tuple[tuple[float, ...], ...] = (
    (2.0, 0.5, 0.3),
    (0.2, 2.5, 0.4),
    (0.1, 0.6, 3.0),
)

# Accepted temperatures. open_clip learns logit_scale = 1/tau and clamps it at 100, so tau >= 0.01 in practice;
# the lower bound leaves room to show how a tiny tau turns softmax into argmax without overflowing float64.
MAX_LABELS = 36  # zero-shot candidates: room for all 6 x 6 colour-shape labels of the Shapes world
TEMPERATURE_MIN = 1e-3
TEMPERATURE_MAX = 100.0

ArrayLike = torch.Tensor | np.ndarray | Sequence


# --- similarity and temperature -------------------------------------------------


def cosine_similarity(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every image with every text.

    image_features: (B_img, D); text_features: (B_txt, D). Rows need not be normalised: both are L2-normalised here.
    Returns S: (B_img, B_txt) with S[i, j] = cos(image_i, text_j) in [-1, 1].
    """
    image_features = torch.as_tensor(image_features)
    text_features = torch.as_tensor(text_features)
    if image_features.ndim != 2 or text_features.ndim != 2:
        raise ValueError(
            f"image_features and text_features must be 2-D (B, D), got shapes {tuple(image_features.shape)} "
            f"and {tuple(text_features.shape)}"
        )
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"image_features and text_features must share the embedding width D, got {image_features.shape[1]} "
            f"and {text_features.shape[1]}"
        )
    image_features = F.normalize(image_features, dim=-1)  # (B_img, D)
    text_features = F.normalize(text_features, dim=-1)  # (B_txt, D)
    return image_features @ text_features.T  # (B_img, B_txt)


def validate_temperature(temperature: float) -> float:
    """Check a softmax temperature tau and return it as a float.

    Accepted: a finite number in [TEMPERATURE_MIN, TEMPERATURE_MAX] = [0.001, 100]. Raises ValueError otherwise.
    open_clip's `logit_scale` is 1/tau (tau = 0.07 <-> logit_scale = 14.3; logit_scale = 100 <-> tau = 0.01).
    """
    accepted = f"a finite number in [{TEMPERATURE_MIN:g}, {TEMPERATURE_MAX:g}]"
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"temperature must be {accepted}, got {temperature!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"temperature must be {accepted}, got {value}")
    if value <= 0:
        raise ValueError(f"temperature must be positive, {accepted}, got {value:g}")
    if not TEMPERATURE_MIN <= value <= TEMPERATURE_MAX:
        raise ValueError(f"temperature must be {accepted}, got {value:g}")
    return value


def _float64(x: ArrayLike, name: str) -> torch.Tensor:
    """Any tensor, array or nested list of numbers -> a float64 CPU tensor (arrays are copied: x may be read-only)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device="cpu", dtype=torch.float64)
    try:
        return torch.as_tensor(np.array(x, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers only: {exc}") from None


def _finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """x itself, or ValueError naming the first NaN or inf entry and where it is."""
    for bad, mask in (("NaN", torch.isnan(x)), ("inf", torch.isinf(x))):
        if mask.any():
            where = ", ".join(f"{axis} {int(k)}" for axis, k in zip(("row", "column"), mask.nonzero()[0]))
            raise ValueError(f"{name} contains {bad} at {where}; every value must be finite")
    return x


def _as_matrix(S: ArrayLike, name: str = "S") -> torch.Tensor:
    """A similarity matrix -> float64 (B_img, B_txt), refusing anything not 2-D, empty, NaN or inf."""
    out = _float64(S, name)
    if out.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix (images x texts), got shape {tuple(out.shape)}")
    if out.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(out.shape)}): it needs at least one image and one text")
    return _finite(out, name)


def _unit_rows(x: ArrayLike, name: str) -> np.ndarray:
    """Embeddings (N, D) or one embedding (D,) -> float64 (N, D) with every row L2-normalised; N may be 0."""
    out = _float64(x, name)
    if out.ndim == 1:
        out = out[None, :] if out.numel() else out.reshape(0, 0)
    if out.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, D), got shape {tuple(out.shape)}")
    return F.normalize(_finite(out, name), dim=-1, eps=1e-12).numpy()


def softmax_rows(S: ArrayLike, temperature: float) -> torch.Tensor:
    """Image -> text: softmax of S / tau along each row, so row i is a distribution over texts for image i.

    S: (B_img, B_txt). Returns float64 (B_img, B_txt) whose rows sum to 1.
    """
    tau = validate_temperature(temperature)
    return torch.softmax(_as_matrix(S) / tau, dim=1)  # (B_img, B_txt)


def softmax_cols(S: ArrayLike, temperature: float) -> torch.Tensor:
    """Text -> image: softmax of S / tau down each column, so column j is a distribution over images for text j.

    S: (B_img, B_txt). Returns float64 (B_img, B_txt) whose columns sum to 1.
    """
    tau = validate_temperature(temperature)
    return torch.softmax(_as_matrix(S) / tau, dim=0)  # (B_img, B_txt)


# --- InfoNCE ----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to a single bool
class InfoNCE:
    """The symmetric CLIP loss of one B x B similarity matrix, term by term (natural log, float64)."""

    per_image: np.ndarray  # (B,) -log softmax_row_i[i]: image i picking its own text
    per_text: np.ndarray  # (B,) -log softmax_col_j[j]: text j picking its own image
    image_to_text: float  # mean of per_image
    text_to_image: float  # mean of per_text
    clip: float  # (image_to_text + text_to_image) / 2; equals open_clip.ClipLoss with logit_scale = 1/tau


def info_nce(S: ArrayLike, temperature: float) -> InfoNCE:
    """CLIP's symmetric InfoNCE loss, exactly as the lecture writes it.

        L_i2t  = -1/B sum_i log( e^{S_ii/tau} / sum_j e^{S_ij/tau} )   (row i: image i against all texts)
        L_t2i  = -1/B sum_j log( e^{S_jj/tau} / sum_i e^{S_ij/tau} )   (column j: text j against all images)
        L_CLIP = (L_i2t + L_t2i) / 2

    S: (B, B) cosine similarities, rows = images, columns = texts, matched pairs on the diagonal.
    The lecture divides by tau; open_clip multiplies by `logit_scale`, which is 1/tau, so
    `open_clip.ClipLoss()(img, txt, logit_scale)` == `info_nce(img @ txt.T, 1 / logit_scale).clip`.
    Raises ValueError for a non-square, empty or non-finite S, or a temperature outside [0.001, 100].
    """
    tau = validate_temperature(temperature)
    S = _as_matrix(S)
    n_images, n_texts = S.shape
    if n_images != n_texts:
        raise ValueError(f"the loss needs B matched pairs: got {n_images} images and {n_texts} texts")
    # 1. scale by the temperature
    logits = S / tau  # (B, B)
    diagonal = logits.diagonal()  # (B,) the matched pairs
    # 2. -log softmax of the matched pair; logsumexp keeps e^{S/tau} from overflowing at small tau
    per_image = torch.logsumexp(logits, dim=1) - diagonal  # (B,) row i over texts j
    per_text = torch.logsumexp(logits, dim=0) - diagonal  # (B,) column j over images i
    # 3. average each direction, then the two directions
    image_to_text = float(per_image.mean())
    text_to_image = float(per_text.mean())
    return InfoNCE(
        per_image=per_image.numpy(),
        per_text=per_text.numpy(),
        image_to_text=image_to_text,
        text_to_image=text_to_image,
        clip=0.5 * (image_to_text + text_to_image),
    )


@dataclass(frozen=True, eq=False)  # eq=False: arrays do not compare to a single bool
class WorkedQuery:
    """One query's InfoNCE term, worked out as the lecture does, but in the log domain: at small tau the terms
    e^{S/tau} overflow float64 (past e^709), their logarithms never do."""

    logits: np.ndarray  # (B,) S / tau: the query against every candidate
    match: int  # index of the matched candidate (the diagonal)
    log_denominator: float  # log sum_k e^{logits_k} = m + log sum_k e^{logits_k - m}, m = max(logits)

    @property
    def loss(self) -> float:
        """-log p(match) = log_denominator - logits[match], >= 0."""
        return self.log_denominator - float(self.logits[self.match])

    @property
    def probability(self) -> float:
        """p(match) = e^{logits[match]} / denominator, in [0, 1] (it underflows to 0 only when it is below 1e-308)."""
        return math.exp(-self.loss)


def worked_example(S: ArrayLike, temperature: float, pair: int = 0) -> tuple[WorkedQuery, WorkedQuery]:
    """The lecture's two worked terms for one matched pair of a B x B matrix S (pair 0: T1 and I1).

    Returns (text -> image: column `pair` of S over the images, image -> text: row `pair` over the texts); their
    losses are `info_nce(S, temperature).per_text[pair]` and `.per_image[pair]`.
    """
    tau = validate_temperature(temperature)
    S = _as_matrix(S)
    if S.shape[0] != S.shape[1] or not 0 <= pair < S.shape[0]:
        raise ValueError(f"pair must index a matched pair of a square S, got pair {pair} of shape {tuple(S.shape)}")
    column, row = S[:, pair] / tau, S[pair, :] / tau  # (B,) text `pair` over the images, image `pair` over the texts
    return tuple(WorkedQuery(logits.numpy(), pair, float(torch.logsumexp(logits, dim=0))) for logits in (column, row))


# What the lecture's slide prints for LECTURE_S at tau = 1, text T1 against images I1..I3 (see `lecture_example`).
LECTURE_PRINTED = {"denominator": 9.7157, "probability": 0.7607, "loss": 0.274}


def lecture_example() -> dict[str, float]:
    """The lecture's worked numbers on LECTURE_S at tau = 1, computed here rather than copied.

    Returns floats: t2i_denominator = 9.71563 (e^2.0 + e^0.2 + e^0.1, column T1 over I1..I3),
    t2i_denominator_rounded_terms = 9.7157, t2i_probability = 0.76053, t2i_loss = 0.27374, i2t_loss (row I1 over
    T1..T3, the lecture's L1), and clip, the loss of the whole matrix.

    Two of the lecture's printed figures (LECTURE_PRINTED) are rounding slips: its 9.7157 is 7.3891 + 1.2214 + 1.1052,
    the sum of the rounded terms (the exact sum 9.71563 rounds to 9.7156), and its 0.7607 should read 0.7605
    (7.3891 / 9.7157 = 0.76053). The loss, 0.274, is right either way.
    """
    t2i, i2t = worked_example(LECTURE_S, 1.0)
    return {
        "t2i_denominator": math.exp(t2i.log_denominator),
        "t2i_denominator_rounded_terms": math.fsum(round(math.exp(x), 4) for x in t2i.logits),
        "t2i_probability": t2i.probability,
        "t2i_loss": t2i.loss,
        "i2t_loss": i2t.loss,
        "clip": info_nce(LECTURE_S, 1.0).clip,
    }


# --- the shared space in 2-D, and zero-shot -----------------------------------------


def pca_2d(
    image_embeddings: ArrayLike, text_embeddings: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project images and texts into one 2-D plane fitted on both (PCA on L2-normalised rows).

    image_embeddings: (Bi, D); text_embeddings: (Bt, D); either may be empty.
    Returns (image_xy (Bi, 2), text_xy (Bt, 2), explained_variance_ratio (2,)), float64.
    Each component's sign is fixed so its largest-|value| loading is positive, so the plot does not flip between
    runs. With fewer than 2 points, or fewer than 2 directions of variance, missing components are zeros.
    """
    images = _unit_rows(image_embeddings, "image_embeddings")
    texts = _unit_rows(text_embeddings, "text_embeddings")
    n_images, n_texts = images.shape[0], texts.shape[0]
    if n_images and n_texts and images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image_embeddings and text_embeddings must share the width D, got {images.shape[1]} and {texts.shape[1]}"
        )
    coords = np.zeros((n_images + n_texts, 2))
    ratio = np.zeros(2)
    if n_images + n_texts >= 2:
        # 1. centre the points of both modalities together
        X = np.concatenate([x for x in (images, texts) if x.shape[0]], axis=0)  # (N, D)
        X = X - X.mean(axis=0, keepdims=True)
        # 2. SVD: rows of Vt are the principal directions, s^2 the variance along each
        _, s, Vt = np.linalg.svd(X, full_matrices=False)  # s: (k,), Vt: (k, D), k = min(N, D)
        variance = s**2
        total = variance.sum()
        if total > 0:
            # directions with (numerically) no variance are noise: leave their coordinates at zero
            keep = [c for c in range(min(2, len(s))) if s[c] > 1e-10 * s[0]]
            for c in keep:
                direction = Vt[c]
                direction = direction * np.sign(direction[np.argmax(np.abs(direction))])
                coords[:, c] = X @ direction  # (N,)
                ratio[c] = variance[c] / total
    return coords[:n_images], coords[n_images:], ratio


def zero_shot(
    image_features: ArrayLike, label_features: ArrayLike, logit_scale: float
) -> np.ndarray:
    """Zero-shot classification: softmax over labels of logit_scale * cos(image, label).

    image_features: (1, D) or (D,); label_features: (K, D), one row per prompt such as "a photo of a {}".
    logit_scale: open_clip's exp(logit_scale) (= 1/tau, about 100 for a trained CLIP), positive and finite.
    Returns float64 probabilities (K,) summing to 1.
    """
    scale = float(logit_scale)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"logit_scale must be a positive finite number (1/temperature), got {logit_scale!r}")
    image = _float64(image_features, "image_features")
    labels = _float64(label_features, "label_features")
    if image.ndim == 1:
        image = image[None, :]  # (1, D)
    if image.ndim != 2 or image.shape[0] != 1:
        raise ValueError(f"image_features must be (D,) or (1, D), got shape {tuple(image.shape)}")
    if labels.ndim != 2 or labels.shape[0] == 0:
        raise ValueError(f"label_features must be (K, D) with K >= 1, got shape {tuple(labels.shape)}")
    cos = cosine_similarity(image, labels)[0]  # (K,)
    return torch.softmax(scale * cos, dim=0).numpy()  # (K,)


def modality_gap(
    image_embeddings: ArrayLike, text_embeddings: ArrayLike
) -> tuple[np.ndarray, float]:
    """The modality gap (Liang et al., 2022, "Mind the Gap"): images and texts sit in two separate clusters of the
    shared space, and the offset between the clusters' centres measures how far apart they are.

    image_embeddings: (Bi, D); text_embeddings: (Bt, D), each with at least one row; rows are L2-normalised here.
    Returns (offset, size): offset = mean_i(image_i / |image_i|) - mean_j(text_j / |text_j|), float64 (D,), and its
    Euclidean length |offset|.
    """
    images = _unit_rows(image_embeddings, "image_embeddings")
    texts = _unit_rows(text_embeddings, "text_embeddings")
    if images.shape[0] == 0 or texts.shape[0] == 0:
        raise ValueError(f"the gap needs at least one image and one text, got {images.shape[0]} and {texts.shape[0]}")
    if images.shape[1] != texts.shape[1]:
        raise ValueError(
            f"image_embeddings and text_embeddings must share the width D, got {images.shape[1]} and {texts.shape[1]}"
        )
    offset = images.mean(axis=0) - texts.mean(axis=0)  # (D,)
    return offset, float(np.linalg.norm(offset))


def gap_plane(
    image_embeddings: ArrayLike, text_embeddings: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D view that shows the modality gap at its true length (a PCA plane may hide it behind content variance).

    x is the position along the gap's direction u = offset / |offset| (see `modality_gap`); y is the first principal
    direction of what is left once that direction is projected out. Rows are L2-normalised and both axes centred on
    all points together, so the two centres differ by exactly (|offset|, 0).
    Returns (image_xy (Bi, 2), text_xy (Bt, 2)), float64. With no gap (offset = 0), x is zero.
    """
    offset, size = modality_gap(image_embeddings, text_embeddings)
    images = _unit_rows(image_embeddings, "image_embeddings")
    texts = _unit_rows(text_embeddings, "text_embeddings")
    X = np.concatenate([images, texts], axis=0)  # (N, D)
    X = X - X.mean(axis=0, keepdims=True)
    u = offset / size if size > 0 else np.zeros_like(offset)  # (D,)
    along = X @ u  # (N,)
    rest = X - along[:, None] * u  # (N, D): the gap's direction removed
    _, s, Vt = np.linalg.svd(rest, full_matrices=False)
    direction = Vt[0] * np.sign(Vt[0][np.argmax(np.abs(Vt[0]))])  # sign fixed as in pca_2d
    across = rest @ direction if s[0] > 1e-10 else np.zeros(len(X))  # (N,)
    xy = np.stack([along, across], axis=1)  # (N, 2)
    return xy[: len(images)], xy[len(images):]


def ensemble_embeddings(text_embeddings: ArrayLike) -> torch.Tensor:
    """Prompt ensembling (Radford et al., 2021, section 3.1.4): one embedding per class from several templates.

    text_embeddings: (T, K, D), the embedding of template t filled with class k. Each is L2-normalised, the T of a
    class are averaged, and the mean is L2-normalised again. Returns float64 (K, D) unit rows; with T = 1 this is
    just the normalised embedding of the one prompt.
    """
    embeddings = _float64(text_embeddings, "text_embeddings")
    if embeddings.ndim != 3 or 0 in embeddings.shape:
        raise ValueError(f"text_embeddings must be (templates, classes, D) with none empty, got shape "
                         f"{tuple(embeddings.shape)}")
    return F.normalize(F.normalize(embeddings, dim=-1).mean(dim=0), dim=-1)  # (K, D)


# --- text input -----------------------------------------------------------------------


def parse_texts(text: str, max_lines: int = 16, max_chars: int = 300) -> list[str]:
    """One caption per line -> list of stripped, non-empty captions (blank lines dropped).

    Raises ValueError when no line has text, there are more than max_lines captions, or a line (1-based number
    quoted) is longer than max_chars characters after stripping.
    """
    text = "" if text is None else text  # an empty Gradio textbox may arrive as None
    if not isinstance(text, str):
        raise TypeError(f"texts must be a string with one caption per line, got {type(text).__name__}")
    texts = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_chars:
            raise ValueError(f"line {number} is {len(line)} characters long; each text may have at most {max_chars}")
        texts.append(line)
    if not texts:
        raise ValueError("enter at least one text, one per line")
    if len(texts) > max_lines:
        raise ValueError(f"at most {max_lines} texts, got {len(texts)}")
    return texts


def parse_labels(text: str, max_labels: int = MAX_LABELS, max_chars: int = 100) -> list[str]:
    """Class names separated by commas or newlines -> list of stripped, non-empty labels.

    Raises ValueError when there is no label, more than max_labels, or a label longer than max_chars characters.
    """
    text = "" if text is None else text  # an empty Gradio textbox may arrive as None
    if not isinstance(text, str):
        raise TypeError(f"labels must be a string separated by commas or newlines, got {type(text).__name__}")
    labels = [label.strip() for label in re.split(r"[,\n\r]", text)]
    labels = [label for label in labels if label]
    if not labels:
        raise ValueError("enter at least one label, separated by commas or newlines")
    if len(labels) > max_labels:
        raise ValueError(f"at most {max_labels} labels, got {len(labels)}")
    for number, label in enumerate(labels, start=1):
        if len(label) > max_chars:
            raise ValueError(f"label {number} is {len(label)} characters long; each label may have at most {max_chars}")
    return labels


def fill_template(template: str, label: str) -> str:
    """Put a label into a prompt template with exactly one "{}", e.g. "a photo of a {}." -> "a photo of a circle."."""
    count = template.count("{}")
    if count != 1:
        raise ValueError(f'template must contain exactly one "{{}}" for the label, found {count} in {template!r}')
    return template.replace("{}", label)


# --- embedding cache --------------------------------------------------------------------


class EmbeddingCache:
    """A small thread-safe LRU of embeddings keyed by content, so moving the temperature slider never re-encodes.

    Keys come from `key_image` / `key_text`: the same pixels or text under the same model give the same key,
    whichever array object holds them. `hits` and `misses` count `get` calls.
    """

    def __init__(self, max_items: int = 512) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key_image(arr: np.ndarray, model_id: str) -> str:
        """Key for an image array (any shape/dtype): sha1 of model id, shape, dtype and raw bytes."""
        arr = np.ascontiguousarray(arr)
        digest = hashlib.sha1()
        digest.update(f"image|{model_id}|{arr.shape}|{arr.dtype.str}|".encode())
        digest.update(arr.tobytes())
        return digest.hexdigest()

    @staticmethod
    def key_text(text: str, model_id: str) -> str:
        """Key for a text: sha1 of model id and the UTF-8 text."""
        return hashlib.sha1(f"text|{model_id}|{text}".encode()).hexdigest()

    def get(self, key: str) -> torch.Tensor | None:
        """The cached embedding for key (marked most recently used), or None; counts a hit or a miss."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, tensor: torch.Tensor) -> None:
        """Store an embedding (detached), evicting the least recently used item beyond max_items."""
        with self._lock:
            self._items[key] = tensor.detach()
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def clear(self) -> None:
        """Forget every embedding and reset the counters."""
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items


# ---------------------------------------------------------------------------------------- models: one loader, two tiers

WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


@dataclass
class ClipBundle:
    """A loaded open_clip model with its image transform and tokenizer."""

    model: torch.nn.Module  # open_clip.CLIP
    preprocess: Callable    # PIL image -> (3, S, S) tensor
    tokenizer: Callable     # list[str] -> (B, context_length) token ids
    device: torch.device
    dtype: torch.dtype
    model_id: str           # names the weights in embedding-cache keys

    @property
    def logit_scale(self) -> float:
        """exp(learned log scale) = 1/τ, the model's own temperature."""
        return float(self.model.logit_scale.detach().exp())


def load_clip(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> ClipBundle:
    """Load an open_clip model from a folder holding open_clip_config.json + open_clip_model.safetensors, or from a
    hub repo id (fetched into the HF cache first; only those two files, so no pickle is ever read)."""
    import open_clip

    folder = Path(source)
    if folder.is_absolute() and not folder.is_dir():
        raise FileNotFoundError(f"{source} does not exist: train it with `python -m mmcore.train clip`")
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=[CONFIG_FILE, WEIGHTS_FILE],
                                        local_files_only=local_files_only))
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{source} has no {CONFIG_FILE} + {WEIGHTS_FILE}; refusing to run untrained weights")
    name = f"local-dir:{folder}"
    model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
    model = model.to(dtype=dtype).eval()
    # The embedding cache is keyed by model_id: the same weights on another device or dtype give other numbers.
    model_id = f"{source}|{device}|{dtype}"
    return ClipBundle(model, preprocess, open_clip.get_tokenizer(name), device, dtype, model_id=model_id)


_EMBEDDINGS = EmbeddingCache()


def _cached(keys: list[str], encode: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
    """Embeddings (B, D) for B content keys: each distinct key is looked up once, and those missing are encoded in one
    call, `encode(indices into keys)` -> (M, D), and stored. A batch larger than the cache evicts its own first rows,
    so the result is assembled from what was found and encoded, not read back."""
    found = {key: _EMBEDDINGS.get(key) for key in dict.fromkeys(keys)}  # a key met twice counts once
    missing = [key for key, value in found.items() if value is None]
    if missing:
        for key, value in zip(missing, encode([keys.index(key) for key in missing])):
            _EMBEDDINGS.put(key, value)
            found[key] = value
    return torch.stack([found[key] for key in keys])


@torch.inference_mode()
def encode_images(bundle: ClipBundle, images: Sequence) -> torch.Tensor:
    """L2-normalised image embeddings (B, D), float32 on the CPU; each image is encoded once per model (cached by
    content), so moving the temperature never re-encodes."""
    rgb = [im.convert("RGB") for im in images]
    keys = [EmbeddingCache.key_image(np.asarray(im), bundle.model_id) for im in rgb]

    def encode(indices: list[int]) -> torch.Tensor:
        batch = torch.stack([bundle.preprocess(rgb[i]) for i in indices])  # (M, 3, S, S)
        return bundle.model.encode_image(batch.to(bundle.device, bundle.dtype), normalize=True).float().cpu()

    return _cached(keys, encode)


@torch.inference_mode()
def encode_texts(bundle: ClipBundle, texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised text embeddings (B, D), float32 on the CPU, cached by content like encode_images."""
    keys = [EmbeddingCache.key_text(t, bundle.model_id) for t in texts]

    def encode(indices: list[int]) -> torch.Tensor:
        tokens = bundle.tokenizer([texts[i] for i in indices]).to(bundle.device)  # (M, L)
        return bundle.model.encode_text(tokens, normalize=True).float().cpu()

    return _cached(keys, encode)


def class_embeddings(bundle: ClipBundle, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Zero-shot classifier weights: every template filled with every label, encoded (cached), then ensembled over
    the templates (`ensemble_embeddings`). Returns float64 (K, D) unit rows, one per label, in order."""
    if not labels or not templates:
        raise ValueError(f"need at least one label and one template, got {len(labels)} and {len(templates)}")
    prompts = [fill_template(t, label) for t in templates for label in labels]  # template-major: (T * K,)
    return ensemble_embeddings(encode_texts(bundle, prompts).reshape(len(templates), len(labels), -1))  # (K, D)


@torch.inference_mode()
def token_features(bundle: ClipBundle, texts: Sequence[str]) -> torch.Tensor:
    """The text tower's per-token features (B, L, D) before pooling and projection: what a Stable Diffusion UNet reads.
    Float32 on the CPU."""
    m = bundle.model
    ids = bundle.tokenizer(list(texts)).to(bundle.device)
    x = m.token_embedding(ids) + m.positional_embedding.to(m.token_embedding.weight.dtype)
    return m.ln_final(m.transformer(x, attn_mask=m.attn_mask)).float().cpu()


@dataclass(frozen=True)
class TowerShapes:
    """The shapes one image and one caption take on their way into the shared space (the lecture's n, D, m, P)."""

    image_side: int  # the image tower's input side, px
    patch_px: int  # the side of one patch, px
    grid: int  # patches per side
    image_tokens: int  # n = grid^2 + 1: the patches and the CLS token
    image_width: int  # D: the image transformer's width
    text_tokens: int  # m: the caption's tokens, start and end of text included
    text_context: int  # the padded length the text transformer runs on
    text_width: int  # P: the text transformer's width
    shared: int  # d: the shared space both projections map into


# The lecture's walk-through: ViT-B/32 at 224 px (7 x 7 patches + CLS), a 12-token caption, "let's say" 256 shared.
LECTURE_TOWERS = TowerShapes(image_side=224, patch_px=32, grid=7, image_tokens=50, image_width=768, text_tokens=12,
                             text_context=77, text_width=512, shared=256)


_TOWERS: dict[str, TowerShapes] = {}  # model_id -> the towers' shapes, measured once per model


@torch.inference_mode()
def _measure_towers(bundle: ClipBundle) -> TowerShapes:
    """Run a blank image and an empty caption through the model, with a hook on each tower's transformer (its output
    before pooling): image (1, n, D), text (1, L, P); then the projected (1, d)."""
    m = bundle.model
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [tower.register_forward_hook(lambda _m, _in, out, key=key: seen.__setitem__(key, tuple(out.shape)))
             for key, tower in (("image", m.visual.transformer), ("text", m.transformer))]
    try:
        side = m.visual.image_size[0] if isinstance(m.visual.image_size, (tuple, list)) else m.visual.image_size
        pixels = torch.zeros(1, 3, side, side, device=bundle.device, dtype=bundle.dtype)
        shared = m.encode_image(pixels).shape[-1]  # (1, d)
        m.encode_text(bundle.tokenizer([""]).to(bundle.device))
    finally:
        for hook in hooks:
            hook.remove()
    (_, n, width), (_, context, text_width) = seen["image"], seen["text"]
    grid = m.visual.grid_size[0]
    return TowerShapes(image_side=side, patch_px=side // grid, grid=grid, image_tokens=n, image_width=width,
                       text_tokens=2, text_context=context, text_width=text_width, shared=shared)


def tower_shapes(bundle: ClipBundle, caption: str) -> TowerShapes:
    """The shapes a caption and any image take in this model: the towers' are measured once per model (hooks on a
    forward pass), the caption's length m is counted in its tokens, start and end of text included."""
    towers = _TOWERS.get(bundle.model_id)
    if towers is None:
        towers = _TOWERS[bundle.model_id] = _measure_towers(bundle)
    ids = bundle.tokenizer([caption])[0]  # (L,), padded with zeros after the end-of-text token
    return dataclasses.replace(towers, text_tokens=int(ids.argmax()) + 1)  # end of text: the largest id


register(ModelSpec(
    family="clip", tier="bundled", name="clip-shapes", source="models/clip-shapes", loader=load_clip,
    size_mb=folder_mb("models/clip-shapes"), licence="MIT",
    notes="open_clip.CLIP, 64 px ViT image tower, CLIP BPE text tower, trained on Shapes captions"))
register(ModelSpec(
    family="clip", tier="pretrained", name="open_clip ViT-B-32 (laion2b_s34b_b79k)",
    source="laion/CLIP-ViT-B-32-laion2B-s34B-b79K", loader=load_clip, size_mb=605, licence="MIT",
    cache_files=(CONFIG_FILE, WEIGHTS_FILE), notes="LAION-2B, 34B samples seen; zero-shot ImageNet top-1 66.6%"))
