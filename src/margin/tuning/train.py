"""LoRA supervised fine-tuning on an existing engine: Hugging Face TRL's SFTTrainer with PEFT
(docs/tuning.md, "Training", says why TRL). Runs inside the job's worker process
(margin.tuning.worker); torch and the Hugging Face libraries are imported only here.

Examples are the dataset's chat lines turned into TRL's conversational prompt-completion form
(the prompt: every message but the last; the completion: the teacher's answer), so the loss is the
completion's alone for any chat template (SmolLM2's has no `{% generation %}` markers, which TRL's
assistant-only loss needs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from margin.tuning.dataset import load_split
from margin.tuning.errors import DatasetError
from margin.tuning.settings import TrainSettings

MIN_TRAIN_EXAMPLES = 4  # fewer: nothing to learn from but memorisation; refused before any model loads

Progress = Callable[[int, float | None], None]  # (step, loss)


@dataclass(frozen=True, slots=True)
class TrainResult:
    adapter: Path
    steps: int
    loss: float | None
    eval_loss: float | None
    seconds: float
    examples: int


def prompt_completion(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": list(r["messages"][:-1]), "completion": [r["messages"][-1]]} for r in rows]


def training_rows(dataset: Path, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation) in prompt-completion form; DatasetError for a dataset too small to train on."""
    train = load_split(dataset, "train")
    if len(train) < MIN_TRAIN_EXAMPLES:
        raise DatasetError(
            f"dataset {name!r} has {len(train)} training example(s); at least {MIN_TRAIN_EXAMPLES} are needed"
        )
    return prompt_completion(train), prompt_completion(load_split(dataset, "validation"))


def target_modules(text: str) -> str | list[str]:
    """PEFT's target_modules: `all-linear`, or module names separated by commas (q_proj,v_proj)."""
    return text if text == "all-linear" else [name.strip() for name in text.split(",") if name.strip()]


def sft_config(settings: TrainSettings, checkpoints: Path) -> Any:
    import torch
    from trl.trainer.sft_config import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoints),
        max_steps=settings.steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="linear",
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.keep_checkpoints,
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        seed=settings.seed,
        data_seed=settings.seed,
        max_length=settings.max_length,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def train(
    *,
    model: Any,
    tokenizer: Any,
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    settings: TrainSettings,
    checkpoints: Path,
    adapter: Path,
    resume_from: Path | None,
    progress: Progress,
) -> TrainResult:
    """Train (or go on from `resume_from`) to settings.steps, then save the adapter whole to `adapter`."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl.trainer.sft_trainer import SFTTrainer

    if settings.threads:
        torch.set_num_threads(settings.threads)

    class _Report(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            progress(int(state.global_step), (logs or {}).get("loss"))

    train_rows, validation_rows = rows
    trainer = SFTTrainer(
        model=model,
        args=sft_config(settings, checkpoints),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=settings.rank,
            lora_alpha=settings.alpha,
            lora_dropout=settings.dropout,
            target_modules=target_modules(settings.target_modules),
            task_type="CAUSAL_LM",
        ),
        callbacks=[_Report()],
    )
    started = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    seconds = time.monotonic() - started
    eval_loss = trainer.evaluate().get("eval_loss") if validation_rows else None
    save_whole(trainer.model, adapter)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return TrainResult(
        adapter=adapter,
        steps=int(output.global_step),
        loss=losses[-1] if losses else None,
        eval_loss=eval_loss,
        seconds=seconds,
        examples=len(train_rows),
    )


def save_whole(model: Any, adapter: Path) -> None:
    """The PEFT adapter (safetensors + adapter_config.json), written beside and renamed into place."""
    import shutil

    staging = adapter.with_name(f".{adapter.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging))
    shutil.rmtree(adapter, ignore_errors=True)
    staging.rename(adapter)
