"""BLIP-2: a Q-Former's k learned queries read the image encoder's n patch tokens, and become the LLM's prompt.

The lecture's BLIP-2 section, as `Blip2ForConditionalGeneration` runs it:

    1. Z = ViT(image)                 in R^((1 + n) x d)      the image encoder's tokens (frozen in BLIP-2)
    2. Q = QFormer(queries; Z)        in R^(k x d_q), k << n   k learned queries cross-attend to the patches
    3. P = Q W + b                    in R^(k x d_llm)         projected into the LLM's embedding space
    4. the LLM reads [P ; text] and generates the caption one token at a time

Both tiers load through `load` (transformers' Blip2ForConditionalGeneration and Blip2Processor): the bundled
`blip2-shapes` (a small ViT, a Q-Former with k = 8 queries over n = 64 patches, a tiny OPT as the LLM) trained by
`python -m mmcore.train blip2`, and `Salesforce/blip2-opt-2.7b` (fp16, CUDA only). The decoding loop is written here,
because each step's distribution is what the tab shows; tests check it against `generate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmcore import blip as B
from mmcore.models import ModelSpec, folder_mb, register

NUM_QUERIES = 8
MAX_NEW_TOKENS = 24
TOP_K_SHOWN = B.TOP_K_SHOWN
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<image>")  # ids 0..4, OPT's order: pad 1, bos = eos = 2
IMAGE_TOKEN = "<image>"

# The bundled model's sizes. The image encoder is the bundled BLIP's (same sizes, 64 px, n = 8 x 8 = 64 patches).
BUNDLED_QFORMER = dict(hidden_size=96, num_hidden_layers=2, num_attention_heads=4, intermediate_size=384,
                       cross_attention_frequency=1, encoder_hidden_size=B.BUNDLED_VISION["hidden_size"],
                       max_position_embeddings=32, layer_norm_eps=1e-12)
BUNDLED_OPT = dict(hidden_size=128, word_embed_proj_dim=128, num_hidden_layers=2, ffn_dim=512, num_attention_heads=4,
                   max_position_embeddings=64, dropout=0.0, attention_dropout=0.0, do_layer_norm_before=True)


# ------------------------------------------------------------------------------------------------------- tokenizer

def vocabulary() -> list[str]:
    """OPT's special tokens in OPT's order, then the bundled BLIP's Shapes WordPiece vocabulary (words, letters)."""
    words = [t for t in B.shapes_vocabulary() if t not in B.SPECIALS]
    return list(dict.fromkeys([*SPECIALS, *words]))


def build_tokenizer(folder: Path | None = None):
    """A WordPiece tokenizer over `vocabulary()` that, like OPT's, starts every text with </s>; saved to `folder`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(vocabulary())}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", pair="</s> $A $B",
                                                       special_tokens=[("</s>", vocab["</s>"])])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>", additional_special_tokens=[IMAGE_TOKEN],
                                        model_max_length=BUNDLED_OPT["max_position_embeddings"] - NUM_QUERIES)
    if folder is not None:
        tokenizer.save_pretrained(folder)
    return tokenizer


def bundled_config(vocab_size: int, num_queries: int = NUM_QUERIES, vision: dict | None = None,
                   qformer: dict | None = None, text: dict | None = None):
    """The Blip2Config of the bundled model (sizes overridable, for tests)."""
    from transformers import Blip2Config

    ids = {t: i for i, t in enumerate(SPECIALS)}
    text = dict(text or BUNDLED_OPT, model_type="opt", vocab_size=vocab_size, pad_token_id=ids["<pad>"],
                bos_token_id=ids["</s>"], eos_token_id=ids["</s>"])
    return Blip2Config(vision_config=dict(vision or B.BUNDLED_VISION, qkv_bias=True),
                       qformer_config=dict(qformer or BUNDLED_QFORMER), text_config=text,
                       num_query_tokens=num_queries, image_token_index=ids[IMAGE_TOKEN])


def make_processor(tokenizer, size: int, num_queries: int = NUM_QUERIES):
    """Blip2Processor: resize to `size` px, scale to [-1, 1], and put k <image> placeholders before any text."""
    from transformers import Blip2Processor, BlipImageProcessor

    image = BlipImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                               resample=2, do_convert_rgb=True)
    return Blip2Processor(image, tokenizer, num_query_tokens=num_queries)


# ---------------------------------------------------------------------------------------------------------- loading

@dataclass
class Blip2Bundle:
    model: torch.nn.Module
    processor: object
    device: torch.device
    dtype: torch.dtype
    bundled: bool = False

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def k(self) -> int:
        return self.model.config.num_query_tokens

    @property
    def grid(self) -> int:
        vc = self.model.config.vision_config
        return vc.image_size // vc.patch_size

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.processor.image_processor(image.convert("RGB"), return_tensors="pt").pixel_values.to(
            self.device, self.dtype)

    def words(self, ids: list[int]) -> list[str]:
        """Each token as a person reads it: OPT's byte-level "Ġcat" is "cat", a WordPiece "##s" stays "##s"."""
        return [self.tokenizer.decode([i]).strip() or self.tokenizer.convert_ids_to_tokens(i) for i in ids]


