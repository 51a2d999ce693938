"""clusters.cloud.platform and the mlops section: one good and at least one bad case per rule, each with its path."""
import copy

import pytest
import yaml
from helpers import assert_issue, issues_of, load_yaml, repo_path

from ansible_collections.aihow.hyperscaler.plugins.module_utils.config import model as cm


@pytest.fixture
def lab():
    """config/mlops.yml: HPC (2 compute) + cloud (control plane, 1 CPU worker), mlops with its defaults."""
    return load_yaml("config", "mlops.yml")


@pytest.fixture
def ws():
    """config/workstation.yml: 4 GPU compute nodes, a CPU and 3 GPU cloud workers."""
    return load_yaml("config", "workstation.yml")


def mlops_of(raw):
    return cm.build_cluster_config(copy.deepcopy(raw)).data["mlops"]


# ----------------------------------------------------------------- platform

def test_platform_defaults_to_systemd(lab):
    del lab["clusters"]["cloud"]["platform"]
    assert cm.build_cluster_config(lab).data["clusters"]["cloud"]["platform"] == "systemd"


def test_kubernetes_is_a_valid_choice_of_the_model(lab):
    # The playbooks stop on it (playbooks/validate.yml); the config model accepts it, kubernetes_config too.
    lab["clusters"]["cloud"]["platform"] = "kubernetes"
    lab["clusters"]["cloud"]["kubernetes_config"] = {"cni": "cilium"}
    assert issues_of(lab) == []


def test_an_unknown_platform(lab):
    lab["clusters"]["cloud"]["platform"] = "k8s"
    assert_issue(lab, "clusters.cloud.platform", "'k8s' is not allowed", "systemd, kubernetes")


# ----------------------------------------------------------------- the template and the defaults

def test_the_template_fits_this_machine(lab):
    config = cm.build_cluster_config(lab)
    assert [n.name for n in config.nodes] == ["hpc-controller", "hpc-compute-01", "hpc-compute-02",
                                              "cloud-control-plane", "cloud-cpu-worker-01"]
    assert sum(n.cpu_cores for n in config.nodes) <= 2 * 4 and sum(n.memory_gb for n in config.nodes) <= 24 - 2
    assert not any(n.gpu_enabled for n in config.nodes) and config.plan["devices"] == []


def test_an_empty_mlops_section_gets_every_default(lab):
    lab["mlops"] = {}
    mlops = mlops_of(lab)
    finetune = mlops.pop("finetune")  # mlops.finetune: tests/unit/plugins/module_utils/config/test_finetune.py
    assert finetune["enabled"] is False
    assert mlops == {
        "experiment": "digits", "credentials_dir": "/var/lib/aihow-hyperscaler/credentials",
        "tracking": {"port": 5000, "artifacts": {"store": "local", "path": "/var/lib/mlflow/artifacts"}},
        "database": {"port": 5432, "name": "mlflow", "user": "mlflow"},
        "serving": {"port": 8080, "models": [{"name": "digits-cnn", "alias": "champion"}]},
        "allowed_networks": ["hpc_network"],
        "training": {"model_name": "digits-cnn", "nodes": 2, "epochs": 20, "batch_size": 64, "learning_rate": 0.002,
                     "min_accuracy": 0.95},
        "promotion": {"min_accuracy": 0.95, "alias": "champion"},
    }
    # ... which are what the template writes out
    assert dict(mlops, finetune=finetune) == mlops_of(load_yaml("config", "mlops.yml"))


def test_without_an_hpc_cluster_there_is_no_training_and_no_network_to_allow(ws):
    del ws["clusters"]["hpc"]
    ws["global"]["gpu_allocation"]["mig_slices"] = {"cloud": 3}
    ws["mlops"] = {}
    mlops = mlops_of(ws)
    assert "training" not in mlops and mlops["allowed_networks"] == []


