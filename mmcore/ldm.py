"""Latent diffusion, the reverse half: a text-conditioned UNet denoises VAE latents step by step from a prompt.

    p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), Sigma_theta(x_t, t))

The pieces are Stable Diffusion's, from diffusers and transformers: a CLIP text encoder (CLIPTextModel + CLIPTokenizer)
turns the prompt into token features, a UNet2DConditionModel predicts the noise (or v) from x_t, t and those features
by cross-attention, a scheduler turns that prediction into x_{t-1}, and the VAE decodes the final latent.

The bundled tier is a Stable-Diffusion-shaped pipeline trained on Shapes captions (`python -m mmcore.train ldm`). Its
text encoder is the bundled CLIP's text tower, converted from open_clip to transformers' CLIPTextModel
(`text_encoder_from_open_clip`), so the prompt features are exactly the CLIP tab's. Its VAE is vae-shapes. The folder
loads as is with `StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)`.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from mmcore.diffusion import VaeBundle, finite_number
from mmcore.models import ModelSpec, folder_mb, register

BUNDLED_UNET = dict(  # diffusers UNet2DConditionModel kwargs of ldm-shapes: 4 x 8 x 8 latents, 64-d CLIP token features
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),  # 8x8 (attends to the prompt) -> 4x4
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(64, 128),
    layers_per_block=1,
    cross_attention_dim=64,  # the bundled CLIP text tower's width
    attention_head_dim=4,  # diffusers' historical name: the number of heads
    norm_num_groups=32,
)
BUNDLED_SCHEDULER = dict(  # diffusers DDPMScheduler kwargs: the cosine schedule suits a small latent, v-prediction
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    clip_sample=False,
    steps_offset=1,
    timestep_spacing="trailing",  # sampling starts at t = T, where the cosine schedule's x_T is almost pure noise
)


# --------------------------------------------------------------------------------------- CLIP's text tower, converted

def clip_tokenizer(context_length: int = 77):
    """transformers' CLIPTokenizer over CLIP's own BPE (the vocabulary and merges that ship inside open_clip), built
    offline. Up to the end-of-text token its ids are open_clip's; it pads with <|endoftext|>, as Stable Diffusion's
    tokenizer does (open_clip pads with 0). The text tower is causal, so padding never changes the features of the
    prompt's own tokens."""
    import tempfile

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1:49152 - 256 - 2 + 1]  # as open_clip's SimpleTokenizer reads them
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"),
                             pad_token="<|endoftext|>", model_max_length=context_length)


