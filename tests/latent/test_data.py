"""Prompt files and captions datasets, and their clear refusals."""
import json

import pytest
import torch

from sidkernels.latent.data import draw_indices, load_prompts


def test_text_file_one_prompt_per_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("  a cat  \n\n\na dog\r\nlast line without newline")
    assert load_prompts(path) == ["a cat", "a dog", "last line without newline"]


def test_captions_datasets(tmp_path):
    coco = tmp_path / "captions_val2014.json"
    coco.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1, "caption": "A man riding a horse."},
                                                              {"image_id": 2, "caption": " Two dogs. "}]}))
    assert load_prompts(coco) == ["A man riding a horse.", "Two dogs."]
    plain = tmp_path / "list.json"
    plain.write_text(json.dumps(["x", "y"]))
    assert load_prompts(plain) == ["x", "y"]
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"text": "first"}\n\n{"prompt": "second"}\n"third"\n')
    assert load_prompts(lines) == ["first", "second", "third"]
    table = tmp_path / "p.csv"
    table.write_text('id,caption\n1,"a, b"\n2,c\n')
    assert load_prompts(table) == ["a, b", "c"]
    tsv = tmp_path / "p.tsv"
    tsv.write_text("prompt\tscore\nhello world\t6.5\n")
    assert load_prompts(tsv) == ["hello world"]


@pytest.mark.parametrize("name, text", [("empty.txt", ""), ("blank.txt", "\n  \n\t\n"), ("e.json", "[]"),
                                        ("e.jsonl", "\n"), ("e.csv", "caption\n")])
def test_an_empty_prompt_file_is_refused(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match="prompts .* contains no prompts"):
        load_prompts(path)


def test_bad_prompt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="prompts: no such file"):
        load_prompts(tmp_path / "missing.txt")
    other = tmp_path / "p.parquet"
    other.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type '.parquet'"):
        load_prompts(other)
    wrong = tmp_path / "p.jsonl"
    wrong.write_text('{"label": 3}\n')
    with pytest.raises(ValueError, match="line 1: expected a string or an object with one of the fields"):
        load_prompts(wrong)
    table = tmp_path / "p.csv"
    table.write_text("id,label\n1,2\n")
    with pytest.raises(ValueError, match="no caption/text/prompt column"):
        load_prompts(table)


def test_indices_are_uniform_over_the_prompts():
    idx = draw_indices(20000, 5)
    assert idx.dtype == torch.long and int(idx.min()) == 0 and int(idx.max()) == 4
    freq = torch.bincount(idx, minlength=5).float() / 20000
    assert (freq - 0.2).abs().max().item() < 0.02
