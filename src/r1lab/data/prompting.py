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

Every model r1lab saves carries, as its chat template, the format it was trained on
(`chat_template_to_save`: r1zero or plain; a chat template not r1lab's is kept), so
that the ecosystem's chat tools render r1lab's prompts token for token. `auto` recognises these
templates and resolves to r1zero or plain, not chat: an r1lab checkpoint is prompted as before
(no instruction line, `</answer>` as a stop token), and the tokens are the same either way.
"""

from __future__ import annotations

from r1lab.errors import UserError
from r1lab.tasks.prompts import apply_template, r1zero_chat_template

TEMPLATES = ("auto", "chat", "r1zero", "plain")
MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# the plain format as a chat template: the last user message as it is, no turns, no generation prompt
PLAIN_CHAT_TEMPLATE = ("{%- for message in messages if message['role'] == 'user' -%}"
                       "{%- if loop.last -%}{{- message['content'] -}}{%- endif -%}{%- endfor -%}")


def adds_bos(tokenizer) -> bool:
    """Whether `tokenizer` puts its BOS token before a plain prompt (r1lab's does; Qwen's has none)."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def chat_template_for(template: str, tokenizer) -> str | None:
    """r1lab's chat template for a resolved `template` (r1zero, plain): it renders a user message
    for `tokenizer` exactly as `render_prompt` does, BOS included where the tokenizer adds it;
    None for chat (the tokenizer's own)."""
    if template == "chat":
        return None
    if template == "plain":
        return ("{{- bos_token -}}" if adds_bos(tokenizer) else "") + PLAIN_CHAT_TEMPLATE
    return r1zero_chat_template(adds_bos(tokenizer))


def own_template(tokenizer) -> str | None:
    """r1zero or plain when the tokenizer's chat template is r1lab's rendering of that format."""
    chat = getattr(tokenizer, "chat_template", None)
    return next((t for t in ("r1zero", "plain") if chat and chat == chat_template_for(t, tokenizer)), None)


def chat_template_to_save(template: str, tokenizer) -> str | None:
    """The chat template a model trained under `template` is saved with (checkpoint.save_model's
    `chat_template`; None: the tokenizer's own): r1lab's rendering of r1zero or plain, unless the
    tokenizer has a chat template that is not r1lab's. A user's chat model keeps its template even
    when RL trained it under r1zero: its chat format is what its other users expect."""
    foreign = getattr(tokenizer, "chat_template", None) and own_template(tokenizer) is None
    return None if foreign else chat_template_for(template, tokenizer)


def resolve_template(template: str, tokenizer, owner: str = "the model's") -> str:
    """`auto` -> the format of r1lab's own chat templates (`own_template`), else chat if the
    tokenizer has a chat template, else r1zero; chat needs one."""
    if template not in TEMPLATES:
        raise UserError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        return own_template(tokenizer) or ("chat" if has_chat else "r1zero")
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
