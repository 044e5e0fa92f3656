"""Train the bundled CLIP on Shapes scenes and their captions with the symmetric InfoNCE loss.

    python -m mmcore.train clip --steps 4500 --seed 0
    python -m mmcore.train clip --world wide --init assets/models/clip-shapes   # fine-tune a saved model

Each step pairs B scenes with one random phrasing of each caption. Writes `open_clip_config.json` and fp16
`open_clip_model.safetensors` to assets/models/clip-shapes/, loadable with `open_clip.create_model("local-dir:...")`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import open_clip
import torch
from safetensors.torch import load_file, save_file

from mmcore import shapes
from mmcore.clip import BUNDLED_CONFIG
from mmcore.train.common import (
    Clock,
    arguments,
    log,
    normalise,
    seed_everything,
    warmup_cosine,
    world_batch,
    world_words,
    write_model_card,
)

OUT = Path(__file__).resolve().parents[2] / "assets" / "models" / "clip-shapes"


def make_split(split: str, n: int, size: int, tokenizer,
               world: str = "wide") -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
    """Images (n, 3, size, size) uint8; per scene, the tokens of every phrasing (k, L); canonical captions."""
    images, scenes = world_batch(split, n, size, world)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    tokens = [tokenizer(shapes.captions(s)) for s in scenes]
    return x, tokens, [shapes.caption(s) for s in scenes]


@torch.no_grad()
def recall_at_1(model: open_clip.CLIP, x: torch.Tensor, texts: list[str], tokenizer,
                group: int = 32) -> tuple[float, float]:
    """Image->text and text->image R@1 among `group` candidates; a hit is any candidate with the same caption."""
    model.eval()
    device = next(model.parameters()).device
    i2t = t2i = total = 0
    for g in range(0, len(x) - group + 1, group):
        caps = texts[g:g + group]
        img = model.encode_image(normalise(x[g:g + group].to(device)), normalize=True)
        txt = model.encode_text(tokenizer(caps).to(device), normalize=True)
        s = img @ txt.T  # (group, group)
        i2t += sum(caps[j] == caps[i] for i, j in enumerate(s.argmax(1).tolist()))
        t2i += sum(caps[i] == caps[j] for j, i in enumerate(s.argmax(0).tolist()))
        total += group
    model.train()
    return i2t / total, t2i / total


def main() -> None:
    args = arguments(__doc__, steps=3000, lr=5e-4, eval_scenes=2_048, out=OUT, extra=[("--lock-text", dict(
        action="store_true", help="freeze the text tower (the latent-diffusion model's prompt encoder is a copy of it) "
                                  "and train the image tower and the temperature to meet it"))])
    clock = Clock()
    gen = seed_everything(args.seed)

    cfg = BUNDLED_CONFIG["model_cfg"]
    size, context_length = cfg["vision_cfg"]["image_size"], cfg["text_cfg"]["context_length"]
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    x_train, tok_train, _ = make_split("train", args.train_scenes, size, tokenizer, args.world)
    x_val, _, cap_val = make_split("val", args.eval_scenes, size, tokenizer, args.world)
    print(f"rendered {len(x_train)} train / {len(x_val)} val scenes in {clock.minutes:.1f} min", flush=True)

    model = open_clip.CLIP(**cfg)
    if args.init is not None:
        state = load_file(args.init / "open_clip_model.safetensors")
        model.load_state_dict({k: v.float() for k, v in state.items()})
    n_params = sum(p.numel() for p in model.parameters())
    if args.lock_text:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("visual.") or name == "logit_scale")
    model.to(args.device)
    x_train = x_train.to(args.device)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    print(f"{n_params / 1e6:.2f} M parameters, {sum(p.numel() for _, p in trainable) / 1e6:.2f} M trained, on "
          f"{args.device}", flush=True)
    loss_fn = open_clip.ClipLoss()
    decay = [p for n, p in trainable if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in trainable if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = warmup_cosine(opt, args.steps)

    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_train), (args.batch_size,), generator=gen).tolist()
        pick = torch.randint(1 << 30, (len(idx),), generator=gen).tolist()
        text = torch.stack([tok_train[i][p % len(tok_train[i])] for i, p in zip(idx, pick)]).to(args.device)
        img_f, txt_f, scale = model(normalise(x_train[torch.tensor(idx, device=args.device)]), text)
        loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # as CLIP does: temperature no lower than 0.01
        if step % 100 == 0:
            log(step, clock, loss=loss.item(), logit_scale=model.logit_scale.exp().item())
        out_of_time = args.max_minutes is not None and clock.minutes >= args.max_minutes
        if step % 1000 == 0 or step == args.steps or out_of_time:
            i2t, t2i = recall_at_1(model, x_val, cap_val, tokenizer)
            log(step, clock, val_i2t_r1=i2t, val_t2i_r1=t2i)
            if i2t + t2i >= best:
                best, best_state = i2t + t2i, {k: v.clone() for k, v in model.state_dict().items()}
        if out_of_time:
            print(f"stopped at step {step} of {args.steps}: --max-minutes {args.max_minutes}", flush=True)
            break

    model.load_state_dict(best_state)
    model.cpu()
    metrics = {"steps_trained": step}
    for world in shapes.WORLDS:
        for split in ("test", "composition"):
            x, _, caps = make_split(split, args.eval_scenes, size, tokenizer, world)
            i2t, t2i = recall_at_1(model, x, caps, tokenizer)
            metrics[f"{world}_{split}_i2t_r1@32"], metrics[f"{world}_{split}_t2i_r1@32"] = i2t, t2i
    metrics["logit_scale"] = model.logit_scale.exp().item()
    print(json.dumps(metrics), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    state["logit_scale"] = model.logit_scale.detach().float().reshape(model.logit_scale.shape)  # keep exact
    save_file(state, args.out / "open_clip_model.safetensors")
    (args.out / "open_clip_config.json").write_text(json.dumps(BUNDLED_CONFIG, indent=2) + "\n")
    write_model_card(
        args.out, title="clip-shapes: a tiny CLIP trained on the Shapes world",
        summary="An `open_clip.CLIP` (ViT image tower, causal text tower with CLIP's real BPE tokenizer) trained "
                "contrastively on Shapes scenes and their captions. Same class and loader as open_clip ViT-B-32. "
                "Its text tower is the one a latent-diffusion tab can reuse as its prompt encoder, as Stable Diffusion "
                "reuses CLIP's.",
        command="python -m mmcore.train clip " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
        metrics={**metrics, "eval_scenes_per_split": args.eval_scenes}, device=args.device,
        config={**BUNDLED_CONFIG["model_cfg"], "parameters": n_params},
        data=f"{args.train_scenes} train scenes of the {world_words(args.world)} (seeds {shapes.SPLITS['train']}+), "
             f"{size} px, 1-3 objects, each "
             "step with one random phrasing of its caption. The train split never shows the colour-shape pairs "
             f"{sorted(shapes.HELD_OUT_PAIRS)}; the composition split always contains one."
             + (" The text tower was locked (frozen): only the image tower and the temperature trained, so the "
                "latent-diffusion model's prompt encoder, a copy of this text tower, stays exact."
                if args.lock_text else "")
             + (f" Fine-tuned from {args.init}." if args.init else ""))
    print(f"saved {args.out}", flush=True)


if __name__ == "__main__":
    main()
