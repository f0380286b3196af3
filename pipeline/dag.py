"""create_pipeline: the one place the TFX DAG is wired, from ingestion to push.

Runners (local, Kubeflow) call it; changing where the pipeline runs never touches the DAG.
"""

import dataclasses
from typing import Optional

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx.components import ExampleValidator, SchemaGen, StatisticsGen, Transform, Tuner
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.span_range_strategy import SpanRangeStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, range_config_pb2, trainer_pb2
from tfx.types import Channel, standard_artifacts

from cnnpipe.components.adversarial import AdversarialExamples
from cnnpipe.components.blessing.eval_config import EVALUATED_THRESHOLDS, eval_config, gating
from cnnpipe.components.blessing.evaluator import BlessingEvaluator
from cnnpipe.components.blessing.thresholds import Thresholds
from cnnpipe.components.embedding_index import EmbeddingIndex
from cnnpipe.components.ingestion.component import ImageExampleGen
from cnnpipe.components.ingestion.source import DataSource
from cnnpipe.components import run_record
from cnnpipe.components.push_check import PushCheck
from cnnpipe.components.pusher import AtomicPusher
from cnnpipe.components.served_model import ServedModel
from cnnpipe.components.trainer import Trainer
from cnnpipe.components.validation_gate import ValidationGate
from cnnpipe.core.errors import CnnpipeError
from cnnpipe.core.names import TRAIN, VALIDATION
from cnnpipe.models.training_config import WARM_START_LATEST, TrainingConfig
from cnnpipe.pipeline.config import PipelineConfig
from cnnpipe.pipeline.run_parameters import RunParameters
from cnnpipe.robustness.settings import AttackSettings

PREPROCESSING_FN = "cnnpipe.models.preprocessing.preprocessing_fn"
RUN_FN = "cnnpipe.models.trainer.run_fn"
TUNER_FN = "cnnpipe.models.tuning.tuner_fn"
SERVED_MODEL = "ServedModel"
CATALOG_EXAMPLE_GEN = "CatalogExampleGen"  # ingests --catalog
EVALUATOR = "Evaluator"  # BlessingEvaluator, under the id TFX's Evaluator has
# node ids a compiled Kubeflow spec never caches: what is served changes between runs, and is not known when the spec
# is compiled (the local runner caches ServedModel by its `served_state`, read at each run's start)
UNCACHED = (SERVED_MODEL,)


def _push_destination(serving_base: str) -> pusher_pb2.PushDestination:
    return pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_base))


