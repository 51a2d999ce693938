"""hyperscaler_model_server.py's pure parts: arguments, the model URI, v2 and v1 payload validation."""
import pytest

ENV = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
BASE = ["--model-name", "digits-cnn", "--model-uri", "models:/digits-cnn@champion"]


def test_arguments(server):
    args = server.parse_args(BASE, ENV)
    assert (args.registered_name, args.alias, args.version) == ("digits-cnn", "champion", None)
    assert (args.http_port, args.grpc_port, args.host, args.max_batch, args.workers) == (8080, None, "0.0.0.0", 1024, 1)
    args = server.parse_args(["--model-name", "m", "--model-uri", "models:/other/7", "--host", "127.0.0.1",
                              "--grpc-port", "8081"], ENV)
    assert (args.registered_name, args.alias, args.version, args.host, args.grpc_port) == ("other", None, "7", "127.0.0.1", 8081)


@pytest.mark.parametrize("argv, env, fragment", [
    (["--model-name", "m", "--model-uri", "runs:/abc/model"], ENV, "is not models:/NAME@ALIAS or models:/NAME/VERSION"),
    (["--model-name", "m", "--model-uri", "models:/m@"], ENV, "--model-uri"),
    (["--model-name", "a/b", "--model-uri", "models:/m@x"], ENV, "--model-name: 'a/b' is not a model name"),
    (BASE, {}, "set MLFLOW_TRACKING_URI or pass --tracking-uri"),
    (BASE + ["--grpc-port", "8080"], ENV, "--grpc-port: 8080 is the HTTP port too"),
    (BASE + ["--workers", "2"], ENV, "--workers: invalid choice: 2"),
    (BASE + ["--http-port", "0"], ENV, "--http-port: 0 is not a port"),
])
def test_bad_arguments_exit_2_with_one_line(server, capsys, argv, env, fragment):
    with pytest.raises(SystemExit) as err:
        server.parse_args(argv, env)
    assert err.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hyperscaler_model_server: error: ") and fragment in lines[0]


@pytest.mark.parametrize("uri, parsed", [
    ("models:/digits-cnn@champion", ("digits-cnn", "champion", None)),
    ("models:/digits-cnn@champion-previous", ("digits-cnn", "champion-previous", None)),
    ("models:/m/12", ("m", None, "12")),
])
def test_model_uris(server, uri, parsed):
    assert server.parse_model_uri(uri) == parsed


@pytest.mark.parametrize("uri", ["models:/m/0", "models:/m", "models:/m@a@b", "models:/m-abc123", "", None])
def test_bad_model_uris(server, uri):
    with pytest.raises(ValueError):
        server.parse_model_uri(uri)


def test_v2_input_that_fits(server):
    assert server.check_v2_input("pixels", "FP32", [3, 64], 64, 1024) == 3
    assert server.check_v2_input("x", "FP32", [1024, 64], 64, 1024) == 1024
    assert server.check_v2_request([("x", "FP32", [2, 784], None)], 784, 8) == ("x", 2)


@pytest.mark.parametrize("datatype, shape, fragment", [
    ("INT32", [1, 64], "datatype 'INT32', expected FP32"),
    ("FP64", [1, 64], "expected FP32"),
    ("FP32", [64], "shape [64], expected [N, 64]"),
    ("FP32", [1, 8, 8], "shape [1, 8, 8], expected [N, 64]"),
    ("FP32", [1, 63], "shape [1, 63], expected [N, 64] (64 pixel values per image)"),
    ("FP32", [0, 64], "N must be at least 1"),
    ("FP32", [-1, 64], "N must be at least 1"),
    ("FP32", [1025, 64], "1025 images in one request, at most 1024 (--max-batch)"),
    ("FP32", [True, 64], "expected [N, 64]"),
    ("FP32", "1,64", "expected [N, 64]"),
])
def test_v2_inputs_that_do_not_fit(server, datatype, shape, fragment):
    with pytest.raises(server.PayloadError) as err:
        server.check_v2_input("pixels", datatype, shape, 64, 1024)
    assert fragment in str(err.value) and "input 'pixels'" in str(err.value)