def test_training_and_promotion_follow_the_served_models(lab):
    lab["mlops"] = {"serving": {"models": [{"name": "mnist-mlp", "alias": "prod"}, {"name": "digits-cnn"}]},
                    "training": {"model_name": "digits-cnn"}}
    mlops = mlops_of(lab)
    assert mlops["promotion"]["alias"] == "champion"  # the alias of the training's model
    del lab["mlops"]["training"]
    mlops = mlops_of(lab)
    assert mlops["training"]["model_name"] == "mnist-mlp" and mlops["promotion"]["alias"] == "prod"


def test_store_s3_has_no_local_path(lab):
    lab["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": "https://s3.example", "s3_bucket": "ml-art"}
    assert issues_of(lab) == []
    assert "path" not in mlops_of(lab)["tracking"]["artifacts"]
    # written, even as the default directory, it is refused
    lab["mlops"]["tracking"]["artifacts"]["path"] = "/var/lib/mlflow/artifacts"
    assert_issue(lab, "mlops.tracking.artifacts.path", "is for store local only")


def test_training_nodes_left_out_fit_a_one_node_partition(lab):
    compute = lab["clusters"]["hpc"]["compute_nodes"]
    compute.update(count=1, ip_range="192.168.100.11")
    del lab["mlops"]["training"]["nodes"]
    assert mlops_of(lab)["training"]["nodes"] == 1
    lab["mlops"]["training"] = {}
    assert mlops_of(lab)["training"]["nodes"] == 1
    compute.update(count=2, ip_range="192.168.100.11-12")
    assert mlops_of(lab)["training"]["nodes"] == 2  # the schema's default
    compute.update(count=1, ip_range="192.168.100.11")
    lab["mlops"]["training"]["nodes"] = 2  # written: a problem to fix, not a value to change
    assert_issue(lab, "mlops.training.nodes", "asks for 2 nodes, and the HPC cluster has 1 compute node")


def test_training_model_name_left_out_follows_the_served_models(lab):
    lab["mlops"]["serving"]["models"] = [{"name": "mnist-mlp"}]
    del lab["mlops"]["training"]["model_name"]
    assert mlops_of(lab)["training"]["model_name"] == "mnist-mlp"
    lab["mlops"]["training"]["model_name"] = "digits-cnn"  # written: it must be served
    assert_issue(lab, "mlops.training.model_name", "'digits-cnn' is not one of mlops.serving.models (mnist-mlp)")


# ----------------------------------------------------------------- where mlops may be

def test_mlops_needs_the_cloud_cluster(lab):
    del lab["clusters"]["cloud"]
    del lab["global"]["networks"]["cloud_network"]
    found = assert_issue(lab, "mlops", "clusters.cloud is not defined", "leave mlops out")
    assert len(found) == 1


def test_training_needs_the_hpc_cluster(ws):
    del ws["clusters"]["hpc"]
    ws["global"]["gpu_allocation"]["mig_slices"] = {"cloud": 3}
    ws["mlops"]["allowed_networks"] = []
    assert_issue(ws, "mlops.training", "runs on the HPC cluster (Slurm)", "clusters.hpc is not defined",
                 "leave mlops.training out")


def test_a_minimal_lab_without_mlops_is_unchanged():
    data = cm.build_cluster_config(load_yaml("config", "minimal.yml")).data
    assert "mlops" not in data


# ----------------------------------------------------------------- ports

@pytest.mark.parametrize("field", ["tracking.port", "database.port", "serving.port"])
@pytest.mark.parametrize("port", [80, 1023, 65536])
def test_ports_are_unprivileged(lab, field, port):
    section, key = field.split(".")
    lab["mlops"][section][key] = port
    assert_issue(lab, "mlops.%s" % field, "%d is out of range" % port, "between 1024 and 65535")


def test_ports_differ_from_each_other(lab):
    lab["mlops"]["database"]["port"] = 5000
    assert_issue(lab, "mlops.database.port", "5000 is also mlops.tracking.port (MLflow); every service needs its own port")
    lab["mlops"]["database"]["port"] = 5432
    lab["mlops"]["serving"]["port"] = 5432
    assert_issue(lab, "mlops.serving.port", "5432 is also mlops.database.port (PostgreSQL)")


