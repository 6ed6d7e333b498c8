"""The held-out tasks, one converter each: raw items from a pinned source, three FLAN-style
phrasings per task, and the train/test rows (`render_splits`). TASKS names them."""

import csv
import gzip
import html
import io
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


TASKS = {
    "sst2_sentiment": task_sst2_sentiment,
    "agnews_topic": task_agnews_topic,
    "sick_nli": task_sick_nli,
    "mrpc_paraphrase": task_mrpc_paraphrase,
    "stsb_similarity": task_stsb_similarity,
    "gsm8k_math": task_gsm8k_math,
    "mbpp_code": task_mbpp_code,
    "multi30k_en_de_translation": task_multi30k_en_de,
    "wikiann_ner": task_wikiann_ner,
    "aeslc_email_subject": task_aeslc_subject,
    "jfleg_grammar": task_jfleg_grammar,
    "csqa_commonsense": task_csqa_commonsense,
    "nq_open_qa": task_nq_open_qa,
    "spider_text2sql": task_spider_text2sql,
}
