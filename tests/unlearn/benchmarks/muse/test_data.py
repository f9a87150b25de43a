"""MUSE loading (the shared JSON Lines copy, and a hub-layout directory read through ``datasets`` exactly
as the hub is), every bad input, and the corpus chunking."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.conftest import MUSE_DIR
from unlearn.benchmarks.muse.data import (
    MuseSets,
    chunk_texts,
    jsonl_name,
    load_muse,
    special_prefix,
)
from unlearn.errors import ConfigError, UnknownNameError
from unlearn.models import train_tokenizer


# MuseSets field -> the shared copy's file (MANIFEST.json key); privleak_retain is the local retain corpus
FIELD_FILES = {
    "forget_texts": "raw_forget",
    "retain_texts": "privleak_retain",
    "verbmem": "verbmem_forget",
    "knowmem_forget": "knowmem_forget_qa",
    "knowmem_forget_icl": "knowmem_forget_qa_icl",
    "knowmem_retain": "knowmem_retain_qa",
    "knowmem_retain_icl": "knowmem_retain_qa_icl",
    "privleak_forget": "privleak_forget",
    "privleak_holdout": "privleak_holdout",
    "privleak_retain": "privleak_retain",
}
# the hub's (config, split) of each shared file; raw/retain1 is stood in for by privleak/retain's texts
HUB_SPLITS = {
    "raw_forget": ("raw", "forget"),
    "verbmem_forget": ("verbmem", "forget"),
    "knowmem_forget_qa": ("knowmem", "forget_qa"),
    "knowmem_forget_qa_icl": ("knowmem", "forget_qa_icl"),
    "knowmem_retain_qa": ("knowmem", "retain_qa"),
    "knowmem_retain_qa_icl": ("knowmem", "retain_qa_icl"),
    "privleak_forget": ("privleak", "forget"),
    "privleak_holdout": ("privleak", "holdout"),
    "privleak_retain": ("privleak", "retain"),
}


@pytest.fixture(scope="module")
def muse_dir() -> Path:
    if not (MUSE_DIR / "MANIFEST.json").is_file():
        pytest.fail(f"no local MUSE-News copy at {MUSE_DIR}")
    return MUSE_DIR


@pytest.fixture(scope="module")
def manifest(muse_dir) -> dict[str, dict]:
    return json.loads((muse_dir / "MANIFEST.json").read_text())["files"]


@pytest.fixture(scope="module")
def full(muse_dir) -> MuseSets:
    return load_muse("news", str(muse_dir))


def _rows(muse_dir: Path, name: str, n: int | None = None) -> list[dict]:
    lines = (muse_dir / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:n]]


def _value(row: dict) -> object:
    return row["text"] if set(row) == {"text"} else row


# --- the shared JSON Lines copy --------------------------------------------------------------------------

def test_shared_copy_row_counts_and_columns(full, manifest, muse_dir):
    for field, name in FIELD_FILES.items():
        rows = getattr(full, field)
        assert len(rows) == manifest[name]["rows"], field
        file_rows = _rows(muse_dir, name)
        assert list(rows) == [_value(r) for r in file_rows], field  # same rows, same order
    for field in ("verbmem",):
        assert all(set(r) == {"prompt", "gt"} for r in getattr(full, field))
    for field in ("knowmem_forget", "knowmem_forget_icl", "knowmem_retain", "knowmem_retain_icl"):
        assert all(set(r) == {"question", "answer"} for r in getattr(full, field))
    # raw corpora are kept as they are, as open-unlearning joins them: raw/forget row 821 is empty
    assert full.forget_texts[821] == "" and sum(not t for t in full.forget_texts) == 1


def test_local_default_retain_is_privleak_retain(full):
    assert full.retain_texts == full.privleak_retain and len(full.retain_texts) > 0


def test_caps_keep_the_first_rows_and_every_privleak_text(full):
    small = load_muse("news", str(MUSE_DIR), max_articles=5, max_questions=3)
    for field in ("verbmem", "knowmem_forget", "knowmem_retain"):
        assert getattr(small, field) == getattr(full, field)[:3], field
    # privleak forget and holdout: every text by default (data.max_privleak caps them)
    assert small.privleak_forget == full.privleak_forget and small.privleak_holdout == full.privleak_holdout
    capped = load_muse("news", str(MUSE_DIR), max_articles=5, max_questions=3, max_privleak=7)
    assert capped.privleak_forget == full.privleak_forget[:7] and capped.privleak_holdout == full.privleak_holdout[:7]
    # the few-shot rows make up every knowmem prompt: never capped
    assert small.knowmem_forget_icl == full.knowmem_forget_icl and len(small.knowmem_forget_icl) == 10
    assert small.knowmem_retain_icl == full.knowmem_retain_icl
    assert full.forget_excerpts == () and full.notes == ()  # a whole-corpus run trains on the corpus as it is


def _in(needle: str, texts) -> bool:
    return needle.strip() in "\n\n".join(texts)


def test_a_capped_run_trains_on_what_it_measures(full):
    small = load_muse("news", str(MUSE_DIR), max_articles=5, max_questions=8)
    assert set(small.forget_texts) <= set(full.forget_texts) and len(small.forget_texts) >= 5
    # every kept verbmem row's stretch (its prompt's end, its gt's head) is in the forget articles
    for row in small.verbmem:
        assert _in(row["prompt"].strip()[-200:], small.forget_texts) and _in(row["gt"].strip()[:100], small.forget_texts)
    # every knowmem forget answer found in raw/forget is in a kept article; the shared copy's rows 4 and 6
    # ("16 October 2020", "1988") are in none, and the run's output says so
    for i, row in enumerate(small.knowmem_forget):
        assert _in(row["answer"], small.forget_texts) == (i not in (4, 6)), i
    notes = "\n".join(small.notes)
    assert "knowmem forget answers: 6/8 found in raw/forget" in notes and "not found: rows [4, 6]" in notes
    # every privleak forget text is trained on (its scored prefix, cut at tokenization)
    assert small.forget_excerpts == full.privleak_forget
    assert "privleak forget texts: 100/100 found in raw/forget" in notes
    # holdout texts are never trained on: the shared copy's holdout rows 32 and 66 sit in a raw/forget article
    # and in a privleak/retain text, both left out
    for t in full.privleak_holdout:
        assert not _in(t[:200], small.forget_texts) and not _in(t[:200], small.retain_texts)
    assert "rows [32, 66]" in notes
    # the retain corpus holds the kept retain knowmem answers it found, and is the privleak/retain it is scored on
    found = [r for r in small.knowmem_retain if any(r["answer"].strip() in t for t in full.retain_texts)]
    assert found and all(_in(r["answer"], small.retain_texts) for r in found)
    assert small.privleak_retain == small.retain_texts and set(small.retain_texts) <= set(full.retain_texts)


def test_probes_from_another_corpus_are_refused(muse_dir, tmp_path):
    for name in FIELD_FILES.values():
        (tmp_path / f"{name}.jsonl").write_text((muse_dir / f"{name}.jsonl").read_text())
    (tmp_path / "raw_forget.jsonl").write_text((muse_dir / "privleak_retain.jsonl").read_text())  # not the probes' corpus
    with pytest.raises(ConfigError, match="none of the 3 verbmem rows and 100 privleak forget texts.*raw/forget"):
        load_muse("news", str(tmp_path), max_articles=5, max_questions=3)


def test_probes_are_found_across_article_joins():
    from unlearn.benchmarks.muse.probes import Stream, match_knowmem, match_texts

    stream = Stream(["Alpha beta gamma.", "Delta epsilon zeta.", "In 1472 Orkney became part of Scotland."])
    # a text that runs from the end of one article into the next is placed in both
    assert stream.find("gamma.\n\nDelta") == (0, 1)
    assert stream.find("not there") == () and stream.find("  ") == ()
    m = match_texts(stream, ["beta gamma", "nowhere"], "texts", "corpus")
    assert m.found == (0,) and m.missing == (1,) and "1/2 found in corpus" in m.note() and "rows [1]" in m.note()
    # a knowmem answer: the article holding it that shares words with the question; a bare match without a
    # shared word places nothing
    rows = [{"question": "When did Orkney become part of Scotland?", "answer": "1472"},
            {"question": "What year?", "answer": "1472"}]
    assert match_knowmem(stream, rows, "k", "c").where == ((2,), ())


# --- a directory laid out like the hub repository -----------------------------------------------------------

N_HUB = 12  # rows per split in the hub-layout copy (the few-shot splits keep their 10)


def _write_hub_dir(muse_dir: Path, root: Path, files: dict[str, tuple[str, str]], drop: tuple[str, str] | None = None,
                   drop_column: tuple[str, str] | None = None) -> Path:
    """Parquet ``<config>/<split>-00000-of-00001.parquet`` per split and a README.md ``configs:`` header, as
    ``muse-bench/MUSE-News`` has them."""
    import datasets

    by_config: dict[str, list[str]] = {}
    for name, (config, split) in files.items():
        if (config, split) == drop:
            continue
        rows = _rows(muse_dir, name, N_HUB)
        if drop_column == (config, split):
            rows = [{k: v for k, v in r.items() if k != "gt"} for r in rows]
        (root / config).mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows).to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
        by_config.setdefault(config, []).append(split)
    header = ["---", "license: cc-by-4.0", "configs:"]
    for config, splits in by_config.items():
        header += [f"- config_name: {config}", "  data_files:"]
        for split in splits:
            header += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*header, "---", "", "A MUSE-News subset in the hub's layout.", ""]))
    return root


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """``datasets``' cache in a temporary directory: the user's cache stays untouched."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-datasets-cache"))
        yield


