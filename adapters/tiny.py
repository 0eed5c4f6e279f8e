"""Offline tiny twins of real checkpoints: a byte-level BPE tokenizer and a save-then-load helper.

A tiny twin is the *same* transformers model class as the real checkpoint, with a tiny config and random
weights from a fixed seed. It is written once to the cache directory with ``save_pretrained`` and always
loaded back with ``from_pretrained``, so tests and the demo exercise the real loading path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TINY_FORMAT = "1"  # bump when a tiny twin's recipe changes, so old cached twins are rebuilt

# A fixed English corpus for the tokenizer: the benchmark prompt, conversation markers and the vocabulary
# of its domains. Byte-level BPE covers any other string too, only with more tokens.
_CORPUS = """
Classify this image into one of the following categories relating to
Only output a single final classification label and NOTHING ELSE.
USER: ASSISTANT: user assistant system image images photo picture label labels category categories
skin diseases dermatology acne rosacea eczema psoriasis melanoma nevi moles lupus herpes warts urticaria hives
fungal infections bacterial infections cellulitis impetigo vasculitis scabies lyme disease seborrheic keratoses
actinic keratosis basal cell carcinoma malignant lesions bullous disease vascular tumors pigmentation disorders
hair loss alopecia nail atopic dermatitis contact dermatitis poison ivy exanthems drug eruptions systemic
plant leaf diseases apple scab rust corn gray leaf spot blight tomato early late mold bacterial septoria mosaic
virus yellow curl potato bell pepper squash powdery mildew grape black rot cherry peach strawberry soyabean
raspberry blueberry healthy leaf leaves textures banded blotchy braided bubbly bumpy chequered cobwebbed
cracked crosshatched crystalline dotted fibrous flecked freckled frilly gauzy grid grooved honeycombed
interlaced knitted lacelike lined marbled matted meshed paisley perforated pitted pleated polka dotted
porous potholed scaly smeared spiralled sprinkled stained stratified striped studded swirly veined waffled
woven wrinkled zigzagged humanitarian infrastructure and utility damage affected individuals rescue
volunteering or donation effort other relevant information not humanitarian disaster flood fire earthquake
textile surface defects nominal global defect local defect fabric handwritten digits zero one two three four
five six seven eight nine satellite land use annual crop forest herbaceous vegetation highway industrial
pasture permanent residential river sea lake
"""


def build_tokenizer(vocab_size: int = 768, extra_special: tuple[str, ...] = ("<image>",)):
    """Train a small byte-level BPE tokenizer offline and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", *extra_special]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in _CORPUS.splitlines() if line.strip()] * 4, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=list(extra_special),
    )
    return fast


def materialise(cache_dir: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Return ``cache_dir/tiny/<name>-v<format>``, building it atomically with ``build(tmpdir)`` if absent."""
    target = Path(cache_dir) / "tiny" / f"{name}-v{TINY_FORMAT}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
