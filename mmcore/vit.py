"""ViT: the maths the ViT tab teaches, on top of `transformers`' ViTForImageClassification.

Both tiers use the same class: the bundled `vit-shapes` (BUNDLED_CONFIG, trained by `python -m mmcore.train vit`)
and `google/vit-base-patch16-224`. Attention weights come from eager attention (SDPA returns none). Sections follow
the lecture: patches, the linear projection, positions (z = x + p), attention, the blocks' shapes and LayerNorm, the
prediction, then the lenses that look inside (rollout, relevance, the logit lens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from mmcore.models import ModelSpec, folder_mb, register

if TYPE_CHECKING:  # transformers is heavy to import; the functions below only use the model's attributes
    from transformers import ViTForImageClassification

# The bundled model: 64 px Shapes scenes cut into 8x8 patches -> N = 64 tokens (+ CLS) of width D = 96.
BUNDLED_CONFIG = dict(
    image_size=64,        # Shapes scenes are rendered at 64 px
    patch_size=8,         # N = (64 / 8)^2 = 64 patches
    num_channels=3,
    hidden_size=96,       # D, the embedding width
    num_hidden_layers=4,
    num_attention_heads=4,  # head width 24
    intermediate_size=384,  # the MLP's 4D
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    qkv_bias=True,
    num_labels=6,
    id2label={0: "circle", 1: "square", 2: "triangle", 3: "diamond", 4: "star", 5: "hexagon"},
    label2id={"circle": 0, "square": 1, "triangle": 2, "diamond": 3, "star": 4, "hexagon": 5},
)

# The lecture's model, ViT-B/16 (Dosovitskiy et al., 2021): the numbers the slides use, shown beside the model in use.
LECTURE_CONFIG = dict(image_size=224, patch_size=16, num_channels=3, hidden_size=768, num_hidden_layers=12,
                      num_attention_heads=12, intermediate_size=3072, num_labels=1000)

PATCH_SIZES = (8, 14, 16, 32)  # the patch sizes the tab offers (ViT-B/8, /14, /16, /32)
INPUT_SIZES = (32, 64, 112, 128, 224, 256, 384, 448)  # the input sizes the tab offers, where P divides them
HEAD_FUSIONS = {  # how attention_rollout merges the heads of one layer: (H, T, T) -> (T, T)
    "mean": lambda heads: heads.mean(dim=0),
    "max": lambda heads: heads.amax(dim=0),
    "min": lambda heads: heads.amin(dim=0),
}
DISPLAY_MIN_SIDE = 448  # patch_grid upscales to at least this many pixels so that the indices are legible
MIN_LABELLED_CELL = 40  # patch_grid labels every cell this wide (display px); smaller cells: the first row and column
SEQUENCE_TILE = 48  # patch_sequence upscales each patch to about this many pixels


@dataclass(frozen=True)
class Dims:
    """Every size the lecture walks through, for one ViT configuration (square input, CLS token, 4D MLP or not)."""

    image_size: int  # H = W, pixels
    patch_size: int  # P
    channels: int  # C
    width: int  # D
    layers: int  # L
    heads: int  # h
    mlp: int  # the MLP's hidden width (4D in ViT-B)
    classes: int

    @property
    def grid(self) -> int:
        return grid_size(self.image_size, self.patch_size)

    @property
    def patches(self) -> int:
        return self.grid ** 2  # N

    @property
    def tokens(self) -> int:
        return self.patches + 1  # T = N + CLS

    @property
    def patch_dim(self) -> int:
        return self.patch_size ** 2 * self.channels  # P^2 C, one flattened patch

    @property
    def head_dim(self) -> int:
        return self.width // self.heads  # d_k


def dims(config) -> Dims:
    """The Dims of a transformers ViTConfig (or of a dict with the same keys, such as LECTURE_CONFIG)."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    return Dims(image_size=int(get("image_size")), patch_size=int(get("patch_size")),
                channels=int(get("num_channels")), width=int(get("hidden_size")),
                layers=int(get("num_hidden_layers")), heads=int(get("num_attention_heads")),
                mlp=int(get("intermediate_size")), classes=int(get("num_labels")))


LECTURE = dims(LECTURE_CONFIG)


# --- 1. Patches: an image of H x W pixels becomes N = HW / P^2 tokens ----------------------------------------------


