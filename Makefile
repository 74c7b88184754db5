# Two commands set everything up on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean results results-zero results-pipeline results-distill results-eval results-bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build from local disk; an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/r1lab zero

test: $(STAMP)
	$(BIN)/pytest

# docs/results.md, section by section (bench/results.py): each runs its commands from scratch on the
# code as it is, holding the CPU lock so that nothing else skews its timings. All four: about an hour.
RESULTS := flock /tmp/r1lab-cpu.lock $(BIN)/python bench/results.py

results: results-zero results-pipeline results-distill results-eval results-bench

results-zero: $(STAMP)
	$(RESULTS) zero

results-pipeline: $(STAMP)
	$(RESULTS) pipeline

results-distill: $(STAMP)
	$(RESULTS) distill

results-eval: $(STAMP)  # evaluates results-zero's final checkpoint
	$(RESULTS) eval

results-bench: $(STAMP)
	$(RESULTS) bench

clean:
	rm -rf $(VENV) runs .cache