def load(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> Blip2Bundle:
    """from_pretrained on a bundled folder or a hub id, safetensors only, eager attention (so that the Q-Former's
    cross-attention can be returned); the processor comes from the same place."""
    from transformers import Blip2ForConditionalGeneration, Blip2Processor

    folder = Path(source)
    if folder.is_absolute() and not folder.is_dir():
        raise FileNotFoundError(f"{source} does not exist: train it with `python -m mmcore.train blip2`")
    model = Blip2ForConditionalGeneration.from_pretrained(source, dtype=dtype, use_safetensors=True,
                                                          local_files_only=local_files_only,
                                                          attn_implementation="eager")
    processor = Blip2Processor.from_pretrained(source, local_files_only=local_files_only)
    return Blip2Bundle(model.to(device).eval(), processor, device, dtype, bundled=folder.is_absolute())


# ---------------------------------------------------------------------------------------------------- the forward

@dataclass
class Reading:
    """The three stages of one image through BLIP-2, with the Q-Former's cross-attention."""

    image_tokens: torch.Tensor   # (1, 1 + n, d)       the image encoder's output
    queries: torch.Tensor        # (1, k, d_q)         the Q-Former's outputs
    prompt: torch.Tensor         # (1, k, d_llm)       projected into the LLM's embedding space
    maps: np.ndarray             # (layers, heads, k, n) cross-attention over the patches, renormalised
    cls_share: np.ndarray        # (layers, heads, k)  the share each query gave the image's [CLS] token

    def of(self, query: int, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """One (n,) map: a layer (None: the mean over layers) and a head (None: the mean over heads)."""
        m = self.maps[:, :, query]
        m = m.mean(0) if layer is None else m[layer]
        m = m.mean(0) if head is None else m[head]
        return m / m.sum()

    def grid(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """All k maps (k, n)."""
        return np.stack([self.of(q, layer, head) for q in range(self.maps.shape[2])])


def check_ablation(off, k: int) -> tuple[int, ...]:
    """Query indices to switch off, validated: whole numbers in [0, k), no repeats."""
    out = []
    for q in off or ():
        if isinstance(q, bool) or not isinstance(q, (int, np.integer)) or not 0 <= q < k:
            raise ValueError(f"the queries are q0 to q{k - 1}; cannot switch off {q!r}")
        out.append(int(q))
    if len(set(out)) != len(out):
        raise ValueError("each query can be switched off once")
    return tuple(sorted(out))


@torch.inference_mode()
def read(bundle: Blip2Bundle, image: Image.Image, off=()) -> Reading:
    """Steps 1-3 on one image. Queries in `off` are switched off: their Q-Former outputs are zeroed before the
    projection (so their prompt vectors are the projection's bias alone)."""
    model = bundle.model
    off = check_ablation(off, bundle.k)
    z = model.vision_model(pixel_values=bundle.pixels(image)).last_hidden_state
    q = model.qformer(query_embeds=model.query_tokens.expand(len(z), -1, -1), encoder_hidden_states=z,
                      encoder_attention_mask=torch.ones(z.shape[:-1], dtype=torch.long, device=z.device),
                      output_attentions=True, return_dict=True)
    queries = q.last_hidden_state.to(z.dtype)
    if off:
        queries = queries.clone()
        queries[:, list(off)] = 0
    prompt = model.language_projection(queries)
    att = torch.stack(q.cross_attentions)[:, 0].float().cpu().numpy()  # (layers, heads, k, 1 + n)
    patches = att[..., 1:]
    maps = patches / np.maximum(patches.sum(-1, keepdims=True), 1e-12)
    return Reading(z, queries, prompt, maps, att[..., 0])


def shapes_of(reading: Reading) -> list[tuple[str, str, str]]:
    """The compression in numbers: (stage, shape, what it is) from the tensors of a real forward pass."""
    n = reading.image_tokens.shape[1] - 1
    d, dq, dl = reading.image_tokens.shape[2], reading.queries.shape[2], reading.prompt.shape[2]
    k = reading.queries.shape[1]
    return [("image encoder", f"{n} patches (+1 [CLS]) × {d}", f"{(n + 1) * d:,} numbers"),
            ("Q-Former", f"{k} queries × {dq}", f"{k * dq:,} numbers, {(n + 1) / k:.0f}× fewer tokens"),
            ("projection → LLM", f"{k} prompt vectors × {dl}", f"{k * dl:,} numbers, in the LLM's own space")]


# --------------------------------------------------------------------------------------------------------- decoding

def _language_model(bundle: Blip2Bundle):
    return bundle.model.language_model


@torch.inference_mode()
def stream(bundle: Blip2Bundle, reading: Reading, max_new_tokens: int = 20):
    """Greedy decoding from the soft prompt: the LLM reads [P ; </s>] and each chosen token, with its key-value
    cache. Yields a `blip.Step` (the chosen token, its probability, the top candidates) per token, until </s>."""
    B._whole(max_new_tokens, "the maximum length", 1, MAX_NEW_TOKENS)
    lm = _language_model(bundle)
    embed = lm.get_input_embeddings()
    eos = bundle.model.config.text_config.eos_token_id
    bos = torch.tensor([[bundle.model.config.text_config.bos_token_id]], device=bundle.device)
    x = torch.cat([reading.prompt.to(embed.weight.dtype), embed(bos)], dim=1)
    mask = torch.ones(x.shape[:2], dtype=torch.long, device=bundle.device)
    cache = None
    for _ in range(max_new_tokens):
        out = lm(inputs_embeds=x, attention_mask=mask, cache=cache, use_cache=True, return_dict=True)
        cache = out.cache
        logprobs = torch.log_softmax(out.logits[0, -1].float(), -1)
        token = int(logprobs.argmax())
        p, i = logprobs.exp().topk(TOP_K_SHOWN)
        yield B.Step(token, bundle.words([token])[0], float(p[0]), list(zip(bundle.words(i.tolist()), p.tolist())))
        if token == eos:
            return
        x = embed(torch.tensor([[token]], device=bundle.device))
        mask = torch.cat([mask, mask[:, :1]], dim=1)


@torch.inference_mode()
def token_probs(bundle: Blip2Bundle, reading: Reading, ids: list[int]) -> np.ndarray:
    """Teacher forcing: the probability the LLM gives each token of `ids` (a caption, its </s> included) after the
    soft prompt and the tokens before it. With an ablated `reading`, how much the switched-off queries mattered."""
    lm = _language_model(bundle)
    embed = lm.get_input_embeddings()
    seq = torch.tensor([[bundle.model.config.text_config.bos_token_id, *ids]], device=bundle.device)
    x = torch.cat([reading.prompt.to(embed.weight.dtype), embed(seq)], dim=1)
    logits = lm(inputs_embeds=x, return_dict=True).logits[0, reading.prompt.shape[1]:-1].float()
    return torch.softmax(logits, -1).gather(1, seq[0, 1:, None])[:, 0].cpu().numpy()


def text_of(bundle: Blip2Bundle, steps: list[B.Step]) -> str:
    eos = bundle.model.config.text_config.eos_token_id
    return bundle.tokenizer.decode([s.token_id for s in steps if s.token_id != eos], skip_special_tokens=True).strip()


def caption(bundle: Blip2Bundle, image: Image.Image, off=(), max_new_tokens: int = 20) -> tuple[str, list[B.Step]]:
    steps = list(stream(bundle, read(bundle, image, off), max_new_tokens))
    return text_of(bundle, steps), steps


@torch.inference_mode()
def captions(bundle: Blip2Bundle, pixel_values: torch.Tensor, max_new_tokens: int = 16) -> list[str]:
    """Greedy captions of a batch of images by transformers' own `generate` (for evaluation)."""
    out = bundle.model.generate(pixel_values=pixel_values, max_new_tokens=max_new_tokens, do_sample=False,
                                num_beams=1)
    return [t.strip() for t in bundle.tokenizer.batch_decode(out, skip_special_tokens=True)]


# --------------------------------------------------------------------------------------------- what queries read

def patch_objects(scene, grid: int) -> np.ndarray:
    """For each of the grid x grid patches, the index of the object that covers most of it, or -1 (background)."""
    from mmcore import shapes

    side = grid * 8
    masks = shapes.render_masks(scene, side).astype(np.float32)  # (objects, side, side)
    cover = masks.reshape(len(masks), grid, side // grid, grid, side // grid).mean((2, 4)).reshape(len(masks), -1)
    best = cover.argmax(0)
    return np.where(cover.max(0) > 0.05, best, -1)


def query_objects(reading: Reading, scene, layer: int | None = None, head: int | None = None) -> list[int]:
    """For each query, the object its attention argmax falls on (-1: the background)."""
    owner = patch_objects(scene, math.isqrt(reading.maps.shape[-1]))
    return [int(owner[int(np.argmax(reading.of(q, layer, head)))]) for q in range(reading.maps.shape[2])]


# ------------------------------------------------------------------------------------------------------ the catalogue

register(ModelSpec(
    family="blip2", tier="bundled", name="blip2-shapes", source="models/blip2-shapes", loader=load,
    size_mb=folder_mb("models/blip2-shapes"), licence="MIT",
    notes="transformers Blip2ForConditionalGeneration trained on Shapes captions: ViT, Q-Former (8 queries), tiny OPT"))
register(ModelSpec(
    family="blip2", tier="pretrained", name="Salesforce/blip2-opt-2.7b", source="Salesforce/blip2-opt-2.7b",
    loader=load, size_mb=15_500, licence="MIT", needs_cuda=True,
    cache_files=("config.json", "model.safetensors.index.json", "preprocessor_config.json", "tokenizer_config.json"),
    notes="Salesforce BLIP-2: EVA ViT-g, Q-Former with 32 queries, OPT-2.7B; fp16 on a CUDA GPU (about 8 GB)"))