def create_pipeline(
    name: str,
    pipeline_root: str,
    source: DataSource,
    schema_file: Optional[str],
    training: TrainingConfig,
    serving_base: str,
    *,
    eval_percent: int = 10,
    validation_percent: int = 10,
    thresholds: Thresholds = Thresholds(),
    attacks: Optional[AttackSettings] = AttackSettings(),
    keep_versions: Optional[int] = None,
    span_window: int = 1,
    accept_drift: bool = False,
    allow_duplicates: bool = False,
    search_top_k: Optional[int] = 10,
    catalog: Optional[DataSource] = None,
    tuning: Optional[tuple[int, float]] = None,
    served_state: str = "",
    run_parameters: RunParameters = RunParameters(),
    record_run: bool = False,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: tuple[str, ...] = (),
) -> Pipeline:
    """The TFX pipeline: ingest, validate, transform, train, index, attack, evaluate, push (and, with `record_run`,
    RunRecord: the run's artifacts written down for a Kubeflow run's exit step).

    With data in spans, ExampleGen ingests the newest span, which is validated and evaluated on;
    Transform and the Trainer see the newest `span_window` spans. With `attacks`, the Evaluator
    measures the candidate and the served model (ServedModel's copy of the newest version under
    `serving_base`, the baseline) on the eval images attacked with each one's own gradients too.
    Without `thresholds.compare_with_baseline` there is no ServedModel step: the blessing rests on
    the thresholds' lower bounds alone, and there is no drift check (the served model's training data's statistics
    are the reference; `accept_drift` goes on past a drift). With `search_top_k`, the candidate is the
    EmbeddingIndex's: the trained model with a `search` signature (that many neighbours) over the train and
    validation splits (or all of `catalog`, which CatalogExampleGen ingests) and its index. `run_parameters` makes
    the settings a run may be given (run_parameters.py) RuntimeParameters, for a compiled spec.
    """
    parameter = run_parameters
    example_gen = ImageExampleGen(source, eval_percent=eval_percent, validation_percent=validation_percent,
                                  input_base=parameter("data", source.input_base))
    examples = example_gen.outputs["examples"]
    span_resolvers = []  # the newest `span_window` spans' examples, this run's included
    if source.has_spans and span_window > 1:
        span_resolvers.append(Resolver(
            strategy_class=SpanRangeStrategy,
            config={"range_config": range_config_pb2.RangeConfig(
                rolling_range=range_config_pb2.RollingRange(num_spans=span_window))},
            examples=Channel(type=standard_artifacts.Examples, producer_component_id=example_gen.id),
        ).with_id("span_window_resolver"))
        span_resolvers[0].add_upstream_node(example_gen)
    training_examples = span_resolvers[0].outputs["examples"] if span_resolvers else examples
    statistics_gen = StatisticsGen(examples=examples)
    if schema_file:
        schema_gen = ImportSchemaGen(schema_file=schema_file)
    else:
        schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
    schema = schema_gen.outputs["schema"]
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema)
    compare_with_baseline = thresholds.compare_with_baseline
    if training.warm_start == WARM_START_LATEST and not compare_with_baseline:
        raise CnnpipeError("warm-starting from the served model (--warm-start latest, or retrain) needs the "
                           "baseline step: drop --no-baseline.")
    served_models = ([ServedModel(serving_base=serving_base, served_state=served_state).with_id(SERVED_MODEL)]
                     if compare_with_baseline else [])
    baseline = served_models[0].outputs["baseline"] if served_models else None
    validation_gate = ValidationGate(
        examples=examples,
        schema=schema,
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema_source=schema_file or "inferred by SchemaGen",
        class_names=list(training.class_names),
        served_statistics=served_models[0].outputs["served_statistics"] if served_models else None,
        accept_drift=accept_drift,
        allow_duplicates=allow_duplicates,
    )
    transform = Transform(
        examples=training_examples,
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={"input_shape": list(training.input_shape), "normalization": training.normalization},
    )
    transform.add_upstream_node(validation_gate)  # bad data never reaches Transform
    tuners = [Tuner(
        tuner_fn=TUNER_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=[TRAIN]),
        eval_args=trainer_pb2.EvalArgs(splits=[VALIDATION]),
        custom_config={"training": dataclasses.asdict(training), "trials": tuning[0], "minutes": tuning[1]},
    )] if tuning else []
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=trainer_pb2.TrainArgs(splits=[TRAIN]),
        eval_args=trainer_pb2.EvalArgs(splits=[VALIDATION]),  # what chooses the kept epoch; EVAL is the Evaluator's
        custom_config=dataclasses.asdict(training),
        # fn_args.base_model: the served model, for --warm-start latest
        base_model=baseline if training.warm_start == WARM_START_LATEST else None,
        hyperparameters=tuners[0].outputs["best_hyperparameters"] if tuners else None,
        epochs=parameter("epochs", training.epochs),
        learning_rate=parameter("learning_rate", training.learning_rate),
    )
    gate = thresholds if compare_with_baseline else thresholds.without_baseline()
    catalog_gens = [ImageExampleGen(catalog).with_id(CATALOG_EXAMPLE_GEN)] if catalog and search_top_k else []
    indexes = [EmbeddingIndex(
        model=trainer.outputs["model"],
        transform_graph=transform.outputs["transform_graph"],
        examples=examples,
        catalog=catalog_gens[0].outputs["examples"] if catalog_gens else None,
        baseline=baseline,
        top_k=search_top_k,
        min_precision=parameter("min_retrieval_precision", gate.min_retrieval_precision),
        max_precision_drop=parameter("max_retrieval_precision_drop", gate.max_retrieval_precision_drop),
        min_instance_recall=parameter("min_instance_recall", gate.min_instance_recall),
    )] if search_top_k else []
    candidate = indexes[0].outputs["indexed_model"] if indexes else trainer.outputs["model"]
    attacked = attacks.attacks if attacks else ()
    evaluation_config = eval_config(gate, attacked)
    run_thresholds = gating(attacked if attacks and gate.robust_epsilon in attacks.epsilons else ())
    adversarial = [AdversarialExamples(
        examples=examples,
        model=candidate,
        baseline_model=baseline,  # attacked unless its pushed metrics have the evaluation key it would have now
        attack_settings=attacks.to_json(),
        eval_config=json_format.MessageToJson(evaluation_config),  # part of the evaluation key
    )] if attacks else []
    evaluator = BlessingEvaluator(  # TFMA's thresholds, the evaluation key and the retrieval gate decide the blessing
        examples=adversarial[0].outputs["adversarial_examples"] if adversarial else examples,
        model=candidate,
        baseline_model=baseline,
        thresholds={name: parameter(name, getattr(gate, name)) if name in run_thresholds else getattr(gate, name)
                    for name in EVALUATED_THRESHOLDS},
        attacks=attacked,
        retrieval_gate=indexes[0].outputs["indexed_model"] if indexes else None,  # failed search thresholds un-bless
    ).with_id(EVALUATOR)
    push_check = PushCheck(  # the candidate served from a fresh process answers as the Evaluator measured
        model=candidate,
        model_blessing=evaluator.outputs["blessing"],
        examples=examples,
        evaluation=evaluator.outputs["evaluation"],
    )
    pusher = AtomicPusher(
        model=candidate,
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=push_check.outputs["infra_blessing"],
        push_destination=_push_destination(serving_base),
        keep_versions=parameter("keep_versions", keep_versions or 0),  # 0 keeps all
        statistics=statistics_gen.outputs["statistics"],  # pushed with the model: the next run's drift reference
        evaluation=evaluator.outputs["evaluation"],  # pushed with the model: the next run's baseline metrics
    )
    components = [
        example_gen, statistics_gen, schema_gen, example_validator, validation_gate,
        *span_resolvers, transform, *served_models, *tuners, trainer, *catalog_gens, *indexes, *adversarial,
        evaluator, push_check, pusher,
    ]
    return Pipeline(
        pipeline_name=name,
        pipeline_root=pipeline_root,
        components=[*components, run_record.record_of(components)] if record_run else components,
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )


