import numpy as np
import pandas as pd
import pytest

from deeprubin.core import io


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "table.parquet"
    io.write_parquet(pd.DataFrame({"a": [1, 2]}), target)

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half a parq")
            raise Boom("killed part-way")
    assert io.read_parquet(target)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_round_trips(tmp_path):
    io.write_json({"x": np.float32(1.5), "n": np.int64(3), "arr": np.arange(2)}, tmp_path / "a.json")
    assert io.read_json(tmp_path / "a.json") == {"x": 1.5, "n": 3, "arr": [0, 1]}
    io.write_npz(tmp_path / "a.npz", ids=np.array(["a", "b"]), v=np.ones(3))
    data = io.read_npz(tmp_path / "a.npz")
    assert data["ids"].tolist() == ["a", "b"]
    assert len(io.file_sha256(tmp_path / "a.npz")) == 64


def test_json_is_strict_non_finite_values_become_null(tmp_path):
    path = io.write_json({"auc": float("nan"), "inf": np.float64(np.inf), "ok": [np.float32(0.5), -np.inf]},
                         tmp_path / "m.json")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert io.read_json(path) == {"auc": None, "inf": None, "ok": [0.5, None]}


@pytest.mark.parametrize("reader", [io.read_parquet, io.read_json, io.read_npz])
def test_missing_file_names_path(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="nothing.here"):
        reader(tmp_path / "nothing.here")


def test_save_figure_writes_png_and_pdf_with_caption(tmp_path):
    from deeprubin.core.plot_style import figure_style, new_figure

    def figure(title: str):
        with figure_style():
            fig = new_figure((3, 2))
            ax = fig.add_subplot()
            ax.plot([0, 1], [1, 2])
            ax.set_title(title)
        return fig

    path = io.save_figure(figure("T"), tmp_path / "f.png", caption="A | one-line\n caption.")
    assert path == tmp_path / "f.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = tmp_path / "f.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-" and b"A | one-line caption." in pdf.read_bytes()
    assert io.read_figure_caption(path) == "A | one-line caption."
    # Deterministic bytes (no creation date), and the title as the default caption.
    first = pdf.read_bytes()
    io.save_figure(figure("T"), tmp_path / "f.png", caption="A | one-line\n caption.")
    assert pdf.read_bytes() == first
    io.save_figure(figure("Mean light curves"), tmp_path / "g.png")
    assert io.read_figure_caption(tmp_path / "g.png") == "Mean light curves"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png", "g.pdf", "g.png"]
    with pytest.raises(FileNotFoundError, match="nope.png"):
        io.read_figure_caption(tmp_path / "nope.png")
