"""The exported runtimes (dir_ros/backends/export.py: ONNX Runtime and OpenVINO): same outputs as eager,
on-disk cache keyed by config and weights, fallback to torch with one warning when the export
or the runtime fails; OpenVINO's low-precision (bf16) path: runs, reports the precision it
computes in, stays within a joint drift bound, falls back when its check fails."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from dir_ros.backends import export as E  # noqa: E402
from dir_ros.hand_model import BONE_PARENTS, SIDES  # noqa: E402
from dir_ros.model import build_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIGHT_CONFIG = ROOT / "config" / "model" / "dir_light.yaml"
RELEASE_CONFIG = ROOT / "config" / "model" / "dir_release.yaml"
# Largest allowed difference between exported fp32 and eager outputs: metres for xyz (the
# issue's target), normalised uv / raw parameters for the others.
TOLERANCE = 1e-4
# Batch of the comparison inputs (the graph has a dynamic batch axis; exported at 1).
BATCH = 2
# Mean joint drift (m) allowed for OpenVINO bf16 vs eager fp32 on seeded random inputs with
# the conditioned light model: measured 0.66 mm (AMD EPYC, avx512_bf16); the target
# on real crops is 1 mm, and 2 mm leaves room for another CPU's bf16 kernels (AMX).
BF16_MEAN_DRIFT_M = 2e-3
# Smallest drift showing that bf16 really ran (fp32 runs differ from eager by ~1e-7 m).
BF16_MIN_DRIFT_M = 1e-6
EXPORTED = ("onnxruntime", "openvino")


def _runtime_param(runtime: str) -> object:
    """A pytest param for `runtime`, skipped when its package is not installed."""
    module = "onnxruntime" if runtime == "onnxruntime" else "openvino"
    try:
        __import__(module)
    except ImportError:
        return pytest.param(runtime, marks=pytest.mark.skip(reason=f"{module} not installed"))
    return runtime


RUNTIME_PARAMS = [_runtime_param(r) for r in EXPORTED]


def _cpu_has_bf16() -> bool:
    """Whether the runtime computes bf16 on this CPU: OpenVINO's CPU plugin offers it and the
    CPU has native bf16 (avx512_bf16 or AMX; export.cpu_has_native_bf16)."""
    import openvino as ov

    offered = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return offered and E.cpu_has_native_bf16() is not False


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 avx512f avx512bw", False),
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("fpu avx512f amx_bf16 amx_tile", True),
])
def test_native_bf16_from_cpu_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    flags: str, expected: bool) -> None:
    """Low precision is asked for only where the CPU flags say bf16 is native."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")
    monkeypatch.setattr(E, "CPUINFO", str(cpuinfo))
    assert E.cpu_has_native_bf16() is expected
    monkeypatch.setattr(E, "CPUINFO", str(tmp_path / "missing"))
    assert E.cpu_has_native_bf16() is None


def _model(config: Path, seed: int = 0) -> torch.nn.Module:
    """A conditioned random-init DIR (see export.condition_random_init_), eval, CPU."""
    torch.manual_seed(seed)
    return E.condition_random_init_(build_dir(config)).eval()


