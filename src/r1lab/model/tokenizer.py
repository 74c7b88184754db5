"""A byte-level BPE tokenizer for r1lab's tiny base model, trained with `tokenizers`.

Byte-level so that any text (English, Chinese, Japanese, Korean, emoji) round-trips exactly.
Two choices matter for a tiny reasoner:
- digits are always single tokens (`Digits(individual_digits=True)`) and punctuation is
  isolated, so a scratchpad line like `4821+1379,0,00000` is one token per character whatever
  the merges: every line of a worked solution then has the same token length, and a step can
  copy from a fixed distance back;
- the R1-Zero tags `<think>`, `</think>`, `<answer>`, `</answer>` are single, non-special added
  tokens: they survive `decode(skip_special_tokens=True)` and cost one sampling step each.
The result is saved as a Hugging Face tokenizer (`AutoTokenizer.from_pretrained` loads it), with
the R1-Zero template as its chat template (tasks.prompts.r1zero_chat_template), the prompt format
r1lab's models are trained on: `transformers chat`, `transformers serve` and vLLM can talk to them.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from r1lab.tasks.prompts import r1zero_chat_template

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|eos|>"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it as a Hugging Face fast tokenizer."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left",
        chat_template=r1zero_chat_template(with_bos=True),  # the post-processor adds BOS to a plain prompt
    )