def text_encoder_from_open_clip(model) -> torch.nn.Module:
    """An open_clip CLIP's text tower as a transformers CLIPTextModel with the same weights. Both are the same network
    (token + position embeddings, pre-LN blocks with causal self-attention, a final LayerNorm), so last_hidden_state
    equals open_clip's token features; the projection and pooling that CLIP adds on top are not used by diffusion."""
    from open_clip.transformer import QuickGELU
    from transformers import CLIPTextConfig, CLIPTextModel

    sd = {k: v.float() for k, v in model.state_dict().items() if not k.startswith("visual.")}
    context, width = sd["positional_embedding"].shape
    blocks = model.transformer.resblocks
    quick = isinstance(blocks[0].mlp.gelu, QuickGELU)  # OpenAI's CLIP towers use x * sigmoid(1.702 x)
    config = CLIPTextConfig(
        vocab_size=sd["token_embedding.weight"].shape[0], hidden_size=width,
        intermediate_size=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=len(blocks), num_attention_heads=blocks[0].attn.num_heads,
        max_position_embeddings=context, hidden_act="quick_gelu" if quick else "gelu",
        layer_norm_eps=blocks[0].ln_1.eps,
        projection_dim=sd["text_projection"].shape[1], bos_token_id=49406, eos_token_id=49407, pad_token_id=0)
    ours = {
        "embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "embeddings.position_embedding.weight": sd["positional_embedding"],
        "final_layer_norm.weight": sd["ln_final.weight"],
        "final_layer_norm.bias": sd["ln_final.bias"],
    }
    for i in range(len(blocks)):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for name in ("weight", "bias"):
            q, k, v = sd[src + f"attn.in_proj_{name}"].chunk(3)
            ours |= {dst + f"self_attn.q_proj.{name}": q, dst + f"self_attn.k_proj.{name}": k,
                     dst + f"self_attn.v_proj.{name}": v,
                     dst + f"self_attn.out_proj.{name}": sd[src + f"attn.out_proj.{name}"],
                     dst + f"layer_norm1.{name}": sd[src + f"ln_1.{name}"],
                     dst + f"layer_norm2.{name}": sd[src + f"ln_2.{name}"],
                     dst + f"mlp.fc1.{name}": sd[src + f"mlp.c_fc.{name}"],
                     dst + f"mlp.fc2.{name}": sd[src + f"mlp.c_proj.{name}"]}
    used = {"token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias"} | {
        f"transformer.resblocks.{i}.{part}.{name}" for i in range(len(blocks)) for name in ("weight", "bias")
        for part in ("ln_1", "ln_2", "attn.out_proj", "mlp.c_fc", "mlp.c_proj")} | {
        f"transformer.resblocks.{i}.attn.in_proj_{name}" for i in range(len(blocks)) for name in ("weight", "bias")}
    ignored = {"text_projection", "logit_scale", "logit_bias", "attn_mask"}  # CLIP's head, not the token features
    left = sorted(set(sd) - used - ignored)
    if left:  # e.g. LayerScale (ls_1, ls_2) or attention pooling, which CLIPTextModel has no place for
        raise ValueError(f"this open_clip text tower has weights CLIPTextModel cannot hold: {left[:5]}")
    encoder = CLIPTextModel(config)
    missing, unexpected = encoder.load_state_dict(ours, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise ValueError(f"text tower mapping incomplete: missing {missing}, unexpected {unexpected}")
    return encoder.eval()


# ------------------------------------------------------------------------------------------------ the bundled model

def bundled_parts(seed: int = 0):
    """A fresh UNet (random init from `seed`) and the DDPMScheduler it trains under."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**BUNDLED_UNET), DDPMScheduler(**BUNDLED_SCHEDULER)


def assemble(unet, vae, text_encoder, tokenizer, scheduler):
    """A StableDiffusionPipeline from parts: no safety checker or feature extractor (the Shapes world needs none)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


# ------------------------------------------------------------------------------------ a fast preview decoder (bundled)

PREVIEW_DIR = "preview"  # a subfolder of the bundled pipeline; diffusers' loader ignores it


class LatentPreview(torch.nn.Module):
    """A decoder small enough to run at every step, for previews (TAESD's role, for the bundled model): two 3x3
    convolutions at the latent's own resolution, then a 1x1 convolution to the f x f RGB pixels of each cell and a pixel
    shuffle, (B, C, h, w) -> (B, 3, h f, w f). About 42 k parameters and a fraction of a millisecond a picture;
    trained to imitate the VAE's decoder (`fit`), so it needs no data but the VAE itself."""

    def __init__(self, latent_channels: int = 4, factor: int = 4, width: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(latent_channels, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(width, 3 * factor * factor, 1), torch.nn.PixelShuffle(factor))
        self.latent_channels, self.factor, self.width = latent_channels, factor, width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def fit(self, latents: torch.Tensor, images: torch.Tensor, steps: int = 2000, batch: int = 256,
            seed: int = 0) -> LatentPreview:
        """Train on scaled latents (N, C, h, w) -> images (N, 3, h f, w f) in [-1, 1] (the VAE's decodes), L1 + MSE,
        Adam with a cosine decay. Seeded: the same data and seed give the same weights."""
        import torch.nn.functional as F

        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # a seeded init that leaves the global RNG alone
            for p in self.parameters():  # weights uniform in +-1/sqrt(fan_in), as PyTorch's default; biases zero
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / math.sqrt(p[0].numel()) if p.dim() > 1
                        else torch.zeros_like(p))
        opt = torch.optim.Adam(self.parameters(), lr=3e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        self.train()
        with torch.enable_grad():  # callers may sit inside no_grad
            for _ in range(steps):
                idx = torch.randint(len(latents), (batch,), generator=gen)
                out = self(latents[idx])
                loss = F.l1_loss(out, images[idx]) + F.mse_loss(out, images[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        return self.eval()

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.half().contiguous() for k, v in self.state_dict().items()},
                  str(folder / "diffusion_pytorch_model.safetensors"))
        (folder / "config.json").write_text(json.dumps(
            {"_class_name": "LatentPreview", "latent_channels": self.latent_channels, "factor": self.factor,
             "width": self.width}) + "\n")

    @classmethod
    def load(cls, folder: Path) -> LatentPreview:
        from safetensors.torch import load_file

        cfg = json.loads((folder / "config.json").read_text())
        model = cls(cfg["latent_channels"], cfg["factor"], cfg["width"])
        model.load_state_dict({k: v.float() for k, v in load_file(str(folder / "diffusion_pytorch_model.safetensors")
                                                                  ).items()})
        return model.eval()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> approximate images in [-1, 1], on the CPU (it costs microseconds)."""
        return self(z.float().cpu()).clamp(-1, 1)


# ------------------------------------------------------------------------------------------------------ the loaders

@dataclass
class LdmBundle:
    """A text-to-image latent diffusion model in parts, as the tab's own loop uses them."""

    unet: torch.nn.Module  # UNet2DConditionModel
    vae: torch.nn.Module  # AutoencoderKL: decodes the final latent
    text_encoder: torch.nn.Module  # CLIPTextModel
    tokenizer: object  # CLIPTokenizer
    scheduler_config: dict  # the pipeline's own scheduler config; every scheduler here is built from it
    alphas_cumprod: torch.Tensor  # (num_train_timesteps,) abar_t of the training schedule, which all share
    device: torch.device
    dtype: torch.dtype
    preview: VaeBundle | LatentPreview | None = None  # a cheaper decoder for per-step previews; None = the VAE
    name: str = ""

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def default_size(self) -> int:
        """The side, in pixels, the model was trained at (32 for the bundled model, 512 for Stable Diffusion)."""
        return int(self.unet.config.sample_size) * self.vae_factor

    @property
    def prediction_type(self) -> str:
        return self.scheduler_config.get("prediction_type", "epsilon")


def load_ldm(source: str, device: torch.device, dtype: torch.dtype, local_files_only: bool = True) -> LdmBundle:
    """A Stable-Diffusion-layout folder or hub repo (unet/, vae/, text_encoder/, tokenizer/, scheduler/) loaded with
    StableDiffusionPipeline.from_pretrained, safetensors only, no safety checker. The bundled ldm-shapes and Stable
    Diffusion (1.5, sd-turbo) load through here alike."""
    from diffusers import StableDiffusionPipeline

    folder = Path(source)
    if folder.is_absolute() and not folder.is_dir():
        raise FileNotFoundError(f"{source} does not exist: train it with `python -m mmcore.train ldm`")
    pipe = StableDiffusionPipeline.from_pretrained(
        source, dtype=dtype, use_safetensors=True, local_files_only=local_files_only, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.to(device)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        part.eval().requires_grad_(False)
    install_router(pipe.unet)  # per-word attention maps can then be recorded per request (attention_run)
    local = folder.is_dir() and (folder / PREVIEW_DIR / "config.json").is_file()
    preview = LatentPreview.load(folder / PREVIEW_DIR) if local else None
    return LdmBundle(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config),
                     pipe.scheduler.alphas_cumprod.float(), device, dtype, preview=preview, name=Path(source).name)


def accelerate(bundle: LdmBundle, channels_last: bool = True, compile: bool = False) -> LdmBundle:
    """The GPU levers of the reverse loop, applied in place; nothing changes on a CPU. Attention already runs on
    PyTorch's SDPA kernels (diffusers' default processor, which the AttentionRouter calls).

    - channels_last: the UNet's and the TAESD preview decoder's convolutions read NHWC memory, cuDNN's fast layout.
    - compile: torch.compile(mode="reduce-overhead") on the UNet and the preview decoder: Inductor's fused kernels,
      replayed as CUDA graphs, so one step costs one launch instead of a thousand. The first call of each input
      shape compiles for tens of seconds, so this is off unless asked for (MMLAB_COMPILE=1); the app then warms
      the default size with guidance before the first click (see warm_compiled). Runs that record per-word
      cross-attention (attention_run) call the eager UNet underneath, with the same weights."""
    if bundle.device.type != "cuda":
        return bundle
    decoder = bundle.preview.model.decoder if isinstance(bundle.preview, VaeBundle) else None
    if channels_last and not bundle.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last):
        bundle.unet.to(memory_format=torch.channels_last)  # once: the tab calls this on every request
        if decoder is not None:
            decoder.to(memory_format=torch.channels_last)
    if compile and not hasattr(bundle.unet, "_orig_mod"):  # once: a compiled module keeps the original there
        bundle.unet = torch.compile(bundle.unet, mode="reduce-overhead")
    if compile and decoder is not None and not hasattr(decoder, "_orig_mod"):
        bundle.preview.model.decoder = torch.compile(decoder, mode="reduce-overhead")
    return bundle


def warm_compiled(bundle: LdmBundle, steps: int = 3) -> None:
    """Run a few guided steps at the default size, with previews of x_t and x0 decoded as one batch of two as the tab
    streams them, so that a compiled model has compiled (and captured its CUDA graphs) for the shapes a click
    uses before anyone clicks."""
    request = Request("", "", "DDIM", steps, 7.5, 0, bundle.default_size)
    for step in denoise(bundle, request):
        decode(bundle, torch.cat([step.x_t, step.x0_pred]), preview=True)
    decode(bundle, step.latents)


# ------------------------------------------------------------------------------------------- the prompt, validated

MAX_PROMPT_CHARS = 500
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
SCHEDULERS = {  # the name a user picks -> diffusers class name; each is built from the model's own config
    "DDPM": "DDPMScheduler",
    "DDIM": "DDIMScheduler",
    "Euler": "EulerDiscreteScheduler",
    "Euler ancestral": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
}


def _small(bundle: LdmBundle) -> bool:
    """A model small enough that no request can keep a CPU busy for long (the bundled one, 32 px)."""
    return bundle.default_size <= 64


def check_prompt(prompt, name: str = "prompt") -> str:
    """A prompt of at most MAX_PROMPT_CHARS characters; empty is allowed (the unconditional model)."""
    if prompt is None:
        return ""
    if not isinstance(prompt, str):
        raise ValueError(f"{name} must be text, got {type(prompt).__name__}")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS} are accepted "
                         "(CLIP reads only its first 77 tokens anyway)")
    return prompt.strip()


