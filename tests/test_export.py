"""Runs hand the PyTorch deployment a model.pth it loads unchanged and that predicts what ssimjax
predicts; training starts from torchvision-format weights."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from inprocess import run_cli as run  # the script's command in this process
from PIL import Image

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_CONFIG_KEYS = {"pretrained", "freeze_backbone", "feature_dim", "hidden_dims", "dropout_rate",
                          "use_batch_norm", "version"}


def save_random_resnet50(path):
    """A random torchvision ResNet-50 (random BatchNorm statistics too) saved as a .pth state dict."""
    from torch_helpers import random_torchvision_resnet50

    state_dict = random_torchvision_resnet50(bn_scale=(0.5, 1.0)).state_dict()
    torch.save(state_dict, path)
    return state_dict


class PlanQualityPredictionModel(torch.nn.Module):
    """The deployment's class, written here from torch-interface.md alone, independently of bridge/."""

    def __init__(self, config):
        super().__init__()
        self.feature_extractor = torch.nn.Module()
        self.feature_extractor.backbone = torch.nn.Sequential(*list(torchvision.models.resnet50().children())[:-1])
        layers, d = [], config["feature_dim"]
        for h in config["hidden_dims"]:
            layers.append(torch.nn.Linear(d, h))
            if config["use_batch_norm"]:
                layers.append(torch.nn.BatchNorm1d(h))
            layers += [torch.nn.ReLU(), torch.nn.Dropout(config["dropout_rate"])]
            d = h
        self.predictor = torch.nn.Module()
        self.predictor.mlp = torch.nn.Sequential(*layers, torch.nn.Linear(d, 1), torch.nn.Sigmoid())

    def forward(self, x):
        features = torch.flatten(self.feature_extractor.backbone(x), 1)
        return self.predictor.mlp(features), features


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, small_dataset):
    tmp = tmp_path_factory.mktemp("export")
    weights = tmp / "resnet50-random.pth"
    state_dict = save_random_resnet50(weights)
    out = tmp / "run"
    r = run("train.py", "--data", small_dataset, "--out", out, "--epochs", "2", "--batch-size", "8",
            "--backbone-weights", weights, "--plan-model")
    assert r.returncode == 0, r.stderr
    return out, weights, state_dict


def test_model_pth_loads_weights_only_into_the_plans_class(pretrained_run):
    out, _, _ = pretrained_run
    checkpoint = torch.load(out / "model.pth", map_location="cpu", weights_only=True)
    assert {"epoch", "model_state_dict", "config", "history", "val_metrics", "best_val_loss",
            "best_val_correlation", "format_version"} <= set(checkpoint)
    assert set(checkpoint["config"]) == DOCUMENTED_CONFIG_KEYS
    assert checkpoint["config"]["pretrained"] is True and checkpoint["config"]["hidden_dims"] == [1024, 512, 256, 128]
    assert len(checkpoint["history"]["val_loss"]) == 2
    history = json.loads((out / "history.json").read_text())
    assert checkpoint["best_val_loss"] == min(history["val_loss"])

    plan_model = PlanQualityPredictionModel(checkpoint["config"])
    plan_model.load_state_dict(checkpoint["model_state_dict"], strict=True)

    from bridge import QualityPredictionModel

    model = QualityPredictionModel.load_checkpoint(out / "model.pth")
    assert not model.training
    x = torch.randn(2, 3, 224, 224)
    plan_model.eval()
    with torch.no_grad():
        a, fa = model(x)
        b, fb = plan_model(x)
    assert torch.equal(a, b) and torch.equal(fa, fb) and a.shape == (2, 1) and fa.shape == (2, 2048)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the plan's model was made for the tensor: no warning
        assert torch.equal(model.predict_ssim(x), a) and torch.equal(model.extract_features(x), fa)


def test_exported_model_predicts_what_ssimjax_predicts(pretrained_run, small_dataset, tmp_path):
    out, _, _ = pretrained_run
    images = sorted((small_dataset / "images").glob("*.png"))[:6]  # 96..256 px, none 224x224
    rng = np.random.default_rng(0)
    big = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(big)
    square = tmp_path / "square.png"
    Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(square)
    paths = [*images, big, square]
    r = run("predict.py", "--checkpoint", out, "--json", *paths)
    assert r.returncode == 0, r.stderr
    ours = json.loads(r.stdout)

    from bridge import QualityPredictionModel
    from torchvision import transforms

    model = QualityPredictionModel.load_checkpoint(out / "model.pth")
    preprocess = transforms.Compose([
        transforms.Resize((224, 224)), transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])
    theirs = model.predict_ssim(batch)[:, 0].numpy()
    diff = np.abs(np.asarray([ours[str(p)] for p in paths]) - theirs).max()
    print(f"predict.py vs exported model on {len(paths)} images: max difference {diff:.1e}")
    assert diff < 1e-4


