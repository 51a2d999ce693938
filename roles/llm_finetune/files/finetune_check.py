"""After `oumi train`: the loss curve of the run and its MLflow run, written as the job's result.

Reads <run dir>/output/trainer_state.json (transformers' log_history, written by Oumi's trainer) and looks
the run up in MLflow by its name (MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME from the job), with the
history of its `loss` metric. Exits 1 when the run or its loss metric is missing. The role checks that the
loss went down (it does not trust this script for that: it reads trainer_state.json itself).

    finetune_check.py --run-dir DIR --run-name NAME --seconds S --result-file FILE
"""

import argparse
import json
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--run-name", required=True)
    parser.add_argument("--seconds", type=int, default=0)
    parser.add_argument("--result-file", required=True)
    args = parser.parse_args(argv)

    with open(os.path.join(args.run_dir, "output", "trainer_state.json"), encoding="utf-8") as handle:
        state = json.load(handle)
    losses = [(e["step"], e["loss"]) for e in state.get("log_history", []) if "loss" in e and "step" in e]

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    name = os.environ["MLFLOW_EXPERIMENT_NAME"]
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        print("finetune_check: MLflow has no experiment %r at %s" % (name, os.environ.get("MLFLOW_TRACKING_URI")))
        return 1
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.runName` = '%s'" % args.run_name,
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        print("finetune_check: no MLflow run named %r in experiment %r" % (args.run_name, name))
        return 1
    run = runs[0]
    history = client.get_metric_history(run.info.run_id, "loss")
    if len(history) < 2:
        print("finetune_check: MLflow run %s has %d loss point(s)" % (run.info.run_id, len(history)))
        return 1
    result = {"run_id": run.info.run_id, "experiment_id": experiment.experiment_id, "run_name": args.run_name,
              "status": run.info.status, "mlflow_loss_points": len(history),
              "mlflow_first_loss": sorted(history, key=lambda m: m.step)[0].value,
              "mlflow_last_loss": sorted(history, key=lambda m: m.step)[-1].value,
              "global_step": state.get("global_step"), "first_loss": losses[0][1] if losses else None,
              "last_loss": losses[-1][1] if losses else None, "seconds": args.seconds}
    with open(args.result_file, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