def check_steps(num_inference_steps) -> int:
    value = finite_number(num_inference_steps, "num_inference_steps")
    if value != int(value) or not 1 <= value <= MAX_STEPS:
        raise ValueError(f"num_inference_steps must be a whole number from 1 to {MAX_STEPS}, got {num_inference_steps}")
    return int(value)


def check_guidance(guidance_scale) -> float:
    value = finite_number(guidance_scale, "guidance_scale")
    if not 0.0 <= value <= MAX_GUIDANCE:
        raise ValueError(f"guidance_scale must be in [0, {MAX_GUIDANCE:g}] (1 = no guidance), got {guidance_scale}")
    return value


CPU_WORK = 40  # on a CPU, steps x (size / model size)^2 x (2 with guidance) at most: SD-1.5's 20 guided steps at
# 512 px, about 16 s a step on 2 cores (bench/latency_ldm.py), so about 5 minutes

def check_size(size, bundle: LdmBundle) -> int:
    """A square side in pixels: a multiple of 8 (and of the VAE's factor), at most 2x the model's own size (1x for a
    large model on a CPU)."""
    value = finite_number(size, "size")
    largest = 2 * bundle.default_size if _small(bundle) or bundle.device.type != "cpu" else bundle.default_size
    step = max(8, bundle.vae_factor)
    if value != int(value) or value % step or not step <= value <= largest:
        raise ValueError(f"size must be a multiple of {step} from {step} to {largest} pixels for this model "
                         f"(it was trained at {bundle.default_size}), got {size}")
    return int(value)