def test_ports_differ_from_node_exporter_while_monitoring_runs(lab):
    lab["mlops"]["serving"]["port"] = 9100
    assert_issue(lab, "mlops.serving.port", "9100 is also monitoring.node_exporter_port (node exporter, its default)")
    lab["mlops"]["serving"]["port"] = 8080
    lab["monitoring"] = {"node_exporter_port": 8080}
    assert_issue(lab, "mlops.serving.port", "8080 is also monitoring.node_exporter_port (node exporter)")
    del lab["mlops"]["serving"]["port"]
    assert_issue(lab, "monitoring.node_exporter_port", "8080 is also mlops.serving.port (the model servers, its default)")
    lab["monitoring"]["enabled"] = False
    assert issues_of(lab) == []


def test_a_port_clash_is_told_where_the_file_sets_a_port(lab):
    # tracking.port comes first but keeps its default here: the port the file moved is the one to change.
    lab["mlops"]["database"]["port"] = 5000
    del lab["mlops"]["tracking"]["port"]
    assert_issue(lab, "mlops.database.port", "5000 is also mlops.tracking.port (MLflow, its default)")
    lab["mlops"]["tracking"]["port"] = 5432
    del lab["mlops"]["database"]["port"]
    found = assert_issue(lab, "mlops.tracking.port", "5432 is also mlops.database.port (PostgreSQL, its default)")
    assert len(found) == 1


# ----------------------------------------------------------------- artifacts

def test_s3_settings_need_store_s3(lab):
    lab["mlops"]["tracking"]["artifacts"].update(s3_endpoint="http://minio.example:9000", s3_bucket="mlflow")
    found = issues_of(lab)
    for key in ("s3_endpoint", "s3_bucket"):
        assert ("mlops.tracking.artifacts.%s" % key,
                "is for store s3 only, and store is local: set store: s3, or leave %s out" % key) in found


def test_store_s3_requires_endpoint_and_bucket_and_takes_no_path(lab):
    lab["mlops"]["tracking"]["artifacts"]["store"] = "s3"
    found = issues_of(lab)
    assert ("mlops.tracking.artifacts.s3_endpoint", "is required with store s3 (e.g. http://minio.example:9000)") in found
    assert ("mlops.tracking.artifacts.s3_bucket", "is required with store s3 (e.g. mlflow)") in found
    assert ("mlops.tracking.artifacts.path", "is for store local only; with store s3 the artifacts go to s3_bucket: "
            "leave path out") in found


@pytest.mark.parametrize("path, fragment", [
    ("mlflow/artifacts", "an absolute directory"),
    ("~/artifacts", "an absolute directory"),
    ("/", "must name a directory of its own"),
    ("/var/lib/../../etc", "must name a directory of its own"),
])
def test_the_local_path_is_an_absolute_directory(lab, path, fragment):
    lab["mlops"]["tracking"]["artifacts"]["path"] = path
    assert_issue(lab, "mlops.tracking.artifacts.path", fragment)


@pytest.mark.parametrize("url, fragment", [
    ("minio.example:9000", "not an http(s) URL"),
    ("ftp://minio.example", "not an http(s) URL"),
    ("http://", "does not name a host"),
    ("http://user:pw@minio.example", "does not name a host"),
    ("http://minio.example:99999", "is not a URL"),
    ("http://minio.example:0", "has port 0"),
    ("http://minio.example/bucket", "has a path, query or fragment"),
    ("http://min io.example", "does not name a host"),
])
def test_the_s3_endpoint_is_an_http_url(lab, url, fragment):
    lab["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": url, "s3_bucket": "mlflow"}
    assert_issue(lab, "mlops.tracking.artifacts.s3_endpoint", fragment, "http(s)://host[:port]")


