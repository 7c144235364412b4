"""Score the model on the test table and write metrics."""

import json
import pathlib
import pickle
import sys

from sklearn.metrics import accuracy_score, roc_auc_score

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from src.features import load  # noqa: E402

model_dir, test_path, metrics_path = sys.argv[1:4]
model = pickle.loads((pathlib.Path(model_dir) / "model.pkl").read_bytes())
x, y = load(test_path)
scores = model.predict_proba(x)[:, 1]
metrics = {"accuracy": round(accuracy_score(y, scores > 0.5), 4), "auc": round(roc_auc_score(y, scores), 4), "rows": len(y)}
pathlib.Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(metrics_path).write_text(json.dumps(metrics, indent=2))
print(metrics)