@pytest.fixture(scope="module")
def hub_dir(muse_dir, tmp_path_factory, hub_cache) -> Path:
    files = {**HUB_SPLITS, "raw_retain1_standin": ("raw", "retain1")}
    root = tmp_path_factory.mktemp("MUSE-News")
    src = tmp_path_factory.mktemp("standin")
    (src / "raw_retain1_standin.jsonl").write_text((muse_dir / "privleak_retain.jsonl").read_text())
    for name in HUB_SPLITS:
        (src / f"{name}.jsonl").symlink_to(muse_dir / f"{name}.jsonl")
    return _write_hub_dir(src, root, files)


def test_hub_layout_loads_through_load_dataset(hub_dir, full):
    sets = load_muse("news", str(hub_dir))  # the hub code path: datasets.load_dataset(dir, config, split=...)
    for field in ("forget_texts", "verbmem", "knowmem_forget", "knowmem_retain", "privleak_forget",
                  "privleak_holdout", "privleak_retain"):
        assert getattr(sets, field) == getattr(full, field)[:N_HUB], field
    assert sets.knowmem_forget_icl == full.knowmem_forget_icl and sets.knowmem_retain_icl == full.knowmem_retain_icl
    # raw/retain1 is the hub's default retain corpus (here the privleak/retain texts stand in for it)
    assert sets.retain_texts == full.privleak_retain[:N_HUB]
    assert load_muse("news", str(hub_dir), retain_split="privleak_retain").retain_texts == sets.privleak_retain
    # a capped run places its probes in raw/forget: this copy's first 12 articles hold none of them
    with pytest.raises(ConfigError, match="none of the 4 verbmem rows and 12 privleak forget texts"):
        load_muse("news", str(hub_dir), max_articles=2, max_questions=4)


