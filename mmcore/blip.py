"""BLIP: captioning token by token, VQA, image-text matching, and the cross-attention that fuses text with image.

The lecture's multimodal steps, as the BLIP decoder runs them:

    1. I = [i_1 .. i_n] in R^(n x d)             the image encoder's patch tokens (a ViT)
    2. i_j = i_j + p_j ; T = token + position       positions on patches and on text tokens
    3. Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V,  Q = W_Q T,  K = W_K I,  V = W_V I   (text -> image)
    4. generate one token at a time until [SEP]: greedy, beam search or sampling

Both tiers load through `load_caption`, `load_vqa` and `load_itm` (transformers' BlipForConditionalGeneration,
BlipForQuestionAnswering and BlipForImageTextRetrieval): the bundled `blip-shapes-*` models trained by
`python -m mmcore.train blip`, and Salesforce's checkpoints. The decoding loop is written here, because it is what
the tab teaches (each step's distribution, every beam, the attention behind each word); the sampling warpers are
transformers' own, and tests check the loop against `generate`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmcore.models import ModelSpec, folder_mb, register

DECODINGS = ("greedy", "beam search", "sampling")
MAX_NEW_TOKENS = 40
MAX_QUESTION_CHARS = 300
MAX_BEAMS = 8
TOP_K_SHOWN = 5

# The bundled models' sizes: 64 px images cut into 8 x 8 patches of 8 px (n = 64), as the bundled ViT.
BUNDLED_VISION = dict(image_size=64, patch_size=8, hidden_size=96, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=4, layer_norm_eps=1e-5)
BUNDLED_TEXT = dict(hidden_size=96, encoder_hidden_size=96, intermediate_size=384, num_hidden_layers=3,
                    num_attention_heads=4, max_position_embeddings=48, layer_norm_eps=1e-12)
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")  # ids 0..6; [DEC] starts decoding


# ------------------------------------------------------------------------------------------------------- tokenizer

def shapes_vocabulary() -> list[str]:
    """The WordPiece vocabulary of the bundled models: special tokens, every word the Shapes grammar writes, and
    single letters and digits (with their ## continuations), so that any typed word still tokenizes."""
    from mmcore import shapes

    words = {"a", "an", "and", "the", "is", "are", "there", "of", "to", "what", "color", "colour", "shape", "how",
             "many", "object", "objects", "shapes", "left", "right", "above", "below", "yes", "no", "picture",
             "small", "large", "in", "image", "this", "which", "where"}
    words |= set(shapes.SHAPES) | {s + "s" for s in shapes.SHAPES} | set(shapes.COLOR_NAMES) | set(shapes.NUMBERS)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    punctuation = [",", ".", ":", "?", "!", "'", "-", ";"]
    tokens = [*SPECIALS, *punctuation, *sorted(words), *letters, *("##" + c for c in letters)]
    return list(dict.fromkeys(tokens))  # "a" is a word and a letter: one id


def build_tokenizer(folder: Path):
    """A WordPiece BertTokenizerFast over `shapes_vocabulary()`, saved to `folder` and returned."""
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(shapes_vocabulary())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True, bos_token="[DEC]",
                                  additional_special_tokens=["[ENC]"],
                                  model_max_length=BUNDLED_TEXT["max_position_embeddings"])
    tokenizer.save_pretrained(folder)
    return tokenizer


def bundled_config(vocab_size: int, vision: dict | None = None, text: dict | None = None):
    """The BlipConfig of every bundled BLIP model, for a vocabulary of `vocab_size` tokens (sizes overridable)."""
    from transformers import BlipConfig

    ids = {t: i for i, t in enumerate(SPECIALS)}
    text = dict(text or BUNDLED_TEXT, vocab_size=vocab_size, pad_token_id=ids["[PAD]"], bos_token_id=ids["[DEC]"],
                sep_token_id=ids["[SEP]"], eos_token_id=ids["[SEP]"])
    return BlipConfig(text_config=text, vision_config=dict(vision or BUNDLED_VISION), projection_dim=64,
                      image_text_hidden_size=64)


def make_processor(tokenizer, size: int):
    """BlipProcessor for the bundled models: resize to `size` px, scale to [-1, 1] (mean 0.5, std 0.5)."""
    from transformers import BlipImageProcessor, BlipProcessor

    return BlipProcessor(BlipImageProcessor(size={"height": size, "width": size}, image_mean=[0.5] * 3,
                                            image_std=[0.5] * 3, resample=2, do_convert_rgb=True), tokenizer)


