"""The text a model is given: the one prompt-template resolver and builder.

    template = resolve_template("auto", tokenizer)            # chat | r1zero | plain
    text = render_prompt(question, template, tokenizer)       # or a list of chat messages
    stop = answer_stop_ids(tokenizer)                         # `</answer>` ends an R1-Zero answer

Templates, as SFT, evaluation, sampling and RL use them:
  * r1zero: the R1-Zero template around the question (tasks.prompts.apply_template, the paper's
    table 1), which r1lab's own models are trained on;
  * chat: the tokenizer's chat template, one user turn (or the given messages) and the generation
    prompt, so that the text ends exactly where the model's answer starts;
  * plain: the question as it is;
  * auto: chat if the tokenizer has a chat template, else r1zero.
`instruction` (`r1lab eval`'s "Please reason step by step, ..." line, DeepSeek-R1's recommended
prompt) is appended to the question on its own line under chat and plain; the R1-Zero template
already says where the reasoning and the answer go, so it gets none. A list of messages outside a
chat template is reduced to its last user turn. A chat-rendered prompt already holds the BOS
token, so it is tokenised without special tokens (`adds_special_tokens`).
"""

from __future__ import annotations

from r1lab.errors import UserError
from r1lab.tasks.prompts import apply_template

TEMPLATES = ("auto", "chat", "r1zero", "plain")
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def resolve_template(template: str, tokenizer, owner: str = "the model's") -> str:
    """`auto` -> chat if the tokenizer has a chat template, else r1zero; chat needs one."""
    if template not in TEMPLATES:
        raise UserError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return "chat" if has_chat else "r1zero"
    if template == "chat" and not has_chat:
        raise UserError(f"template: {owner} tokenizer has no chat template; use template r1zero or plain")
    return template


def render_prompt(prompt: str | list[dict], template: str, tokenizer, instruction: str = "") -> str:
    """The text the model sees for `prompt` (a question, or chat messages) under a resolved `template`."""
    if template == "chat":
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if instruction:
            last = messages[-1]
            messages[-1] = {**last, "content": f"{last['content']}\n{instruction}"}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):  # messages outside a chat template: the last user turn
        users = [m["content"] for m in prompt if m["role"] == "user"]
        prompt = users[-1] if users else ""
    if template == "r1zero":
        return apply_template(prompt)
    return f"{prompt}\n{instruction}" if instruction else prompt


def adds_special_tokens(template: str) -> bool:
    """Whether a prompt rendered under `template` is tokenised with the tokenizer's special tokens."""
    return template != "chat"


def answer_stop_ids(tokenizer) -> tuple[int, ...]:
    """`</answer>` as a stop token, when the tokenizer has it as a single token (r1lab's do)."""
    token_id = tokenizer.convert_tokens_to_ids("</answer>")
    return () if token_id is None or token_id == tokenizer.unk_token_id else (token_id,)
