"""Train the three bundled BLIP models together on the Shapes world, as BLIP pre-trains: one image encoder shared by
a caption decoder (language modelling), a VQA question encoder + answer decoder, and an image-text matcher (ITM with
hard negatives, plus the ITC contrastive loss).

    python -m mmcore.train blip --steps 6000 --seed 0

The ITM negatives are the hard ones a bag of words cannot tell apart: the true caption with two objects' colours
swapped, or with one object's colour or shape changed, beside another scene's caption. The question encoder of VQA
and the text encoder of ITM are one module, as in BLIP. Writes blip-shapes-caption, blip-shapes-vqa and
blip-shapes-itm under assets/models/ (fp16 safetensors, the processor, the tokenizer and a model card each).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmcore import blip as B
from mmcore import shapes
from mmcore.train.common import Clock, arguments, log, normalise, seed_everything, warmup_cosine, write_model_card

ROOT = Path(__file__).resolve().parents[2] / "assets" / "models"
OUT = ROOT / "blip-shapes-caption"  # --out names the caption folder; the other two sit beside it
ITC_TEMPERATURE = 0.07


def altered_captions(scene: shapes.Scene, rng: np.random.Generator) -> list[str]:
    """False captions of `scene` that reuse almost all its words: colours of two objects swapped (when possible),
    one object's colour changed, one object's shape changed."""
    out = []
    swapped = shapes.swapped_caption(scene)
    if swapped:
        out.append(swapped)
    objs = list(scene.objects)
    i = int(rng.integers(len(objs)))
    color = rng.choice([c for c in shapes.COLOR_NAMES if c != objs[i].color])
    out.append(shapes.caption(shapes.altered(scene, i, color=str(color))))
    shape = rng.choice([s for s in shapes.SHAPES if s != objs[i].shape])
    out.append(shapes.caption(shapes.altered(scene, i, shape=str(shape))))
    return out


def tokenize(tokenizer, texts: list[str], length: int) -> torch.Tensor:
    return tokenizer(texts, padding="max_length", truncation=True, max_length=length,
                     return_tensors="pt").input_ids


def make_split(split: str, n: int, size: int, tokenizer, world: str, seed: int = 0) -> dict:
    """Images (n, 3, S, S) uint8 and, per scene, tokens of: its caption, a random true phrasing, a false caption and
    every question with its one-token answer."""
    rng = np.random.default_rng(seed)
    images, scenes = shapes.batch(split, 0, n, size, world=world)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    caption = [shapes.caption(s) for s in scenes]
    phrasing = [str(rng.choice(shapes.captions(s))) for s in scenes]
    false = [str(rng.choice(altered_captions(s, rng))) for s in scenes]
    swapped = [shapes.swapped_caption(s) for s in scenes]  # None where no two objects differ in colour and shape
    qs, answers, owner = [], [], []
    for i, s in enumerate(scenes):
        for q, a in shapes.questions(s):
            qs.append(q), answers.append(a), owner.append(i)
    L = 24
    return dict(x=x, scenes=scenes, caption=tokenize(tokenizer, caption, L), phrasing=tokenize(tokenizer, phrasing, L),
                false=tokenize(tokenizer, false, L), questions=tokenize(tokenizer, qs, L),
                swapped=tokenize(tokenizer, [w or f for w, f in zip(swapped, false)], L),
                has_swap=torch.tensor([w is not None for w in swapped]),
                answers=torch.tensor(tokenizer.convert_tokens_to_ids(answers)), owner=torch.tensor(owner),
                first_question=torch.tensor(np.searchsorted(owner, np.arange(n))),
                n_questions=torch.bincount(torch.tensor(owner), minlength=n))


def trim(ids: torch.Tensor, pad: int) -> torch.Tensor:
    """Drop the padding columns that every row of the batch has: the step costs what its longest text needs."""
    keep = int((ids != pad).sum(1).max())
    return ids[:, :keep]


def lm_loss(logits: torch.Tensor, ids: torch.Tensor, pad: int) -> torch.Tensor:
    """Next-token cross-entropy: position i predicts token i + 1; padding is ignored."""
    target = ids[:, 1:].masked_fill(ids[:, 1:] == pad, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten(), ignore_index=-100)


def vit_to_blip_vision(vit_folder: Path) -> dict[str, torch.Tensor]:
    """A transformers ViT's weights renamed into BLIP's vision encoder (same sizes): the separate query, key and value
    projections become BLIP's one qkv projection (in that order), the rest is a change of names."""
    from safetensors.torch import load_file

    vit = {k.removeprefix("vit."): v.float() for k, v in load_file(str(vit_folder / "model.safetensors")).items()}
    out = {"embeddings.class_embedding": vit["embeddings.cls_token"],
           "embeddings.position_embedding": vit["embeddings.position_embeddings"],
           "embeddings.patch_embedding.weight": vit["embeddings.patch_embeddings.projection.weight"],
           "embeddings.patch_embedding.bias": vit["embeddings.patch_embeddings.projection.bias"],
           "post_layernorm.weight": vit["layernorm.weight"], "post_layernorm.bias": vit["layernorm.bias"]}
    layers = {int(k.split(".")[2]) for k in vit if k.startswith("encoder.layer.")}
    for i in layers:
        v, b = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for part in ("weight", "bias"):
            out[b + f"self_attn.qkv.{part}"] = torch.cat(
                [vit[v + f"attention.attention.{n}.{part}"] for n in ("query", "key", "value")])
            out[b + f"self_attn.projection.{part}"] = vit[v + f"attention.output.dense.{part}"]
            out[b + f"layer_norm1.{part}"] = vit[v + f"layernorm_before.{part}"]
            out[b + f"layer_norm2.{part}"] = vit[v + f"layernorm_after.{part}"]
            out[b + f"mlp.fc1.{part}"] = vit[v + f"intermediate.dense.{part}"]
            out[b + f"mlp.fc2.{part}"] = vit[v + f"output.dense.{part}"]
    return out


