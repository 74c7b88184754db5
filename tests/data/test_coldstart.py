"""Cold-start data: right answers, the R1-Zero tags, and every word in the prompt's language."""

import json

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