def check_seed(seed) -> int:
    value = finite_number(seed, "seed")
    if value != int(value) or not 0 <= value < 2**31:
        raise ValueError(f"seed must be a whole number in [0, 2^31), got {seed}")
    return int(value)


def make_scheduler(name: str, bundle: LdmBundle):
    """A diffusers scheduler by its user-facing name, configured from the model's own scheduler config (so its
    prediction_type, betas and timestep spacing are the model's)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {name!r}")
    return getattr(diffusers, SCHEDULERS[name]).from_config(bundle.scheduler_config)


@torch.inference_mode()
def encode_prompt(bundle: LdmBundle, prompt: str) -> tuple[torch.Tensor, list[str]]:
    """The text encoder's token features (1, L, D) for `prompt`, padded to the tokenizer's length as Stable
    Diffusion does, and the tokens as strings (BOS, the prompt's tokens, EOS; padding left out)."""
    ids = _prompt_ids(bundle, prompt)
    return bundle.text_encoder(ids.to(bundle.device)).last_hidden_state, _tokens(bundle, ids)


def _prompt_ids(bundle: LdmBundle, prompt: str) -> torch.Tensor:
    tok = bundle.tokenizer
    return tok([prompt], padding="max_length", max_length=tok.model_max_length, truncation=True,
               return_tensors="pt").input_ids  # (1, L)


def _tokens(bundle: LdmBundle, ids: torch.Tensor) -> list[str]:
    """The tokens as strings, up to and including the end-of-text token."""
    tok = bundle.tokenizer
    tokens = tok.convert_ids_to_tokens(ids[0].tolist())
    end = tokens.index(tok.eos_token) + 1 if tok.eos_token in tokens else len(tokens)
    return tokens[:end]


# ------------------------------------------------------------------------------------------ the reverse process loop

@dataclass
class Request:
    """One generation, validated: what the user asked for."""

    prompt: str = ""
    negative_prompt: str = ""
    scheduler: str = "DDIM"
    num_inference_steps: int = 20
    guidance_scale: float = 3.0
    seed: int = 0
    size: int = 32

    @classmethod
    def checked(cls, bundle: LdmBundle, prompt, negative_prompt, scheduler, num_inference_steps, guidance_scale,
                seed, size) -> Request:
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
        request = cls(check_prompt(prompt), check_prompt(negative_prompt, "negative_prompt"), scheduler,
                      check_steps(num_inference_steps), check_guidance(guidance_scale), check_seed(seed),
                      check_size(size, bundle))
        if bundle.device.type == "cpu" and not _small(bundle):
            work = (request.num_inference_steps * (request.size / bundle.default_size) ** 2
                    * (2 if request.guidance_scale != 1.0 else 1))
            if work > CPU_WORK:
                raise ValueError(f"On a CPU this model takes several seconds a step: {request.num_inference_steps} "
                                 f"steps at {request.size} px{' with guidance' if request.guidance_scale != 1 else ''}"
                                 f" would take many minutes. Use fewer steps, a smaller size or w = 1 (steps x "
                                 f"(size / {bundle.default_size})² x 2 with guidance must stay ≤ {CPU_WORK}).")
        return request


@dataclass
class Step:
    """What one denoising step produced. Latents are (1, C, h, w) float32 on the CPU, in the DDPM convention
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps whatever the scheduler (Euler's own scaling is undone)."""

    index: int  # 0-based step number
    t: int  # the training timestep the UNet was told
    x_t: torch.Tensor  # the latent the UNet saw at this step
    x0_pred: torch.Tensor  # the x_0 the guided prediction implies
    eps_uncond: torch.Tensor | None  # the noise predicted without the prompt (None without guidance)
    eps_text: torch.Tensor  # the noise predicted with the prompt
    eps: torch.Tensor  # the guided noise: eps_u + w (eps_t - eps_u)
    latents: torch.Tensor  # the scheduler's x_{t-1}, in its own convention (what the next step starts from)
    out_uncond: torch.Tensor | None = None  # the UNet's raw outputs (eps or v, as it was trained), for replays
    out_text: torch.Tensor | None = None

    @property
    def noise_norm(self) -> float:
        """RMS of the guided noise prediction (about 1 when the model predicts unit Gaussian noise)."""
        return float(self.eps.pow(2).mean().sqrt())


def guide(eps_uncond: torch.Tensor | None, eps_text: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: eps = eps_u + w (eps_t - eps_u). w = 1 is the text-conditioned prediction alone,
    w = 0 the unconditional one, w > 1 pushes further from the unconditional one."""
    if eps_uncond is None:
        return eps_text
    return eps_uncond + guidance_scale * (eps_text - eps_uncond)


def to_epsilon_and_x0(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's output as (eps, x0_pred), whatever it was trained to predict:
        epsilon:       eps = output,                                x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
        v_prediction:  eps = sqrt(abar) v + sqrt(1 - abar) x_t,     x0 = sqrt(abar) x_t - sqrt(1 - abar) v
        sample:        x0 = output,                                 eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)
    """
    a, s = math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)
    if prediction_type == "epsilon":
        return output, (x_t - s * output) / a
    if prediction_type == "v_prediction":
        return a * output + s * x_t, a * x_t - s * output
    if prediction_type == "sample":
        return (x_t - a * output) / s, output
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def initial_latents(bundle: LdmBundle, size: int, generator: torch.Generator) -> torch.Tensor:
    """x_T ~ N(0, I) of shape (1, C, size / f, size / f), drawn on the CPU from `generator` (seeded by the request) so
    every device gives the same picture for the same seed. The same generator then feeds the ancestral samplers'
    fresh noise, as in diffusers' pipelines, so the first of those draws is not x_T over again."""
    side = size // bundle.vae_factor
    return torch.randn((1, bundle.unet.config.in_channels, side, side), generator=generator)


def _unet(bundle: LdmBundle, x: torch.Tensor, t: int, cond: torch.Tensor,
          recorder: CrossAttentionRecorder | None = None) -> torch.Tensor:
    unet, kwargs = bundle.unet, {}
    if recorder is not None:  # recording runs eager: a compiled UNet would trace the recorder's Python per request
        unet, kwargs = getattr(unet, "_orig_mod", unet), {"cross_attention_kwargs": {"recorder": recorder}}
    t = torch.tensor(t, device=bundle.device)  # a tensor, not an int: a compiled UNet then never recompiles per step
    return unet(x.to(bundle.device, bundle.dtype), t, encoder_hidden_states=cond.to(bundle.device),
                **kwargs).sample.float().cpu()


@torch.inference_mode()
def predict(bundle: LdmBundle, x_t: torch.Tensor, t: int, cond: torch.Tensor, uncond: torch.Tensor | None,
            recorder: CrossAttentionRecorder | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The UNet's raw outputs at x_t (DDPM convention), without and with the prompt: (out_uncond or None, out_text).
    With an unconditional branch both come from one batch of two, as in Stable Diffusion."""
    if uncond is None:
        return None, _unet(bundle, x_t, t, cond, recorder)
    out_u, out_t = _unet(bundle, torch.cat([x_t, x_t]), t, torch.cat([uncond, cond]), recorder).chunk(2)
    return out_u, out_t


def implied(bundle: LdmBundle, step: Step, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, x0) that a raw UNet output implies at this step's x_t. Computed from the output itself: for v-prediction
    x0 then stays exact near t = T, where dividing an eps by sqrt(abar_t) would not."""
    return to_epsilon_and_x0(output, step.x_t, float(bundle.alphas_cumprod[step.t]), bundle.prediction_type)


def denoise(bundle: LdmBundle, request: Request, cancel: threading.Event | None = None,
            x_T: torch.Tensor | None = None, recorder: CrossAttentionRecorder | None = None) -> Iterator[Step]:
    """The reverse process, one `Step` per scheduler timestep: exactly `num_inference_steps` of them, unless `cancel`
    is set, which stops the loop before the next UNet call (so within one step).

        1. encode the prompt (and the negative prompt, the unconditional branch of guidance)
        2. x_T ~ N(0, I), scaled by the scheduler's init_noise_sigma
        3. for t in scheduler.timesteps: predict the noise with and without the prompt, guide, scheduler.step
    """
    # 1. the prompt's token features; guidance needs the negative prompt's too ("" = unconditional)
    cond, _ = encode_prompt(bundle, request.prompt)
    use_guidance = request.guidance_scale != 1.0
    uncond = encode_prompt(bundle, request.negative_prompt)[0] if use_guidance else None
    # 2. pure noise, in the scheduler's own convention
    scheduler = make_scheduler(request.scheduler, bundle)
    scheduler.set_timesteps(request.num_inference_steps)
    generator = torch.Generator().manual_seed(request.seed)
    latents = initial_latents(bundle, request.size, generator) if x_T is None else x_T.clone()
    latents = latents * scheduler.init_noise_sigma
    # 3. the loop
    for i, t in enumerate(scheduler.timesteps):
        if cancel is not None and cancel.is_set():
            return
        x_t = scheduler.scale_model_input(latents, t)  # Euler keeps x_t / sqrt(abar_t); this undoes it
        out_u, out_t = predict(bundle, x_t, int(t), cond, uncond, recorder)
        output = guide(out_u, out_t, request.guidance_scale)  # guidance is linear: guiding eps or v is the same
        alpha_bar = float(bundle.alphas_cumprod[int(t)])
        eps, x0 = to_epsilon_and_x0(output, x_t, alpha_bar, bundle.prediction_type)
        eps_t, _ = to_epsilon_and_x0(out_t, x_t, alpha_bar, bundle.prediction_type)
        eps_u = None if out_u is None else to_epsilon_and_x0(out_u, x_t, alpha_bar, bundle.prediction_type)[0]
        latents = scheduler.step(output, t, latents, generator=generator).prev_sample
        yield Step(i, int(t), x_t, x0, eps_u, eps_t, eps, latents, out_u, out_t)


@torch.inference_mode()
def decode(bundle: LdmBundle, latents: torch.Tensor, preview: bool = False) -> torch.Tensor:
    """Scaled latents (B, C, h, w) -> images (B, 3, h f, w f) in [-1, 1], with the VAE, or with the preview decoder
    (TAESD, or the bundled model's LatentPreview) when one is loaded and `preview` is asked for."""
    if preview and bundle.preview is not None:
        return bundle.preview.decode(latents).clamp(-1, 1)
    z = latents.to(bundle.device, bundle.dtype) / bundle.vae.config.scaling_factor
    return bundle.vae.decode(z).sample.float().cpu().clamp(-1, 1)


# ------------------------------------------------------------------------------- per-word cross-attention (DAAM)

class CrossAttentionRecorder:
    """Collects one request's cross-attention: for each call, softmax(Q K^T / sqrt(d)) of the prompt's image (the last
    of the batch: with guidance the batch is [unconditional, prompt]), summed over heads and resized to the latent's
    side, is added into `maps` (L, side, side). Handed to the UNet per call (cross_attention_kwargs), never installed,
    so requests running at once on one shared model each see only their own attention."""

    def __init__(self, side: int) -> None:
        self.side = side
        self.maps: torch.Tensor | None = None
        self.calls = 0

    def attend(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
               attention_mask: torch.Tensor | None) -> torch.Tensor:
        import torch.nn.functional as F

        batch, n, _ = hidden_states.shape  # (B, h w, C): Transformer2DModel hands over flattened pixels, row-major
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B heads, h w, d)
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B heads, L, d)
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B heads, h w, L), rows sum to 1
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, value))))
        side = math.isqrt(n)
        mine = probs.float().view(batch, attn.heads, n, -1)[-1].sum(0)  # (h w, L): the prompt's image, heads summed
        grid = mine.T.reshape(1, -1, side, side)  # (1, L, side, side)
        grid = F.interpolate(grid, size=(self.side, self.side), mode="bilinear", align_corners=False)[0].cpu()
        self.maps = grid if self.maps is None else self.maps + grid
        self.calls += 1
        return out / attn.rescale_output_factor


