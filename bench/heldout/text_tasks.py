"""Held-out tasks whose answer is free text (a solution, code, a translation, a subject line, an
answer to a question): one converter each, as in `tasks.py`."""

import gzip
import json
import re

from mirror import (
    MAX_TEST,
    MAX_TRAIN,
    dedup,
    detok,
    git_bytes,
    git_ls,
    git_text,
    render_splits,
    sample,
    split_pool,
    ws,
)


def task_gsm8k_math(rng):
    repo = "openai/grade-school-math"

    def load(path):
        out = []
        for line in git_text(repo, path).splitlines():
            d = json.loads(line)
            sol, ans = d["answer"].split("####")
            sol = re.sub(r"<<[^>]*>>", "", sol).strip()
            out.append((d["question"].strip(), f"{sol}\nThe answer is {ans.strip()}."))
        return out

    train = sample(load("grade_school_math/data/train.jsonl"), rng, MAX_TRAIN)
    test = sample(load("grade_school_math/data/test.jsonl"), rng, MAX_TEST)
    tpl = [
        "Solve the following math word problem step by step.\n\n{q}",
        "{q}\n\nWork through the problem and give the final answer.",
        "Question: {q}\nShow your reasoning, then state the answer.",
    ]
    fmt = lambda r: ({"q": r[0]}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_mbpp_code(rng):
    repo = "muitiiifruckt/ASE"
    rows = [json.loads(l) for l in git_text(repo, "mbpp.jsonl").splitlines() if l.strip()]
    # official MBPP split: 11-510 test, 511-600 validation, 601-974 train
    tr = [d for d in rows if d["task_id"] >= 511]
    te = [d for d in rows if 11 <= d["task_id"] <= 510]
    train = sample(tr, rng, MAX_TRAIN)
    test = sample(te, rng, MAX_TEST)
    tpl = [
        "{text}\nYour code should pass these tests:\n{tests}",
        "Write a Python function for the following task.\n\nTask: {text}\n\nExample tests:\n{tests}",
        "Implement this in Python: {text}\nIt must satisfy:\n{tests}",
    ]

    def fmt(d):
        code = d["code"].replace("\r\n", "\n").replace("\r", "\n").rstrip()
        return {"text": d["text"].strip(), "tests": "\n".join(d["test_list"])}, code

    return render_splits(train, test, tpl, fmt, rng)


def task_multi30k_en_de(rng):
    repo = "multi30k/dataset"

    def load(split):
        en = gzip.decompress(git_bytes(repo, f"data/task1/raw/{split}.en.gz")).decode("utf-8").splitlines()
        de = gzip.decompress(git_bytes(repo, f"data/task1/raw/{split}.de.gz")).decode("utf-8").splitlines()
        assert len(en) == len(de)
        return dedup([(ws(a), ws(b)) for a, b in zip(en, de) if a.strip() and b.strip()],
                     lambda r: r[0].lower())

    test = sample(load("test_2016_flickr"), rng, MAX_TEST)
    keys = {r[0].lower() for r in test}
    train = sample([r for r in load("train") if r[0].lower() not in keys], rng, MAX_TRAIN)
    tpl = [
        "Translate to German:\n\n{en}",
        "{en}\n\nTranslate this sentence into German.",
        "How would you say the following English sentence in German?\n\"{en}\"",
    ]
    fmt = lambda r: ({"en": r[0]}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_wikiann_ner(rng):
    repo = "davidsbatista/NER-datasets"
    names = {"PER": "person", "ORG": "organization", "LOC": "location"}

    def load(path):
        sents, toks, tags = [], [], []
        for line in git_text(repo, path).splitlines() + [""]:
            line = line.strip()
            if not line:
                if toks:
                    sents.append((toks, tags))
                toks, tags = [], []
                continue
            tok, tag = line.rsplit("\t", 1) if "\t" in line else line.rsplit(" ", 1)
            if tok.startswith("en:"):
                tok = tok[3:]
            toks.append(tok)
            tags.append(tag)
        out = []
        for toks, tags in sents:
            ents, cur, typ = [], [], None
            for t, g in zip(toks, tags):
                if g.startswith("B-") or (g.startswith("I-") and typ != g[2:]):
                    if cur:
                        ents.append((" ".join(cur), typ))
                    cur, typ = [t], g[2:]
                elif g.startswith("I-"):
                    cur.append(t)
                else:
                    if cur:
                        ents.append((" ".join(cur), typ))
                    cur, typ = [], None
            if cur:
                ents.append((" ".join(cur), typ))
            if len(toks) < 6 or not ents:
                continue
            sent = detok(" ".join(toks))
            if not sent[:1].isalnum() or "**" in sent:
                continue  # skip list/markup fragments
            resp = "; ".join(f"{detok(e)} ({names.get(t, t)})" for e, t in ents)
            out.append((sent, resp))
        return dedup(out, lambda r: r[0])

    test = sample(load("WikiANN/en/test"), rng, MAX_TEST)
    keys = {r[0] for r in test}
    train = sample([r for r in load("WikiANN/en/train") if r[0] not in keys], rng, MAX_TRAIN)
    tpl = [
        "Find all named entities (persons, organizations, locations) in the sentence and label their types.\n\nSentence: {s}",
        "{s}\n\nList the people, organizations and locations mentioned in the text above, with their entity type.",
        "Extract the named entities from this text and tag each as person, organization or location: {s}",
    ]
    fmt = lambda r: ({"s": r[0]}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_aeslc_subject(rng):
    repo = "ryanzhumich/AESLC"

    # listing train (14k files) is cheap; reading every blob is not, so sample file names first
    def load_sampled(folder, n):
        paths = git_ls(repo, f"enron_subject_line/{folder}")
        rng.shuffle(paths)
        out = []
        for path in paths:
            txt = git_text(repo, path)
            if "@subject" not in txt:
                continue
            body, rest = txt.split("@subject", 1)
            subj = rest.split("@ann0")[0].strip()
            body = "\n".join(l.strip() for l in body.strip().splitlines() if l.strip())
            body = re.sub(r"[ \t]+", " ", body)
            if not subj or not (80 <= len(body) <= 1500):
                continue
            out.append((body, ws(subj)))
            if len(out) >= n:
                break
        return out

    test = load_sampled("test", MAX_TEST)
    train = load_sampled("train", MAX_TRAIN)
    tpl = [
        "Write a subject line for this email.\n\n{b}",
        "{b}\n\nWhat would be a good subject line for the email above?",
        "Email:\n{b}\n\nGenerate a short, informative subject for this email.",
    ]
    fmt = lambda r: ({"b": r[0]}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_jfleg_grammar(rng):
    repo = "keisks/jfleg"

    def load(split):
        src = git_text(repo, f"{split}/{split}.src").splitlines()
        ref = git_text(repo, f"{split}/{split}.ref0").splitlines()
        assert len(src) == len(ref)
        return dedup([(detok(s), detok(r)) for s, r in zip(src, ref) if s.strip() and r.strip()],
                     lambda x: x[0])

    train = sample(load("dev"), rng, MAX_TRAIN)     # JFLEG only has dev/test; dev -> train
    test = sample(load("test"), rng, MAX_TEST)
    tpl = [
        "Correct the grammar and spelling of this sentence:\n\n{s}",
        "{s}\n\nRewrite the sentence above so that it is fluent, grammatical English.",
        "Fix the errors in the following text and make it sound natural: \"{s}\"",
    ]
    fmt = lambda r: ({"s": r[0]}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_csqa_commonsense(rng):
    repo = "lionzwarrior/llm-benchmark"
    rows = [json.loads(l) for l in git_text(repo, "dev_rand_split.jsonl").splitlines() if l.strip()]
    rows = dedup(rows, lambda d: d["question"])
    train, test = split_pool(rows, rng)
    tpl = [
        "{q}\n\nOptions:\n{opts}\n\nPick the most sensible answer.",
        "Answer the following commonsense question by choosing one of the options.\nQuestion: {q}\nChoices: {inline}",
        "Use common sense to answer: {q}\n{opts}",
    ]

    def fmt(d):
        labs, texts = d["choices"]["label"], d["choices"]["text"]
        opts = "\n".join(f"- {t}" for t in texts)
        inline = ", ".join(texts)
        ans = texts[labs.index(d["answerKey"])]
        return {"q": d["question"].strip(), "opts": opts, "inline": inline}, ans

    return render_splits(train, test, tpl, fmt, rng)


def task_nq_open_qa(rng):
    repo = "google-research-datasets/natural-questions"
    rows = [json.loads(l) for l in git_text(repo, "nq_open/NQ-open.dev.jsonl").splitlines() if l.strip()]
    rows = dedup(rows, lambda d: d["question"])
    train, test = split_pool(rows, rng)
    tpl = [
        "Answer this question: {q}?",
        "Q: {q}?\nA short answer is:",
        "{q}?\n\nGive a brief factual answer.",
    ]
    fmt = lambda d: ({"q": d["question"].strip().rstrip("?")}, d["answer"][0])
    return render_splits(train, test, tpl, fmt, rng)


def task_spider_text2sql(rng):
    repo = "taoyds/spider"
    tables = json.loads(git_text(repo, "evaluation_examples/examples/tables.json"))
    schema = {}
    for db in tables:
        cols = {}
        for ti, cname in db["column_names_original"]:
            if ti >= 0:
                cols.setdefault(ti, []).append(cname)
        schema[db["db_id"]] = "\n".join(
            f"{t}({', '.join(cols.get(i, []))})" for i, t in enumerate(db["table_names_original"]))
    rows = json.loads(git_text(repo, "evaluation_examples/examples/dev.json"))
    rows = [(schema[d["db_id"]], d["question"].strip(), ws(d["query"])) for d in rows
            if d["db_id"] in schema]
    rows = dedup(rows, lambda r: (r[0], r[1]))
    train, test = split_pool(rows, rng)
    tpl = [
        "Given the database schema:\n{s}\n\nWrite a SQL query for: {q}",
        "{q}\n\nTranslate the question above into SQL for a database with these tables:\n{s}",
        "Database tables:\n{s}\nQuestion: {q}\nSQL query:",
    ]
    fmt = lambda r: ({"s": r[0], "q": r[1]}, r[2])
    return render_splits(train, test, tpl, fmt, rng)
