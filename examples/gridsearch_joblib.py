"""scikit-learn GridSearchCV with n_jobs (joblib; no faasmp import).

Under `faasmp run`, joblib's default backend is faasmp's, so the n_jobs work
(fits of every parameter set and fold) runs on faasmp workers.

Run: `python examples/gridsearch_joblib.py` or `faasmp run examples/gridsearch_joblib.py`.
"""

import sys

from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC


def main() -> int:
    features, labels = load_iris(return_X_y=True)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": ["scale", 0.1, 1.0]}
    search = GridSearchCV(SVC(), grid, cv=3, n_jobs=2).fit(features, labels)
    scores = [round(float(s), 6) for s in search.cv_results_["mean_test_score"]]
    print(f"best params {search.best_params_}")
    print(f"best score {search.best_score_:.6f}")
    print(f"mean test scores {scores}")
    return 0 if search.best_score_ > 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