class AttentionRouter:
    """The processor installed on every attention layer of the UNet: it runs the layer's own processor (SDPA), unless
    the call carries a CrossAttentionRecorder and the layer is a cross-attention one; then the recorder computes it."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 recorder: CrossAttentionRecorder | None = None):
        plain = (attn.norm_cross or attn.group_norm is not None or attn.spatial_norm is not None
                 or attn.residual_connection)  # layouts the recorder does not reproduce: no map from them
        if recorder is None or encoder_hidden_states is None or hidden_states.ndim != 3 or plain:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return recorder.attend(attn, hidden_states, encoder_hidden_states, attention_mask)


_ROUTING = threading.Lock()


def install_router(unet: torch.nn.Module) -> None:
    """Put an AttentionRouter in front of every attention processor of `unet`, once."""
    with _ROUTING:
        processors = unet.attn_processors
        if not all(isinstance(p, AttentionRouter) for p in processors.values()):
            unet.set_attn_processor({k: p if isinstance(p, AttentionRouter) else AttentionRouter(p)
                                     for k, p in processors.items()})


@dataclass
class WordMaps:
    """Cross-attention aggregated over steps, layers and heads: one map per prompt word."""

    words: list[str]
    maps: torch.Tensor  # (W, h, w), each scaled to a maximum of 1 (zero maps stay zero)
    layers: int  # how many cross-attention layers were summed, per step


def words_of(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """BPE tokens (with BOS/EOS) -> the prompt's words, each with its token positions. CLIP's BPE marks a word's
    last token with '</w>'."""
    words, current, positions = [], "", []
    for i, tok in enumerate(tokens):
        if tok in ("<|startoftext|>", "<|endoftext|>"):
            continue
        current += tok.replace("</w>", "")
        positions.append(i)
        if tok.endswith("</w>"):
            words.append((current, positions))
            current, positions = "", []
    if positions:
        words.append((current, positions))
    return words


def attention_run(bundle: LdmBundle, request: Request, cancel: threading.Event | None = None
                  ) -> Iterator[Step | WordMaps]:
    """`denoise` with the cross-attention recorded: its Steps, then the prompt's WordMaps."""
    side = request.size // bundle.vae_factor
    install_router(bundle.unet)
    recorder = CrossAttentionRecorder(side)
    yield from denoise(bundle, request, cancel, recorder=recorder)
    words = words_of(_tokens(bundle, _prompt_ids(bundle, request.prompt)))  # the tokenizer alone: no second encode
    if recorder.maps is None or not words:
        yield WordMaps([], torch.zeros(0, side, side), 0)
        return
    maps = torch.stack([recorder.maps[pos].sum(0) for _, pos in words])  # (W, h, w)
    peak = maps.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    layers = recorder.calls // max(1, request.num_inference_steps)
    yield WordMaps([w for w, _ in words], maps / peak, layers)