def grid_size(input_size: int, patch_size: int) -> int:
    """Patches along one side of a square input: input_size / patch_size.

    Raises ValueError unless input_size is a positive multiple of patch_size.
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    if input_size < 1 or input_size % patch_size:
        raise ValueError(
            f"input_size must be a positive multiple of patch_size, got input_size={input_size} and "
            f"patch_size={patch_size}"
        )
    return input_size // patch_size


def num_patches(input_size: int, patch_size: int) -> int:
    """N = HW / P^2, the number of patch tokens of a square input_size x input_size image (CLS not counted)."""
    return grid_size(input_size, patch_size) ** 2


def input_sizes(patch_size: int) -> list[int]:
    """The sizes of INPUT_SIZES that patch_size divides: the inputs a ViT with P = patch_size can be cut into."""
    return [size for size in INPUT_SIZES if size % patch_size == 0]


def nearest_input_size(input_size: int, patch_size: int) -> int:
    """The size of input_sizes(patch_size) closest to input_size (the larger one on a tie): where the tab moves the
    input size when a new patch size does not divide it."""
    return min(input_sizes(patch_size), key=lambda size: (abs(size - input_size), -size))


def square(image: Image.Image, input_size: int) -> Image.Image:
    """The image as the model sees it: RGB, resized (bicubic, aspect ratio not kept) to input_size x input_size."""
    return image.convert("RGB").resize((input_size, input_size), Image.Resampling.BICUBIC)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _display_scale(input_size: int) -> int:
    """The whole factor patch_grid upscales an input_size image by, to at least DISPLAY_MIN_SIDE pixels."""
    return max(1, math.ceil(DISPLAY_MIN_SIDE / input_size))


def labels_every_patch(input_size: int, patch_size: int) -> bool:
    """Whether patch_grid writes every patch's index (cells at least MIN_LABELLED_CELL display pixels wide), or only
    those of the first row and the first column, which are enough to read the row-major order without hiding the
    image."""
    return patch_size * _display_scale(input_size) >= MIN_LABELLED_CELL


def patch_grid(image: Image.Image, patch_size: int, input_size: int = 224) -> Image.Image:
    """Draw the patch grid the model cuts the image into, with the patches' indices.

    The image is resized to input_size x input_size (what the model sees), then upscaled by a whole factor
    (nearest neighbour, so every model pixel stays visible) to at least DISPLAY_MIN_SIDE pixels. Indices are
    0-based and row-major, the order of the model's patch tokens (token i + 1 in the sequence, after CLS), and sit
    in the top-left corner of their cell; see `labels_every_patch` for which are written.

    Returns an RGB image of side input_size * ceil(DISPLAY_MIN_SIDE / input_size) (or input_size if larger).
    """
    grid = grid_size(input_size, patch_size)
    scale = _display_scale(input_size)
    side, cell = input_size * scale, patch_size * scale
    base = square(image, input_size).resize((side, side), Image.Resampling.NEAREST).convert("RGBA")

    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    line_width = 2 if cell >= 32 else 1
    for k in range(grid + 1):  # lines on every patch border, the image border included
        xy = min(k * cell, side - line_width)
        draw.rectangle([xy, 0, xy + line_width - 1, side], fill=(255, 255, 255, 200))
        draw.rectangle([0, xy, side, xy + line_width - 1], fill=(255, 255, 255, 200))

    font = _font(max(9, min(14, cell // 4)))
    every = labels_every_patch(input_size, patch_size)
    for index in range(grid * grid) if every else sorted({*range(grid), *range(0, grid * grid, grid)}):
        row, col = divmod(index, grid)  # row-major, as flatten(2) orders the conv output
        x, y = col * cell + line_width + 1, row * cell + line_width + 1
        left, top, right, bottom = draw.textbbox((x, y), str(index), font=font)
        draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=(0, 0, 0, 150))  # legible on any image
        draw.text((x, y), str(index), font=font, fill=(255, 255, 255, 255))
    return Image.alpha_composite(base, overlay).convert("RGB")


def patch_sequence(image: Image.Image, patch_size: int, input_size: int = 224, count: int = 16,
                   start: int = 0, per_row: int = 8) -> Image.Image:
    """`count` consecutive patches in token order from index `start`, read like text: left to right in rows of
    `per_row`, each with its index beneath.

    This is the image read as a sentence of patch "words" (Dosovitskiy et al., "An image is worth 16x16 words").
    Each patch is upscaled (nearest) to a tile of about SEQUENCE_TILE px. Returns an RGB picture on a white
    background, columns * (tile + gap) + gap wide and rows * (tile + label band + gap) + gap high, where
    columns = min(count, per_row) and rows = ceil(count / per_row).
    """
    n = num_patches(input_size, patch_size)
    if not 1 <= count <= n:
        raise ValueError(f"count must be in [1, {n}] (the number of patches), got {count}")
    if not 0 <= start <= n - count:
        raise ValueError(f"start must be in [0, {n - count}] to show {count} of {n} patches, got {start}")
    if per_row < 1:
        raise ValueError(f"per_row must be a positive integer, got {per_row}")
    grid = grid_size(input_size, patch_size)
    seen = square(image, input_size)
    tile = patch_size * max(1, math.ceil(SEQUENCE_TILE / patch_size))
    gap, label_h = 6, 18
    columns, rows = min(count, per_row), math.ceil(count / per_row)
    strip = Image.new("RGB", (columns * (tile + gap) + gap, rows * (tile + label_h + gap) + gap), "white")
    draw, font = ImageDraw.Draw(strip), _font(12)
    for k, index in enumerate(range(start, start + count)):
        row, col = divmod(index, grid)  # where patch `index` lies in the image, row-major
        box = (col * patch_size, row * patch_size, (col + 1) * patch_size, (row + 1) * patch_size)
        line, place = divmod(k, per_row)  # where it goes in the text-like layout
        x, y = gap + place * (tile + gap), gap + line * (tile + label_h + gap)
        strip.paste(seen.crop(box).resize((tile, tile), Image.Resampling.NEAREST), (x, y))
        draw.text((x + tile / 2, y + tile + label_h / 2), str(index), font=font, fill=(40, 40, 40), anchor="mm")
    return strip


# --- 2. Positions: z_i = x_i + p_i ---------------------------------------------------------------------------------


def sinusoidal_encoding(num_positions: int, d_model: int) -> np.ndarray:
    """The fixed positional encoding of "Attention is all you need" (ViT learns p_i instead; this is the contrast).

    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),  PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model)).
    Returns float64 (num_positions, d_model). d_model must be even and >= 2, num_positions >= 1.
    """
    if num_positions < 1:
        raise ValueError(f"num_positions must be >= 1, got {num_positions}")
    if d_model < 2 or d_model % 2:
        raise ValueError(f"d_model must be an even integer >= 2, got {d_model}")
    pos = np.arange(num_positions, dtype=np.float64)[:, None]  # (num_positions, 1)
    two_i = np.arange(0, d_model, 2, dtype=np.float64)[None, :]  # (1, d_model / 2): the values 2i
    angle = pos / np.power(10000.0, two_i / d_model)  # (num_positions, d_model / 2)
    pe = np.empty((num_positions, d_model), dtype=np.float64)
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    return pe


def patch_position_embeddings(model: ViTForImageClassification) -> torch.Tensor:
    """p_i for every patch i: the rows of `embeddings.position_embeddings` after the CLS row, float32 on the CPU,
    (N, D)."""
    return model.vit.embeddings.position_embeddings[0, 1:].detach().float().cpu()


def position_similarity(pos_embed: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the learned position embeddings of every pair of patches.

    pos_embed: (N, D), the patch rows of `embeddings.position_embeddings` WITHOUT the CLS row (a leading batch
    axis of 1 is accepted). Returns (N, N), symmetric, 1 on the diagonal. Row i reshaped to the grid shows which
    patches the model learned to treat as near patch i.
    """
    if pos_embed.ndim == 3 and pos_embed.shape[0] == 1:
        pos_embed = pos_embed[0]
    if pos_embed.ndim != 2:
        raise ValueError(f"pos_embed must have shape (N, D), got {tuple(pos_embed.shape)}")
    unit = F.normalize(pos_embed.detach().float(), dim=-1)  # (N, D), each row of length 1
    return unit @ unit.T  # (N, N)


