from bacl.engine.curves import TrainingCurves, truncate_curves


def rows(directory, name="loss"):
    text = (directory / "plots" / "metrics" / "train" / f"{name}.tsv").read_text().splitlines()
    return [line.split("\t") for line in text]


def test_steps_are_iterations_and_a_resume_drops_what_it_relogs(tmp_path):
    d = tmp_path / "dvclive"
    curves = TrainingCurves(d)
    for it in range(5):
        curves.log(it, {"loss": 10.0 - it, "lr": 0.1})
    curves.close()
    assert rows(d) == [["step", "loss"]] + [[str(i), str(10.0 - i)] for i in range(5)]

    curves = TrainingCurves(d, start_iteration=3)  # the run resumed at iteration 3
    assert [r[0] for r in rows(d)[1:]] == ["0", "1", "2"]
    curves.log(3, {"loss": 1.5, "lr": 0.01})
    curves.close()
    assert rows(d)[-1] == ["3", "1.5"] and rows(d, "lr")[-1] == ["3", "0.01"]

    TrainingCurves(d).close()  # a fresh run clears the old curves
    assert not (d / "plots" / "metrics" / "train" / "loss.tsv").exists()


def test_truncate_curves_keeps_the_header(tmp_path):
    tsv = tmp_path / "plots" / "metrics" / "train" / "x.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("step\tx\n0\t1\n1\t2\n")
    truncate_curves(tmp_path, before_step=0)
    assert tsv.read_text() == "step\tx\n"