@torch.inference_mode()
def guidance_parts(bundle: LdmBundle, request: Request, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
    """The UNet's raw outputs (uncond, text) at a recorded step, for the guidance explainer; one UNet call when the
    run had no guidance (w = 1) and so never asked for the unconditional one."""
    if step.out_uncond is not None:
        return step.out_uncond, step.out_text
    uncond, _ = encode_prompt(bundle, request.negative_prompt)
    return _unet(bundle, step.x_t, step.t, uncond), step.out_text


# --------------------------------------------------------------------------------------------------- the catalogue

SD_FILES = ("model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
            "text_encoder/model.safetensors", "tokenizer/merges.txt", "tokenizer/special_tokens_map.json",
            "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json",
            "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "vae/diffusion_pytorch_model.safetensors")

for _family in ("ldm", "ldm-sd15"):
    register(ModelSpec(
        family=_family, tier="bundled", name="ldm-shapes", source="models/ldm-shapes", loader=load_ldm,
        size_mb=folder_mb("models/ldm-shapes"), licence="MIT",
        notes="a Stable-Diffusion-shaped pipeline trained on Shapes captions: 32 px, 4 x 8 x 8 latents, the bundled "
              "CLIP's text tower as its prompt encoder"))
register(ModelSpec(
    family="ldm", tier="pretrained", name="stabilityai/sd-turbo", source="stabilityai/sd-turbo", loader=load_ldm,
    size_mb=5200, licence="Stability AI Non-Commercial Research Community License", cache_files=SD_FILES,
    notes="SD 2.1 distilled by adversarial diffusion distillation: 1-4 steps, no guidance (w = 1), 512 px"))
register(ModelSpec(
    family="ldm-sd15", tier="pretrained", name="stable-diffusion-v1-5", loader=load_ldm,
    source="stable-diffusion-v1-5/stable-diffusion-v1-5", size_mb=5500, licence="CreativeML OpenRAIL-M",
    cache_files=SD_FILES, notes="the classic: 20-50 steps with guidance 7.5, 512 px, CLIP ViT-L/14 text encoder"))
