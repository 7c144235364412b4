"""One point of a depth sweep: cross-validated accuracy of a tree of the given depth."""

import argparse
import json
import pathlib
import sys

from sklearn.model_selection import cross_val_score
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from src.features import load  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--max-depth", type=int, required=True)
parser.add_argument("prepared")
parser.add_argument("out")
args = parser.parse_args()
x, y = load(pathlib.Path(args.prepared) / "train.parquet")
score = cross_val_score(DecisionTreeClassifier(max_depth=args.max_depth, random_state=0), x, y, cv=5).mean()
pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(args.out).write_text(json.dumps({"max_depth": args.max_depth, "cv_accuracy": round(score, 4)}))