@pytest.fixture(scope="module")
def light_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for the unchanged light model, shared by the tests that read it."""
    return tmp_path_factory.mktemp("light_cache")


def _check_matches_eager(config: Path, cache: Path, runtime: str) -> None:
    """Exported outputs equal eager within TOLERANCE on seeded random inputs (batch BATCH)."""
    model = _model(config)
    net = E.load_runtime(model, runtime, cache)
    assert isinstance(net, E.ExportedDIR) and net.runtime == runtime
    assert net.precision == "fp32"
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, model.input_size, model.input_size, generator=gen)
    with torch.inference_mode():
        ref = model(x)
    out = net(x)
    for side in ("left", "right"):
        for field in E.HAND_FIELDS:
            got, want = getattr(out.final.hand(side), field), getattr(ref.final.hand(side), field)
            assert got.shape == want.shape, (side, field)
            diff = (got - want).abs().max().item()
            assert diff < TOLERANCE, f"{side}.{field} differs by {diff:.3g}"
    assert (out.final.offset - ref.final.offset).abs().max().item() < TOLERANCE
    assert torch.allclose(out.seg, ref.seg, atol=TOLERANCE, rtol=0)
    # The predictor's other uses of the model still reach the torch model.
    assert net.input_size == model.input_size
    assert torch.equal(net.faces("left"), model.faces("left"))


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_light_export_matches_eager(light_cache: Path, runtime: str) -> None:
    _check_matches_eager(LIGHT_CONFIG, light_cache, runtime)


@pytest.fixture(scope="module")
def release_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export of the release network for both runtimes (~7 s, 63 MB file)."""
    return tmp_path_factory.mktemp("release_cache")


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_release_export_matches_eager(release_cache: Path, runtime: str) -> None:
    """The release network on each runtime (the export is shared: one file, one key)."""
    _check_matches_eager(RELEASE_CONFIG, release_cache, runtime)