@pytest.mark.parametrize("url", ["http://minio.example:9000", "https://s3.eu-west-1.amazonaws.com", "http://10.0.0.5/"])
def test_good_s3_endpoints(lab, url):
    lab["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": url, "s3_bucket": "ml.artifacts-1"}
    assert issues_of(lab) == []


@pytest.mark.parametrize("bucket", ["ab", "MLflow", "-mlflow", "mlflow-", "ml..flow", "ml_flow", "192.168.1.1"])
def test_the_s3_bucket_follows_the_s3_rules(lab, bucket):
    lab["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": "http://minio.example:9000",
                                             "s3_bucket": bucket}
    assert_issue(lab, "mlops.tracking.artifacts.s3_bucket", "not a valid S3 bucket name", "3-63 of a-z")


def test_an_s3_bucket_name_is_bounded(lab):
    lab["mlops"]["tracking"]["artifacts"] = {"store": "s3", "s3_endpoint": "http://m:9000", "s3_bucket": "a" * 64}
    assert_issue(lab, "mlops.tracking.artifacts.s3_bucket", "is 64 characters long; at most 63 are allowed")


# ----------------------------------------------------------------- serving

def test_workers_must_be_cloud_workers(ws):
    ws["mlops"]["serving"]["models"][0]["workers"] = ["cloud-gpu-worker-01", "cloud-gpu-worker-09", "hpc-compute-01"]
    assert_issue(ws, "mlops.serving.models[0].workers", "'cloud-gpu-worker-09', 'hpc-compute-01' are not a cloud worker",
                 "the cloud workers are: cloud-cpu-worker-01, cloud-gpu-worker-01, cloud-gpu-worker-02, "
                 "cloud-gpu-worker-03")


def test_the_list_of_valid_workers_is_cut_short(ws):
    workers = ws["clusters"]["cloud"]["worker_nodes"]["cpu_workers"]
    workers.update(count=40, ip_range="192.168.200.100-139")
    ws["mlops"]["serving"]["models"][0]["workers"] = ["cloud-cpu-worker-99"]
    found = assert_issue(ws, "mlops.serving.models[0].workers", "'cloud-cpu-worker-99' is not a cloud worker",
                         "cloud-cpu-worker-12 and 31 more")
    assert len(dict(found)["mlops.serving.models[0].workers"]) < 400


def test_a_worker_lists_no_worker_twice(ws):
    ws["mlops"]["serving"]["models"][0]["workers"] = ["cloud-gpu-worker-01", "cloud-gpu-worker-01"]
    assert_issue(ws, "mlops.serving.models[0].workers", "has duplicate entries")


def test_a_worker_serves_a_model_under_one_alias(ws):
    models = ws["mlops"]["serving"]["models"]
    models.append({"name": "digits-cnn", "alias": "challenger", "workers": ["cloud-gpu-worker-02"]})
    assert_issue(ws, "mlops.serving.models[1].name", "'digits-cnn' is also served on cloud-gpu-worker-02 by "
                 "serving.models[0]", "give the entries different workers")
    # on workers of their own, two aliases of one model are fine
    models[0]["workers"] = ["cloud-cpu-worker-01"]
    assert issues_of(ws) == []


def test_at_least_one_and_at_most_64_models(lab):
    lab["mlops"]["serving"]["models"] = []
    assert_issue(lab, "mlops.serving.models", "must not be empty")
    lab["mlops"]["serving"]["models"] = [{"name": "m%d" % i} for i in range(65)]
    assert_issue(lab, "mlops.serving.models", "has 65 entries; at most 64 are allowed")


@pytest.mark.parametrize("name, fragment", [
    ("digits/cnn", "MLflow refuses /"),
    ("digits:cnn", "MLflow refuses :"),
    ("digits%20cnn", "MLflow refuses %"),
    ("digits.cnn", "MLflow refuses ."),
    ("it's", "MLflow refuses '"),
    ("", "is empty"),
    ("-digits", "starting with a letter or digit"),
    ("digits cnn", "use 1-64 letters, digits, _ and -"),
    ("\u00e9t\u00e9", "use 1-64 letters, digits, _ and -"),
])
def test_model_names_mlflow_would_refuse(lab, name, fragment):
    lab["mlops"]["serving"]["models"][0]["name"] = name
    lab["mlops"]["training"]["model_name"] = name
    found = assert_issue(lab, "mlops.serving.models[0].name", fragment)
    assert ("mlops.training.model_name", dict(found)["mlops.serving.models[0].name"]) in found


