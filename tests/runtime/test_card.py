"""Model cards: hub metadata, the recipe, the results, the citation."""

import yaml

from r1lab.runtime.card import metrics_table, model_card


def test_a_card_has_hub_metadata_recipe_results_and_citation():
    table = metrics_table({"base": {"pass@1": 0.25, "mean_length": 22.5}, "final": {"pass@1": 0.75, "mean_length": None}},
                          {"pass@1": "pass@1", "mean_length": "mean length"})
    assert table.splitlines() == ["| model | pass@1 | mean length |", "|---|---|---|",
                                  "| base | 0.250 | 22.500 |", "| final | 0.750 | - |"]
    card = model_card("r1lab zero", "R1-Zero.", "Qwen/Qwen2.5-0.5B", {"grpo": {"lr": 1e-4}}, "the signs task", table)
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and front["base_model"] == "Qwen/Qwen2.5-0.5B"
    assert "zero" in front["tags"] and "| final | 0.750 | - |" in card
    assert "lr: 0.0001" in card and "arXiv:2501.12948" in card
    local = model_card("r1lab sft", "SFT.", "builtin", {}, "data.jsonl", "loss")
    assert "base_model" not in yaml.safe_load(local.split("---")[1])  # not a hub id
