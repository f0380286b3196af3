"""kubeflow/serving/: the TF Serving manifests parse and agree with each other, and with the jobs that push to and
relabel the serving volume (kubeflow/retrain-cronjob.yaml, rollout-job.yaml), on paths, ports and the model."""

import os
import posixpath

import pytest
import yaml

from cnnpipe.serving import model_config, monitoring

KUBEFLOW = os.path.join(os.path.dirname(__file__), os.pardir, "kubeflow")
MANIFESTS = os.path.join(KUBEFLOW, "serving")


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    documents = []
    for name in sorted(os.listdir(MANIFESTS)):
        if name.endswith(".yaml"):
            with open(os.path.join(MANIFESTS, name)) as f:
                documents += [doc for doc in yaml.safe_load_all(f) if doc]
    return {doc["kind"]: doc for doc in documents}


def flags(container: dict) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])


def test_the_manifests_are_a_deployment_service_and_config_map(manifests):
    assert set(manifests) == {"Deployment", "Service", "ConfigMap"}
    container, = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving:")


def pod_volumes(pod: dict, container: dict) -> dict[str, tuple[str, dict]]:
    """Each mounted volume's mount path and source, by volume name."""
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    return {volume["name"]: (mounts[volume["name"]], volume) for volume in pod["volumes"]}


def job_pod(path: str) -> tuple[dict, dict]:
    """The pod template and container of a (Cron)Job manifest under kubeflow/."""
    with open(os.path.join(KUBEFLOW, path)) as f:
        job = yaml.safe_load(f)
    spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
    pod = spec["template"]["spec"]
    container, = pod["containers"]
    return pod, container


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("writer", ["retrain-cronjob.yaml", "rollout-job.yaml"])
def test_the_served_models_config_is_the_one_the_pusher_and_promote_write_on_the_same_volume(manifests, writer):
    """TF Serving reads <serving_dir>/models.config from the claim that `cnnpipe retrain` pushes to and `cnnpipe
    promote` relabels, mounted where their --serving-dir says, so base paths, pushes and labels reach the pods."""
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container, = pod["containers"]
    serving_mount, serving_volume = next(v for v in pod_volumes(pod, container).values()
                                         if "persistentVolumeClaim" in v[1])
    assert flags(container)["model_config_file"] == posixpath.join(serving_mount, model_config.MODELS_CONFIG)
    assert flags(container)["allow_version_labels_for_unavailable_models"] == "true"
    job, job_container = job_pod(writer)
    serving_dir = option(job_container["args"], "--serving-dir")
    job_mount, job_volume = next(v for v in pod_volumes(job, job_container).values() if v[0] == serving_dir)
    assert job_mount == serving_mount
    assert job_volume["persistentVolumeClaim"]["claimName"] == serving_volume["persistentVolumeClaim"]["claimName"]


def test_the_monitoring_config_is_mounted_and_enables_prometheus_where_the_pods_are_scraped(manifests, tmp_path):
    pod_template = manifests["Deployment"]["spec"]["template"]
    container, = pod_template["spec"]["containers"]
    config_map = manifests["ConfigMap"]
    mount, _ = next(v for v in pod_volumes(pod_template["spec"], container).values()
                    if v[1].get("configMap", {}).get("name") == config_map["metadata"]["name"])
    config_file = flags(container)["monitoring_config_file"]
    assert posixpath.dirname(config_file) == mount
    written = tmp_path / "monitoring.config"
    written.write_text(config_map["data"][posixpath.basename(config_file)])
    annotations = pod_template["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == monitoring.read_config(str(written))  # enabled, at this path
    assert annotations["prometheus.io/port"] == flags(container)["rest_api_port"]


def test_the_readiness_probe_asks_the_status_of_the_model_retrain_pushes(manifests):
    container, = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    _, retrain = job_pod("retrain-cronjob.yaml")
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == f"/v1/models/{option(retrain['args'], '--model-name')}"
    assert str(probe["port"]) == flags(container)["rest_api_port"]


def test_the_service_exposes_the_grpc_and_rest_ports_of_the_pods(manifests):
    deployment, service = manifests["Deployment"], manifests["Service"]
    container, = deployment["spec"]["template"]["spec"]["containers"]
    container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert container_ports == {"grpc": int(flags(container)["port"]), "http": int(flags(container)["rest_api_port"])}
    assert {port["targetPort"]: port["port"] for port in service["spec"]["ports"]} == container_ports
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
