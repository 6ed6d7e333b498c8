"""The held-out tasks, one converter each: raw items from a pinned source, three FLAN-style
phrasings per task, and the train/test rows (`render_splits`). TASKS names them; the converters
live in `label_tasks.py` and `text_tasks.py`."""

from label_tasks import (
    task_agnews_topic,
    task_mrpc_paraphrase,
    task_sick_nli,
    task_sst2_sentiment,
    task_stsb_similarity,
)
from text_tasks import (
    task_aeslc_subject,
    task_csqa_commonsense,
    task_gsm8k_math,
    task_jfleg_grammar,
    task_mbpp_code,
    task_multi30k_en_de,
    task_nq_open_qa,
    task_spider_text2sql,
    task_wikiann_ner,
)

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