def test_release_export_holds_the_fusion_weights_in_block_layout(release_cache: Path) -> None:
    """The multi-plane fusion conv's weight is folded into the file in its (H*K, C, O*3*3)
    block layout (one initializer per stage), so no runtime re-lays it out per call."""
    import onnx

    model = _model(RELEASE_CONFIG)
    path = E.onnx_path(model, release_cache)
    if not path.is_file():
        E.export_onnx(model, path)
    graph = onnx.load(str(path), load_external_data=False).graph
    n = len(SIDES) * len(BONE_PARENTS)  # (hand, bone) blocks
    blocks = [list(i.dims) for i in graph.initializer if len(i.dims) == 3 and i.dims[0] == n]
    stages = [getattr(model.decoder, f"projecter_{sfx}") for sfx in model.decoder.suffixes]
    want = [[n, s.fusion[0].in_channels // n, s.fusion[0].out_channels * 9] for s in stages]
    assert sorted(blocks) == sorted(want)


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_cache_reused_then_rebuilt_when_weights_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    calls = []
    real_export = E.export_onnx
    monkeypatch.setattr(E, "export_onnx", lambda m, p: calls.append(p) or real_export(m, p))
    model = _model(LIGHT_CONFIG)
    E.load_runtime(model, runtime, tmp_path)
    E.load_runtime(model, runtime, tmp_path)
    assert len(calls) == 1 and len(list(tmp_path.glob("*.onnx"))) == 1
    with torch.no_grad():
        model.init_regressor.offset.bias += 0.01   # new weights -> new key -> re-export
    net = E.load_runtime(model, runtime, tmp_path)
    assert len(calls) == 2 and calls[1] != calls[0] and calls[1].is_file()
    assert isinstance(net, E.ExportedDIR) and net.runtime == runtime
    # ... and the new graph carries the new weights.
    x = torch.zeros(1, 3, model.input_size, model.input_size)
    with torch.inference_mode():
        want = model(x).final.offset
    assert (net(x).final.offset - want).abs().max().item() < TOLERANCE


def test_cache_key_follows_config_and_weights() -> None:
    a, b = _model(LIGHT_CONFIG), _model(LIGHT_CONFIG)
    assert E.model_cache_key(a) == E.model_cache_key(b)
    b.config = {**b.config, "root_joint": 9}
    assert E.model_cache_key(a) != E.model_cache_key(b)


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_broken_export_falls_back_to_torch_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    model = _model(LIGHT_CONFIG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = E.load_runtime(model, runtime, tmp_path)
    assert net is model
    ours = [w for w in caught if f"runtime '{runtime}' unavailable" in str(w.message)]
    assert len(ours) == 1 and "exporter exploded" in str(ours[0].message)
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob(".*"))


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_broken_cached_file_falls_back(tmp_path: Path, runtime: str) -> None:
    model = _model(LIGHT_CONFIG)
    E.onnx_path(model, tmp_path).write_bytes(b"not onnx")
    with pytest.warns(RuntimeWarning, match=f"runtime '{runtime}' unavailable"):
        assert E.load_runtime(model, runtime, tmp_path) is model


def test_torch_runtime_and_bad_names() -> None:
    model = _model(LIGHT_CONFIG)
    assert E.load_runtime(model, "torch") is model
    with pytest.raises(ValueError, match="runtime"):
        E.load_runtime(model, "tensorrt")
    with pytest.raises(ValueError, match="precision"):
        E.load_runtime(model, "openvino", precision="int4")


def test_onnxruntime_runs_low_precision_requests_in_fp32(light_cache: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """ONNX Runtime's CPU provider has no bf16 path: it says so and runs fp32."""
    with caplog.at_level(logging.WARNING, logger="dir_ros.backends.export"):
        net = E.load_runtime(_model(LIGHT_CONFIG), "onnxruntime", light_cache, "bf16")
    assert isinstance(net, E.OnnxDIR) and net.precision == "fp32"
    assert any("precision bf16 is not available" in r.getMessage() for r in caplog.records)


def test_openvino_bf16_runs_reports_precision_and_bounded_drift(
        light_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    """precision bf16: OpenVINO reports what it computes in (bf16 where the CPU has it, else
    f32); in bf16 the outputs move (it really ran) but the joints stay within
    BF16_MEAN_DRIFT_M of eager fp32; the log names the low-precision bound."""
    pytest.importorskip("openvino")
    model = _model(LIGHT_CONFIG)
    with caplog.at_level(logging.INFO, logger="dir_ros.backends.export"):
        net = E.load_runtime(model, "openvino", light_cache, "bf16")
    assert isinstance(net, E.OpenVinoDIR) and net.requested_precision == "bf16"
    assert net.precision == ("bf16" if _cpu_has_bf16() else "fp32")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, model.input_size, model.input_size, generator=gen)
    with torch.inference_mode():
        ref = E.ExportWrapper(model)(x)
    drift = E.joint_drift(net.run_flat(x), ref)
    assert drift.shape == (BATCH * 2 * 21,)
    if net.precision == "bf16":
        assert BF16_MIN_DRIFT_M < drift.mean().item() < BF16_MEAN_DRIFT_M
        assert any("low-precision bound" in r.getMessage() for r in caplog.records)
    else:
        assert drift.max().item() < TOLERANCE


def test_broken_low_precision_path_falls_back_to_torch(
        light_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bf16 graph that drifts past its bound is not used: one warning, torch."""
    pytest.importorskip("openvino")
    if not _cpu_has_bf16():
        pytest.skip("this CPU has no bf16: OpenVINO runs f32 (the fp32 check applies)")
    monkeypatch.setattr(E, "LOW_PRECISION_CHECK_TOLERANCE_M", 1e-9)  # any drift is too much
    model = _model(LIGHT_CONFIG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = E.load_runtime(model, "openvino", light_cache, "bf16")
    assert net is model
    ours = [w for w in caught if "runtime 'openvino' at bf16 unavailable" in str(w.message)]
    assert len(ours) == 1 and "mean joint drift" in str(ours[0].message)


def test_exported_runtimes_refuse_cuda(light_cache: Path) -> None:
    net = E.load_runtime(_model(LIGHT_CONFIG), "onnxruntime", light_cache)
    assert net.to("cpu") is net
    with pytest.raises(ValueError, match="onnxruntime runtime runs on the CPU only"):
        net.to("cuda")


@pytest.mark.parametrize("runtime", RUNTIME_PARAMS)
def test_predictor_runs_unchanged_on_exported_runtime(light_cache: Path, runtime: str) -> None:
    """HandsPredictor takes the ExportedDIR as its model: same FrameResult as with torch."""
    import numpy as np

    from dir_ros.backends.dir import HandsPredictor, select_runtime

    model = _model(LIGHT_CONFIG)
    eager = HandsPredictor(model)
    fast = HandsPredictor(select_runtime(model, runtime, "cpu", str(light_cache)))
    assert (eager.runtime, fast.runtime) == ("torch", runtime)
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    a, b = eager.predict(rgb, K), fast.predict(rgb, K)
    for side in ("left", "right"):
        ha, hb = getattr(a, side), getattr(b, side)
        assert np.abs(ha.joints - hb.joints).max() < TOLERANCE
        assert np.abs(ha.vertices - hb.vertices).max() < TOLERANCE
        assert abs(ha.confidence - hb.confidence) < TOLERANCE


def test_predictor_from_config_reports_the_runtime_precision(tmp_path: Path) -> None:
    """runtime openvino + precision bf16 from a config: the predictor's precision is what
    OpenVINO computes in (not CUDA autocast's fp32 fallback); torch bf16 on the CPU -> fp32."""
    pytest.importorskip("openvino")
    from dir_ros.backends.dir import HandsPredictor

    cfg = {"backend": "dir", "model_config": str(LIGHT_CONFIG), "device": "cpu",
           "crop": "full", "runtime": "openvino", "precision": "bf16",
           "export_cache": str(tmp_path)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-weights warning
        fast = HandsPredictor.from_config(cfg)
        eager = HandsPredictor.from_config({**cfg, "runtime": "torch"})
    assert fast.runtime == "openvino"
    assert fast.precision == ("bf16" if _cpu_has_bf16() else "fp32")
    assert (eager.runtime, eager.precision) == ("torch", "fp32")


def test_select_runtime_refuses_unknown_and_keeps_torch_on_cuda() -> None:
    from dir_ros.config import RUNTIMES
    from dir_ros.backends.dir import select_runtime

    assert RUNTIMES == ("auto", "torch", "onnxruntime", "openvino")
    model = _model(LIGHT_CONFIG)
    with pytest.raises(ValueError, match="runtime"):
        select_runtime(model, "tensorrt", "cpu", "")
    for runtime in (*EXPORTED, "auto"):
        assert select_runtime(model, runtime, "cuda", "") is model


def test_runtime_auto_picks_the_fastest_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: torch on CUDA; on the CPU openvino, else onnxruntime, else torch, by what is
    installed (importlib's find_spec, faked here); explicit runtimes stay as they are."""
    import importlib.util

    from dir_ros import config as P

    real = importlib.util.find_spec
    for installed, want in (({"openvino", "onnxruntime"}, "openvino"),
                            ({"onnxruntime"}, "onnxruntime"), (set(), "torch")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None, _i=installed:
                            real("json") if name in _i else None)
        assert P.resolve_runtime("auto", "cpu") == want, installed
        assert P.resolve_runtime("auto", "cuda") == "torch"
        assert P.resolve_runtime("onnxruntime", "cpu") == "onnxruntime"
    with pytest.raises(ValueError, match="tensorrt"):
        P.resolve_runtime("tensorrt", "cpu")


def test_predictor_default_runtime_is_openvino_on_the_cpu(tmp_path: Path) -> None:
    """The default config (runtime auto) runs the exported network on OpenVINO on the CPU."""
    pytest.importorskip("openvino")
    from dir_ros.config import DEFAULT_CONFIG
    from dir_ros.backends.dir import HandsPredictor

    assert DEFAULT_CONFIG["runtime"] == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-weights warning
        pred = HandsPredictor.from_config({"backend": "dir", "model_config": str(LIGHT_CONFIG),
                                           "device": "cpu", "crop": "full",
                                           "export_cache": str(tmp_path)})
    assert (pred.runtime, pred.precision) == ("openvino", "fp32")
    assert any(tmp_path.glob("*.onnx"))
