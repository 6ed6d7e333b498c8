"""Reading the held-out tasks' sources and shaping their rows: each source file comes out of a
bare git mirror (the `fetch` tool's) at the commit pinned in SOURCES; the text helpers and
`render` turn raw items into instruction/response rows with per-row templates."""

import os
import re
import subprocess

MAX_TRAIN = 1000
MAX_TEST = 200

# repo -> pinned commit
SOURCES = {
    "awake020/pytorch_Bert_sst2": "ce2ab1719d32182e6233b24b2de246bd32814fde",
    "suuuch/TransformerClassification": "0d9808e1978c8468b4f8f08a44c5be99d058aa7b",
    "kkalouli/SICK-processing": "0848f4aec60870122a4ca18de08ba0e25f6f9a75",
    "mieseung/Cutoff_with_Attribution": "ef73992bd58bb6ff3c7cffc314fb88f6c6779df7",
    "openai/grade-school-math": "3101c7d5072418e28b9008a6636bde82a006892c",
    "muitiiifruckt/ASE": "83fa3f7963561b898623e8ade6e017d448ddca98",
    "multi30k/dataset": "a3d2e0d26b56f3846f66a952536ffed4e401d05a",
    "davidsbatista/NER-datasets": "db7ff3ca4ba1df39907f8bdc036a556fed5ecde7",
    "ryanzhumich/AESLC": "7afc087a1cc234d07121f0d4a2d87102ddceabc2",
    "keisks/jfleg": "ee06ff806a208aba815ac45313f4e750a48330a5",
    "lionzwarrior/llm-benchmark": "8866ece85533b6532bdf67f9258e88a9902dcf40",
    "google-research-datasets/natural-questions": "fb26a3073b1fe636c97302890a27b491d6530130",
    "taoyds/spider": "b7b5b8c890cd30e35427348bb9eb8c6d1350ca7c",
}

MIRROR_ROOT = "/work/.mirror"


# ----------------------------------------------------------------- helpers
def git_dir(repo):
    return os.path.join(MIRROR_ROOT, repo.replace("/", "+"), "repo")


def git_bytes(repo, path):
    out = subprocess.run(
        ["git", "--git-dir", git_dir(repo), "show", f"{SOURCES[repo]}:{path}"],
        check=True, stdout=subprocess.PIPE)
    return out.stdout


def git_text(repo, path):
    return git_bytes(repo, path).decode("utf-8")


def git_ls(repo, folder):
    out = subprocess.run(
        ["git", "--git-dir", git_dir(repo), "ls-tree", "-r", "--name-only",
         SOURCES[repo], folder], check=True, stdout=subprocess.PIPE)
    return sorted(out.stdout.decode("utf-8").splitlines())


def ws(s):
    return re.sub(r"\s+", " ", s).strip()


def detok(s):
    """Light detokenisation of PTB-style tokenised English."""
    s = ws(s)
    s = re.sub(r" ([.,!?;:%)\]}])", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", r"\1", s)
    s = s.replace("`` ", '"').replace(" ''", '"')
    return s


def dedup(rows, key):
    seen, out = set(), []
    for r in rows:
        k = key(r)
        if k in seen:
            continue
        seen.add(k)
        out.append(r)
    return out


def split_pool(rows, rng, n_test=MAX_TEST, n_train=MAX_TRAIN):
    """Shuffle one pool (single source split) into disjoint train/test."""
    rows = list(rows)
    rng.shuffle(rows)
    return rows[n_test:n_test + n_train], rows[:n_test]


def sample(rows, rng, n):
    rows = list(rows)
    rng.shuffle(rows)
    return rows[:n]


def render(rows, templates, fmt, rng):
    """rows: list of raw items; fmt(item) -> (dict of template fields, response)."""
    out = []
    for item in rows:
        fields, resp = fmt(item)
        t = templates[rng.randrange(len(templates))]
        instr = t.format(**fields).strip()
        resp = resp.strip()
        if instr and resp:
            out.append({"instruction": instr, "response": resp})
    return out


def render_splits(train, test, templates, fmt, rng):
    """Both splits rendered with the same templates: train first, then test (one rng stream)."""
    return render(train, templates, fmt, rng), render(test, templates, fmt, rng)

