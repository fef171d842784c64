"""An Azure ML batch scoring script, unchanged: init() loads the model, run(mini_batch) scores.

It accepts both payloads: a list of file paths (Azure's contract) or a pandas DataFrame (payload: dataframe).
"""

import os
import pickle

import pandas as pd

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "contract_years", "late_payments"]
model = None


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"), "rb") as handle:
        model = pickle.load(handle)


def run(mini_batch):
    if isinstance(mini_batch, pd.DataFrame):
        return model.predict_proba(mini_batch[FEATURES])[:, 1]
    results = []
    for path in mini_batch:
        frame = pd.read_csv(path)
        results.append(pd.DataFrame({
            "file": os.path.basename(path),
            "customer_id": frame["customer_id"],
            "churn_probability": model.predict_proba(frame[FEATURES])[:, 1],
        }))
    return pd.concat(results, ignore_index=True)