@pytest.mark.parametrize("inputs, fragment", [
    ([], "no inputs: send one FP32 input of shape [N, 64]"),
    ([("a", "FP32", [1, 64], None), ("b", "FP32", [1, 64], None)], "2 inputs, expected one FP32 input"),
])
def test_v2_requests_need_one_input(server, inputs, fragment):
    with pytest.raises(server.PayloadError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        server.check_v2_request(inputs, 64, 1024)


def test_v2_data_flat_or_nested(server):
    assert server.check_v2_data("x", [1, 2.5, 3, 4], 2, 2) == [1, 2.5, 3, 4]
    assert server.check_v2_data("x", [[1, 2], [3, 4]], 2, 2) == [1, 2, 3, 4]
    assert server.check_v2_data("x", [[[1], [2]], [[3], [4]]], 2, 2) == [1, 2, 3, 4]


@pytest.mark.parametrize("data, fragment", [
    ([1, 2, 3], "3 values for shape [2, 2], expected 4"),
    ([1, 2, 3, "4"], "'4' is not a finite number"),
    ([1, 2, 3, None], "None is not a finite number"),
    ([1, 2, 3, True], "True is not a finite number"),
    ([1, 2, 3, float("nan")], "nan is not a finite number"),
    ([1, 2, 3, {"a": 1}], "is not a finite number"),
    ("1234", "data must be a list of numbers"),
])
def test_v2_data_that_does_not_fit(server, data, fragment):
    with pytest.raises(server.PayloadError) as err:
        server.check_v2_data("x", data, 2, 2)
    assert fragment in str(err.value)


def test_v1_instances(server):
    assert server.check_v1_request({"instances": [[1, 2], [3, 4]]}, 2, 4) == [[1, 2], [3, 4]]
    assert server.check_v1_request({"instances": [[[1], [2]]]}, 2, 4) == [[1, 2]]


@pytest.mark.parametrize("payload, fragment", [
    ([[1, 2]], "request body must be a JSON object"),
    ({}, 'missing "instances"'),
    ({"inputs": []}, 'missing "instances"'),
    ({"instances": []}, "must be a non-empty list"),
    ({"instances": "x"}, "must be a non-empty list"),
    ({"instances": [[1, 2]] * 5}, "5 instances in one request, at most 4 (--max-batch)"),
    ({"instances": [[1, 2], 3]}, "instances[1]: expected a list of 2 numbers"),
    ({"instances": [[1, 2, 3]]}, "instances[0]: 3 values, expected 2"),
    ({"instances": [[1, "a"]]}, "instances[0]: 'a' is not a finite number"),
])
def test_v1_instances_that_do_not_fit(server, payload, fragment):
    with pytest.raises(server.PayloadError) as err:
        server.check_v1_request(payload, 2, 4)
    assert fragment in str(err.value)


def test_undecoded_bodies(server):
    assert server.decode_json_body(b'{"instances": [[1]]}') == {"instances": [[1]]}
    with pytest.raises(server.PayloadError, match="request body is not JSON"):
        server.decode_json_body(b"\xff\xfe")
    with pytest.raises(server.PayloadError, match="request body is not JSON"):
        server.decode_json_body(b"instances=1")


def test_pixels_from_the_signature(server):
    assert server.signature_features((-1, 64)) == 64
    assert server.signature_features([-1, 784]) == 784
    for bad in (None, (-1,), (-1, -1), (-1, 8, 8)):
        with pytest.raises(ValueError, match="is not \\(-1, pixels\\)"):
            server.signature_features(bad)


def test_help(server, capsys):
    with pytest.raises(SystemExit) as done:
        server.build_parser().parse_args(["--help"])
    assert done.value.code == 0 and "usage:" in capsys.readouterr().out