def similarity_by_relation(similarity: torch.Tensor, grid: int) -> dict[str, float]:
    """What a position-similarity matrix shows, in three numbers: the mean cosine similarity of pairs of patches
    that are neighbours (share an edge), that lie further apart in the same row or column, and of all other pairs.

    similarity: (N, N) with N = grid^2, row-major (as `position_similarity` returns). A model that learned the 2-D
    layout gives neighbours > same row or column > elsewhere. Returns {"neighbours", "same row or column",
    "elsewhere"}; a relation no pair has (a 1 x 1 or 2 x 2 grid) is left out.
    """
    n = grid * grid
    if tuple(similarity.shape) != (n, n):
        raise ValueError(f"similarity must have shape ({n}, {n}) for grid={grid}, got {tuple(similarity.shape)}")
    rows, cols = np.divmod(np.arange(n), grid)  # (N,), (N,)
    d_row, d_col = np.abs(rows[:, None] - rows[None, :]), np.abs(cols[:, None] - cols[None, :])  # (N, N), (N, N)
    neighbours = d_row + d_col == 1
    in_line = ((d_row == 0) | (d_col == 0)) & (d_row + d_col > 1)
    elsewhere = (d_row > 0) & (d_col > 0)
    values = np.asarray(similarity, dtype=np.float64)
    return {name: float(values[mask].mean()) for name, mask in
            (("neighbours", neighbours), ("same row or column", in_line), ("elsewhere", elsewhere)) if mask.any()}


