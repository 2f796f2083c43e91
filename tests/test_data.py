"""The data pipeline: sources, deterministic index-based batches, value ranges, TFDS."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdiff import data


class _Range:
    """A source whose example i is i (so batches show which examples they hold)."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": np.full((2, 3, 1), i, np.uint8), "label": np.int32(i)}


def test_digits_are_sklearn_digits_in_uint8():
    from sklearn.datasets import load_digits

    source = data.digits()
    raw = load_digits()
    assert len(source) == 1797
    ex = source[5]
    assert ex["x"].shape == (8, 8, 1) and ex["x"].dtype == np.uint8
    assert ex["label"] == raw.target[5]
    # grey levels 0..16 map to 0..255: 0 -> 0, 16 -> 255, and the order is kept
    levels = np.unique(raw.images[5])
    pix = {float(v): set(ex["x"][..., 0][raw.images[5] == v]) for v in levels}
    assert all(len(p) == 1 for p in pix.values())
    mapped = [pix[float(v)].pop() for v in levels]
    assert mapped == sorted(mapped)
    assert (0 not in levels) or mapped[0] == 0
    assert (16 not in levels) or mapped[-1] == 255
    # the train and test splits (of the evaluation) partition the 1,797 images
    train, test = data.digits("train"), data.digits("test")
    assert len(train) + len(test) == 1797
    # valid and fit partition train (the held-out part for early stopping never trains)
    idx = {k: set(data.digits_split_indices(k).tolist()) for k in ("train", "test", "valid", "fit")}
    assert (len(idx["valid"]), len(idx["fit"])) == (144, 1294)
    assert idx["valid"] | idx["fit"] == idx["train"] and not idx["valid"] & idx["fit"]
    assert not idx["valid"] & idx["test"]


def test_batches_are_epoch_permutations_and_deterministic():
    source = _Range(12)
    b = data.Batches(source, batch_size=4, seed=7)
    epoch0 = np.concatenate([b[s]["label"] for s in range(3)])
    epoch1 = np.concatenate([b[s]["label"] for s in range(3, 6)])
    assert sorted(epoch0) == list(range(12)) and sorted(epoch1) == list(range(12))
    assert not np.array_equal(epoch0, epoch1)  # reshuffled each epoch
    again = data.Batches(source, batch_size=4, seed=7)
    np.testing.assert_array_equal(again[4]["x"], b[4]["x"])  # a pure function of (seed, step)
    other = data.Batches(source, batch_size=4, seed=8)
    assert not np.array_equal(
        np.concatenate([other[s]["label"] for s in range(3)]), epoch0
    )


def test_processes_split_the_global_batch():
    source = _Range(30)
    whole = data.Batches(source, batch_size=6, seed=1)
    parts = [
        data.Batches(source, batch_size=6, seed=1, process_index=p, process_count=3)
        for p in range(3)
    ]
    for step in (0, 4, 9):
        joined = np.concatenate([p[step]["label"] for p in parts])
        np.testing.assert_array_equal(joined, whole[step]["label"])


def test_random_flip_flips_some_examples_left_right():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 4, 4, 1), dtype=np.uint8)

    class Src:
        def __len__(self):
            return 16

        def __getitem__(self, i):
            return {"x": images[i], "label": np.int32(i)}

    b = data.Batches(Src(), batch_size=16, seed=3, random_flip=True)
    batch = b[0]
    flipped = [np.array_equal(x, images[i][:, ::-1]) for x, i in zip(batch["x"], batch["label"])]
    kept = [np.array_equal(x, images[i]) for x, i in zip(batch["x"], batch["label"])]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 16
    np.testing.assert_array_equal(b[0]["x"], data.Batches(Src(), batch_size=16, seed=3, random_flip=True)[0]["x"])


def test_value_range_round_trip():
    pixels = np.arange(256, dtype=np.uint8)
    x = np.asarray(data.to_model_range(pixels))
    assert x[0] == -1.0 and x[-1] == 1.0 and x.dtype == np.float32
    np.testing.assert_array_equal(data.to_uint8(x), pixels)
    np.testing.assert_array_equal(data.to_uint8(np.array([-3.0, 3.0])), [0, 255])


def test_image_grid_layout():
    images = np.stack([np.full((2, 2, 1), 10 * i, np.uint8) for i in range(5)])
    grid = data.image_grid(images, ncols=3, pad=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 4, 0] == 10 and grid[4, 4, 0] == 40
    assert grid[4, 7, 0] == 255  # the empty sixth cell stays white


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(data.DataError, match="unknown dataset 'no_such_set'"):
        data.load_source("no_such_set")


def test_tfds_source_through_mock_data():
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        source = data.load_source("mnist")
        batch = data.Batches(source, batch_size=4, seed=0)[1]
    assert batch["x"].shape == (4, 28, 28, 1) and batch["x"].dtype == np.uint8
    assert batch["label"].dtype == np.int32


def test_unprepared_tfds_dataset_says_what_to_do(tmp_path):
    with pytest.raises(data.DataError, match=r"not prepared.*jaxdiff\[tfds\].*tfds build mnist"):
        data.load_source("mnist", data_dir=str(tmp_path), download=False)
