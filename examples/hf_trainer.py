"""hottune inside a HuggingFace Trainer: python examples/hf_trainer.py [--run-dir runs/hf]

A tiny BERT, built from a config (nothing is downloaded), learns whether a token sequence has
more tokens from the lower half of its vocabulary. The Trainer evaluates every few steps; at
each evaluation the callback lets hottune judge the last lr change and propose the next one.
From another terminal, while it trains:

    hotcb --dir runs/hf tune status
    hotcb --dir runs/hf opt scale lr=0.5

Run it again with ``--resume`` to continue from the latest checkpoint in ``RUN_DIR/trainer``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from hotcb import HotKernel
from hotcb.adapters.hf import HotCBHFCallback

RECIPE = {
    "objective": {"primary": "val/loss", "mode": "min"},
    "actuators": {"opt": {"enabled": True, "mutations": {"lr_mult": {"bounds": [0.5, 2.0], "cooldown": 0}}}},
    "search": {"algorithm": "tpe", "startup_trials": 3, "seed": 0},
    "acceptance": {"baseline": "pre", "horizon": "next_val_epoch_end"},
}


class TokenTask(torch.utils.data.Dataset):
    """Random token sequences, labelled 1 when most tokens come from the lower half of the vocabulary."""

    def __init__(self, n: int, seq_len: int = 16, vocab: int = 64, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        low_share = torch.rand(n, 1, generator=gen)
        low = torch.randint(1, vocab // 2, (n, seq_len), generator=gen)
        high = torch.randint(vocab // 2, vocab, (n, seq_len), generator=gen)
        pick_low = torch.rand(n, seq_len, generator=gen) < low_share
        self.input_ids = torch.where(pick_low, low, high)
        self.labels = (pick_low.float().mean(1) > 0.5).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "attention_mask": torch.ones_like(self.input_ids[i]),
                "labels": self.labels[i]}


def tiny_bert(vocab: int = 64, seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config)


def make_trainer(kernel: HotKernel, output_dir: str | Path, *, max_steps: int = 32, eval_steps: int = 8,
                 lr: float = 5e-4, callbacks: list | None = None, train_size: int = 512) -> Trainer:
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, learning_rate=lr, lr_scheduler_type="linear",
        per_device_train_batch_size=32, per_device_eval_batch_size=128, eval_strategy="steps",
        eval_steps=eval_steps, save_strategy="steps", save_steps=2 * eval_steps, logging_steps=eval_steps,
        report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    return Trainer(model=tiny_bert(), args=args, train_dataset=TokenTask(train_size),
                   eval_dataset=TokenTask(128, seed=1), callbacks=[HotCBHFCallback(kernel), *(callbacks or [])])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/hf")
    parser.add_argument("--max-steps", type=int, default=32)
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    opts = parser.parse_args(argv)
    run_dir = Path(opts.run_dir)
    kernel = HotKernel(run_dir, recipe=RECIPE, tune_mode="active")
    trainer = make_trainer(kernel, run_dir / "trainer", max_steps=opts.max_steps)
    trainer.train(resume_from_checkpoint=True if opts.resume else None)
    summary = kernel.status()["tune"]
    print(f"hotcb: {summary['decisions']} decisions, {summary['applied']} mutations applied, "
          f"{summary['accepted']} accepted; lr now {trainer.optimizer.param_groups[0]['lr']:.3g}; files in {run_dir}")
    return summary


if __name__ == "__main__":
    main()