def embedding_filters(model: ViTForImageClassification, count: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """The principal components of the patch projection's filters, W_e (ViT paper, figure 7 left).

    W_e is the Conv2d weight, (D, C, P, P): D filters of P^2 C numbers, one per output dimension. The filters are
    centred and decomposed (SVD); each component is a P x P x C picture of a direction in patch space the projection
    reads. A component's sign is arbitrary, so each is flipped to make its largest-magnitude entry positive: the
    pictures do not change from run to run or between equal models. count is capped at min(D, P^2 C).
    Returns (components, float64 (k, P, P, C); explained-variance ratio of each, float64 (k,)).
    """
    if count < 1:
        raise ValueError(f"count must be a positive integer, got {count}")
    weight = model.vit.embeddings.patch_embeddings.projection.weight.detach().double().cpu()  # (D, C, P, P)
    d, c, p, _ = weight.shape
    filters = weight.permute(0, 2, 3, 1).reshape(d, p * p * c).numpy()  # (D, P^2 C), each row a P x P x C picture
    centred = filters - filters.mean(axis=0, keepdims=True)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)  # components: (min(D, P^2 C), P^2 C)
    k = min(count, len(singular))
    components = components[:k]  # (k, P^2 C)
    peak = np.abs(components).argmax(axis=1)  # (k,)
    components = components * np.sign(components[np.arange(k), peak])[:, None]  # largest entry positive
    ratio = singular**2 / max(float((singular**2).sum()), np.finfo(float).tiny)
    return components.reshape(k, p, p, c), ratio[:k]


# --- 3. Attention maps ---------------------------------------------------------------------------------------------


def _layer_map(attention: torch.Tensor, name: str = "attentions") -> torch.Tensor:
    """One layer's attention as (H, T, T), accepting the model's (1, H, T, T)."""
    if attention.ndim == 4 and attention.shape[0] == 1:
        attention = attention[0]
    if attention.ndim != 3 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"each of {name} must have shape (H, T, T) or (1, H, T, T), got {tuple(attention.shape)}")
    return attention.detach()


def _grid_of_tokens(num_tokens: int) -> int:
    """g such that num_tokens = 1 + g^2 (CLS + a square grid of patches)."""
    grid = math.isqrt(num_tokens - 1)
    if grid * grid != num_tokens - 1:
        raise ValueError(f"expected 1 + g^2 tokens (CLS + a square patch grid), got T = {num_tokens}")
    return grid


