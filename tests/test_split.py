import numpy as np
import pandas as pd
import pytest

from deeprubin.core.split import LeakageError, SplitConfigError, check_no_leakage, make_split, split_summary

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _objects(n_groups=60, per_group=2, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["A", "B", "C"], size=n_groups, p=[0.6, 0.3, 0.1])
    rows = [{"object_id": f"o{g:03d}_{k}", "group_id": f"g{g:03d}", "label": labels[g]}
            for g in range(n_groups) for k in range(per_group)]
    return pd.DataFrame(rows)


def test_groups_never_straddle_and_manifest_complete():
    objects = _objects()
    manifest = make_split(objects, FRACTIONS, seed=1)
    assert set(manifest.columns) == {"object_id", "group_id", "label", "split"}
    assert len(manifest) == len(objects)
    assert (manifest.groupby("group_id")["split"].nunique() == 1).all()
    assert split_summary(manifest)["groups_in_more_than_one_split"] == 0


def test_stratified_fractions_per_label():
    manifest = make_split(_objects(n_groups=300), FRACTIONS, seed=0)
    groups = manifest.drop_duplicates("group_id")
    for label, part in groups.groupby("label"):
        frac_train = (part["split"] == "train").mean()
        assert abs(frac_train - 0.7) < 0.05, label
        assert (part["split"] == "test").sum() >= 1


def test_deterministic_and_seed_dependent():
    objects = _objects()
    a = make_split(objects, FRACTIONS, seed=3)
    b = make_split(objects.sample(frac=1, random_state=5), FRACTIONS, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = make_split(objects, FRACTIONS, seed=4)
    assert not a["split"].equals(c["split"])


def test_leakage_check_fails_on_straddling_group():
    manifest = make_split(_objects(), FRACTIONS, seed=1)
    manifest.loc[0, "split"] = "test" if manifest.loc[0, "split"] != "test" else "train"
    with pytest.raises(LeakageError, match="1 group\\(s\\) appear in more than one split"):
        check_no_leakage(manifest)


@pytest.mark.parametrize("fractions, message", [
    ({"train": 0.5, "val": 0.2, "test": 0.2}, "must sum to 1"),
    ({"train": 1.2, "val": -0.1, "test": -0.1}, "negative"),
    ({"train": 0.7, "valid": 0.15, "test": 0.15}, "unknown split name"),
    ({"train": 0.0, "val": 0.5, "test": 0.5}, "train and test"),
])
def test_bad_fractions(fractions, message):
    with pytest.raises(SplitConfigError, match=message):
        make_split(_objects(), fractions, seed=0)


def test_missing_group_column():
    with pytest.raises(SplitConfigError, match="group_id"):
        make_split(_objects().drop(columns="group_id"), FRACTIONS, seed=0)
