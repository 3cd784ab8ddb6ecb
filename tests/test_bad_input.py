"""Every kind of bad input: one line on stderr naming the problem, exit 2, no traceback, nothing changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from .conftest import PG_URL, assert_one_line_error, cli, run_cli

GOOD_STUDY = '[study]\nname = "s"\nmethod = "fixed"\nn_trials = 1\n\n[fixed]\nepochs = 2\n\n[search]\nlr = { type = "float", low = 0.01, high = 0.1 }\n'
SETTINGS = {
    "schema_version": 1, "method": "fixed",
    "hyperparameters": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 3},
    "objectives": {"best_val_accuracy": 0.8},
    "provenance": dict.fromkeys(("study", "trial", "storage", "lrpo_study_version", "torch_version", "model", "split", "seed", "reference")),
}


def settings_text(**changes: object) -> str:
    return json.dumps({**SETTINGS, **changes})


def hp(**changes: object) -> dict:
    return {**SETTINGS["hyperparameters"], **changes}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """An existing storage (one study without complete trials, one with), and broken data folders."""
    tmp = tmp_path_factory.mktemp("bad")
    db = tmp / "existing.db"
    url = f"sqlite:///{db}"
    optuna.create_study(study_name="empty", storage=url, directions=["maximize", "minimize"])
    done = optuna.create_study(study_name="done", storage=url, directions=["maximize", "minimize"])
    done.add_trial(optuna.trial.create_trial(values=[0.8, 3.0]))
    from lrpo_study.study.storage import open_storage

    optuna.create_study(study_name="done", storage=open_storage(f"journal:{tmp / 'existing.journal'}"), directions=["maximize", "minimize"])
    raw = data_dir / "FashionMNIST" / "raw"
    for kind in ("truncated", "corrupted"):
        target = tmp / kind / "FashionMNIST" / "raw"
        target.mkdir(parents=True)
        for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            shutil.copy(raw / name, target / name)
        head = (raw / "train-images-idx3-ubyte").open("rb").read(100_000)
        (target / "train-images-idx3-ubyte").write_bytes(head if kind == "truncated" else b"\x00\x00\x09\x03" + head[4:])
    return {"tmp": tmp, "db": db}


CASES = [
    # CLI
    ("cli-subcommand", ["frobnicate"], {}, ["frobnicate"]),
    ("cli-run-needs-method", ["run"], {}, ["--method or --settings"]),
    ("cli-device", ["run", "--method", "fixed", "--device", "tpu"], {}, ["--device", "tpu"]),
    ("cli-seed-type", ["run", "--method", "fixed", "--seed", "abc"], {}, ["--seed", "abc"]),
    ("cli-split", ["run", "--method", "fixed", "--split", "train"], {}, ["--split", "train"]),
    ("cli-train-size", ["run", "--method", "fixed", "--train-size", "0"], {}, ["train_size"]),
    ("cli-set-range", ["run", "--method", "curvature", "--set", "beta=1.5"], {}, ["beta", "[0, 1)"]),
    ("cli-set-type", ["run", "--method", "lrpo", "--set", "pretrain_epochs=2.5"], {}, ["pretrain_epochs", "integer"]),
    ("cli-workers", ["optimize", "--workers", "0"], {}, ["--workers"]),
    ("cli-n-trials", ["optimize", "--n-trials", "0"], {}, ["--n-trials"]),
    ("cli-heartbeat", ["optimize", "--heartbeat", "0"], {}, ["--heartbeat"]),
    ("cli-cache-both", ["optimize", "--no-cache", "--cache-dir", "{tmp}/c"], {}, ["--cache-dir", "--no-cache"]),
    ("cli-confirm-cache-both", ["confirm", "--storage", "{url}", "--no-cache", "--cache-dir", "{tmp}/c"], {}, ["--cache-dir", "--no-cache"]),
    ("cli-confirm-cache-size", ["confirm", "--storage", "{url}", "--cache-size-mb", "0"], {}, ["--cache-size-mb", "0"]),
    ("cli-port", ["dashboard", "--port", "70000"], {}, ["--port", "70000"]),
    pytest.param("cli-no-cuda", ["run", "--method", "fixed", "--device", "cuda"], {}, ["CUDA"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
    # study files
    ("toml-syntax", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("[fixed]", "[fixed")}, ["{study}", "TOML syntax"]),
    ("toml-unknown-key", ["optimize", "{study}"], {"study": GOOD_STUDY + "\n[extra]\n"}, ["{study}", "extra"]),
    ("toml-type", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("n_trials = 1", "n_trials = 1.5")}, ["study.n_trials"]),
    ("toml-low-high", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("low = 0.01, high = 0.1", "low = 1.0, high = 0.1")}, ["search.lr"]),
    ("toml-log-low", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("high = 0.1 }", "high = 0.1, log = true }").replace("low = 0.01", "low = -1.0")}, ["search.lr"]),
    ("toml-sampler", ["optimize", "{study}"], {"study": GOOD_STUDY.replace('n_trials = 1', 'n_trials = 1\nsampler = "cmaes"')}, ["study.sampler"]),
    ("toml-pruner", ["optimize", "{study}"], {"study": GOOD_STUDY + '\n[pruning]\nrule = "patient"\n'}, ["pruning.rule"]),
    ("toml-objective", ["optimize", "{study}"], {"study": GOOD_STUDY.replace('n_trials = 1', 'n_trials = 1\nobjectives = ["flops"]')}, ["study.objectives"]),
    ("toml-missing-file", ["optimize", "{tmp}/nope.toml"], {}, ["nope.toml", "cannot read"]),
    # storage URLs
    ("url-scheme", ["optimize", "{study}", "--storage", "redis://127.0.0.1/0"], {"study": GOOD_STUDY}, ["unknown storage", "redis"]),
    ("url-sqlite-dir", ["optimize", "{study}", "--storage", "sqlite:////nonexistent-dir/x.db"], {"study": GOOD_STUDY}, ["cannot open storage"]),
    ("url-journal-empty", ["optimize", "{study}", "--storage", "journal:"], {"study": GOOD_STUDY}, ["journal"]),
    ("url-pg-unreachable", ["optimize", "{study}", "--storage", PG_URL.replace("5432", "1")], {"study": GOOD_STUDY}, ["cannot open storage"]),
    ("url-pg-bad-login", ["optimize", "{study}", "--storage", PG_URL.replace("postgres@", "intruder:hunter2@")], {"study": GOOD_STUDY}, ["intruder:***@"]),
    # data
    ("data-missing", ["run", "--method", "fixed", "--data-dir", "{tmp}/none"], {}, ["none", "FashionMNIST/raw"]),
    ("data-truncated", ["run", "--method", "fixed", "--data-dir", "{tmp}/truncated"], {}, ["Fashion-MNIST", "truncated"]),
    ("data-corrupted", ["run", "--method", "fixed", "--data-dir", "{tmp}/corrupted"], {}, ["Fashion-MNIST", "corrupted"]),
    ("data-env-missing", ["run", "--method", "fixed", "ENV:LRPO_DATA_DIR={tmp}/gone"], {}, ["gone", "does not exist"]),
    # export
    ("export-no-complete", ["export", "--storage", "{url}", "--study", "empty", "--pareto", "-o", "{tmp}/out.json"], {}, ["no complete lrpo_study trials"]),
    ("export-trial-number", ["export", "--storage", "{url}", "--study", "done", "--trial", "9", "-o", "{tmp}/out.json"], {}, ["trial number 9"]),
    ("export-study-name", ["export", "--storage", "{url}", "--study", "missing", "--pareto", "-o", "{tmp}/out.json"], {}, ["missing", "empty"]),
    # settings JSON
    # tasks: a reference that does not import, is not callable, raises or returns something else
    ("task-unknown", ["run", "--method", "fixed", "--task", "mnist"], {}, ["unknown task 'mnist'", "package.module:factory"]),
    ("task-no-module", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "no_such_pkg.tasks:make"\n'},
     ["no_such_pkg.tasks:make", "cannot import", "No module named"]),
    ("task-no-attribute", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:absent"\n'},
     ["tests.user_task:absent", "no attribute 'absent'"]),
    ("task-not-callable", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:NOT_CALLABLE"\n'},
     ["tests.user_task:NOT_CALLABLE", "not callable"]),
    ("task-raises", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:raises"\n'},
     ["tests.user_task:raises", "RuntimeError", "data server is down"]),
    ("task-not-a-task", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:not_a_task"\n'},
     ["tests.user_task:not_a_task", "returned a dict", "not an lrpo_study.Task"]),
    ("task-bad-option", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:classification"\ncolour = 1\n'},
     ["tests.user_task:classification", "TypeError", "colour"]),
    ("task-no-accuracy", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:regression"\n'},
     ["{study}", "does not record val_accuracy", "best_val_accuracy"]),
    ("task-builtin-option", ["optimize", "{study}"], {"study": GOOD_STUDY + '[task]\nmodel = "resnet"\n'}, ["{study}", "model", "resnet"]),
    ("task-option-moved", ["optimize", "{study}"],
     {"study": GOOD_STUDY.replace("n_trials = 1", 'n_trials = 1\nmodel = "cnn"') + '[task]\nname = "tests.user_task:regression"\n'},
     ["study.model", "[task]"]),
    ("task-cli-option", ["run", "--method", "fixed", "--task", "tests.user_task:classification", "--model", "cnn"], {},
     ["--model", "fashion-mnist option", "--task-option"]),
    ("optimizer-unknown", ["run", "--method", "fixed", "--set", "optimizer=adam"], {}, ["optimizer", "'sgd', 'adamw'"]),
    ("optimizer-foreign-key", ["run", "--method", "fixed", "--set", "optimizer=adamw", "--set", "momentum=0.5"], {},
     ["momentum applies to optimizer 'sgd' only"]),
    ("data-offline", ["run", "--method", "fixed", "ENV:LRPO_DATA_DIR=", "ENV:HOME={tmp}/home"], {},
     ["Fashion-MNIST", "--data-dir DIR", "LRPO_DATA_DIR=DIR", "FashionMNIST/raw/"]),
    ("settings-version", ["run", "--settings", "{settings}"], {"settings": settings_text(schema_version=7)}, ["schema_version"]),
    ("settings-type", ["run", "--settings", "{settings}"], {"settings": settings_text(hyperparameters=hp(lr="fast"))}, ["lr", "number"]),
    ("settings-range", ["run", "--settings", "{settings}"], {"settings": settings_text(hyperparameters=hp(momentum=1.5))}, ["momentum"]),
    ("settings-extra", ["run", "--settings", "{settings}"], {"settings": settings_text(colour="red")}, ["colour"]),
    ("settings-not-json", ["run", "--settings", "{settings}"], {"settings": "{not json"}, ["not valid JSON"]),
    ("settings-missing", ["run", "--settings", "{tmp}/absent.json"], {}, ["absent.json", "cannot read", "No such file"]),
    ("settings-huge-integer", ["run", "--settings", "{settings}"],
     {"settings": settings_text(hyperparameters="LR").replace('"LR"', '{"lr": 1' + "0" * 400 + ', "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32, "epochs": 3}')},
     ["lr must be finite", "401 digits"]),
    ("settings-deep-nesting", ["run", "--settings", "{settings}"], {"settings": "[" * 200_000 + "]" * 200_000}, ["nested too deeply"]),
    ("settings-duplicate-key", ["run", "--settings", "{settings}"],
     {"settings": settings_text(hyperparameters=hp()).replace('"lr": 0.1,', '"lr": 0.1, "lr": 99,')}, ["'lr' appears twice"]),
    ("settings-huge-lr", ["run", "--settings", "{settings}"], {"settings": settings_text(hyperparameters=hp(lr=1e300))}, ["lr must be", "(0, 1000]"]),
    ("settings-huge-weight-decay", ["run", "--settings", "{settings}"], {"settings": settings_text(hyperparameters=hp(weight_decay=1e300))}, ["weight_decay must be"]),
    ("settings-version-bool", ["run", "--settings", "{settings}"], {"settings": settings_text(schema_version=True)}, ["schema_version=True"]),
    ("settings-version-float", ["run", "--settings", "{settings}"], {"settings": settings_text(schema_version=1.0)}, ["schema_version=1.0"]),
    ("settings-pareto-needs-index", ["run", "--settings", "{settings}"],
     {"settings": json.dumps({"schema_version": 1, "trials": [{k: v for k, v in SETTINGS.items() if k != "schema_version"}] * 2})},
     ["2 Pareto settings", "--index N"]),
    ("cli-lr-overflows-float32", ["run", "--method", "fixed", "--set", "lr=3.5e38"], {}, ["lr must be", "(0, 1000]"]),
    ("cli-seed-negative", ["run", "--method", "fixed", "--seed", "-1"], {}, ["--seed", "[0, 2**32)", "-1"]),
    ("cli-seed-huge", ["optimize", "--seed", "123456789012345678901"], {}, ["--seed", "[0, 2**32)"]),
    ("toml-seed-negative", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("n_trials = 1", "n_trials = 1\nseed = -5")}, ["study.seed", "-5"]),
    ("toml-name-empty", ["optimize", "{study}"], {"study": GOOD_STUDY.replace('name = "s"', 'name = ""')}, ["study.name", "empty"]),
    ("toml-step-float-on-int", ["optimize", "{study}"],
     {"study": GOOD_STUDY.replace("[fixed]\nepochs = 2\n", "[fixed]\n") + 'epochs = { type = "int", low = 2, high = 4, step = 0.5 }\n'},
     ["search.epochs.step", "integer"]),
    ("toml-step-negative", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("high = 0.1 }", "high = 0.1, step = -0.01 }")}, ["search.lr.step", "> 0"]),
    ("toml-when-never-holds", ["optimize", "{study}"],
     {"study": '[study]\nname = "w"\nmethod = "lrpo"\nn_trials = 1\n\n[fixed]\npretrain_epochs = 1\nfinetune_epochs = 1\n\n[search]\n'
               'variant = { type = "categorical", choices = ["faithful", "predicted"] }\n'
               'probe_candidates = { type = "int", low = 3, high = 5, when = { variant = "predcted" } }\n'},
     ["search.probe_candidates.when.variant", "'predcted'", "never holds"]),
    ("dataset-items-not-tensors", ["run", "--method", "fixed", "--task", "tests.user_task:items_not_tensors"], {},
     ["items must be tensors, or tuples or dicts of tensors, numbers", "a tuple of list, int"]),
    ("dataset-negative-workers", ["run", "--method", "fixed", "--task", "tests.user_task:negative_workers"], {},
     ["num_workers must be an integer >= 0", "-1"]),
    ("dataset-loader-not-dataset", ["run", "--method", "fixed", "--task", "tests.user_task:a_loader"], {},
     ["must be a Dataset", "DataLoader"]),
    ("dict-batch-without-loss", ["optimize", "{study}"],
     {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:tiny_gpt2"\nwith_loss = false\n'},
     ["tests.user_task:tiny_gpt2", "carries .loss", "compute_loss"]),
    # Bounds no run can mean, and a search that searches nothing
    ("toml-search-empty", ["optimize", "{study}"],
     {"study": GOOD_STUDY.replace("n_trials = 1", "n_trials = 8").split("[search]")[0]}, ["[search] is empty", "8 trials"]),
    ("toml-epochs-searched-to-1e12", ["optimize", "{study}"],
     {"study": GOOD_STUDY.replace("[fixed]\nepochs = 2\n", "[fixed]\n") + 'epochs = { type = "int", low = 2, high = 1000000000000 }\n'},
     ["search.epochs.high", "[1, 100000]"]),
    ("toml-n-trials-1e21", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("n_trials = 1", "n_trials = 1000000000000000000000")},
     ["study.n_trials", "1_000_000"]),
    ("toml-batch-2-62", ["optimize", "{study}"], {"study": GOOD_STUDY.replace("epochs = 2", "epochs = 2\nbatch_size = 4611686018427387904")},
     ["fixed.batch_size", "[1, 1048576]"]),
    ("cli-n-trials-1e21", ["optimize", "--n-trials", "1000000000000000000000"], {}, ["--n-trials", "1_000_000"]),
    ("cli-workers-huge", ["optimize", "--workers", "100000000"], {}, ["--workers", "1024"]),
    # Refusals that write nothing: a study of another kind under that name, reading commands on no storage
    ("journal-name-taken", ["optimize", "{study}", "--storage", "journal:{tmp}/existing.journal"],
     {"study": GOOD_STUDY.replace('name = "s"', 'name = "done"\nobjectives = ["final_val_loss"]')}, ["'done'", "other objectives"]),
    ("report-missing-sqlite", ["report", "--storage", "sqlite:///{tmp}/missing.db", "-o", "{tmp}/r.html"], {}, ["does not exist", "missing.db"]),
    ("export-missing-journal", ["export", "--storage", "journal:{tmp}/nope.journal", "--study", "nope", "-o", "{tmp}/x.json"], {},
     ["does not exist", "nope.journal"]),
    ("confirm-missing-sqlite", ["confirm", "--storage", "sqlite:///{tmp}/missing.db"], {}, ["does not exist"]),
    # What a user's loop or task gets wrong that can be seen before any study is created
    ("loop-two-arguments", ["optimize", "{study}"],
     {"study": GOOD_STUDY + '[task]\nloop = "tests.user_loops:two_arguments"\n'}, ["must take one argument", "two_arguments(run: 'TrialRun', data: 'object')"]),
    ("task-model-a-string", ["run", "--method", "fixed", "--task", "tests.user_task:model_is_a_string"], {},
     ["build_model() returned a str", "torch.nn.Module"]),
    ("task-float-class-targets", ["optimize", "{study}"],
     {"study": GOOD_STUDY + '[task]\nname = "tests.user_task:float_class_targets"\n'}, ["torch.float32", "cross-entropy", "loss="]),
    ("toml-step-zero", ["optimize", "{study}"],
     {"study": GOOD_STUDY.replace("[fixed]\nepochs = 2\n", "[fixed]\n") + 'epochs = { type = "int", low = 2, high = 4, step = 0 }\n'},
     ["search.epochs.step", "> 0"]),
]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _id(case: object) -> str:
    return str(case.values[0] if hasattr(case, "marks") else case[0])  # type: ignore[attr-defined,index]


@pytest.mark.parametrize(("case", "args", "files", "needles"), CASES, ids=[_id(c) for c in CASES])
def test_bad_input(case: str, args: list[str], files: dict[str, str], needles: list[str], world: dict[str, Path], tmp_path: Path) -> None:
    values = {"tmp": str(world["tmp"]), "url": f"sqlite:///{world['db']}"}
    for name, text in files.items():
        path = tmp_path / f"{name}.{'toml' if name == 'study' else 'json'}"
        path.write_text(text)
        values[name] = str(path)
    env = {}
    argv = []
    for arg in args:
        arg = arg.format(**values)
        if arg.startswith("ENV:"):
            key, _, value = arg[4:].partition("=")
            env[key] = value
        else:
            argv.append(arg)
    if argv[0] == "optimize" and "--storage" not in argv:
        argv += ["--storage", f"sqlite:///{tmp_path / 'new.db'}"]
    before_world, before_tmp = _digest(world["tmp"]), _digest(tmp_path)
    proc = cli(*argv, env=env)  # the CLI's words and exit status; the process itself is tested elsewhere
    assert_one_line_error(proc, *(n.format(**values) for n in needles))
    assert "hunter2" not in proc.stderr + proc.stdout
    assert _digest(world["tmp"]) == before_world and _digest(tmp_path) == before_tmp  # nothing created or changed
    assert not (tmp_path / "new.db").exists()



def test_divergence_in_run_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", "--method", "fixed", "--set", "lr=500", "--epochs", "3", "--train-size", "512", "--val-size", "256")
    assert_one_line_error(proc, "fixed diverged at epoch", "lr=500", "lower lr")


def test_dashboard_refuses_an_address_it_cannot_bind(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path / 'd.db'}"
        assert_one_line_error(run_cli("dashboard", "--storage", url, "--port", str(port)), f"127.0.0.1:{port}", "in use")
    assert_one_line_error(run_cli("dashboard", "--storage", url, "--host", "nohost.invalid"), "nohost.invalid", "does not resolve")
    assert not (tmp_path / "d.db").exists()
