"""The hyperparameters a group may set per algorithm (``training.algorithm_params``), with their ranges.

Amazon Forecast takes ``TrainingParameters`` per algorithm and refuses values outside each one's
documented range; so do these models, before anything is trained: an unknown algorithm, an
unknown hyperparameter or a value out of range is a settings error naming
``training.algorithm_params.<algorithm>.<key>``. Ranges follow Forecast's algorithm pages where
it documents one (DeepAR+'s epochs 1-1000, num_cells 30-200, num_layers 1-9, context_length up to
500; NPTS's kernels), and the algorithm's own limits elsewhere. The run's workers, seed, metric,
forecast types and backtest windows come from the training settings, not from here.

These models are also where the algorithms declare their hyperparameters: a constructor takes the
fields of its ``hyperparameter_model`` (base.ForecastAlgorithm), validated by it. Where an
algorithm takes more than settings files may ask for (DeepAR+ trains with fewer cells than
Forecast's 30), its model holds its own limits (``DeepARLimits``) and ``narrowed`` derives the
settings' model from it, so each hyperparameter's type and default are declared once.

Only pydantic is imported: settings (and so DAG files, at parse time) load this module.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipelines import domains as d


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def given(self) -> dict[str, Any]:
        """The values the settings set (the algorithm's own defaults stand for the rest)."""
        return self.model_dump(exclude_unset=True)


class SeasonalNaiveParams(Hyperparameters):
    season_length: int | None = Field(None, ge=1, le=10_000)
    num_samples: int = Field(1000, ge=1, le=10_000)


class ETSParams(Hyperparameters):
    model: str = Field("ZZZ", pattern=r"^[ZAM][ZAN][ZANM]$")  # error, trend, season (R's forecast::ets)
    damped: bool | None = None
    season_length: int | None = Field(None, ge=1, le=10_000)
    estimate_initial_states: bool = True
    simulations: int = Field(1000, ge=1, le=100_000)


class ThetaParams(Hyperparameters):
    theta: float = Field(2.0, ge=1.0, le=100.0)  # STM and DSTM's theta; OTM and DOTM estimate their own
    season_length: int | None = Field(None, ge=1, le=10_000)
    deseasonalize: bool = True
    model: Literal["STM", "OTM", "DSTM", "DOTM", "auto"] = "auto"


class ARIMAParams(Hyperparameters):
    season_length: int | None = Field(None, ge=1, le=10_000)
    seasonal: bool = True
    max_season_length: int = Field(24, ge=1, le=400)
    fourier_terms: int = Field(3, ge=0, le=20)
    max_p: int = Field(5, ge=0, le=10)
    max_q: int = Field(5, ge=0, le=10)
    max_P: int = Field(2, ge=0, le=4)
    max_Q: int = Field(2, ge=0, le=4)
    max_order: int = Field(5, ge=0, le=20)
    max_d: int = Field(2, ge=0, le=2)
    max_D: int = Field(1, ge=0, le=1)
    max_models: int = Field(94, ge=1, le=1000)
    information_criterion: Literal["aicc", "aic", "bic"] = "aicc"
    method: Literal["CSS-ML", "ML", "CSS"] = "CSS-ML"
    use_related: bool = True
    order: tuple[int, int, int] | None = None
    seasonal_order: tuple[int, int, int] | None = None


class NPTSLimits(Hyperparameters):
    """What NPTS forecasts with; settings files cap num_samples (NPTSParams)."""

    context_length: int | None = Field(None, ge=1, le=100_000)
    kernel_type: Literal["exponential", "uniform"] = "exponential"
    exp_kernel_weights: float = Field(1.0, gt=0, le=100.0)
    use_seasonal_model: bool = True
    num_samples: int = Field(100, ge=1)
    feature_scale: float = Field(1000.0, gt=0)


class ProphetParams(Hyperparameters):
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")  # usually from the group's holidays_country
    changepoint_prior_scale: float = Field(0.05, gt=0, le=10.0)
    seasonality_prior_scale: float = Field(10.0, gt=0, le=100.0)
    holidays_prior_scale: float = Field(10.0, gt=0, le=100.0)
    seasonality_mode: Literal["additive", "multiplicative"] = "additive"
    changepoint_range: float = Field(0.8, gt=0, le=1.0)
    n_changepoints: int = Field(25, ge=0, le=200)
    yearly_seasonality: bool | int | Literal["auto"] = "auto"
    weekly_seasonality: bool | int | Literal["auto"] = "auto"
    daily_seasonality: bool | int | Literal["auto"] = "auto"
    num_samples: int = Field(1000, ge=1, le=10_000)
    use_related: bool = True


class DeepARLimits(Hyperparameters):
    """What DeepAR+ trains with; settings files take Forecast's narrower ranges (DeepARParams)."""

    context_length: int | None = Field(None, ge=1)
    epochs: int = Field(100, ge=1)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    learning_rate_decay: float = Field(0.5, gt=0, le=1.0)
    max_learning_rate_decays: int = Field(0, ge=0)
    num_layers: int = Field(2, ge=1)
    num_cells: int = Field(40, ge=1)
    likelihood: Literal["student-t", "gaussian", "negative-binomial"] = "student-t"
    dropout_rate: float = Field(0.1, ge=0.0, lt=1.0)
    batch_size: int = Field(64, ge=1)
    num_batches_per_epoch: int = Field(50, ge=1)
    num_samples: int = Field(100, ge=1)
    num_averaged_models: int = Field(1, ge=1, le=5)
    use_related_data: bool = True
    use_item_metadata: bool = True


class CNNQRLimits(Hyperparameters):
    """What CNN-QR trains with; settings files take narrower ranges (CNNQRParams)."""

    context_length: int | None = Field(None, ge=1, le=500)
    use_related_data: Literal["ALL", "NONE", "HISTORICAL", "FORWARD_LOOKING"] = "ALL"
    use_item_metadata: Literal["ALL", "NONE"] = "ALL"
    epochs: int = Field(100, ge=1, le=1000)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    num_batches_per_epoch: int = Field(50, ge=1)
    channels: int = Field(32, ge=1)
    dropout_rate: float = Field(0.1, ge=0.0, lt=1.0)


def narrowed(model: type[Hyperparameters], **ranges: tuple[float | None, float | None]) -> type[Hyperparameters]:
    """``model`` for settings files: each named field also takes its range ``(low, high)``, both
    inclusive (None: the model's own bound), on top of the model's; types and defaults stay."""
    fields = {}
    for name, (low, high) in ranges.items():
        field = model.model_fields[name]
        annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        fields[name] = (annotation, Field(field.default, ge=low, le=high))
    name = model.__name__.removesuffix("Limits") + "Params"
    return create_model(name, __base__=model, __module__=__name__, **fields)


# Forecast's documented ranges, and caps on what one run may cost; the algorithms take more (the
# tests train DeepAR+ with 4 to 16 cells, NPTS with 20,000 samples).
DeepARParams = narrowed(
    DeepARLimits,
    context_length=(None, 500),
    epochs=(None, 1000),
    learning_rate=(1e-5, 0.2),
    max_learning_rate_decays=(None, 100),
    num_layers=(None, 9),
    num_cells=(30, 200),
    batch_size=(None, 4096),
    num_batches_per_epoch=(None, 10_000),
    num_samples=(None, 10_000),
)
CNNQRParams = narrowed(
    CNNQRLimits,
    learning_rate=(1e-5, 0.2),
    batch_size=(None, 4096),
    num_batches_per_epoch=(None, 10_000),
    channels=(4, 256),
)
NPTSParams = narrowed(NPTSLimits, num_samples=(None, 10_000))


SINGLE_ALGORITHMS = tuple(a for a in d.FORECAST_ALGORITHMS if a != "AutoPredictor")


class AutoPredictorParams(Hyperparameters):
    candidates: list[Literal[SINGLE_ALGORITHMS]] | None = Field(None, min_length=1)  # type: ignore[valid-type]
    top_k: int = Field(3, ge=1, le=len(SINGLE_ALGORITHMS))
    time_limit: float | None = Field(None, gt=0)
    calibrate_intervals: bool = True
    selection: Literal["blend", "best"] = "blend"
    item_share: float = Field(0.5, ge=0.0, le=1.0)
    # The backtest windows it chooses on: the group's backtest_windows unless given; null: as many
    # as keep within 5 % of the median history (auto_predictor.selection_windows).
    windows: int | None = Field(None, ge=1, le=5)


MODELS: dict[str, type[Hyperparameters]] = {
    "SeasonalNaive": SeasonalNaiveParams,
    "ETS": ETSParams,
    "Theta": ThetaParams,
    "ARIMA": ARIMAParams,
    "NPTS": NPTSParams,
    "Prophet": ProphetParams,
    "DeepAR+": DeepARParams,
    "CNN-QR": CNNQRParams,
    "AutoPredictor": AutoPredictorParams,
}


def check(algorithm_params: dict[str, dict]) -> dict[str, dict]:
    """The settings' ``algorithm_params`` checked against each algorithm's model; only the given values.

    Raises ValueError naming each bad ``<algorithm>.<key>`` and the rule it breaks.
    """
    from pydantic import ValidationError

    unknown = sorted(set(algorithm_params) - set(MODELS))
    if unknown:
        raise ValueError(f"no algorithm named {unknown}; algorithm_params takes {', '.join(MODELS)}")
    checked, problems = {}, []
    for name, values in algorithm_params.items():
        model = MODELS[name]
        if not isinstance(values, dict):
            problems.append(f"{name}: expected a mapping of hyperparameters, got {type(values).__name__}")
            continue
        try:
            checked[name] = model.model_validate(values).given()
        except ValidationError as error:
            for e in error.errors():
                key = ".".join(str(p) for p in e["loc"])
                rule = e["msg"]
                if e["type"] == "extra_forbidden":
                    rule = f"unknown hyperparameter; {name} takes {', '.join(model.model_fields)}"
                problems.append(f"{name}.{key}: {rule}")
    if problems:
        raise ValueError("; ".join(problems))
    return checked