def build_models(config, init: Path | None = None, vision_init: Path | None = None):
    """The three models, sharing one vision encoder, and the VQA question encoder with the ITM text encoder; from
    `init` (a blip-shapes-caption folder with its -vqa and -itm siblings) when given, else a random init."""
    from transformers import BlipForConditionalGeneration, BlipForImageTextRetrieval, BlipForQuestionAnswering

    classes = {"caption": BlipForConditionalGeneration, "vqa": BlipForQuestionAnswering,
               "itm": BlipForImageTextRetrieval}
    if init is None:
        cap, vqa, itm = (cls(config) for cls in classes.values())
    else:
        cap, vqa, itm = (cls.from_pretrained(folders(init)[kind], dtype=torch.float32, use_safetensors=True,
                                             local_files_only=True) for kind, cls in classes.items())
    if vision_init is not None:  # an image encoder that already knows shapes: the bundled ViT
        cap.vision_model.load_state_dict(vit_to_blip_vision(vision_init), strict=True)
    vqa.vision_model = itm.vision_model = cap.vision_model
    itm.text_encoder = vqa.text_encoder
    return cap, vqa, itm


def losses(cap, vqa, itm, batch: dict, idx: torch.Tensor, gen: torch.Generator, ids: dict,
           swap_share: float = 0.0) -> dict[str, torch.Tensor]:
    pad, dec = ids["pad"], ids["dec"]
    memory = cap.vision_model(pixel_values=normalise(batch["x"][idx])).last_hidden_state  # (B, 1 + n, d)
    n = len(idx)

    text = trim(batch["caption"][idx], pad).clone()
    text[:, 0] = dec  # [CLS] -> [DEC]: the decoder starts from [DEC], as BlipForConditionalGeneration.generate does
    out = cap.text_decoder(input_ids=text, attention_mask=(text != pad).long(), encoder_hidden_states=memory)
    loss_caption = lm_loss(out.logits, text, pad)

    pick = batch["first_question"][idx] + (torch.rand(n, generator=gen) * batch["n_questions"][idx]).long()
    q = trim(batch["questions"][pick], pad)
    q_mask = (q != pad).long()
    q_out = vqa.text_encoder(input_ids=q, attention_mask=q_mask, encoder_hidden_states=memory).last_hidden_state
    answer = torch.stack([torch.full((n,), dec), batch["answers"][pick], torch.full((n,), ids["sep"])], 1)
    a_out = vqa.text_decoder(input_ids=answer, encoder_hidden_states=q_out, encoder_attention_mask=q_mask)
    loss_vqa = lm_loss(a_out.logits, answer, pad)

    # ITM: each image with its caption, and with a false caption (hard, or another scene's, half each). All are in
    # the canonical form, so that the form of a sentence never gives its truth away.
    other = batch["caption"][idx.roll(1)]
    hard = torch.rand(n, generator=gen) < 0.5
    false = torch.where(hard[:, None], batch["false"][idx], other)
    if swap_share > 0:  # more of the negatives a bag of words cannot refuse: the same words, colours swapped
        swap = (torch.rand(n, generator=gen) < swap_share) & batch["has_swap"][idx]
        false = torch.where(swap[:, None], batch["swapped"][idx], false)
    texts = trim(torch.cat([batch["caption"][idx], false]), pad)
    t_mask = (texts != pad).long()
    fused = itm.text_encoder(input_ids=texts, attention_mask=t_mask,
                             encoder_hidden_states=memory.repeat(2, 1, 1)).last_hidden_state
    labels = torch.cat([torch.ones(n), torch.zeros(n)]).long()
    loss_itm = F.cross_entropy(itm.itm_head(fused[:, 0]), labels)

    # ITC: the unimodal text encoder (no image) against the image's [CLS], in a small shared space
    c = trim(batch["phrasing"][idx], pad)  # any true phrasing: the shared space should hold them all
    t_feat = itm.text_encoder(input_ids=c, attention_mask=(c != pad).long()).last_hidden_state[:, 0]
    img = F.normalize(itm.vision_proj(memory[:, 0]), dim=-1)
    txt = F.normalize(itm.text_proj(t_feat), dim=-1)
    cap_ids = batch["caption"][idx]
    same = (cap_ids[:, None] == cap_ids[None]).all(-1).float()  # scenes with the same caption are all positives
    target = same / same.sum(1, keepdim=True)
    logits = img @ txt.T / ITC_TEMPERATURE
    loss_itc = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.T.log_softmax(1), 1).mean())
    return dict(caption=loss_caption, vqa=loss_vqa, itm=loss_itm, itc=loss_itc)