def attention_rollout(
    attentions: Sequence[torch.Tensor], discard_ratio: float = 0.0, head_fusion: str = "mean"
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each input token flows into each output token.

    attentions: one map per layer, each (H, T, T) or (1, H, T, T), rows summing to 1 (as `forward` returns them).
    For each layer, in order:
      1. fuse the heads with `head_fusion` (a key of HEAD_FUSIONS: mean | max | min) -> A, (T, T);
      2. zero the lowest `discard_ratio` fraction of A's T*T entries, ranked over the flattened map, except the
         CLS->CLS entry, as jacobgil/vit-explain does (when that entry is among the lowest, one entry fewer goes);
      3. add the residual connection, A + I, and re-normalise each row to sum to 1;
      4. rollout = A @ rollout, so the result is A_L ... A_2 A_1.
    Returns float32 (T, T) with rows summing to 1. Row 0 is what the CLS token (and so the head) draws from
    each input token; see `cls_rollout_map`.
    """
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, got {head_fusion!r}")
    if len(attentions) == 0:
        raise ValueError("attentions is empty: load the model with attn_implementation='eager'")
    maps = [_layer_map(a) for a in attentions]
    tokens = maps[0].shape[-1]
    if any(m.shape[-1] != tokens for m in maps):
        raise ValueError(f"every layer must have the same number of tokens, got {[m.shape[-1] for m in maps]}")

    fuse = HEAD_FUSIONS[head_fusion]
    eye = torch.eye(tokens, dtype=torch.float64, device=maps[0].device)  # (T, T), where the attentions are
    rollout = eye.clone()  # (T, T)
    for heads in maps:
        # 1. fuse heads
        fused = fuse(heads.double())  # (T, T)
        # 2. discard the weakest entries; flat index 0 is CLS->CLS
        k = int(fused.numel() * discard_ratio)
        if k > 0:
            flat = fused.flatten().clone()  # (T*T,)
            lowest = flat.topk(k, largest=False).indices  # (k,)
            flat[lowest[lowest != 0]] = 0.0
            fused = flat.view(tokens, tokens)  # (T, T)
        # 3. residual connection, then rows back to probabilities
        a = fused + eye  # (T, T)
        a = a / a.sum(dim=-1, keepdim=True)  # (T, T)
        # 4. compose with the layers below
        rollout = a @ rollout  # (T, T)
    return rollout.float()


def relevance_rollout(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf, 2021): how much each input token supports one class.

    The rule of "Generic Attention-model Explainability" (ICCV 2021), which keeps the head weighting and rollout of
    "Transformer Interpretability Beyond Attention Visualization" (CVPR 2021) and weights each head by its gradient
    instead of by LRP relevances. attentions and gradients: one map per layer each, (H, T, T) or (1, H, T, T): the
    attention probabilities A and d(class logit) / dA (see `attention_gradients`). Starting from R = I:
      1. keep the heads' positive, gradient-weighted attention: A_bar = mean_heads(clamp(dA * A, min=0)), (T, T);
      2. add what flows through this layer to what the residual path carries: R = R + A_bar @ R.
    Unlike rollout, a head that attends to a patch but whose attention lowers the class logit adds nothing.
    Returns float32 (T, T), non-negative. Row 0 is each token's relevance for the CLS token, and so for the class;
    see `cls_rollout_map`.
    """
    if len(attentions) == 0:
        raise ValueError("attentions is empty: load the model with attn_implementation='eager'")
    if len(gradients) != len(attentions):
        raise ValueError(f"need one gradient per attention map, got {len(gradients)} for {len(attentions)} layers")
    maps = [_layer_map(a) for a in attentions]
    grads = [_layer_map(g, "gradients") for g in gradients]
    if any(g.shape != a.shape for g, a in zip(grads, maps)):
        raise ValueError(f"gradients must match the attentions' shapes, got {[tuple(g.shape) for g in grads]} for "
                         f"{[tuple(a.shape) for a in maps]}")
    tokens = maps[0].shape[-1]
    relevance = torch.eye(tokens, dtype=torch.float64, device=maps[0].device)  # (T, T): each token explains itself
    for a, grad in zip(maps, grads):
        weighted = (grad.double() * a.double()).clamp(min=0).mean(dim=0)  # (T, T)
        relevance = relevance + weighted @ relevance  # (T, T)
    return relevance.float()


def cls_rollout_map(rollout: torch.Tensor, grid: int) -> torch.Tensor:
    """Row 0 of a rollout or relevance matrix (CLS <- each patch), patches only, as a (grid, grid) map that sums to 1
    (uniform when no patch carries any mass, which relevance allows)."""
    if rollout.ndim != 2 or rollout.shape[0] != rollout.shape[1] or rollout.shape[-1] != 1 + grid * grid:
        raise ValueError(f"rollout must have shape (1 + grid^2, 1 + grid^2) = {1 + grid * grid} squared for "
                         f"grid={grid}, got {tuple(rollout.shape)}")
    cls_row = rollout[0, 1:]  # (grid^2,)
    total = cls_row.sum()
    cls_row = cls_row / total if total > 0 else torch.full_like(cls_row, 1 / cls_row.numel())
    return cls_row.reshape(grid, grid)  # (grid, grid)


def cls_attention(attentions: Sequence[torch.Tensor], layer: int, head: int | None = None) -> torch.Tensor:
    """How much the CLS query attends to each patch in one layer: softmax(QK^T / sqrt(d))[CLS, patches].

    attentions: one (1, H, T, T) or (H, T, T) map per layer. layer in [0, L); head in [0, H), or None for the
    mean over heads. Returns the raw weights (not re-normalised; the CLS->CLS weight is left out) as (grid, grid).
    """
    if len(attentions) == 0:
        raise ValueError("attentions is empty: load the model with attn_implementation='eager'")
    if not 0 <= layer < len(attentions):
        raise ValueError(f"layer must be in [0, {len(attentions) - 1}], got {layer}")
    heads = _layer_map(attentions[layer])  # (H, T, T)
    if head is not None and not 0 <= head < heads.shape[0]:
        raise ValueError(f"head must be None (mean over heads) or in [0, {heads.shape[0] - 1}], got {head}")
    grid = _grid_of_tokens(heads.shape[-1])
    fused = heads.float().mean(dim=0) if head is None else heads[head].float()  # (T, T)
    return fused[0, 1:].reshape(grid, grid)  # (grid, grid)


def _patch_distances(grid: int, patch_size: int) -> np.ndarray:
    """(N, N) distances in pixels between the centres of every pair of patches of a grid x grid image, row-major."""
    rows, cols = np.divmod(np.arange(grid * grid), grid)  # (N,), (N,): row-major patch coordinates
    coords = np.stack([rows, cols], axis=1).astype(np.float64)  # (N, 2)
    return patch_size * np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)  # (N, N)


