"""Forward compatibility: projbench's own calls into transformers, peft and accelerate raise no deprecation.

transformers announces removals one to several releases ahead (``past_key_values=`` is deprecated in 5.24 and
removed in 5.40). A deprecation raised by a call projbench makes is a break in a later release, so it fails
here, where it is cheap to fix, instead of in a user's run. Warnings raised by third-party code on its own
(e.g. numpy inside an image processor) are not ours and are not counted.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

import benchmark
from benchmark.config import TrainConfig
from benchmark.conformance import CLASSES, DOMAIN, MemoryStore, samples_for
from benchmark.evaluate.generation import generate_batch
from benchmark.evaluate.loglik import class_answer_ids, score_batch
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins
from benchmark.train.loop import finetune

OURS = Path(benchmark.__file__).resolve().parents[1]  # the source tree: benchmark/, adapters/, tasks/, ...
LIBRARIES = ("transformers", "peft", "accelerate")


def deprecations(caught, log_records) -> list[str]:
    """Deprecation warnings attributed to our code or to the libraries we call, and deprecation log lines."""
    out = []
    for w in caught:
        if not issubclass(w.category, (FutureWarning, DeprecationWarning)):
            continue
        path = Path(w.filename).resolve()
        installed = "site-packages" in path.parts  # a venv inside the checkout holds other libraries too
        ours = OURS in path.parents and not installed
        if ours or (installed and any(part in LIBRARIES for part in path.parts)):
            out.append(f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}")
    # transformers also announces some renames through its logger (e.g. reading ``output.past_key_values``).
    out += [f"log {r.name}: {r.getMessage()}" for r in log_records if "deprecat" in r.getMessage().lower()]
    return out


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.mark.parametrize("name", ["llava15-tiny", "qwen2vl-tiny"])
def test_protocol_calls_raise_no_deprecation(name, real_images):
    """Load, project, score (KV cache), generate (KV cache), and one FT-Proj and one LoRA FT-E2E step."""
    handler = Records()
    loggers = [logging.getLogger(lib) for lib in LIBRARIES]
    for log in loggers:
        log.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            adapter = Plugins(autoload=False).adapters.get(name).factory()
            images = real_images[:4]
            store = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in images])))
            samples = samples_for(images)
            questions = [build_question(DOMAIN, CLASSES, 0, s.uid) for s in samples[:2]]
            score_batch(adapter, store.get([0, 1]), questions, class_answer_ids(adapter, CLASSES), max_rows=2)
            generate_batch(adapter, store.get([0, 1]), questions, max_new_tokens=3)
            finetune(adapter, "ft-proj", store=store, samples=samples,
                     classes=CLASSES, domain=DOMAIN, seed=0, cfg=TrainConfig(lr=1e-3, batch_size=4),
                     progress=False)
            finetune(adapter, "ft-e2e", store=store, samples=samples, classes=CLASSES, domain=DOMAIN, seed=0,
                     cfg=TrainConfig(lr=1e-3, batch_size=4, lora=True, lora_rank=2), progress=False)
    finally:
        for log in loggers:
            log.removeHandler(handler)
    found = deprecations(caught, handler.records)
    assert not found, "deprecated calls (they break with a later release):\n" + "\n".join(found)


def test_hub_hint_names_the_installed_download_command(monkeypatch):
    """The offline hint names a command the installed huggingface-hub really provides (1.x: `hf`, no `huggingface-cli`)."""
    from importlib.metadata import distribution

    from transformers import LlavaForConditionalGeneration

    from benchmark.adapters.loading import load_pretrained
    from benchmark.errors import ModelLoadError

    scripts = {ep.name: ep.value for ep in distribution("huggingface-hub").entry_points if ep.group == "console_scripts"}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load_pretrained(LlavaForConditionalGeneration, "someone/not-cached-here")
    command = str(info.value).split("`")[1]
    assert command == "hf download someone/not-cached-here --local-dir DIR"
    assert command.split()[0] in scripts and "huggingface-cli" not in scripts


def test_no_message_names_the_removed_cli():
    """huggingface-hub 1.x has no `huggingface-cli`: every hint goes through benchmark.storage.hub.download_command."""
    root = OURS
    files = [f for d in ("benchmark", "adapters", "tasks", "leaderboard", "docs", "examples") for f in (root / d).rglob("*")
             if f.suffix in (".py", ".md")] + [root / "README.md"]
    offenders = [str(f.relative_to(root)) for f in files if f.name != "hub.py" and "huggingface-cli" in f.read_text()]
    assert not offenders, f"`huggingface-cli` named in {offenders}; use benchmark.storage.hub.download_command"
