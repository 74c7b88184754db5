"""Problems from the user's own data: a JSONL file, a Parquet file, a saved `datasets` directory,
or a Hugging Face hub dataset id (`owner/name`: its "train" split, through `datasets`; online only,
a one-line error offline unless HF_HUB_OFFLINE=1 finds it in the cache).

    task = FileTask("data/gsm8k_train.jsonl", question_field="question", answer_field="answer")

Every row needs a question and a gold final answer (a string, or a number, which becomes a
string); `lang_field` optionally names a column with the prompt's language. The question text is
the problem's key: duplicate questions are kept once (the first), and the split is a hash of the
question (`split_of(key, test_percent)`), so the same question lands in the same split however
the file is ordered. A saved `DatasetDict` with both "train" and "test" splits keeps its own
split instead. For a benchmark that is all test data, pass `test_percent=100`.

The gold is the answer field's final answer (`extract.gold_answer`): a plain answer as it is, the
last `#### N` of a GSM8K rationale, the last \\boxed{} of a MATH solution, so the hub's GSM8K
(`answer`) and MATH (`solution`) columns work unchanged. Grading compares answers for
mathematical equivalence with `r1lab.grading.verify.answers_equal`, so "1/2" and "0.5" agree. Any mistake in the data raises UserError naming the file and line (row).
"""

from __future__ import annotations

import random
from pathlib import Path

from r1lab.errors import UserError
from r1lab.grading import verify
from r1lab.grading.extract import gold_answer
from r1lab.runtime.files import hub_rows, is_hub_id, read_rows, splits_of, text_field
from r1lab.tasks.base import Problem, check_split, split_of


class FileTask:
    """The rows of one data file as problems, split by a hash of the question or by the source."""

    def __init__(
        self,
        path: str | Path,
        question_field: str = "problem",
        answer_field: str = "answer",
        lang_field: str | None = None,
        test_percent: int = 10,
    ):
        if not isinstance(test_percent, int) or not 0 <= test_percent <= 100:
            raise UserError(f"{path}: test_percent must be an integer from 0 to 100, got {test_percent!r}")
        self.path = Path(path)
        self.name = f"file:{path}"
        self.fields = {"question": question_field, "answer": answer_field, "lang": lang_field}
        self.test_percent = test_percent
        self.splits = self._load()

    def __repr__(self) -> str:
        return f"FileTask({str(self.path)!r})"

    def problems(self, split: str, n: int, seed: int, langs: tuple[str, ...] = ("en",)) -> list[Problem]:
        """Up to `n` problems of `split` in an order shuffled by `seed` (`langs` unused: the file decides)."""
        shuffled = list(self.splits[check_split(split)])
        random.Random(seed).shuffle(shuffled)
        return shuffled[:n]

    def grade(self, extracted: str | None, problem: Problem) -> bool:
        """Is `extracted` mathematically equal to the gold answer? (r1lab.grading.verify decides.)"""
        if extracted is None:
            return False
        return verify.answers_equal(extracted, problem.answer)

    def _load(self) -> dict[str, list[Problem]]:
        """The problems of each split: a saved DatasetDict with "train" and "test" keeps its own
        splits; any other data (one of its splits) is split by a hash of the question."""
        if is_hub_id(self.path):  # its train split, split by hash like a file
            return self._split_by_hash(self._problems(hub_rows(str(self.path), None, "train")))
        splits = splits_of(self.path)  # () for a file or a single saved Dataset
        if {"train", "test"} <= set(splits):
            return {split: self._problems(read_rows(self.path, split)) for split in ("train", "test")}
        if splits and "train" not in splits and len(splits) > 1:
            raise UserError(f"{self.path}: has splits {', '.join(splits)} but no 'train'; save one as 'train'")
        only = ("train" if "train" in splits else splits[0]) if splits else None
        return self._split_by_hash(self._problems(read_rows(self.path, only)))

    def _problems(self, rows) -> list[Problem]:
        """One Problem per distinct question in `rows` ((where, record) pairs)."""
        by_key: dict[str, Problem] = {}
        for where, row in rows:
            question = text_field(row, self.fields["question"], where)
            # a rationale (GSM8K's "... #### 18", a MATH solution's last \boxed{}) becomes its final answer
            answer = gold_answer(text_field(row, self.fields["answer"], where))
            lang = text_field(row, self.fields["lang"], where) if self.fields["lang"] else "en"
            problem = Problem(key=question, prompt=question, answer=answer, task=self.name, lang=lang)
            by_key.setdefault(question, problem)
        return list(by_key.values())

    def _split_by_hash(self, problems: list[Problem]) -> dict[str, list[Problem]]:
        """`problems` divided into train and test by a hash of each question."""
        splits: dict[str, list[Problem]] = {"train": [], "test": []}
        for problem in problems:
            splits[split_of(problem.key, self.test_percent)].append(problem)
        return splits