def test_a_model_name_is_bounded(lab):
    lab["mlops"]["serving"]["models"][0]["name"] = "m" * 65
    assert_issue(lab, "mlops.serving.models[0].name", "is 65 characters long; at most 64 are allowed")


@pytest.mark.parametrize("alias, fragment", [
    ("latest", "'latest' is reserved by MLflow"),
    ("LATEST", "'LATEST' is reserved by MLflow"),
    ("v3", "'v3' is reserved by MLflow: v<digits> names a model version"),
    ("V12", "'V12' is reserved by MLflow"),
    ("prod line", "is not an MLflow alias"),
    ("prod@1", "is not an MLflow alias"),
    ("", "is empty"),
])
def test_aliases_mlflow_would_refuse(lab, alias, fragment):
    lab["mlops"]["serving"]["models"][0]["alias"] = alias
    lab["mlops"]["promotion"]["alias"] = alias
    assert_issue(lab, "mlops.serving.models[0].alias", fragment)
    assert_issue(lab, "mlops.promotion.alias", fragment)


@pytest.mark.parametrize("alias", ["champion", "v", "v1x", "version-2", "1", "_staging", "A-B_c"])
def test_aliases_mlflow_takes(lab, alias):
    lab["mlops"]["serving"]["models"][0]["alias"] = alias
    assert issues_of(lab) == []


# ----------------------------------------------------------------- networks

def test_allowed_networks_are_networks_of_the_file(lab):
    lab["mlops"]["allowed_networks"] = ["hpc_network", "office"]
    assert_issue(lab, "mlops.allowed_networks[1]", "'office' is not a network of global.networks",
                 "defined: cloud_network, hpc_network")


def test_the_training_job_needs_the_hpc_network(lab):
    lab["mlops"]["allowed_networks"] = []
    assert_issue(lab, "mlops.allowed_networks", "the training job runs on the HPC cluster and logs to MLflow",
                 "add hpc_network")
    # on one network with the cloud cluster, nothing needs allowing
    lab["clusters"]["hpc"]["network"] = "cloud_network"
    lab["clusters"]["hpc"]["controller"]["ip_address"] = "192.168.200.20"
    lab["clusters"]["hpc"]["compute_nodes"]["ip_range"] = "192.168.200.21-22"
    assert issues_of(lab) == []


def test_allowed_networks_are_bounded_and_unique(lab):
    lab["mlops"]["allowed_networks"] = ["hpc_network", "hpc_network"]
    assert_issue(lab, "mlops.allowed_networks", "has duplicate entries")


# ----------------------------------------------------------------- training and promotion

def test_the_training_model_is_served(lab):
    lab["mlops"]["training"]["model_name"] = "mnist-mlp"
    assert_issue(lab, "mlops.training.model_name", "'mnist-mlp' is not one of mlops.serving.models (digits-cnn)",
                 "name one of them, or add it there")


def test_training_nodes_fit_the_hpc_cluster(lab):
    lab["mlops"]["training"]["nodes"] = 3
    assert_issue(lab, "mlops.training.nodes", "asks for 3 nodes, and the HPC cluster has 2 compute nodes",
                 "set nodes to at most 2")


def test_training_nodes_fit_the_default_partition(lab):
    lab["clusters"]["hpc"]["slurm_config"]["partitions"] = [{"name": "small", "nodes": ["hpc-compute-02"]}, "compute"]
    lab["clusters"]["hpc"]["slurm_config"]["default_partition"] = "small"
    assert_issue(lab, "mlops.training.nodes", "the default Slurm partition 'small', which has 1 of the 2 compute nodes",
                 "set nodes to at most 1")
    lab["mlops"]["training"]["nodes"] = 1
    assert issues_of(lab) == []