@torch.no_grad()
def evaluate(cap, vqa, itm, split: dict, tokenizer, ids: dict, n: int = 512) -> dict[str, float]:
    """Quick held-out numbers: caption accuracy (greedy), VQA exact match, ITM true-over-swapped."""
    for m in (cap, vqa, itm):
        m.eval()
    x = normalise(split["x"][:n])
    gen = cap.generate(pixel_values=x, max_new_tokens=B.MAX_NEW_TOKENS // 2)
    texts = tokenizer.batch_decode(gen, skip_special_tokens=True)
    cap_acc = float(np.mean([B.caption_correct(t, s) for t, s in zip(texts, split["scenes"][:n])]))
    first = split["first_question"][:n]
    q = split["questions"][first]
    out = vqa.generate(input_ids=q, pixel_values=x, attention_mask=(q != ids["pad"]).long(), max_new_tokens=3)
    vqa_acc = float((out[:, 1] == split["answers"][first]).float().mean())
    has = split["has_swap"][:n]
    memory = itm.vision_model(pixel_values=x[has]).last_hidden_state

    def match(texts: torch.Tensor) -> torch.Tensor:
        t = trim(texts, ids["pad"])
        fused = itm.text_encoder(input_ids=t, attention_mask=(t != ids["pad"]).long(),
                                 encoder_hidden_states=memory).last_hidden_state
        return itm.itm_head(fused[:, 0]).softmax(-1)[:, 1]

    scores = {"caption_accuracy": cap_acc, "vqa_first_question_accuracy": vqa_acc}
    if has.any():  # the true caption above its colour-swapped twin
        scores["itm_binding_accuracy"] = float((match(split["caption"][:n][has])
                                                 > match(split["swapped"][:n][has])).float().mean())
    for m in (cap, vqa, itm):
        m.train()
    return scores


def main() -> None:
    args = arguments(__doc__, steps=6000, lr=5e-4, eval_scenes=1_000, out=OUT, batch_size=64, train_scenes=40_000,
                     extra=[("--vision-init", dict(
                         type=Path, default=None,
                         help="start the image encoder from this bundled ViT folder, e.g. assets/models/vit-shapes")),
                           ("--swap-share", dict(
                               type=float, default=0.0,
                               help="share of ITM negatives replaced by the colour-swapped caption where one exists"))])
    clock = Clock()
    gen = seed_everything(args.seed)
    folder = args.out
    tokenizer = B.build_tokenizer(folder)
    ids = {"pad": tokenizer.pad_token_id, "sep": tokenizer.sep_token_id,
           "dec": tokenizer.convert_tokens_to_ids("[DEC]")}
    config = B.bundled_config(len(tokenizer))
    size = config.vision_config.image_size
    train = make_split("train", args.train_scenes, size, tokenizer, args.world, args.seed)
    val = make_split("val", args.eval_scenes, size, tokenizer, args.world, args.seed + 1)
    print(f"rendered {args.train_scenes} train / {args.eval_scenes} val scenes in {clock.minutes:.1f} min", flush=True)

    cap, vqa, itm = build_models(config, args.init, args.vision_init)
    params = list({id(p): p for m in (cap, vqa, itm) for p in m.parameters()}.values())
    print(f"{sum(p.numel() for p in params) / 1e6:.2f} M parameters in all", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
    sched = warmup_cosine(opt, args.steps)
    for m in (cap, vqa, itm):
        m.train()

    best, best_state = -1.0, None
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(train["x"]), (args.batch_size,), generator=gen)
        parts = losses(cap, vqa, itm, train, idx, gen, ids, args.swap_share)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0:
            log(step, clock, loss=loss.item(), **{k: v.item() for k, v in parts.items()})
        if step % 1000 == 0 or step == args.steps:
            metrics = evaluate(cap, vqa, itm, val, tokenizer, ids)
            log(step, clock, **metrics)
            score = sum(metrics.values())
            if score >= best:
                best = score
                best_state = [{k: v.clone() for k, v in m.state_dict().items()} for m in (cap, vqa, itm)]

    for m, state in zip((cap, vqa, itm), best_state):
        m.load_state_dict(state)
    metrics = {}
    for world in shapes.WORLDS:
        test = make_split("test", args.eval_scenes, size, tokenizer, world, args.seed + 2)
        metrics.update({f"{k}_{world}": v for k, v in evaluate(cap, vqa, itm, test, tokenizer, ids,
                                                                 args.eval_scenes).items()})
    metrics["test_scenes_per_world"] = args.eval_scenes
    print(json.dumps(metrics), flush=True)
    save(cap, vqa, itm, tokenizer, folder, args, clock, config, metrics)


def folders(caption_folder: Path) -> dict[str, Path]:
    """The caption folder and its VQA and ITM siblings (blip-shapes-caption -> blip-shapes-vqa, blip-shapes-itm)."""
    stem = caption_folder.name.removesuffix("-caption")
    return {"caption": caption_folder, "vqa": caption_folder.with_name(f"{stem}-vqa"),
            "itm": caption_folder.with_name(f"{stem}-itm")}


def save(cap, vqa, itm, tokenizer, caption_folder: Path, args, clock: Clock, config, metrics: dict) -> None:
    processor = B.make_processor(tokenizer, config.vision_config.image_size)
    roots = folders(caption_folder)
    jobs = {"caption": (cap, "captions a scene (BlipForConditionalGeneration)"),
            "vqa": (vqa, "answers questions about a scene (BlipForQuestionAnswering)"),
            "itm": (itm, "scores whether a caption matches a scene: ITM head and ITC projections "
                         "(BlipForImageTextRetrieval)")}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, (m, _) in jobs.items()}
    for kind, (model, what) in jobs.items():
        out = roots[kind]
        out.mkdir(parents=True, exist_ok=True)
        model.to(torch.float16).save_pretrained(out)  # safetensors by default
        processor.save_pretrained(out)
        write_model_card(
            out, title=f"blip-shapes-{kind}: a tiny BLIP trained on the Shapes world",
            summary=f"A `transformers` BLIP model that {what}. Same class, processor and loader as Salesforce's "
                    "BLIP checkpoints; its tokenizer is a WordPiece `BertTokenizerFast` over the Shapes vocabulary "
                    "(plus single letters, so any word tokenizes). The three bundled BLIP models were trained "
                    "together with one shared image encoder, as BLIP pre-trains.",
            command="python -m mmcore.train blip " + " ".join(sys.argv[1:]), seed=args.seed, minutes=clock.minutes,
            metrics=metrics,
            config={"vision": B.BUNDLED_VISION, "text": B.BUNDLED_TEXT, "vocab_size": len(tokenizer),
                    "parameters": n_params[kind]},
            data=f"{args.train_scenes} train scenes of the {args.world} Shapes world (seeds "
                 f"{shapes.SPLITS['train']}+), {config.vision_config.image_size} px, 1-3 objects. Captions: the "
                 "canonical caption (objects left to right). VQA: one random question per scene per step (colour, "
                 "shape, count, existence, relation). ITM: the caption against a false caption (half hard "
                 "negatives: colours swapped, or one colour or shape changed; half another scene's caption)"
                 + (f", then {args.swap_share:.0%} of all negatives replaced by the colour-swapped caption where the "
                    "scene has one" if args.swap_share else "")
                 + ", all in the canonical form. ITC: a random true phrasing against the batch. "
                 "The train split never shows the colour-shape pairs "
                 f"{sorted(shapes.HELD_OUT_PAIRS)}; the composition split always contains one."
                 + (f" Training continued from the weights in {args.init}." if args.init else "")
                 + (f" The image encoder started from the ViT in {args.vision_init}." if args.vision_init else ""))
        print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()
