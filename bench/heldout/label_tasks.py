"""Held-out tasks whose answer comes from a fixed set (a label, or a 0-5 similarity score): one
converter each, as in `tasks.py`."""

import csv
import html
import io
import re

from mirror import (
    MAX_TEST,
    MAX_TRAIN,
    dedup,
    detok,
    git_text,
    render_splits,
    sample,
    split_pool,
    ws,
)


def task_sst2_sentiment(rng):
    repo = "awake020/pytorch_Bert_sst2"

    def load(path):
        rows = []
        for line in git_text(repo, path).splitlines()[1:]:
            lab, sent = line.split("\t", 1)
            rows.append((ws(sent), "positive" if lab.strip() == "1" else "negative"))
        return dedup(rows, lambda r: r[0].lower())

    test = sample(load("SST-2/dev.tsv"), rng, MAX_TEST)
    test_keys = {r[0].lower() for r in test}
    # GLUE SST-2 train holds phrases; keep full-ish sentences (>= 6 words)
    train_pool = [r for r in load("SST-2/train.tsv")
                  if len(r[0].split()) >= 6 and r[0].lower() not in test_keys]
    train = sample(train_pool, rng, MAX_TRAIN)
    tpl = [
        "Classify the sentiment of this movie review excerpt as positive or negative.\n\nReview: {s}",
        "{s}\n\nIs the sentiment of the sentence above positive or negative?",
        "What is the sentiment of the following movie review sentence? Answer \"positive\" or \"negative\".\n{s}",
    ]
    fmt = lambda r: ({"s": detok(r[0])}, r[1])
    return render_splits(train, test, tpl, fmt, rng)


def task_agnews_topic(rng):
    repo = "suuuch/TransformerClassification"
    labels = {"1": "World", "2": "Sports", "3": "Business", "4": "Science/Technology"}

    def clean(s):
        # AG's CSV stores entities without '&' ("#39;", "quot;", "lt;b gt;") and "\$" for "$"
        s = s.replace("\\$", "$")
        s = re.sub(r"\s?#39;", "'", s)
        s = re.sub(r"#(\d+);", r"&#\1;", s)
        s = re.sub(r"(?<!&)\b(quot|amp|lt|gt|hellip);", r"&\1;", s)
        s = html.unescape(s)
        s = re.sub(r"<[^>]*>", " ", s)
        s = s.replace("\\", " ")
        return ws(s)

    rows = []
    for rec in csv.reader(io.StringIO(git_text(repo, "data/ag_news_csv/test.csv"))):
        lab, title, desc = rec
        rows.append((clean(title), clean(desc), labels[lab]))
    rows = dedup(rows, lambda r: r[0] + r[1])
    train, test = split_pool(rows, rng)
    tpl = [
        "{title}\n{desc}\n\nWhich topic is this news article about? Options: World, Sports, Business, Science/Technology.",
        "Classify the following news article into one of these categories: World, Sports, Business, Science/Technology.\n\nTitle: {title}\nText: {desc}",
        "Read the headline and summary below and tell me its news section (World, Sports, Business or Science/Technology).\n\n{title} -- {desc}",
    ]
    fmt = lambda r: ({"title": r[0], "desc": r[1]}, r[2])
    return render_splits(train, test, tpl, fmt, rng)


def task_sick_nli(rng):
    repo = "kkalouli/SICK-processing"
    lab = {"ENTAILMENT": "entailment", "NEUTRAL": "neutral", "CONTRADICTION": "contradiction"}
    tr, te = [], []
    for line in git_text(repo, "SICK.txt").splitlines()[1:]:
        f = line.rstrip("\n").split("\t")
        if len(f) < 12 or f[3].strip() not in lab:
            continue
        item = (ws(f[1]), ws(f[2]), lab[f[3].strip()])
        (te if f[11].strip() == "TEST" else tr).append(item)
    tr = dedup(tr, lambda r: (r[0], r[1]))
    te = dedup(te, lambda r: (r[0], r[1]))
    test = sample(te, rng, MAX_TEST)
    train = sample(tr, rng, MAX_TRAIN)
    tpl = [
        "Premise: {p}\nHypothesis: {h}\n\nDoes the premise entail the hypothesis? Answer entailment, neutral, or contradiction.",
        "Sentence 1: \"{p}\"\nSentence 2: \"{h}\"\n\nWhat is the logical relationship of sentence 2 to sentence 1: entailment, neutral or contradiction?",
        "Given that \"{p}\", is it true that \"{h}\"? Reply with entailment, neutral, or contradiction.",
    ]
    fmt = lambda r: ({"p": r[0], "h": r[1]}, r[2])
    return render_splits(train, test, tpl, fmt, rng)


def _glue_rows(repo, path):
    rows = []
    for line in git_text(repo, path).splitlines():
        f = line.split("\t")
        if f and f[0].strip().lower() in ("quality", "index"):
            continue  # header row, if present
        rows.append(f)
    return rows


def task_mrpc_paraphrase(rng):
    repo = "mieseung/Cutoff_with_Attribution"

    def load(path):
        out = []
        for f in _glue_rows(repo, path):
            if len(f) == 5 and f[0] in ("0", "1"):
                out.append((ws(f[3]), ws(f[4]), "yes" if f[0] == "1" else "no"))
        return dedup(out, lambda r: (r[0], r[1]))

    train = sample(load("glue_data/MRPC/train.tsv"), rng, MAX_TRAIN)
    test = sample(load("glue_data/MRPC/dev.tsv"), rng, MAX_TEST)
    tpl = [
        "Sentence 1: {a}\nSentence 2: {b}\n\nDo these two sentences mean the same thing? Answer yes or no.",
        "Are the following two sentences paraphrases of each other?\n\n\"{a}\"\n\"{b}\"\n\nAnswer yes or no.",
        "{a}\n{b}\n\nIs the second sentence a paraphrase of the first (yes/no)?",
    ]
    fmt = lambda r: ({"a": r[0], "b": r[1]}, r[2])
    return render_splits(train, test, tpl, fmt, rng)


def task_stsb_similarity(rng):
    repo = "mieseung/Cutoff_with_Attribution"

    def load(path):
        out = []
        for f in _glue_rows(repo, path):
            if len(f) >= 10:
                try:
                    score = float(f[9])
                except ValueError:
                    continue
                out.append((ws(f[7]), ws(f[8]), f"{score:.1f}"))
        return dedup(out, lambda r: (r[0], r[1]))

    train = sample(load("glue_data/STS-B/train.tsv"), rng, MAX_TRAIN)
    test = sample(load("glue_data/STS-B/dev.tsv"), rng, MAX_TEST)
    tpl = [
        "Rate how similar in meaning these two sentences are, on a scale from 0 (unrelated) to 5 (equivalent).\n\nSentence A: {a}\nSentence B: {b}",
        "\"{a}\"\n\"{b}\"\n\nOn a scale of 0 to 5, how semantically similar are the two sentences above? Give a number.",
        "How close in meaning are \"{a}\" and \"{b}\"? Answer with a similarity score between 0 and 5.",
    ]
    fmt = lambda r: ({"a": r[0], "b": r[1]}, r[2])
    return render_splits(train, test, tpl, fmt, rng)