@pytest.mark.parametrize("field", ["training.min_accuracy", "promotion.min_accuracy"])
@pytest.mark.parametrize("value", [0, -0.5, 1.01, 95])
def test_accuracies_are_fractions(lab, field, value):
    section, key = field.split(".")
    lab["mlops"][section][key] = value
    assert_issue(lab, "mlops.%s" % field, "is out of range; must be greater than 0 and at most 1")


@pytest.mark.parametrize("field", ["training.min_accuracy", "promotion.min_accuracy"])
def test_an_accuracy_of_one_is_fine(lab, field):
    section, key = field.split(".")
    lab["mlops"][section][key] = 1
    assert issues_of(lab) == []


@pytest.mark.parametrize("key, value, fragment", [
    ("nodes", 0, "between 1 and 4096"), ("epochs", 0, "between 1 and 10000"), ("batch_size", 2.0, "write 2"),
    ("learning_rate", 0, "greater than 0 and at most 10"), ("learning_rate", "fast", "must be of type number"),
])
def test_training_settings_have_bounds(lab, key, value, fragment):
    lab["mlops"]["training"][key] = value
    assert_issue(lab, "mlops.training.%s" % key, fragment)


def test_an_empty_experiment_name(lab):
    lab["mlops"]["experiment"] = "  "
    assert_issue(lab, "mlops.experiment", "is empty; name the MLflow experiment")


@pytest.mark.parametrize("key, value", [("name", "MLflow"), ("name", "1db"), ("user", "ml-flow"), ("user", "")])
def test_database_identifiers(lab, key, value):
    lab["mlops"]["database"][key] = value
    assert_issue(lab, "mlops.database.%s" % key, "is not valid", "a-z, 0-9 and _")


def test_credentials_dir_is_absolute(lab):
    lab["mlops"]["credentials_dir"] = "credentials"
    assert_issue(lab, "mlops.credentials_dir", "'credentials' is not valid", "on the Ansible controller")


def test_unknown_keys_get_a_hint(lab):
    lab["mlops"]["serving"]["models"][0]["aliases"] = ["x"]
    lab["mlops"]["trainig"] = {}
    assert_issue(lab, "mlops.serving.models[0].aliases", "did you mean 'alias'?")
    assert_issue(lab, "mlops.trainig", "did you mean 'training'?")


# ----------------------------------------------------------------- from a file: lines, no traceback

def test_issues_name_their_line():
    text = open(repo_path("config", "mlops.yml")).read().replace("nodes: 2, epochs", "nodes: 5, epochs")
    with pytest.raises(cm.ConfigError) as exc:
        cm.parse_cluster_config(text, "mlops.yml")
    (issue,) = exc.value.issues
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "nodes: 5, epochs" in l)
    assert (issue.path, issue.line) == ("mlops.training.nodes", line)
    assert str(issue).startswith("mlops.training.nodes (line %d): asks for 5 nodes" % line)


@pytest.mark.parametrize("value", [None, [], "yes", 5, {"tracking": None}, {"serving": {"models": [None]}},
                                   {"serving": {"models": [{"alias": "x"}]}}, {"training": []},
                                   {"tracking": {"artifacts": {"store": "gcs"}}}, {"allowed_networks": [None, 1]},
                                   {"serving": {"models": [{"name": 5, "alias": None, "workers": "all"}]}}])
def test_a_malformed_section_is_reported_not_a_traceback(lab, value):
    lab["mlops"] = value
    found = issues_of(lab)
    assert found and all(path.startswith("mlops") for path, _msg in found), found


def test_the_template_inventory_source_names_the_template():
    with open(repo_path("config", "inventory.mlops.cluster.yml")) as handle:
        assert yaml.safe_load(handle) == {"plugin": "aihow.hyperscaler.cluster", "config": "mlops.yml"}