def mean_attention_distance(attentions: Sequence[torch.Tensor], patch_size: int) -> np.ndarray:
    """Mean attention distance per layer and head, in pixels (ViT paper, Figure 7 right).

    For a query patch q and key patch k, distance(q, k) = patch_size * ||(row_q, col_q) - (row_k, col_k)||.
    Only patch queries and patch keys count (CLS is left out); each query's weights are re-normalised over the
    patch keys. The value for a head is the mean over queries of sum_k weight(q, k) * distance(q, k): small means
    local attention (like a convolution), large means global (see `uniform_attention_distance`). A query that puts
    no weight on any patch (all on CLS) has no distance and is left out of the mean; a head with no such query at
    all gets 0. Returns float64 (L, H), never NaN.
    """
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
    if len(attentions) == 0:
        raise ValueError("attentions is empty: load the model with attn_implementation='eager'")
    maps = [_layer_map(a) for a in attentions]
    distance = _patch_distances(_grid_of_tokens(maps[0].shape[-1]), patch_size)  # (N, N) pixels
    result = np.empty((len(maps), maps[0].shape[0]), dtype=np.float64)  # (L, H)
    for layer, heads in enumerate(maps):
        patches = heads[:, 1:, 1:].double().cpu().numpy()  # (H, N, N): patch queries x patch keys
        mass = patches.sum(axis=-1)  # (H, N): how much each query puts on patches at all
        looks = mass > 0  # (H, N)
        per_query = (patches * distance).sum(axis=-1) / np.where(looks, mass, 1.0)  # (H, N): re-normalised
        counted = looks.sum(axis=-1)  # (H,)
        result[layer] = (per_query * looks).sum(axis=-1) / np.maximum(counted, 1)  # (H,)
    return result


def uniform_attention_distance(grid: int, patch_size: int) -> float:
    """The mean attention distance of a head that attends to every patch equally, in pixels: the reference for a
    global head, one that does not care where a patch is (the mean distance between two patches of a grid x grid
    image, each patch paired with itself included). A local head sits near patch_size, its neighbours' distance."""
    if grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid}")
    return float(_patch_distances(grid, patch_size).mean())


# --- 4. The real model: shapes through the network, LayerNorm, prediction ----------------------------------------


def _encoder_layers(model: ViTForImageClassification) -> Sequence[torch.nn.Module]:
    """The transformer blocks (`vit.layers`, as transformers 5 names them)."""
    return model.vit.layers


def _first(output: object) -> torch.Tensor:
    """A module's main output tensor (some blocks return tuples)."""
    return output[0] if isinstance(output, (tuple, list)) else output


# Inside block 0, the tracer records these modules (a label, the module's path in the block, and whether it reads
# the module's input (True) or its output); the head split and the 4D width are what the lecture asks to see.
BLOCK_PARTS = (
    ("LayerNorm", "layernorm_before", False),
    ("Q = LN(z) W_Q", "attention.q_proj", False),
    ("K = LN(z) W_K", "attention.k_proj", False),
    ("V = LN(z) W_V", "attention.v_proj", False),
    ("softmax(QKᵀ/√d_k) V, heads joined", "attention.o_proj", True),
    ("attention out (W_O)", "attention.o_proj", False),
    ("MLP fc1 (D → 4D)", "mlp.fc1", False),
    ("MLP fc2 (4D → D)", "mlp.fc2", False),
)


