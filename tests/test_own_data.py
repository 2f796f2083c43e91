"""A user's own images: a folder of PNGs in class subfolders and a .npz array train, sample and
resume from the command line, and every bad input is one line naming the file.

The truth: the folder and the .npz hold the same pixels in the same order, so a run on one and
a run on the other read identical batches; a run on the .npz stopped and resumed must end bit
for bit where a straight run on the folder ends (which also proves that the PNGs decode to the
array's exact values)."""

import json
import warnings

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jaxdiff import cli, data, train
from jaxdiff.metrics import fid

NUM = 120  # digits written as files; enough for batches of 4 and a 10 % test split
TINY = {
    "model.ch": 8, "model.ch_mult": "(1,)", "model.num_res_blocks": 1,
    "model.attn_resolutions": "()", "diffusion.num_timesteps": 10, "training.batch_size": 4,
    "training.checkpoint_every": 2, "training.log_every": 1, "training.sample_every": 0,
    "sampling.num_samples": 0, "optim.warmup_steps": 2, "data.image_size": 16,
}


def _digits_16x16_rgb() -> tuple[np.ndarray, np.ndarray]:
    """The first NUM sklearn digits as uint8 [N, 16, 16, 3] (each pixel doubled, grey in all
    three channels), sorted by label as a folder of class subfolders lists them."""
    bunch = load_digits()
    grey = np.round(bunch.images[:NUM] * (255 / 16)).astype(np.uint8)
    rgb = np.repeat(grey.repeat(2, axis=1).repeat(2, axis=2)[..., None], 3, axis=-1)
    order = np.argsort(bunch.target[:NUM], kind="stable")
    return rgb[order], bunch.target[:NUM][order].astype(np.int64)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """(folder, npz path, images, labels): the same digits as PNG files and as one array."""
    root = tmp_path_factory.mktemp("own_data")
    images, labels = _digits_16x16_rgb()
    folder = root / "digits"
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / f"class_{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"class_{label}" / f"{i:04d}.png")
    npz = root / "digits.npz"
    np.savez(npz, images=images, labels=labels)
    return folder, npz, images, labels


def _train(dataset: str, workdir, num_steps: int) -> int:
    overrides = [f"--config.{k}={v}" for k, v in {**TINY, "training.num_steps": num_steps}.items()]
    return cli.main(["train", "--config", "digits_ddpm", "--workdir", str(workdir),
                     f"--config.data.dataset={dataset}", *overrides])


@pytest.fixture(scope="module")
def runs(own_data, tmp_path_factory):
    """A straight 4-step run on the folder; a run on the .npz stopped at 2 and resumed to 4;
    then 4 DDIM samples of each (``WORKDIR/samples.npz``)."""
    folder, npz, _, _ = own_data
    root = tmp_path_factory.mktemp("runs")
    workdirs = root / "folder", root / "npz"
    # the three runs compile the same programs: the session's compilation cache (conftest)
    # compiles them once
    assert _train(f"folder:{folder}", workdirs[0], 4) == 0
    assert _train(f"npz:{npz}", workdirs[1], 2) == 0
    assert _train(f"npz:{npz}", workdirs[1], 4) == 0  # resumes from step 2
    for workdir in workdirs:
        args = ["--workdir", str(workdir), "--sampler", "ddim", "--steps", "2", "--num", "4"]
        assert cli.main(["sample", *args, "--output", str(workdir / "samples.npz")]) == 0
    return workdirs