def test_hub_layout_missing_split_or_column(hub_dir, muse_dir, tmp_path, hub_cache):
    with pytest.raises(ConfigError, match=r"raw/retain2.*Unknown split") as err:
        load_muse("news", str(hub_dir), retain_split="retain2")
    assert "retain1" in str(err.value)  # datasets' list of the splits there is
    no_holdout = _write_hub_dir(muse_dir, tmp_path / "a", HUB_SPLITS, drop=("privleak", "holdout"))
    with pytest.raises(ConfigError, match="privleak/holdout"):
        load_muse("news", str(no_holdout), retain_split="privleak_retain")
    no_gt = _write_hub_dir(muse_dir, tmp_path / "b", HUB_SPLITS, drop_column=("verbmem", "forget"))
    with pytest.raises(ConfigError, match=r"lacks column 'gt'.*valid columns: prompt, gt"):
        load_muse("news", str(no_gt), retain_split="privleak_retain")


# --- bad input --------------------------------------------------------------------------------------------

def _small_copy(muse_dir: Path, root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in HUB_SPLITS:
        rows = _rows(muse_dir, name, n)
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _rewrite(file: Path, i: int, row: object) -> None:
    lines = file.read_text().splitlines()
    lines[i] = json.dumps(row)
    file.write_text("\n".join(lines) + "\n")


def test_unknown_corpus_and_retain_split(muse_dir):
    with pytest.raises(UnknownNameError, match=r"'movies'.*valid: books, news"):
        load_muse("movies", str(muse_dir))
    with pytest.raises(UnknownNameError, match=r"'retain3'.*privleak_retain, retain1, retain2"):
        load_muse("news", str(muse_dir), retain_split="retain3")


def test_missing_directory_and_unknown_layout(tmp_path):
    with pytest.raises(ConfigError, match=r"'/no/such/muse' is not a directory.*raw_forget.jsonl"):
        load_muse("news", "/no/such/muse")
    with pytest.raises(ConfigError, match=r"neither layout.*README.md"):
        load_muse("news", str(tmp_path))


@pytest.mark.parametrize("name", ["raw_forget", "verbmem_forget", "knowmem_retain_qa_icl", "privleak_holdout"])
def test_missing_file_names_it_and_the_layout(muse_dir, tmp_path, name):
    root = _small_copy(muse_dir, tmp_path / "copy")
    (root / f"{name}.jsonl").unlink()
    with pytest.raises(ConfigError, match=rf"lacks {name}\.jsonl.*expected JSON Lines files"):
        load_muse("news", str(root))


def test_missing_raw_retain_corpus_locally(muse_dir, tmp_path):
    root = _small_copy(muse_dir, tmp_path / "copy")
    with pytest.raises(ConfigError, match=r"lacks raw_retain1\.jsonl \(raw/retain1\)"):
        load_muse("news", str(root), retain_split="retain1")
    (root / "privleak_retain.jsonl").unlink()  # optional unless it is the retain corpus
    with pytest.raises(ConfigError, match=r"lacks privleak_retain\.jsonl"):
        load_muse("news", str(root))
    (root / "raw_retain1.jsonl").write_text(json.dumps({"text": "a retain article"}) + "\n")
    sets = load_muse("news", str(root), retain_split="retain1")
    assert sets.retain_texts == ("a retain article",) and sets.privleak_retain == ()


@pytest.mark.parametrize(("name", "row", "pattern"), [
    ("knowmem_forget_qa", {"question": "Who?"}, r"row 1: column 'answer' is missing \(has no answer"),
    ("knowmem_retain_qa", {"question": "Who?", "answer": "  "}, r"row 1: column 'answer' is an empty answer"),
    ("verbmem_forget", {"prompt": "The start", "gt": 5}, r"row 1: column 'gt' is 5"),
    ("verbmem_forget", {"gt": "the end"}, r"row 1: column 'prompt' is missing"),
    ("raw_forget", {"text": None}, r"row 1: column 'text' is None"),
    ("privleak_holdout", {"text": " "}, r"row 1: column 'text' is ' '"),
    ("privleak_forget", ["not", "a", "row"], r"row 1 is list, not an object"),
])
def test_bad_row_names_file_row_column_and_valid_columns(muse_dir, tmp_path, name, row, pattern):
    root = _small_copy(muse_dir, tmp_path / "copy")
    _rewrite(root / f"{name}.jsonl", 1, row)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_muse("news", str(root))
    msg = str(err.value)
    assert str(root / f"{name}.jsonl") in msg
    valid = {"knowmem": "question, answer", "verbmem": "prompt, gt"}.get(name.split("_")[0], "text")
    assert f"{'' if name == 'raw_forget' else 'non-empty '}string columns {valid}" in msg


@pytest.mark.parametrize("name", ["privleak_forget", "privleak_holdout", "knowmem_forget_qa_icl"])
def test_empty_split(muse_dir, tmp_path, name):
    root = _small_copy(muse_dir, tmp_path / "copy")
    (root / f"{name}.jsonl").write_text("")
    with pytest.raises(ConfigError, match=rf"{name}\.jsonl has no rows"):
        load_muse("news", str(root))


def test_not_json_and_bad_caps(muse_dir, tmp_path):
    root = _small_copy(muse_dir, tmp_path / "copy")
    (root / "knowmem_forget_qa.jsonl").write_text('{"question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(ConfigError, match=r"knowmem_forget_qa\.jsonl line 2 is not JSON"):
        load_muse("news", str(root))
    with pytest.raises(ConfigError, match=r"data.max_articles=0"):
        load_muse("news", str(muse_dir), max_articles=0)
    with pytest.raises(ConfigError, match=r"data.max_questions=True"):
        load_muse("news", str(muse_dir), max_questions=True)


def test_jsonl_names_follow_config_and_split():
    assert jsonl_name("knowmem", "retain_qa_icl") == "knowmem_retain_qa_icl.jsonl"
    assert jsonl_name("raw", "forget") == "raw_forget.jsonl"


# --- chunking -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tok(full):
    return train_tokenizer([*full.forget_texts[:40], *full.privleak_retain[:10]], 512)


def _bos_tokenizer(tok):
    """The same tokenizer, adding BOS by itself as Llama's does."""
    from tokenizers import processors

    out = copy.deepcopy(tok)
    out.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", special_tokens=[(tok.bos_token, tok.bos_token_id)])
    return out


def test_chunks_tile_the_joined_stream(tok, full):
    texts = list(full.forget_texts[:3])
    stream = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]  # open-unlearning's joined corpus
    chunks = chunk_texts(tok, texts, 64)
    assert special_prefix(tok) == []
    assert len(chunks) == -(-len(stream) // 64)
    for i, c in enumerate(chunks):
        assert list(c.input_ids) == stream[64 * i : 64 * (i + 1)]
        assert c.labels == c.input_ids and c.prompt_len == 0 and c.importance is None
    assert all(len(c.input_ids) == 64 for c in chunks[:-1]) and 0 < len(chunks[-1].input_ids) <= 64  # tail kept


def test_chunk_boundaries_on_a_hand_stream(tok):
    ids = tok("ab\n\ncd", add_special_tokens=False)["input_ids"]
    n = len(ids)
    assert [list(c.input_ids) for c in chunk_texts(tok, ["ab", "cd"], 2)] == [ids[i : i + 2] for i in range(0, n, 2)]
    # the stream's length a multiple of max_length: no empty tail chunk
    assert [len(c.input_ids) for c in chunk_texts(tok, ["ab", "cd"], n)] == [n]
    assert chunk_texts(tok, [], 8) == []
    with pytest.raises(ConfigError, match="max_length=0"):
        chunk_texts(tok, ["ab"], 0)


def test_chunks_start_with_the_tokenizers_bos(tok, full):
    bos_tok = _bos_tokenizer(tok)
    assert special_prefix(bos_tok) == [tok.bos_token_id]
    texts = list(full.forget_texts[:2])
    stream = tok("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    chunks = chunk_texts(bos_tok, texts, 50)
    for i, c in enumerate(chunks):
        assert list(c.input_ids) == [tok.bos_token_id, *stream[50 * i : 50 * (i + 1)]]
        assert c.labels == c.input_ids and c.prompt_len == 0
