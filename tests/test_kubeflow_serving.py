"""kubeflow/serving/: the TF Serving manifests parse and agree on paths, ports and the model."""

import os
import posixpath

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

MANIFESTS = os.path.join(os.path.dirname(__file__), os.pardir, "kubeflow", "serving")


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


def test_models_config_is_mounted_and_its_base_paths_are_on_the_serving_volume(manifests):
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    container, = pod["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    config_map = manifests["ConfigMap"]
    config_volume = next(name for name, v in volumes.items() if v.get("configMap", {}).get("name") ==
                         config_map["metadata"]["name"])
    config_file = flags(container)["model_config_file"]
    assert posixpath.dirname(config_file) == mounts[config_volume]
    config = text_format.Parse(config_map["data"][posixpath.basename(config_file)],
                               model_server_config_pb2.ModelServerConfig())
    serving_mount = mounts[next(name for name, v in volumes.items() if "persistentVolumeClaim" in v)]
    names = [model.name for model in config.model_config_list.config]
    assert names
    for model in config.model_config_list.config:
        assert model.base_path == posixpath.join(serving_mount, model.name)  # <serving_dir>/<model>, as pushed


def test_the_readiness_probe_asks_a_served_models_status_on_the_rest_port(manifests):
    container, = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    config = text_format.Parse(manifests["ConfigMap"]["data"]["models.config"],
                               model_server_config_pb2.ModelServerConfig())
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] in {f"/v1/models/{model.name}" for model in config.model_config_list.config}
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