def trace_shapes(model: ViTForImageClassification, pixel_values: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """The tensor shapes at each step of one real forward pass, recorded by hooks on the model's modules.

    pixel_values: (B, 3, H, W). Returns (label, shape) in execution order; for ViT-B/16 at 224 px and B = 1:
      input (1, 3, 224, 224) -> conv (patch projection) (1, 768, 14, 14) -> flatten + transpose (1, 196, 768)
      -> + CLS, + position embeddings (1, 197, 768)
      -> inside block 0 (labels "block 0 · ...", see BLOCK_PARTS): LayerNorm, Q, K and V (1, 197, 768) each,
         split into 12 heads of 64 inside the attention, the heads' outputs joined (1, 197, 768), W_O (1, 197, 768),
         the MLP's fc1 (1, 197, 3072) = 4D and fc2 (1, 197, 768)
      -> encoder block 0..L-1 (1, 197, 768) -> LayerNorm (1, 197, 768) -> CLS token (1, 768) -> head (logits)
      (1, 1000).
    CLS is concatenated and the position embeddings added inside one module (ViTEmbeddings), so one hook sees
    both. Hooks are always removed, even if the forward pass fails.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []

    def record(module: torch.nn.Module, label: str, reads_input: bool = False):
        if reads_input:
            return module.register_forward_pre_hook(lambda m, args: shapes.append((label, tuple(args[0].shape))))
        return module.register_forward_hook(lambda m, args, out: shapes.append((label, tuple(_first(out).shape))))

    embeddings, blocks = model.vit.embeddings, _encoder_layers(model)
    handles = []
    try:
        handles += [record(embeddings.patch_embeddings.projection, "input", reads_input=True),
                    record(embeddings.patch_embeddings.projection, "conv (patch projection)"),
                    record(embeddings.patch_embeddings, "flatten + transpose"),
                    record(embeddings, "+ CLS, + position embeddings")]
        handles += [record(attrgetter(path)(blocks[0]), f"block 0 · {label}", reads_input)
                    for label, path, reads_input in BLOCK_PARTS]
        handles += [record(block, f"encoder block {i}") for i, block in enumerate(blocks)]
        handles += [record(model.vit.layernorm, "LayerNorm"), record(model.classifier, "CLS token", reads_input=True),
                    record(model.classifier, "head (logits)")]
        with torch.inference_mode():
            model(pixel_values=pixel_values)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def layernorm_stats(model: ViTForImageClassification, pixel_values: torch.Tensor, layer: int) -> dict[str, np.ndarray]:
    """Per-token mean and variance around the first LayerNorm of encoder block `layer` (0-based).

    LN(x) = (x - mu) / sqrt(sigma^2 + eps) * gamma + beta, with mu and sigma^2 over the D features of each token.
    pixel_values: (1, 3, H, W). Returns float64 arrays of shape (T,):
      mean_before, var_before: x, the hidden states entering `layernorm_before`;
      mean_after, var_after:   LN(x), the module's real output (gamma and beta included);
      mean_hat, var_hat:       x_hat = (x - mu) / sqrt(sigma^2 + eps), computed here from x with the module's eps:
                               mean ~ 0 and variance ~ 1 for every token.
    Variances are population variances (divide by D), as LayerNorm uses.
    """
    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"pixel_values must have shape (1, 3, H, W), got {tuple(pixel_values.shape)}")
    layers = _encoder_layers(model)
    if not 0 <= layer < len(layers):
        raise ValueError(f"layer must be in [0, {len(layers) - 1}], got {layer}")
    norm = layers[layer].layernorm_before
    seen: dict[str, torch.Tensor] = {}

    def hook(module, args, output):
        seen["x"], seen["y"] = args[0][0].detach(), output[0].detach()  # (T, D), (T, D)

    handle = norm.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            model(pixel_values=pixel_values)
    finally:
        handle.remove()

    x, y = seen["x"].double(), seen["y"].double()  # (T, D), (T, D)
    mu = x.mean(dim=-1, keepdim=True)  # (T, 1)
    var = x.var(dim=-1, unbiased=False, keepdim=True)  # (T, 1)
    x_hat = (x - mu) / torch.sqrt(var + norm.eps)  # (T, D)

    def stats(t: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return t.mean(dim=-1).cpu().numpy(), t.var(dim=-1, unbiased=False).cpu().numpy()  # (T,), (T,)

    out: dict[str, np.ndarray] = {}
    for name, t in (("before", x), ("after", y), ("hat", x_hat)):
        out[f"mean_{name}"], out[f"var_{name}"] = stats(t)
    return out


def forward(model: ViTForImageClassification,
            pixel_values: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One forward pass that keeps the attention maps.

    pixel_values: (B, 3, H, W). Returns logits (B, num_labels) and one attention map per layer, each
    (B, H, T, T) with T = 1 + N and rows summing to 1. Raises RuntimeError if the model returns no attentions,
    which is what SDPA and other fused kernels do.
    """
    with torch.inference_mode():
        outputs = model(pixel_values=pixel_values, output_attentions=True)
    if not outputs.attentions:
        raise RuntimeError(
            "the model returned no attention maps: load it with attn_implementation='eager' "
            "(or call model.set_attn_implementation('eager')); SDPA and flash attention do not return them"
        )
    return outputs.logits, tuple(outputs.attentions)


def top_classes(model: ViTForImageClassification, logits: torch.Tensor, top_k: int = 5) -> list[tuple[str, float]]:
    """The top_k classes of one image's logits (num_labels,): [(label, probability), ...], most probable first.

    Probabilities are softmax(logits) over all classes; labels come from model.config.id2label. top_k is capped at
    the number of classes.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    probs = logits.detach().float().softmax(dim=-1)  # (num_labels,)
    values, indices = probs.topk(min(top_k, probs.numel()))  # (k,), (k,)
    names = class_names(model)
    return [(names[int(i)], float(v)) for v, i in zip(values, indices)]


def predict(model: ViTForImageClassification, pixel_values: torch.Tensor, top_k: int = 5) -> list[tuple[str, float]]:
    """One forward pass and the top_k classes for one image (see `top_classes`). pixel_values: (1, 3, H, W)."""
    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"pixel_values must have shape (1, 3, H, W), got {tuple(pixel_values.shape)}")
    with torch.inference_mode():
        logits = model(pixel_values=pixel_values).logits[0]  # (num_labels,)
    return top_classes(model, logits, top_k)


def class_names(model: ViTForImageClassification) -> list[str]:
    """The label of every output of the head, in order (model.config.id2label; the index where a label is missing)."""
    id2label = model.config.id2label
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(model.config.num_labels)]


# --- 5. Lenses: what the CLS token holds after each block, and which patches support a class --------------------


def logit_lens(model: ViTForImageClassification, pixel_values: torch.Tensor) -> torch.Tensor:
    """The logit lens: the class logits read from the CLS token after every block, through the model's own final
    LayerNorm and classifier head, as if the network stopped there.

    pixel_values: (1, 3, H, W). Returns float32 (L, num_labels): row l is head(LN(h_l[CLS])) for the hidden state
    h_l leaving block l (0-based), so the last row is the model's own logits.
    """
    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"pixel_values must have shape (1, 3, H, W), got {tuple(pixel_values.shape)}")
    with torch.inference_mode():
        hidden = model.vit(pixel_values=pixel_values, output_hidden_states=True).hidden_states[1:]  # L x (1, T, D)
        cls = torch.stack([h[0, 0] for h in hidden])  # (L, D): CLS after each block (index 0 is the embeddings)
        return model.classifier(model.vit.layernorm(cls)).float()  # (L, num_labels)


def attention_gradients(model: ViTForImageClassification, pixel_values: torch.Tensor, class_index: int | None = None
                        ) -> tuple[torch.Tensor, int, tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """One forward and one backward pass: every layer's attention probabilities A and the gradient of one class
    logit with respect to them, d logit_c / dA (what `relevance_rollout` weights the heads by).

    pixel_values: (1, 3, H, W); class_index in [0, num_labels), or None for the predicted class. Only the
    attentions receive gradients: the model's parameters are left untouched. Returns (logits (num_labels,), the
    class index used, attentions, gradients), the last two as one detached (H, T, T) map per layer.
    """
    if pixel_values.ndim != 4 or pixel_values.shape[0] != 1:
        raise ValueError(f"pixel_values must have shape (1, 3, H, W), got {tuple(pixel_values.shape)}")
    num_labels = model.config.num_labels
    if class_index is not None and not 0 <= class_index < num_labels:
        raise ValueError(f"class_index must be None (the predicted class) or in [0, {num_labels - 1}], "
                         f"got {class_index}")
    with torch.enable_grad():
        # an input that asks for gradients builds the graph even when the parameters are frozen; the copy also
        # accepts pixels made under torch.inference_mode
        outputs = model(pixel_values=pixel_values.detach().clone().requires_grad_(True), output_attentions=True)
        if not outputs.attentions:
            raise RuntimeError("the model returned no attention maps: load it with attn_implementation='eager'")
        logits = outputs.logits[0]  # (num_labels,)
        index = int(logits.argmax()) if class_index is None else class_index
        gradients = torch.autograd.grad(logits[index], outputs.attentions)  # L x (1, H, T, T)
    return (logits.detach().float(), index, tuple(a[0].detach() for a in outputs.attentions),
            tuple(g[0] for g in gradients))


# ---------------------------------------------------------------------------------------- models: one loader, two tiers

@dataclass
class ViTBundle:
    """A loaded ViT with its image processor."""

    model: ViTForImageClassification
    processor: object  # transformers.ViTImageProcessor
    device: torch.device
    dtype: torch.dtype

    @property
    def input_size(self) -> int:
        return int(self.model.config.image_size)

    @property
    def patch_size(self) -> int:
        return int(self.model.config.patch_size)

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        """The processor's resize + normalise: RGB PIL image -> (1, 3, S, S) on the model's device and dtype."""
        x = self.processor(images=image.convert("RGB"), return_tensors="pt")["pixel_values"]
        return x.to(self.device, self.dtype)


def load_vit(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> ViTBundle:
    """Load a ViTForImageClassification and its processor from a folder or a hub id, with eager attention so that
    the attention weights come back, and from safetensors only."""
    from transformers import ViTForImageClassification, ViTImageProcessor

    model = ViTForImageClassification.from_pretrained(
        source, attn_implementation="eager", dtype=dtype, use_safetensors=True, local_files_only=local_files_only)
    processor = ViTImageProcessor.from_pretrained(source, local_files_only=local_files_only)
    return ViTBundle(model.to(device).eval(), processor, device, dtype)


register(ModelSpec(
    family="vit", tier="bundled", name="vit-shapes", source="models/vit-shapes", loader=load_vit,
    size_mb=folder_mb("models/vit-shapes"), licence="MIT",
    notes="ViT, 64 px input, 8 px patches, D = 96, 4 layers x 4 heads; names the largest object's shape"))
register(ModelSpec(
    family="vit", tier="pretrained", name="google/vit-base-patch16-224", source="google/vit-base-patch16-224",
    loader=load_vit, size_mb=346, licence="Apache-2.0",
    cache_files=("config.json", "model.safetensors", "preprocessor_config.json"),
    notes="ViT-B/16 of the paper, ImageNet-21k pre-training, ImageNet-1k fine-tuning (1000 labels)"))
