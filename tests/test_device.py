"""Device and dtype choice, GPU worker sizing and the model modules' independence from Flower and Ray.

Everything here runs without a GPU: the choices are pure functions of CUDA's presence, bf16
support and GPU memory, which the tests pass in.
"""

import json
import subprocess
import sys
import textwrap
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fedrouter_cli.config import Config
from fedrouter_cli.config_file import build_config, load_config, save_config
from fedrouter_cli.errors import FedrouterError
from fedrouter_cli.model.device import (
    CPU,
    Placement,
    check_4bit,
    check_gpu_share,
    choose_placement,
    client_gpu_bytes,
    embed_batch_size,
    generate_batch_size,
    gpu_workers,
    resolve_device,
    to_model_device,
    weight_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
GB = 1024 ** 3
NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize("requested, cuda, bf16, expected", [
    ("auto", False, False, CPU),
    ("auto", False, True, CPU),
    ("cpu", True, True, CPU),                              # asked for the CPU on a GPU machine
    ("auto", True, True, Placement("cuda", "bfloat16")),
    ("auto", True, False, Placement("cuda", "float32")),   # e.g. a V100 or T4: no native bf16
    ("cuda", True, True, Placement("cuda", "bfloat16")),
])
def test_device_and_dtype_choice(requested: str, cuda: bool, bf16: bool, expected: Placement) -> None:
    assert choose_placement(requested, cuda, bf16) == expected


def test_cpu_stays_fp32_and_cuda_without_a_gpu_is_one_sentence() -> None:
    assert CPU.describe() == {"device": "cpu", "dtype": "float32"} and CPU.torch_dtype is torch.float32
    with pytest.raises(FedrouterError, match=r"--device cuda needs a CUDA GPU.*pass --device cpu or auto\.$"):
        choose_placement("cuda", False, False)
    with pytest.raises(FedrouterError, match="--device must be one of auto, cpu, cuda"):
        choose_placement("tpu", True, True)
    with pytest.raises(FedrouterError, match="needs a CUDA GPU"):
        check_4bit(CPU)
    check_4bit(Placement("cuda", "bfloat16"))


@pytest.mark.skipif(not NO_CUDA, reason="checks this CPU-only machine")
def test_this_machine_resolves_to_the_cpu() -> None:
    assert resolve_device("auto") == CPU and resolve_device("cpu") == CPU
    with pytest.raises(FedrouterError, match="--device cuda needs a CUDA GPU"):
        resolve_device("cuda")


def test_device_is_a_validated_setting_and_not_in_the_fingerprints(tmp_path: Path) -> None:
    from fedrouter_cli.fingerprints import (
        cluster_fingerprint,
        embed_fingerprint,
        evaluate_fingerprint,
        simulate_fingerprint,
    )
    from fedrouter_cli.rundir import fingerprint

    with pytest.raises(FedrouterError, match="--device must be one of auto, cpu, cuda, got 'gpu'"):
        build_config(Config(), {"model": {"device": "gpu"}})
    config = Config()
    path = tmp_path / "config.toml"
    save_config(path, build_config(config, {"model": {"device": "cpu"}}))
    assert load_config(path).model.device == "cpu"
    # the fingerprint as it was computed before the setting existed: runs made then stay cached
    # newer settings, left out at their old value (lr_floor, max_grad_norm 0) or always (FedRouter's own)
    train = {k: v for k, v in asdict(config.train).items()
             if k not in ("lr_floor", "schedule", "max_grad_norm", "shared_init", "prompt_format", "clients_per_round",
                          "fraction_train", "init_from")}
    from fedrouter_cli.clustering import AUTO_RULE_VERSIONS

    rule = {"auto_rule": AUTO_RULE_VERSIONS["global"]}  # the default server-side K is the automatic rule
    schedule = {"round_robin": config.train.schedule}  # FedRouter's standard round-robin
    before = fingerprint("simulate", cluster_fingerprint(config), train,
                         {"model": config.model.model, "load_in_4bit": False}, rule, schedule)
    assert simulate_fingerprint(config) == before
    for device in ("cpu", "cuda"):
        moved = replace(config, model=replace(config.model, device=device))
        assert simulate_fingerprint(moved) == before
        assert embed_fingerprint(moved) == embed_fingerprint(config)
        assert evaluate_fingerprint(moved, "fedrouter", 3) == evaluate_fingerprint(config, "fedrouter", 3)


def test_batch_sizes_scale_up_only_on_a_gpu() -> None:
    gpu = Placement("cuda", "bfloat16")
    assert embed_batch_size(32, CPU) == 32 and generate_batch_size(16, CPU) == 16
    assert embed_batch_size(32, gpu) == 256 and generate_batch_size(16, gpu) == 64


def test_batches_stay_untouched_on_the_cpu() -> None:
    model = torch.nn.Linear(2, 2)
    batch = {"input_ids": torch.ones(1, 3, dtype=torch.long)}
    assert to_model_device(batch, model) is batch  # the CPU code path is the one it always was


def test_client_memory_of_the_paper_setting() -> None:
    # Llama-3.2-1B: 1.24 B parameters, hidden 2048, 16 layers; batch 16 x 1024 tokens
    bf16 = Placement("cuda", "bfloat16")
    weights = weight_bytes(1_236_000_000, bf16)
    assert weights == 2_472_000_000 and weight_bytes(1_236_000_000, bf16, load_in_4bit=True) < weights / 3
    need = client_gpu_bytes(weights, 16, 1024, 2048, 16, bf16)
    assert 20 * GB < need < 30 * GB
    assert client_gpu_bytes(weights, 4, 128, 2048, 16, bf16) < 4 * GB


@pytest.mark.parametrize("clients, need, free, share, workers, expected", [
    (8, 22 * GB, [78 * GB], 0.0, 0, (3, 0.3333)),        # an 80 GB card holds three paper-sized clients
    (8, 22 * GB, [78 * GB, 78 * GB], 0.0, 0, (6, 0.3333)),
    (8, 30 * GB, [22 * GB], 0.0, 0, (1, 1.0)),           # too big for the card: one at a time
    (8, 1 * GB, [78 * GB], 0.0, 0, (8, 0.125)),          # never more per GPU than there are clients
    (8, 22 * GB, [78 * GB], 0.25, 0, (4, 0.25)),         # the share asked for: four at once on one GPU
    (8, 22 * GB, [78 * GB] * 4, 0.25, 0, (8, 0.25)),
    (8, 22 * GB, [78 * GB] * 4, 2, 0, (2, 2)),
    (8, 1 * GB, [78 * GB], 0.0, 2, (2, 0.125)),          # --workers caps it
    (3, 1 * GB, [78 * GB], 0.1, 0, (3, 0.1)),
])
def test_workers_sized_by_gpu_memory(clients, need, free, share, workers, expected) -> None:
    assert gpu_workers(clients, need, free, share, workers) == expected


def test_bad_gpu_shares_are_refused() -> None:
    for share, fragment in ((-0.5, "0 \\(auto\\) or a positive"), (1.5, "whole number of GPUs"),
                            (float("nan"), "0 \\(auto\\) or a positive")):
        with pytest.raises(FedrouterError, match=fragment):
            check_gpu_share(share)
    with pytest.raises(FedrouterError, match="--gpus-per-client needs a CUDA GPU"):
        check_gpu_share(0.25, CPU)
    with pytest.raises(FedrouterError, match="No CUDA GPU"):
        gpu_workers(8, GB, [], 0.0)


def test_simulation_resources_on_cpu_and_cuda() -> None:
    from fedrouter_cli.federation.engine import parallel_workers, simulation_resources

    model = torch.nn.Linear(64, 64)
    model.config = SimpleNamespace(hidden_size=2048, num_hidden_layers=16)
    config = Config()
    count, threads, backend = simulation_resources(CPU, 8, model, config, workers=2)
    assert (count, threads) == parallel_workers(2, 8, sum(p.numel() * 4 for p in model.parameters()))
    assert backend == {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},  # as before GPUs were supported
                       "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}}
    count, threads, backend = simulation_resources(Placement("cuda", "bfloat16"), 8, model, config,
                                                   gpus_per_client=0.25, free_bytes=[40 * GB])
    assert count == 4 and backend["client_resources"] == {"num_cpus": 1, "num_gpus": 0.25}
    assert backend["init_args"]["num_cpus"] == 4


def test_model_modules_import_without_flower_or_ray() -> None:
    script = textwrap.dedent("""
        import importlib.abc, sys

        BLOCKED = ("flwr", "ray", "typer", "rich", "pyarrow", "tomli_w")

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked")
                return None

        sys.meta_path.insert(0, Block())
        import fedrouter_cli.model.device, fedrouter_cli.model.loading, fedrouter_cli.model.lora
        import fedrouter_cli.model.train, fedrouter_cli.model.generate, fedrouter_cli.embed
        loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
        assert not loaded, loaded
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_stages_common_still_offers_the_progress_type() -> None:
    from fedrouter_cli import progress
    from fedrouter_cli.stages import common

    assert common.Progress is progress.Progress and common.no_progress is progress.no_progress


@pytest.mark.skipif(not NO_CUDA, reason="checks this CPU-only machine")
def test_cli_refuses_cuda_options_without_cuda(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedrouter_cli.cli.app import app

    run_dir = tmp_path / "run"
    cuda = CliRunner().invoke(app, ["embed", "--run-dir", str(run_dir), "--device", "cuda"])
    assert cuda.exit_code == 2 and "--device cuda needs a CUDA GPU" in cuda.stderr
    assert "Traceback" not in cuda.output and not run_dir.exists()
    share = CliRunner().invoke(app, ["simulate", "--run-dir", str(run_dir), "--preset", "smoke",
                                     "--gpus-per-client", "0.25"])
    assert share.exit_code == 2 and "--gpus-per-client needs a CUDA GPU" in share.stderr
    assert not run_dir.exists()


@pytest.mark.skipif(not NO_CUDA, reason="checks this CPU-only machine")
def test_gpu_check_script_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    # in-process: three fresh interpreters importing torch and transformers cost the suite ~20 s
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    for name in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)  # the script sets these; monkeypatch puts them back afterwards
    with pytest.raises(SystemExit) as helped:
        gpu_check.main(["--help"])
    assert helped.value.code == 0 and "--model" in capsys.readouterr().out
    assert gpu_check.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert gpu_check.main(["--cpu-smoke"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["train"]["float32"]["fedrouter"]["tokens_per_s"] > 0 and figures["train"]["nf4"] == {"skipped": "--no-4bit"}
    assert figures["generate"]["fedrouter_mixed"]["samples_per_s"] > 0