def pipeline_for(
    config: PipelineConfig,
    name: str,
    pipeline_root: str,
    schema_file: Optional[str],
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    served_state: str = "",
    run_parameters: RunParameters = RunParameters(),
    record_run: bool = False,
) -> Pipeline:
    """`create_pipeline` with `config`'s settings; the runner chooses the name, root, schema path and metadata (and
    the local runner the served state, ServedModel's cache key; the Kubeflow runner the run parameters and the run's
    record)."""
    source = config.data_source()
    return create_pipeline(
        name=name,
        pipeline_root=pipeline_root,
        source=source,
        schema_file=schema_file,
        training=config.training_config(source.class_names),
        serving_base=config.serving_base,
        eval_percent=config.eval_percent,
        validation_percent=config.validation_percent,
        thresholds=config.checked_thresholds(),
        attacks=config.attack_settings(),
        keep_versions=config.keep_versions,
        span_window=config.span_window,
        accept_drift=config.accept_drift,
        allow_duplicates=config.allow_duplicates,
        search_top_k=config.search_top_k if config.search else None,
        catalog=config.catalog_source(),
        tuning=config.tuning(),
        served_state=served_state,
        run_parameters=run_parameters,
        record_run=record_run,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_args,
    )


def create_index_pipeline(
    name: str,
    pipeline_root: str,
    catalog: DataSource,
    serving_base: str,
    *,
    search_top_k: int = 10,
    keep_versions: Optional[int] = None,
    served_state: str = "",
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: tuple[str, ...] = (),
) -> Pipeline:
    """`cnnpipe index`: the served model (its weights, signatures and Transform output) indexed anew over
    `catalog`, checked from a fresh process and pushed as a new version, atomically like any push."""
    catalog_gen = ImageExampleGen(catalog).with_id(CATALOG_EXAMPLE_GEN)
    served = ServedModel(serving_base=serving_base, served_state=served_state).with_id(SERVED_MODEL)
    index = EmbeddingIndex(model=served.outputs["baseline"], catalog=catalog_gen.outputs["examples"],
                           top_k=search_top_k)
    push_check = PushCheck(model=index.outputs["indexed_model"], examples=catalog_gen.outputs["examples"])
    pusher = AtomicPusher(model=index.outputs["indexed_model"], infra_blessing=push_check.outputs["infra_blessing"],
                          push_destination=_push_destination(serving_base), keep_versions=keep_versions,
                          # the served weights' training data, carried on
                          statistics=served.outputs["served_statistics"])
    return Pipeline(
        pipeline_name=name,
        pipeline_root=pipeline_root,
        components=[catalog_gen, served, index, push_check, pusher],
        enable_cache=True,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
