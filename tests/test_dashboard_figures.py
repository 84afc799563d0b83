"""The dashboard's and the model card's figures, sentences and choices, built from small made-up metrics files."""
from lungfake.evaluation.comparison import (
    accuracy_target_sentence,
    agreement_sentence,
    detail_choices,
    robustness_by_model,
    training_sentence,
)
from lungfake.reports.charts import ROBUSTNESS_TARGET_POINTS, robustness_chart
from tests.helpers import metrics_of


def _metrics(arch: str, name: str, protocol: str = "grouped", **extra):
    kind = "baseline" if arch.startswith("baseline") else "ensemble" if arch == "ensemble" else "model"
    return (arch, protocol), metrics_of(arch=arch, protocol=protocol, display_name=name, kind=kind, **extra)


def test_the_detail_view_offers_the_models_first_then_the_ensemble_then_the_baselines():
    metrics = dict([_metrics("baseline_colour", "Colour statistics"), _metrics("baseline_colour", "Colour statistics", "random"),
                    _metrics("ensemble", "Ensemble"), _metrics("resnet50", "ResNet50"), _metrics("densenet121", "DenseNet121"),
                    _metrics("baseline_copy_lookup", "Copy lookup")])
    assert list(detail_choices(metrics)) == ["DenseNet121", "ResNet50", "Ensemble", "Colour statistics", "Copy lookup"]
    assert detail_choices(metrics)["Colour statistics"] == "baseline_colour"


def test_the_robustness_chart_shows_each_shifts_cost_in_points_saturating_at_the_bound():
    tables = {"clean": 0.96, "blur": 0.95, "magnification 1.6x": 0.89}
    metrics = dict([_metrics("resnet50", "ResNet50", robustness={"accuracy": tables}), _metrics("baseline_colour", "Colour")])
    by_model = robustness_by_model(metrics)
    assert by_model == {"ResNet50": tables}
    figure = robustness_chart(by_model)
    cells = figure.data[0]
    assert list(cells.y) == ["blur", "magnification 1.6x"]  # the clean row is the reference, not a row
    assert [[round(z, 6) for z in row] for row in cells.z] == [[-1.0], [-7.0]]
    assert (cells.zmin, cells.zmid, cells.zmax) == (-ROBUSTNESS_TARGET_POINTS, 0, ROBUSTNESS_TARGET_POINTS)


def test_the_training_sentence_tells_wall_minutes_from_cpu_minutes_and_names_the_served_size():
    trained = dict(history={"loss": [1.0] * 40}, train_minutes=62.9, train_cpu_minutes=115.2, input_size=160)
    assert training_sentence(metrics_of(**trained)) == "Trained for 40 epochs in 62.9 minutes (115.2 CPU minutes); served at 160 px."
    assert "CPU" not in training_sentence(metrics_of(**{**trained, "train_cpu_minutes": None}))
    assert training_sentence(metrics_of(kind="baseline")) == ""  # a baseline: nothing trained


def test_the_ensembles_caption_says_how_often_its_members_agree_and_are_then_right():
    ensemble = metrics_of(kind="ensemble", members=["a", "b", "c"],
                          all_members_agree={"share": 0.9506, "accuracy_when_agreeing": 0.9859})
    assert agreement_sentence(ensemble).startswith("Its 3 members agree on 95.1% of the test tiles and are then right on 98.6%")
    assert agreement_sentence(metrics_of(kind="ensemble", members=[])) == ""


def test_a_probability_chart_marks_the_prediction_in_its_class_colour_whatever_the_class():
    from types import SimpleNamespace

    from lungfake.classes import colour_of
    from lungfake.reports.charts import probability_chart

    benign = SimpleNamespace(probabilities={"lung_n": 0.9, "lung_aca": 0.06, "lung_scc": 0.04}, predicted="lung_n")
    colours = list(probability_chart(benign).data[0].marker.color)
    assert colours[0] == colour_of("lung_n") and colours[1] == colours[2] != colours[0]


def test_the_model_card_describes_the_ensemble_from_its_metrics_file():
    from lungfake.reports.model_card import ensemble_sentence

    ensemble = metrics_of(kind="ensemble", arch="ensemble", members=["a", "b", "c"], temperature=0.92, accuracy=0.968,
                          accuracy_ci95=[0.936, 0.992], binary_accuracy=1.0, n_test=1417,
                          all_members_agree={"share": 0.95, "accuracy_when_agreeing": 0.986})
    sentence = ensemble_sentence({("ensemble", "grouped"): ensemble})
    assert sentence.startswith("the mean of the 3 models' calibrated probabilities, then its own temperature (T = 0.92)")
    assert "accuracy 96.8% (95% CI 93.6%-99.2%)" in sentence and "agree on 95.0%" in sentence
    assert ensemble_sentence({}) is None


def test_the_detail_view_says_whether_a_model_meets_its_accuracy_target():
    model = dict(arch="resnet50", protocol="grouped", accuracy=0.970)
    assert accuracy_target_sentence(metrics_of(**model)) == " Accuracy target 97.5% on these tiles: NOT met."
    assert accuracy_target_sentence(metrics_of(**{**model, "accuracy": 0.976})).endswith(": met.")
    assert "98.0%" in accuracy_target_sentence(metrics_of(**{**model, "arch": "ensemble", "kind": "ensemble", "accuracy": 0.976}))
    assert accuracy_target_sentence(metrics_of(**{**model, "arch": "baseline_colour", "kind": "baseline"})) == ""
    assert accuracy_target_sentence(metrics_of(**{**model, "protocol": "random"})) == ""


def test_the_model_card_gives_the_subtype_rule_with_its_bound_on_unseen_families():
    from lungfake.reports.model_card import subtype_sentence

    figures = {"subtype_uncertain_share": 0.074, "called_accuracy": 0.975, "called": 2497}
    rule = {"min_margin": 0.74, "shifted_min_margin": 0.96, "val_uncertain_bound": 0.0997}
    ensemble = metrics_of(kind="ensemble", arch="ensemble", subtype={"rule": rule, "val": figures, "test": figures})
    sentence = subtype_sentence({("ensemble", "grouped"): ensemble})
    assert "under 0.74 (the largest at which, resampling validation families, the share withheld stays within 10% with 90%" in sentence
    assert "withheld on 7.4% (on unseen families, at most 10.0% with 90% confidence)" in sentence
    # a rule recorded before the bound existed says nothing of it
    earlier = metrics_of(kind="ensemble", arch="ensemble", subtype={"rule": {**rule, "val_uncertain_bound": None}, "val": figures,
                                                                    "test": figures})
    assert "unseen families, at most" not in subtype_sentence({("ensemble", "grouped"): earlier})
