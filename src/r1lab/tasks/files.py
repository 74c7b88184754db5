"""Problems from the user's own data: a JSONL file, a Parquet file, or a saved `datasets` directory.

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

import json
import random
from pathlib import Path

from r1lab.errors import UserError
from r1lab.tasks.base import Problem, check_split, split_of

FORMATS = ".jsonl file, .parquet file, or a directory saved by datasets' save_to_disk"


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
        from r1lab.grading import verify  # at call time: loading data must not need the math verifier

        return verify.answers_equal(extracted, problem.answer)

    def _load(self) -> dict[str, list[Problem]]:
        """The problems of each split, read from whichever format `path` is."""
        if not self.path.exists():
            raise UserError(f"{self.path}: no such file or directory")
        if self.path.is_dir():
            return self._load_dataset_dir()
        if self.path.suffix == ".jsonl":
            return self._split_by_hash(self._problems(_jsonl_rows(self.path), "line"))
        if self.path.suffix == ".parquet":
            return self._split_by_hash(self._problems(_parquet_rows(self.path), "row"))
        raise UserError(f"{self.path}: unknown format {self.path.suffix!r}; expected a {FORMATS}")

    def _load_dataset_dir(self) -> dict[str, list[Problem]]:
        """A `Dataset` (hash split) or `DatasetDict` (its own train/test if it has both)."""
        import datasets  # slow to import; only directories need it

        try:
            loaded = datasets.load_from_disk(str(self.path))
        except (FileNotFoundError, ValueError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{self.path}: not a directory saved by datasets' save_to_disk ({reason})") from None
        if isinstance(loaded, datasets.Dataset):
            return self._split_by_hash(self._problems(enumerate(loaded, 1), "row"))
        if "train" in loaded and "test" in loaded:
            return {split: self._problems(enumerate(loaded[split], 1), f"{split} row") for split in ("train", "test")}
        if "train" in loaded or len(loaded) == 1:
            only = "train" if "train" in loaded else next(iter(loaded))
            return self._split_by_hash(self._problems(enumerate(loaded[only], 1), f"{only} row"))
        raise UserError(f"{self.path}: has splits {', '.join(loaded)} but no 'train'; save one as 'train'")

    def _problems(self, rows, unit: str) -> list[Problem]:
        """One Problem per distinct question in `rows` ((number, dict) pairs); `unit` names a row in errors."""
        from r1lab.grading.extract import gold_answer  # at call time, as in `grade`
        by_key: dict[str, Problem] = {}
        for number, row in rows:
            # FILE:N for a line of a text file, as everywhere else; FILE: row N for a table's row
            where = f"{self.path}:{number}" if unit == "line" else f"{self.path}: {unit} {number}"
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


def _jsonl_rows(path: Path):
    """(line number, object) for each non-blank line; UserError for a line that is not a JSON object."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{number}: malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def _parquet_rows(path: Path):
    """(row number, dict) for each row of a Parquet file."""
    import pyarrow
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except pyarrow.ArrowException as e:
        raise UserError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    return enumerate(table.to_pylist(), 1)


def text_field(row: dict, field: str, where: str) -> str:
    """`row[field]` as non-empty text (numbers converted: 3.0 -> "3"); UserError naming `where` otherwise."""
    if field not in row:
        available = ", ".join(repr(k) for k in row) or "none"
        raise UserError(f"{where}: missing field {field!r} (fields: {available})")
    value = row[field]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = "null" if value is None else type(value).__name__
        raise UserError(f"{where}: field {field!r} is {kind}, expected a string or number")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if not text.strip():
        raise UserError(f"{where}: field {field!r} is empty")
    return text