def named_objects(text: str) -> list[tuple[str, str]] | None:
    """The (colour, shape) pairs a caption names, in order, or None when it names a colour or shape word outside such
    a pair (so "a red circle and a blue" is wrong, not half right). Plural shapes count as shapes."""
    from mmcore import shapes

    words = text.lower().replace(",", " ").replace(":", " ").split()
    plural = {s + "s": s for s in shapes.SHAPES}
    pairs, i = [], 0
    while i < len(words):
        word = words[i]
        if word in shapes.COLOR_NAMES:
            if i + 1 < len(words) and words[i + 1] in shapes.SHAPES:
                pairs.append((word, words[i + 1]))
                i += 2
                continue
            return None
        if word in shapes.SHAPES or word in plural:
            return None
        i += 1
    return pairs


def caption_correct(text: str, scene) -> bool:
    """True when the caption names every object's colour and shape, and nothing else (order free)."""
    pairs = named_objects(text)
    return pairs is not None and sorted(pairs) == sorted((o.color, o.shape) for o in scene.objects)


# ---------------------------------------------------------------------------------------------------------- loading

@dataclass
class BlipBundle:
    """A BLIP model with its processor, where it runs, and what it is (caption | vqa | itm)."""

    model: torch.nn.Module
    processor: object
    kind: str
    device: torch.device
    dtype: torch.dtype
    bundled: bool = False

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def text_config(self):
        return self.model.config.text_config

    @property
    def grid(self) -> int:
        vc = self.model.config.vision_config
        return vc.image_size // vc.patch_size

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """An RGB image -> pixel_values (1, 3, S, S) on the model's device, by the model's own image processor."""
        return self.processor(images=image.convert("RGB"), return_tensors="pt").pixel_values.to(self.device,
                                                                                             self.dtype)

    def encode_text(self, text: str | list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(text, return_tensors="pt", padding=True, truncation=True,
                             max_length=self.text_config.max_position_embeddings)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    def words(self, ids: list[int]) -> list[str]:
        return self.tokenizer.convert_ids_to_tokens(ids)


_CLASSES = {"caption": "BlipForConditionalGeneration", "vqa": "BlipForQuestionAnswering",
            "itm": "BlipForImageTextRetrieval"}


def _load(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool, kind: str) -> BlipBundle:
    """from_pretrained on a bundled folder or a hub id, safetensors only; the processor comes from the same place."""
    import transformers

    folder = Path(source)
    if folder.is_absolute() and not folder.is_dir():
        raise FileNotFoundError(f"{source} does not exist: train it with `python -m mmcore.train blip`")
    cls = getattr(transformers, _CLASSES[kind])
    model = cls.from_pretrained(source, dtype=dtype, use_safetensors=True, local_files_only=local_files_only,
                                attn_implementation="eager")
    processor = transformers.BlipProcessor.from_pretrained(source, local_files_only=local_files_only)
    return BlipBundle(model.to(device).eval(), processor, kind, device, dtype, bundled=folder.is_absolute())


def load_caption(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> BlipBundle:
    return _load(source, device, dtype, local_files_only, "caption")


def load_vqa(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> BlipBundle:
    return _load(source, device, dtype, local_files_only, "vqa")


def load_itm(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> BlipBundle:
    return _load(source, device, dtype, local_files_only, "itm")


# --------------------------------------------------------------------------------------------------------- decoding

@dataclass(frozen=True)
class Decoding:
    """How to pick each next token. Validated here, so that every caller gets the same messages."""

    strategy: str = "greedy"
    num_beams: int = 3
    length_penalty: float = 1.0
    temperature: float = 1.0
    top_k: int = 0          # 0: off
    top_p: float = 1.0      # 1: off
    max_new_tokens: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {self.strategy!r}")
        _whole(self.max_new_tokens, "the maximum length", 1, MAX_NEW_TOKENS)
        _whole(self.num_beams, "the number of beams", 1, MAX_BEAMS)
        _whole(self.top_k, "top-k", 0, 1000)
        _whole(self.seed, "the seed", 0, 2**31 - 1)
        if not (math.isfinite(self.temperature) and 0.05 <= self.temperature <= 5):
            raise ValueError(f"the temperature must be between 0.05 and 5, got {self.temperature}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.length_penalty) and -3 <= self.length_penalty <= 3):
            raise ValueError(f"the length penalty must be between -3 and 3, got {self.length_penalty}")


def _whole(value, name: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number from {lo} to {hi}, got {value!r}")


@dataclass
class Step:
    """One decoding step: the token chosen, and the top candidates of the distribution it was chosen from."""

    token_id: int
    token: str
    prob: float                       # probability of the chosen token under the (warped) distribution
    top: list[tuple[str, float]]      # the TOP_K_SHOWN most likely next tokens, before any warping


@dataclass
class Beam:
    """One beam at one step: its tokens so far and their summed log-probability."""

    step: int
    tokens: list[str]
    logprob: float
    finished: bool = False
    score: float | None = None  # for finished beams: logprob / length^length_penalty


@dataclass
class Caption:
    ids: list[int]                          # the generated tokens, without [DEC] and without the final [SEP]
    text: str
    steps: list[Step]
    beams: list[Beam] = field(default_factory=list)  # beam search only: every beam kept at every step
    ended: bool = True                      # False when the maximum length stopped it before [SEP]


@torch.inference_mode()
def image_embeds(bundle: BlipBundle, image: Image.Image) -> torch.Tensor:
    """Step 1 and 2 for the image: the vision transformer's output tokens (1, 1 + n, d)."""
    return bundle.model.vision_model(pixel_values=bundle.pixels(image)).last_hidden_state


def _decoder(bundle: BlipBundle):
    return bundle.model.text_decoder


@torch.inference_mode()
def next_logits(bundle: BlipBundle, memory: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log-probabilities of the next token after each prefix in `ids` (B, L), cross-attending to `memory`."""
    out = _decoder(bundle)(input_ids=ids, encoder_hidden_states=memory.expand(len(ids), -1, -1), return_dict=True)
    return torch.log_softmax(out.logits[:, -1].float(), dim=-1)


def _top(bundle: BlipBundle, logprobs: torch.Tensor) -> list[tuple[str, float]]:
    p, i = logprobs.exp().topk(TOP_K_SHOWN)
    return list(zip(bundle.words(i.tolist()), p.tolist()))


def _warpers(d: Decoding):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if d.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(d.temperature))
    if d.top_k:
        warpers.append(TopKLogitsWarper(d.top_k))
    if d.top_p < 1.0:
        warpers.append(TopPLogitsWarper(d.top_p))
    return warpers


def stream_caption(bundle: BlipBundle, image: Image.Image, decoding: Decoding, prompt: str = ""):
    """Greedy or sampled decoding, one token at a time: yields a `Step` as each token is chosen. The caption stops
    at [SEP] or after `max_new_tokens`. `prompt` (e.g. "a picture of") is fed first, as BLIP allows."""
    if decoding.strategy == "beam search":
        raise ValueError("beam search keeps several captions alive; use beam_search()")
    memory = image_embeds(bundle, image)
    ids = _start_ids(bundle, prompt)
    warpers = _warpers(decoding) if decoding.strategy == "sampling" else None
    gen = torch.Generator().manual_seed(decoding.seed)
    sep = bundle.text_config.sep_token_id
    for _ in range(decoding.max_new_tokens):
        logprobs = next_logits(bundle, memory, ids)[0]
        if warpers is None:
            probs = logprobs.exp()
            token = int(logprobs.argmax())
        else:
            probs = torch.softmax(warpers(ids.cpu(), logprobs[None].cpu())[0], dim=-1)
            token = int(torch.multinomial(probs, 1, generator=gen))
        yield Step(token, bundle.words([token])[0], float(probs[token]), _top(bundle, logprobs))
        if token == sep:
            return
        ids = torch.cat([ids, torch.tensor([[token]], device=ids.device)], dim=1)


def _start_ids(bundle: BlipBundle, prompt: str) -> torch.Tensor:
    """[DEC] followed by the prompt's tokens (without [CLS] and [SEP])."""
    ids = [bundle.text_config.bos_token_id]
    if prompt.strip():
        ids += bundle.tokenizer(prompt.strip(), add_special_tokens=False).input_ids
    return torch.tensor([ids], device=bundle.device)


def caption(bundle: BlipBundle, image: Image.Image, decoding: Decoding = Decoding(), prompt: str = "") -> Caption:
    """The whole caption, by any strategy."""
    if decoding.strategy == "beam search":
        return beam_search(bundle, image, decoding, prompt)
    steps = list(stream_caption(bundle, image, decoding, prompt))
    return finish(bundle, steps, prompt)


def finish(bundle: BlipBundle, steps: list[Step], prompt: str = "") -> Caption:
    sep = bundle.text_config.sep_token_id
    ended = bool(steps) and steps[-1].token_id == sep
    ids = [s.token_id for s in steps if s.token_id != sep]
    text = " ".join(filter(None, [prompt.strip(), bundle.tokenizer.decode(ids, skip_special_tokens=True)]))
    return Caption(ids, text, steps, ended=ended)


@torch.inference_mode()
def beam_search(bundle: BlipBundle, image: Image.Image, decoding: Decoding, prompt: str = "") -> Caption:
    """Beam search as transformers runs it: keep the n best prefixes by summed log-probability; a prefix that ends
    with [SEP] is finished and scored sum / length^length_penalty; stop when n are finished and no live beam can
    beat the worst of them, or at the maximum length. Records every beam at every step."""
    n, lp = decoding.num_beams, decoding.length_penalty
    memory = image_embeds(bundle, image)
    start = _start_ids(bundle, prompt)
    sep = bundle.text_config.sep_token_id
    live = [(start[0].tolist(), 0.0)]
    done: list[tuple[float, list[int], float]] = []  # (score, ids, logprob)
    history: list[Beam] = []
    plen = start.shape[1]
    for step in range(1, decoding.max_new_tokens + 1):
        ids = torch.tensor([b[0] for b in live], device=bundle.device)
        logprobs = next_logits(bundle, memory, ids)
        total = logprobs + torch.tensor([b[1] for b in live], device=logprobs.device)[:, None]
        values, flat = total.flatten().topk(min(2 * n, total.numel()))
        vocab = logprobs.shape[-1]
        new_live = []
        for value, index in zip(values.tolist(), flat.tolist()):
            beam, token = divmod(index, vocab)
            seq = live[beam][0] + [token]
            if token == sep:
                length = len(seq) - plen
                score = value / (length ** lp)
                if len(done) < n or score > min(d[0] for d in done):
                    done.append((score, seq, value))
                    done.sort(key=lambda d: -d[0])
                    del done[n:]
                    history.append(Beam(step, bundle.words(seq[plen:]), value, True, score))
            else:
                new_live.append((seq, value))
            if len(new_live) == n:
                break
        live = new_live
        history += [Beam(step, bundle.words(s[plen:]), v) for s, v in live]
        # stop when n are finished and the best live beam cannot catch up (transformers' early_stopping=False rule)
        if len(done) == n and live:
            best_possible = live[0][1] / ((len(live[0][0]) - plen) ** lp) if lp > 0 else live[0][1]
            if done[-1][0] >= best_possible:
                break
        if not live:
            break
    if not done:  # the maximum length came first: rank the live beams as they are
        done = sorted(((v / ((len(s) - plen) ** lp), s, v) for s, v in live), key=lambda d: -d[0])
    best = done[0][1][plen:]
    steps = _replay(bundle, memory, start, best)
    result = finish(bundle, steps, prompt)
    result.beams = history
    return result


@torch.inference_mode()
def _replay(bundle: BlipBundle, memory: torch.Tensor, start: torch.Tensor, tokens: list[int]) -> list[Step]:
    """The per-step view of a finished token sequence: each token's probability and the top candidates beside it."""
    ids = torch.cat([start, torch.tensor([tokens], device=start.device)], dim=1)
    out = _decoder(bundle)(input_ids=ids, encoder_hidden_states=memory, return_dict=True)
    logprobs = torch.log_softmax(out.logits[0, start.shape[1] - 1:-1].float(), dim=-1)
    return [Step(t, bundle.words([t])[0], float(lp[t].exp()), _top(bundle, lp)) for t, lp in zip(tokens, logprobs)]


# ------------------------------------------------------------------------------------------------- cross-attention

@dataclass
class Attention:
    """Text -> image cross-attention of a token sequence: maps[layer, head, query, patch], renormalised over the n
    patches (the [CLS] image token's share is kept apart in `cls_share`)."""

    maps: np.ndarray          # (layers, heads, queries, n)
    cls_share: np.ndarray     # (layers, heads, queries)
    tokens: list[str]         # the query tokens

    def of(self, query: int, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """One (n,) map: a layer (None: the mean over layers) and a head (None: the mean over heads)."""
        m = self.maps[:, :, query]
        m = m.mean(0) if layer is None else m[layer]
        m = m.mean(0) if head is None else m[head]
        return m / m.sum()


def _split_cls(att: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(..., 1 + n) probabilities over [CLS] + patches -> the patches renormalised, and the [CLS] share."""
    att = att.float().cpu().numpy()
    patches = att[..., 1:]
    return patches / np.maximum(patches.sum(-1, keepdims=True), 1e-12), att[..., 0]


@torch.inference_mode()
def decoder_attention(bundle: BlipBundle, image: Image.Image, ids: list[int], prompt: str = "") -> Attention:
    """The caption decoder's cross-attention for the sequence [DEC] prompt ids. Query i is the position whose output
    chose token i + 1, so `of(i)` is where the decoder looked while it chose the i-th generated token."""
    memory = image_embeds(bundle, image)
    start = _start_ids(bundle, prompt)
    seq = torch.cat([start, torch.tensor([ids], device=start.device, dtype=start.dtype)], dim=1) if ids else start
    out = _decoder(bundle)(input_ids=seq, encoder_hidden_states=memory, output_attentions=True, return_dict=True)
    att = torch.stack(out.cross_attentions)[:, 0]  # (layers, heads, L, 1 + n)
    att = att[:, :, start.shape[1] - 1:start.shape[1] - 1 + len(ids)]
    maps, cls = _split_cls(att)
    return Attention(maps, cls, bundle.words(ids))


@torch.inference_mode()
def logit_lens(bundle: BlipBundle, image: Image.Image, ids: list[int], step: int, prompt: str = "",
               k: int = TOP_K_SHOWN) -> list[list[tuple[str, float]]]:
    """The next-token guess at generation step `step` (0-based) read after each decoder layer, through the final LM
    head: one list of the top-k (token, probability) per layer, the embeddings first and the last layer last."""
    if not 0 <= step <= len(ids):
        raise ValueError(f"step must be between 0 and {len(ids)}, got {step}")
    memory = image_embeds(bundle, image)
    start = _start_ids(bundle, prompt)
    seq = torch.cat([start, torch.tensor([ids[:step]], device=start.device, dtype=start.dtype)], dim=1) \
        if step else start
    decoder = _decoder(bundle)
    out = decoder(input_ids=seq, encoder_hidden_states=memory, output_hidden_states=True, return_dict=True)
    rows = []
    for hidden in out.hidden_states:
        logits = decoder.cls(hidden[:, -1:]).float()[0, -1]
        p, i = torch.softmax(logits, -1).topk(k)
        rows.append(list(zip(bundle.words(i.tolist()), p.tolist())))
    return rows


@torch.inference_mode()
def record_pipeline(bundle: BlipBundle, image: Image.Image, text: str = "") -> dict:
    """The lecture's steps 1-4 on one image and text prefix, recorded by hooks during a single decoder pass: the
    tensor shapes at each step, the last layer's cross-attention (mean over heads) and the next-token distribution."""
    memory = image_embeds(bundle, image)
    start = _start_ids(bundle, text)
    decoder = _decoder(bundle)
    recorded: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, inputs, output) -> None:  # returns None: the output passes on unchanged
            recorded.setdefault(name, tuple(output.shape))
        return hook

    layer0 = decoder.bert.encoder.layer[0].crossattention.self
    hooks = [decoder.bert.embeddings.register_forward_hook(record("text"))]
    hooks += [getattr(layer0, name).register_forward_hook(record(name)) for name in ("query", "key", "value")]
    try:
        out = decoder(input_ids=start, encoder_hidden_states=memory, output_attentions=True, return_dict=True)
    finally:
        for h in hooks:
            h.remove()
    vc, tc = bundle.model.config.vision_config, bundle.text_config
    heads = tc.num_attention_heads
    p, i = torch.softmax(out.logits[0, -1].float(), -1).topk(8)

    def fmt(shape: tuple[int, ...]) -> str:
        return " × ".join(str(n) for n in shape[1:])

    return {
        "patch": vc.patch_size, "patches": (vc.image_size // vc.patch_size) ** 2, "d_image": vc.hidden_size,
        "image_tokens": fmt(tuple(memory.shape)), "text_tokens": fmt(recorded["text"]), "n_text": start.shape[1],
        "tokens": bundle.words(start[0].tolist()), "q": fmt(recorded["query"]), "k": fmt(recorded["key"]),
        "v": fmt(recorded["value"]), "heads": heads, "head_dim": tc.hidden_size // heads,
        "layers": tc.num_hidden_layers, "vocab": tc.vocab_size,
        "attention": out.cross_attentions[-1][0].float().mean(0).cpu().numpy(),
        "next": list(zip(bundle.words(i.tolist()), p.tolist())),
    }


# --------------------------------------------------------------------------------------------------------------- VQA

@dataclass
class Answer:
    text: str
    prob: float
    attention: Attention       # the question encoder's cross-attention over the image (queries = question tokens)


def check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("Please type a question about the image, e.g. 'what color is the circle?'.")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"The question is {len(question):,} characters long; please keep it under "
                         f"{MAX_QUESTION_CHARS}.")
    return question.strip()


@torch.inference_mode()
def answer(bundle: BlipBundle, image: Image.Image, question: str, max_new_tokens: int = 6) -> Answer:
    """VQA, greedy: the question encoder reads the image through cross-attention, the answer decoder reads the
    question encoder's output. Returns the answer, its probability and where the question looked."""
    question = check_question(question)
    model = bundle.model
    memory = image_embeds(bundle, image)
    q_ids, q_mask = bundle.encode_text(question)
    enc = model.text_encoder(input_ids=q_ids, attention_mask=q_mask, encoder_hidden_states=memory,
                             output_attentions=True, return_dict=True)
    ids = torch.tensor([[bundle.text_config.bos_token_id]], device=bundle.device)
    sep, prob = bundle.text_config.sep_token_id, 1.0
    for _ in range(max_new_tokens):
        out = model.text_decoder(input_ids=ids, encoder_hidden_states=enc.last_hidden_state,
                                 encoder_attention_mask=q_mask, return_dict=True)
        p = torch.softmax(out.logits[0, -1].float(), -1)
        token = int(p.argmax())
        prob *= float(p[token])
        if token == sep:
            break
        ids = torch.cat([ids, torch.tensor([[token]], device=ids.device)], dim=1)
    att = torch.stack(enc.cross_attentions)[:, 0]  # (layers, heads, Lq, 1 + n)
    maps, cls = _split_cls(att)
    text = bundle.tokenizer.decode(ids[0, 1:].tolist(), skip_special_tokens=True)
    return Answer(text, prob, Attention(maps, cls, bundle.words(q_ids[0].tolist())))


# ---------------------------------------------------------------------------------------------------------- matching

@torch.inference_mode()
def match(bundle: BlipBundle, image: Image.Image, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(ITM probability that each text matches the image, ITC cosine of each text with the image)."""
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("Please write at least one caption, one per line.")
    if len(texts) > 16:
        raise ValueError(f"Please compare at most 16 captions at once, got {len(texts)}.")
    if any(len(t) > MAX_QUESTION_CHARS for t in texts):
        raise ValueError(f"Each caption must be under {MAX_QUESTION_CHARS} characters.")
    pixels = bundle.pixels(image).expand(len(texts), -1, -1, -1)
    ids, mask = bundle.encode_text(texts)
    itm = bundle.model(input_ids=ids, pixel_values=pixels, attention_mask=mask, use_itm_head=True).itm_score
    itc = bundle.model(input_ids=ids, pixel_values=pixels[:1], attention_mask=mask, use_itm_head=False).itm_score
    return torch.softmax(itm.float(), -1)[:, 1].cpu().numpy(), itc.float()[0].cpu().numpy()


# ------------------------------------------------------------------------------------------------------ the catalogue

for _kind, _loader, _repo, _mb, _what in (
        ("caption", load_caption, "Salesforce/blip-image-captioning-base", 990, "captioning"),
        ("vqa", load_vqa, "Salesforce/blip-vqa-base", 1540, "visual question answering"),
        ("itm", load_itm, "Salesforce/blip-itm-base-coco", 900, "image-text matching (ITM head + ITC)")):
    register(ModelSpec(
        family=f"blip-{_kind}", tier="bundled", name=f"blip-shapes-{_kind}", source=f"models/blip-shapes-{_kind}",
        loader=_loader, size_mb=folder_mb(f"models/blip-shapes-{_kind}"), licence="MIT",
        notes=f"transformers {_CLASSES[_kind]} trained on Shapes scenes: {_what}"))
    register(ModelSpec(
        family=f"blip-{_kind}", tier="pretrained", name=_repo, source=_repo, loader=_loader, size_mb=_mb,
        licence="BSD-3-Clause",
        cache_files=("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json",
                     "vocab.txt"),
        notes=f"Salesforce BLIP base, {_what}"))
