"""pandarallel: DataFrame.parallel_apply and Series.parallel_map (no faasmp import).

pandarallel takes multiprocessing's "fork" context when it is imported; under
`faasmp run` that is faasmp's.  use_memory_fs=False sends the data through the
pool instead of files in /dev/shm, which workers on other machines cannot see.

Run: `python examples/pandarallel_apply.py` or `faasmp run examples/pandarallel_apply.py`.
"""

import sys

import pandas as pd
from pandarallel import pandarallel


def score(row):
    words = row["text"].split()
    return sum(len(w) for w in words if w not in {"the", "a", "of"}) * row["weight"]


def main() -> int:
    pandarallel.initialize(nb_workers=2, progress_bar=False, verbose=0, use_memory_fs=False)
    texts = ["the quick brown fox", "a tale of two cities", "serverless multiprocessing", "pandas on faas"]
    frame = pd.DataFrame({"text": [texts[i % 4] for i in range(400)], "weight": [i % 5 for i in range(400)]})
    scores = frame.parallel_apply(score, axis=1)
    lengths = frame["text"].parallel_map(len)
    expected_scores = frame.apply(score, axis=1).tolist()
    ok = scores.tolist() == expected_scores and lengths.tolist() == frame["text"].map(len).tolist()
    print(f"score sum {int(scores.sum())}, length sum {int(lengths.sum())}, rows {len(scores)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