def test_export_script_and_backbone_record(pretrained_run, tmp_path):
    out, weights, state_dict = pretrained_run
    r = run("export_torch.py", "--checkpoint", out, "--out", tmp_path / "again.pth")
    assert r.returncode == 0, r.stderr
    a = torch.load(out / "model.pth", weights_only=True)["model_state_dict"]
    b = torch.load(tmp_path / "again.pth", weights_only=True)["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    facts = json.loads((out / "config.json").read_text())["backbone"]
    assert facts["weights"] == "file" and facts["file"] == str(weights.resolve())
    import hashlib
    assert facts["file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    # A frozen backbone is exported exactly as it was loaded.
    for key, value in state_dict.items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
            head, _, rest = key.partition(".")
            ours = a["feature_extractor.backbone." + index[head] + "." + rest]
            assert torch.equal(ours, value), key

    r = run("export_torch.py", "--checkpoint", tmp_path / "nowhere", "--out", tmp_path / "x.pth")
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_torchvision_weights_through_torchvisions_own_cache(small_dataset, tmp_path):
    from bridge.pretrained import TORCHVISION_WEIGHTS

    home = tmp_path / "torch-home"
    r = run("train.py", "--data", small_dataset, "--out", tmp_path / "a", "--epochs", "1", "--batch-size", "8",
            "--backbone-weights", "torchvision", "--map-steps", "20", "--map-extra", "24", "--no-report", "--no-export",
            env={"TORCH_HOME": str(home)})
    if r.returncode != 0:  # offline, as here: one line naming where torchvision looks
        cached = home / "hub" / "checkpoints" / Path(TORCHVISION_WEIGHTS.url).name
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert str(cached) in r.stderr and r.stderr.count("\n") == 1
        # The file where torchvision looks is used without a download.
        cached.parent.mkdir(parents=True, exist_ok=True)
        save_random_resnet50(cached)
        r = run("train.py", "--data", small_dataset, "--out", tmp_path / "b", "--epochs", "1", "--batch-size", "8",
                "--backbone-weights", "torchvision", "--map-steps", "20", "--map-extra", "24", "--no-report",
                "--no-export", env={"TORCH_HOME": str(home)})
        assert r.returncode == 0, r.stderr
        facts = json.loads((tmp_path / "b" / "config.json").read_text())["backbone"]
    else:
        facts = json.loads((tmp_path / "a" / "config.json").read_text())["backbone"]
    assert facts["weights"] == "torchvision" and facts["name"] == str(TORCHVISION_WEIGHTS)
    assert len(facts["file_sha256"]) == 64


def test_bad_backbone_weights_and_tiny_export_are_clear_errors(small_dataset, tmp_path):
    r = run("train.py", "--data", small_dataset, "--backbone-weights", tmp_path / "missing.pth")
    assert r.returncode == 1 and "missing.pth: no such weights file" in r.stderr and "Traceback" not in r.stderr
    out = tmp_path / "tiny"
    r = run("train.py", "--data", small_dataset, "--out", out, "--epochs", "1", "--backbone", "tiny",
            "--hidden-dims", "16", "--batch-size", "8", "--map-steps", "20", "--map-extra", "24",
            "--no-report")
    assert r.returncode == 0 and not (out / "model.pth").exists()
    r = run("export_torch.py", "--checkpoint", out, "--out", tmp_path / "t.pth")
    assert r.returncode == 1 and "the PyTorch model is ResNet-50" in r.stderr


@pytest.fixture(scope="module")
def stats_run(tmp_path_factory, small_dataset):
    """The default model (backbone features + image statistics), exported."""
    out = tmp_path_factory.mktemp("stats") / "run"
    r = run("train.py", "--data", small_dataset, "--out", out, "--epochs", "2", "--batch-size", "8",
            "--map-steps", "30", "--map-extra", "24")
    assert r.returncode == 0, r.stderr
    return out


def save_grey(path, tmp_path):
    grey = tmp_path / "grey.png"
    Image.open(path).convert("L").save(grey)
    return grey


def images_of_many_sizes(small_dataset, tmp_path):
    rng = np.random.default_rng(1)
    paths = sorted((small_dataset / "images").glob("*.png"))[:4]
    for i, (w, h) in enumerate([(48, 48), (512, 96), (224, 224), (333, 517), (1024, 700)]):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) if i % 2 else \
            Image.new("RGBA", (w, h), (255, 0, 0, 0))
        if i % 2 == 0:
            from PIL import ImageDraw
            ImageDraw.Draw(img).ellipse((w // 5, h // 5, w // 2, h // 2), fill=(20, 90, 200, 255))
        path = tmp_path / f"size{i}.{'jpg' if i == 3 else 'png'}"
        img.convert("RGB").save(path) if i == 3 else img.save(path)
        paths.append(path)
    return paths


def test_model_with_image_statistics_predicts_in_torch_what_predict_py_predicts(stats_run, small_dataset, tmp_path):
    checkpoint = torch.load(stats_run / "model.pth", map_location="cpu", weights_only=True)
    assert checkpoint["config"]["image_stats"]["version"].startswith("stats-")
    assert "predictor.input_norm.mean" in checkpoint["model_state_dict"]
    paths = images_of_many_sizes(small_dataset, tmp_path)
    r = run("predict.py", "--checkpoint", stats_run, "--json", *paths)
    assert r.returncode == 0, r.stderr
    ours = np.asarray([json.loads(r.stdout)[str(p)] for p in paths])

    from bridge import QualityPredictionModel

    model = QualityPredictionModel.load_checkpoint(stats_run / "model.pth")
    from_paths = model.predict_ssim([str(p) for p in paths])[:, 0].numpy()
    from_pil = model.predict_ssim([Image.open(p) for p in paths])[:, 0].numpy()
    # uint8 arrays at native resolution, as np.asarray(Image.open(...)) gives them (RGBA, RGB, grey)
    from_arrays = model.predict_ssim([np.asarray(Image.open(p)) for p in paths])[:, 0].numpy()
    one = float(model.predict_ssim(paths[5])[0, 0])
    one_array = float(model.predict_ssim(np.asarray(Image.open(paths[5]).convert("L")))[0, 0])
    diff = max(np.abs(x - ours).max() for x in (from_paths, from_pil, from_arrays))
    print(f"predict.py vs model.pth (with image statistics) on {len(paths)} images of 48..1024 px "
          f"(paths, PIL images, uint8 arrays): max diff {diff:.1e}")
    assert diff < 1e-4 and abs(one - ours[5]) < 1e-4
    assert abs(one_array - float(model.predict_ssim(save_grey(paths[5], tmp_path))[0, 0])) < 1e-4
    first = np.asarray(Image.open(paths[0]).convert("RGB"))
    same_size = np.stack([first, first[::-1].copy()])  # (N, H, W, 3): one batch array
    batch = model.predict_ssim(same_size)[:, 0].numpy()
    assert abs(batch[0] - from_paths[0]) < 1e-4
    assert abs(batch[1] - float(model.predict_ssim(Image.fromarray(same_size[1]))[0, 0])) < 1e-4
    with pytest.raises(ValueError, match="nowhere.png"):
        model.predict_ssim([str(tmp_path / "nowhere.png")])
    with pytest.raises(ValueError, match=r"image 1: pixels must be uint8.*not float32"):
        model.predict_ssim([same_size[0], same_size[1].astype(np.float32) / 255])
    # A bare forward without the statistics is refused in words, not with a shape error.
    with pytest.raises(ValueError, match="image statistics"):
        model(torch.zeros(1, 3, 224, 224))
    # A preprocessed tensor works too; its statistics then describe the 224x224 resize.
    from torchvision import transforms
    t = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    tensor = torch.stack([t(Image.open(p).convert("RGB")) for p in paths[:2]])
    expected = r"predict_ssim got a preprocessed 224x224 tensor.*SRCC 0\.58.*uint8 arrays"
    with pytest.warns(UserWarning, match=expected) as w:
        out = model.predict_ssim(tensor)
    assert len(w) == 1 and w[0].filename == __file__  # points at the caller's line
    assert out.shape == (2, 1) and bool(((out > 0) & (out < 1)).all())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        assert torch.equal(model.predict_ssim(tensor), out)
