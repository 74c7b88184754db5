"""The chat templates r1lab saves with its models (data/prompting.py, tasks/prompts.py): the
tokenizer's own chat path must give, token for token, the prompt r1lab trains and evaluates with."""

import copy

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from r1lab.data.prompting import adds_special_tokens, chat_template_for, render_prompt, resolve_template
from r1lab.model.tokenizer import train_tokenizer
from r1lab.tasks.prompts import apply_template, arithmetic_prompt, countdown_prompt

QUESTIONS = [arithmetic_prompt("12+34-5", "en"), arithmetic_prompt("7*8", "ja"), countdown_prompt([3, 7, 25], 46, "zh"),
             "What is {x} in 'a' \"b\"?", "Is {{ this }} {% raw %} safe?"]  # Jinja syntax in a question is text


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["Compute: 12+34 <think> 7 </think> <answer> 4 </answer>"] * 20, vocab_size=300)


def without_bos(tok):
    """The same vocabulary, adding no BOS to a plain prompt (as Qwen's tokenizers)."""
    backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    backend.post_processor = None
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=tok.bos_token, eos_token=tok.eos_token)


def chat(tok, messages, **kw):
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kw)


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_builtin_tokenizers_chat_template_renders_the_r1zero_prompt(tok, question):
    text = chat(tok, [{"role": "user", "content": question}])
    assert text == tok.bos_token + apply_template(question)
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)["input_ids"]
    assert ids == tok(apply_template(question))["input_ids"]  # what training and evaluation tokenise
    assert text.endswith("Assistant:")  # the model's output starts with its thinking, `<think>`


@pytest.mark.parametrize("template", ["r1zero", "plain"])
@pytest.mark.parametrize("bos", [True, False])
def test_chat_template_for_gives_the_ids_of_render_prompt(tok, template, bos):
    t = copy.copy(tok) if bos else without_bos(tok)
    t.chat_template = chat_template_for(template, t)
    assert resolve_template("auto", t) == template  # r1lab's own templates are recognised
    for q in QUESTIONS:
        plain = t(render_prompt(q, template, t), add_special_tokens=adds_special_tokens(template))["input_ids"]
        via_chat = t(render_prompt(q, "chat", t), add_special_tokens=adds_special_tokens("chat"))["input_ids"]
        assert via_chat == plain and (plain[0] == t.bos_token_id) == bos


def test_earlier_turns_keep_their_answers_and_drop_their_thinking(tok):
    history = [{"role": "user", "content": "Compute: 1+2"},
               {"role": "assistant", "content": "<think>\n1+2=3\n</think>\n<answer>3</answer>"},
               {"role": "user", "content": "Compute: 3+4"}]
    text = chat(tok, history)
    assert text == tok.bos_token + apply_template("Compute: 1+2") + "<answer>3</answer> User: Compute: 3+4. Assistant:"
    assert "1+2=3" not in text
    system = chat(tok, [{"role": "system", "content": "Be brief."}, history[-1]])
    assert system == tok.bos_token + "Be brief. User: Compute: 3+4. Assistant:"  # the preamble's place


def test_auto_resolves_a_foreign_chat_template_to_chat_and_none_to_r1zero(tok):
    t = without_bos(tok)
    assert t.chat_template is None and resolve_template("auto", t) == "r1zero"
    t.chat_template = "{{ messages[-1]['content'] }}"
    assert resolve_template("auto", t) == "chat" and chat_template_for("chat", t) is None
