"""Cold-start data: right answers, the R1-Zero tags, and every word in the prompt's language."""

import json
import re

from r1lab.data.coldstart import cold_start_examples
from r1lab.data.rejection import write_sft_jsonl
from r1lab.grading.language import language_share
from r1lab.grading.shape import chain_of_thought
from r1lab.model.corpus import REFLECTIONS
from r1lab.rl.rewards import accuracy, format_reward
from r1lab.tasks import make_task, register_task


def test_cold_start_is_correct_formatted_and_in_one_language(empty_registry):
    task = register_task(make_task("arithmetic", digits=4, terms=2))
    rows = cold_start_examples(200, seed=0, langs=("en", "zh", "ja", "ko"))
    problems = {p.prompt: p for p in task.problems("train", 200, seed=2000, langs=("en", "zh", "ja", "ko"))}
    ps = [problems[r.prompt] for r in rows]
    texts = [r.completion for r in rows]
    assert accuracy(texts, ps) == [1.0] * 200
    assert format_reward(texts, ps) == [1.0] * 200
    assert {r.lang for r in rows} == {"en", "zh", "ja", "ko"}
    for r in rows:
        cot = chain_of_thought(r.completion)
        assert language_share(cot, r.lang) == 1.0, r
        assert r.completion.endswith("</answer>")
    slips = [r for r in rows if any(v in r.completion for v in REFLECTIONS.values())]
    assert 5 <= len(slips) <= 40  # ~10 % carry a caught slip
    assert all(REFLECTIONS[r.lang] in r.completion for r in slips)


def test_cold_start_file_is_sft_data(tmp_path):
    from r1lab.stages.sft import read_pairs

    write_sft_jsonl(cold_start_examples(3, seed=0, langs=("zh",)), tmp_path / "cold.jsonl", {"generator": "test"})
    rows = [json.loads(x) for x in (tmp_path / "cold.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["lang"] for r in rows] == ["zh"] * 3 and rows[0]["source"] == {"generator": "test"}
    assert len(read_pairs(tmp_path / "cold.jsonl")) == 3


def test_uncleaned_languages_mix_at_their_share_and_the_others_do_not(empty_registry):
    register_task(make_task("arithmetic"))
    examples = cold_start_examples(400, seed=1, langs=("en", "zh", "ja", "ko"), mixed_langs=("ja",), mix=0.2)
    lines = {lang: [line for e in examples if e.lang == lang for line in chain_of_thought(e.completion).splitlines()
                    if re.match(r"\S+ \d", line)] for lang in ("zh", "ja", "ko")}  # fact lines: word, then a fact
    english = {lang: sum(line.startswith("digit ") for line in ls) / len(ls) for lang, ls in lines.items()}
    assert english["zh"] == english["ko"] == 0.0
    assert 0.15 < english["ja"] < 0.25  # 0.2 per line
    assert all(line.startswith(("けた ", "digit ")) for line in lines["ja"])
    # correctness is untouched: every uncleaned chain still answers right
    ja = [e for e in examples if e.lang == "ja"]
    assert all(e.correct for e in ja) and min(language_share(chain_of_thought(e.completion), "ja") for e in ja) < 0.95