def test_a_folder_and_an_npz_read_the_same_examples(own_data):
    folder, npz, images, labels = own_data
    for split, count in (("train", 108), ("test", 12), ("all", NUM)):
        from_files = data.load_source(f"folder:{folder}", split=split)
        from_array = data.load_source(f"npz:{npz}", split=split)
        assert len(from_files) == len(from_array) == count
        keep = data.split_indices(split, num=NUM, seed=0, test_fraction=0.1, valid_fraction=0.1)
        for i in (0, count // 2, count - 1):
            np.testing.assert_array_equal(from_files[i]["x"], images[keep[i]])
            np.testing.assert_array_equal(from_array[i]["x"], images[keep[i]])
            assert from_files[i]["label"] == from_array[i]["label"] == labels[keep[i]]
    assert data.ImageFolder(folder).classes == tuple(f"class_{k}" for k in range(10))


@pytest.mark.slow
def test_train_on_a_folder_and_resume_an_npz_run_bit_for_bit(runs):
    straight, resumed = (train.load_run(w, checkpoint="latest") for w in runs)
    assert straight.step == resumed.step == 4
    for a, b in zip(jax.tree.leaves(straight.state), jax.tree.leaves(resumed.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.loads((runs[0] / "config.json").read_text())["data"]["image_size"] == 16


@pytest.mark.parametrize("which", [0, 1], ids=["folder", "npz"])
def test_sample_a_run_on_own_images_at_16x16x3(runs, which):
    samples = np.load(runs[which] / "samples.npz")["samples"]
    assert samples.shape == (4, 16, 16, 3) and samples.dtype == np.uint8
    assert (runs[which] / "samples.png").is_file()


def test_resize_and_centre_crop(tmp_path):
    # A 40 x 20 left-to-right ramp: the short side scaled to 8 makes it 16 x 8, and the centre
    # 8 x 8 (output columns 4..11) is kept. Resampling a linear ramp is exact away from the
    # borders: output column j samples the source at 2.5 j + 0.75 (pixel centres), where the
    # ramp is 255 / 39 times that.
    ramp = np.tile(np.linspace(0, 255, 40), (20, 1))
    Image.fromarray(np.round(ramp).astype(np.uint8)).save(tmp_path / "wide.png")
    options = data.ImageOptions(image_size=8)
    x = data.load_source(f"folder:{tmp_path}", split="all", options=options)[0]["x"]
    assert x.shape == (8, 8, 1)  # a grey file stays one channel
    expected = 255 / 39 * (2.5 * np.arange(4, 12) + 0.75)
    np.testing.assert_allclose(x[..., 0], np.tile(expected, (8, 1)), atol=1.5)


def test_stats_of_a_folder(own_data, tmp_path, monkeypatch, capsys):
    # The features are the raw pixels here (the Inception network is what the FID tests
    # check): the statistics must be the mean and covariance of the training images.
    folder, _, images, _ = own_data
    monkeypatch.setattr(fid, "load_inception", lambda *a, **k: None)
    monkeypatch.setattr(fid, "inception_features",
                        lambda _, source, **k: np.stack([source[i]["x"].reshape(-1) for i in range(len(source))]).astype(np.float64))
    output = tmp_path / "ref.npz"
    assert cli.main(["stats", "--dataset", f"folder:{folder}", "--output", str(output), "--image_size", "16"]) == 0
    keep = data.split_indices("train", num=NUM, seed=0, test_fraction=0.1, valid_fraction=0.1)
    pixels = images[keep].reshape(len(keep), -1).astype(np.float64)
    stats = fid.load_statistics(output)
    np.testing.assert_allclose(stats.mu, pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.sigma, np.cov(pixels, rowvar=False), rtol=1e-6, atol=1e-6)
    assert "108 examples" in capsys.readouterr().out


# --- bad input: one line naming the file, exit code 2, nothing written --------------------------


def _png(path, size=(16, 16), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path)
    return path


def _case_empty(tmp):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("not an image")
    return "folder:" + str(tmp / "empty"), tmp / "empty", {}


def _case_corrupt(tmp):
    _png(tmp / "imgs" / "a" / "good.png")
    bad = tmp / "imgs" / "b" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(_png(tmp / "x.png").read_bytes()[:40])  # a truncated PNG
    return "folder:" + str(tmp / "imgs"), bad, {}


def _case_mixed_sizes(tmp):
    _png(tmp / "imgs" / "a.png", (16, 16))
    odd = _png(tmp / "imgs" / "b.png", (12, 16))
    return "folder:" + str(tmp / "imgs"), odd, {"data.image_size": "None"}


def _case_no_images_array(tmp):
    np.savez(tmp / "d.npz", pictures=np.zeros((4, 8, 8), np.uint8))
    return "npz:" + str(tmp / "d.npz"), tmp / "d.npz", {}


def _case_wrong_dtype(tmp):
    np.savez(tmp / "d.npz", images=np.zeros((4, 8, 8, 3), np.float32))
    return "npz:" + str(tmp / "d.npz"), tmp / "d.npz", {}


def _case_wrong_rank(tmp):
    np.savez(tmp / "d.npz", images=np.zeros((4, 8), np.uint8))
    return "npz:" + str(tmp / "d.npz"), tmp / "d.npz", {}


def _case_labels_mismatch(tmp):
    np.savez(tmp / "d.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.arange(3))
    return "npz:" + str(tmp / "d.npz"), tmp / "d.npz", {}


BAD = {
    "empty folder": (_case_empty, "no PNG or JPEG images"),
    "corrupt image": (_case_corrupt, "not a readable image"),
    "mixed sizes": (_case_mixed_sizes, "set config.data.image_size"),
    "npz without images": (_case_no_images_array, "no array 'images'"),
    "npz of floats": (_case_wrong_dtype, "must be uint8"),
    "npz of rank 2": (_case_wrong_rank, "must be uint8 of shape"),
    "labels not one per image": (_case_labels_mismatch, "'labels' must be 4 integers"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_own_data_is_one_line_naming_the_file(case, tmp_path, capsys):
    make, message = BAD[case]
    dataset, culprit, overrides = make(tmp_path)
    workdir = tmp_path / "run"
    args = [f"--config.{k}={v}" for k, v in {"data.image_size": 8, **overrides}.items()]
    code = cli.main(["train", "--workdir", str(workdir), f"--config.data.dataset={dataset}", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(culprit) in err and message in err, err
    assert not workdir.exists()


def test_skip_bad_images_with_a_warning_and_a_count(tmp_path):
    for name in ("a", "b", "c"):
        _png(tmp_path / "imgs" / f"{name}.png")
    (tmp_path / "imgs" / "d.png").write_bytes(b"not a png")
    (tmp_path / "imgs" / "e.jpg").write_bytes(b"")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\), the first .*d\.png"):
        source = data.load_source(f"folder:{tmp_path / 'imgs'}", split="all",
                                  options=data.ImageOptions(bad_images="skip"))
    assert len(source) == 3 and source[0]["x"].shape == (16, 16, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(data.DataError, match="d.png: not a readable image"):
            data.load_source(f"folder:{tmp_path / 'imgs'}", split="all")


def test_config_source_reads_old_and_new_data_configs(own_data):
    # A config saved before the image fields existed takes their defaults; a new one its own.
    old = ml_collections.ConfigDict({"dataset": "digits", "split": "test"})
    assert len(data.config_source(old)) == 359  # the digits test split
    folder = own_data[0]
    new = ml_collections.ConfigDict(
        {"dataset": f"folder:{folder}", "split": "train", "image_size": 8, "test_fraction": 0.5,
         "valid_fraction": 0.1, "split_seed": 3, "bad_images": "error"}
    )
    source = data.config_source(new, split="test")
    assert len(source) == NUM // 2 and source[0]["x"].shape == (8, 8, 3)
