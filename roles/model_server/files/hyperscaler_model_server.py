"""KServe model server for the lab's digits models: an MLflow registry alias, served with v2 and v1.

    hyperscaler_model_server.py --model-name digits-cnn --model-uri models:/digits-cnn@champion \\
        [--http-port 8080] [--host 0.0.0.0] [--grpc-port 8081]

KServe's own Python server (kserve.Model + kserve.ModelServer, one uvicorn worker). load() resolves the
alias to a version with MlflowClient.get_model_version_by_alias and loads that version with
mlflow.pyfunc.load_model, so the server knows, and says, which version it serves: in the log, as
"versions" of GET /v2/models/NAME and as model_version of every v2 response. MLFLOW_TRACKING_URI (and
MLFLOW_TRACKING_USERNAME/PASSWORD) name the registry.

Endpoints (KServe's): POST /v2/models/NAME/infer (one FP32 input [N, pixels], N <= --max-batch; outputs
"predictions" INT64 [N], the argmax labels, and "logits" FP32 [N, 10]), POST /v1/models/NAME:predict
({"instances": [[pixels numbers], ...]} -> {"predictions": [labels]}), GET /v2/health/ready,
/v2/models/NAME/ready, /v2/models/NAME (metadata), /v1/models/NAME. pixels is the model signature's
width (64 for the 8x8 digits). A request that does not fit gets 400 with {"error": "..."} naming what
is wrong and what is valid; the server stays up.

KServe binds 0.0.0.0 (HTTP) and [::] (gRPC) with no option to change it; --host rebinds both (the
native test binds 127.0.0.1). gRPC is off unless --grpc-port is given. Logs go to stdout, including
"cold start: S s" from process start to the HTTP server accepting requests with the model loaded.

Argument parsing and payload validation are pure functions (tests/unit/roles/mlops); kserve, mlflow,
numpy and torch are imported in main().
"""
import argparse
import asyncio
import math
import os
import re
import sys
import time
import warnings

PROG = "hyperscaler_model_server"
T0 = time.time()
DEFAULT_MAX_BATCH = 1024
CLASSES = 10
MODEL_URI_RE = re.compile(r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,63})(?:@(?P<alias>[A-Za-z0-9_-]{1,64})"
                          r"|/(?P<version>[1-9][0-9]*))$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class PayloadError(ValueError):
    """A request that does not fit the model: HTTP 400 with this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        print("%s: error: %s" % (self.prog, message), file=sys.stderr)
        raise SystemExit(2)


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text) from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("%s is not a port (1-65535)" % value)
    return value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%s must be at least 1" % value)
    return value


def parse_model_uri(uri):
    """(registered model name, alias or None, version or None) of models:/NAME@ALIAS or models:/NAME/VERSION."""
    match = MODEL_URI_RE.match(uri or "")
    if not match:
        raise ValueError("%r is not models:/NAME@ALIAS or models:/NAME/VERSION" % uri)
    return match.group("name"), match.group("alias"), match.group("version")


def build_parser():
    parser = _Parser(prog=PROG, description="Serve an MLflow model alias with KServe (v2 and v1 REST).")
    parser.add_argument("--model-name", required=True, help="name in the URLs (/v2/models/NAME)")
    parser.add_argument("--model-uri", required=True, help="models:/NAME@ALIAS (or models:/NAME/VERSION)")
    parser.add_argument("--http-port", type=_port, default=8080)
    parser.add_argument("--grpc-port", type=_port, help="serve gRPC v2 too, on this port (default: no gRPC)")
    parser.add_argument("--host", default="0.0.0.0", help="address HTTP (and gRPC) listen on")
    parser.add_argument("--workers", type=int, choices=(1,), default=1, help="uvicorn workers (1)")
    parser.add_argument("--max-batch", type=_positive_int, default=DEFAULT_MAX_BATCH,
                        help="most images in one request")
    parser.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    parser.add_argument("--no-request-log", action="store_true", help="no log line per request")
    return parser


def parse_args(argv, env=None):
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    if not NAME_RE.match(args.model_name):
        parser.error("argument --model-name: %r is not a model name (1-64 letters, digits, _ and -, "
                     "starting with a letter or digit)" % args.model_name)
    try:
        args.registered_name, args.alias, args.version = parse_model_uri(args.model_uri)
    except ValueError as exc:
        parser.error("argument --model-uri: %s" % exc)
    args.tracking_uri = args.tracking_uri or env.get("MLFLOW_TRACKING_URI")
    if not args.tracking_uri:
        parser.error("no MLflow tracking URI: set MLFLOW_TRACKING_URI or pass --tracking-uri")
    if args.grpc_port is not None and args.grpc_port == args.http_port:
        parser.error("argument --grpc-port: %d is the HTTP port too" % args.grpc_port)
    return args


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def flatten_numbers(data, what):
    """The numbers of a (possibly nested) JSON list, row-major; PayloadError on anything else."""
    flat = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if not _is_number(item):
                raise PayloadError("%s: %r is not a finite number (pixel values are numbers, e.g. 0..16)" % (
                    what, item))
            flat.append(item)
        else:
            stack.pop()
    return flat


def check_v2_input(name, datatype, shape, features, max_batch):
    """N of one v2 input tensor that fits the model: FP32 [N, features] with 1 <= N <= max_batch."""
    what = "input %r" % name
    if datatype != "FP32":
        raise PayloadError("%s: datatype %r, expected FP32" % (what, datatype))
    if (not isinstance(shape, list) or len(shape) != 2 or not all(isinstance(d, int) and not isinstance(d, bool)
                                                                  for d in shape)):
        raise PayloadError("%s: shape %r, expected [N, %d]" % (what, shape, features))
    rows, width = shape
    if width != features:
        raise PayloadError("%s: shape %r, expected [N, %d] (%d pixel values per image)" % (
            what, shape, features, features))
    if rows < 1:
        raise PayloadError("%s: shape %r, N must be at least 1" % (what, shape))
    if rows > max_batch:
        raise PayloadError("%s: %d images in one request, at most %d (--max-batch)" % (what, rows, max_batch))
    return rows


def check_v2_data(name, data, rows, features):
    """The flat numbers of a v2 input's JSON data, which must hold rows x features of them."""
    what = "input %r" % name
    if not isinstance(data, list):
        raise PayloadError("%s: data must be a list of numbers" % what)
    flat = flatten_numbers(data, what)
    if len(flat) != rows * features:
        raise PayloadError("%s: %d values for shape [%d, %d], expected %d" % (
            what, len(flat), rows, features, rows * features))
    return flat


def check_v2_request(inputs, features, max_batch):
    """[(name, datatype, shape, data)] of a v2 request -> (name, rows): exactly one input that fits."""
    if not inputs:
        raise PayloadError("no inputs: send one FP32 input of shape [N, %d]" % features)
    if len(inputs) != 1:
        raise PayloadError("%d inputs, expected one FP32 input of shape [N, %d]" % (len(inputs), features))
    name, datatype, shape, _data = inputs[0]
    return name, check_v2_input(name, datatype, shape, features, max_batch)


def check_v1_request(payload, features, max_batch):
    """The rows of a v1 {"instances": [[features numbers], ...]} request."""
    if not isinstance(payload, dict):
        raise PayloadError('request body must be a JSON object {"instances": [[%d numbers], ...]}' % features)
    if "instances" not in payload:
        raise PayloadError('missing "instances": send {"instances": [[%d numbers], ...]}' % features)
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise PayloadError('"instances" must be a non-empty list of images of %d numbers' % features)
    if len(instances) > max_batch:
        raise PayloadError("%d instances in one request, at most %d (--max-batch)" % (len(instances), max_batch))
    rows = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, list):
            raise PayloadError("instances[%d]: expected a list of %d numbers" % (index, features))
        flat = flatten_numbers(instance, "instances[%d]" % index)
        if len(flat) != features:
            raise PayloadError("instances[%d]: %d values, expected %d" % (index, len(flat), features))
        rows.append(flat)
    return rows


def decode_json_body(body):
    """A v1 body KServe left undecoded (a content-type other than JSON): JSON anyway, or a PayloadError."""
    import json
    try:
        return json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PayloadError("request body is not JSON (%s); send {\"instances\": [[numbers], ...]} with "
                           "content-type application/json" % " ".join(str(exc).split())) from None


def signature_features(input_shape):
    """Pixels per image from the model signature's input shape (-1, pixels)."""
    if not input_shape or len(input_shape) != 2 or not isinstance(input_shape[1], int) or input_shape[1] < 1:
        raise ValueError("the model signature's input shape %r is not (-1, pixels)" % (input_shape,))
    return input_shape[1]


def process_start_time():
    try:
        import psutil
        return psutil.Process().create_time()
    except Exception:  # pylint: disable=broad-except  # psutil missing or /proc unreadable: the import time
        return T0


def log_config(quiet):
    """KServe's logging configuration with every handler on stdout (systemd's journal)."""
    import copy
    from kserve.logging import KSERVE_LOG_CONFIG
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    for handler in config.get("handlers", {}).values():
        if "stream" in handler:
            handler["stream"] = "ext://sys.stdout"
    if quiet:
        for name in ("kserve.trace", "uvicorn.access"):
            config.setdefault("loggers", {}).setdefault(name, {})["level"] = "WARNING"
    return config


def main(argv=None):  # pylint: disable=too-many-locals,too-many-statements
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = process_start_time()
    # kserve.model_server parses sys.argv when imported: it must not see this program's arguments.
    sys.argv = sys.argv[:1]
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")

    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # KServe's use, not ours
    import kserve
    import kserve.logging
    import kserve.model_server
    import mlflow
    import numpy as np
    import torch
    from fastapi.responses import JSONResponse
    from kserve.errors import InvalidInput, ModelNotFound
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.infer_type import InferOutput, InferResponse
    from kserve.protocol.rest.server import RESTServer
    from mlflow.tracking import MlflowClient

    kserve.logging.configure_logging(log_config(args.no_request_log))
    logger = kserve.logging.logger
    torch.set_num_threads(args.threads)
    host = args.host

    class DigitsModel(kserve.Model):
        def __init__(self, name):
            super().__init__(name)
            self.model_version = None
            self.run_id = None
            self.features = None
            self.pyfunc = None

        def load(self):
            load_start = time.time()
            mlflow.set_tracking_uri(args.tracking_uri)
            client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
            if args.alias:
                version = client.get_model_version_by_alias(args.registered_name, args.alias)
            else:
                version = client.get_model_version(args.registered_name, args.version)
            uri = "models:/%s/%s" % (args.registered_name, version.version)
            self.pyfunc = mlflow.pyfunc.load_model(uri)
            schema = self.pyfunc.metadata.get_input_schema()
            self.features = signature_features(schema.inputs[0].shape if schema and schema.is_tensor_spec() else None)
            self.model_version = str(version.version)
            self.run_id = version.run_id
            self.pyfunc.predict(np.zeros((1, self.features), dtype=np.float32))  # warm up
            self.ready = True
            logger.info("loaded %s = %s (version %s, run %s, %d pixels) in %.2f s", args.model_uri, uri,
                        self.model_version, self.run_id, self.features, time.time() - load_start)
            return self.ready

        def get_input_types(self):
            return [{"name": "pixels", "datatype": "FP32", "shape": [-1, self.features]}]

        def get_output_types(self):
            return [{"name": "predictions", "datatype": "INT64", "shape": [-1]},
                    {"name": "logits", "datatype": "FP32", "shape": [-1, CLASSES]}]

        def _logits(self, array):
            return np.asarray(self.pyfunc.predict(array), dtype=np.float32)

        def predict(self, payload, headers=None, response_headers=None):
            try:
                if isinstance(payload, kserve.InferRequest):
                    return self._predict_v2(payload)
                if isinstance(payload, (bytes, bytearray)):  # KServe passes a non-JSON content-type on raw
                    payload = decode_json_body(payload)
                if isinstance(payload, dict):
                    rows = check_v1_request(payload, self.features, args.max_batch)
                    labels = self._logits(np.asarray(rows, dtype=np.float32)).argmax(axis=1)
                    return {"predictions": labels.tolist()}
                raise PayloadError('request body must be a JSON object {"instances": [[%d numbers], ...]}' % self.features)
            except PayloadError as exc:
                raise InvalidInput(str(exc)) from None

        def _predict_v2(self, request):
            inputs = [(i.name, i.datatype, i.shape, None) for i in request.inputs]
            name, rows = check_v2_request(inputs, self.features, args.max_batch)
            tensor = request.inputs[0]
            raw = getattr(tensor, "_raw_data", None)
            if raw is not None:
                if len(raw) != rows * self.features * 4:
                    raise PayloadError("input %r: %d bytes of binary data for shape [%d, %d], expected %d" % (
                        name, len(raw), rows, self.features, rows * self.features * 4))
                array = np.frombuffer(raw, dtype="<f4").reshape(rows, self.features)
            else:
                flat = check_v2_data(name, tensor.data, rows, self.features)
                array = np.asarray(flat, dtype=np.float32).reshape(rows, self.features)
            logits = self._logits(array)
            outputs = {
                "predictions": InferOutput("predictions", [rows], "INT64", logits.argmax(axis=1).astype(np.int64)),
                "logits": InferOutput("logits", [rows, CLASSES], "FP32", logits),
            }
            wanted = [o.name for o in (request.request_outputs or [])] or list(outputs)
            unknown = [w for w in wanted if w not in outputs]
            if unknown:
                raise PayloadError("unknown output %s; this model has: predictions, logits" % ", ".join(
                    repr(u) for u in unknown))
            chosen = []
            for output_name in wanted:
                output = outputs[output_name]
                output.set_data_from_numpy(output.data, binary_data=False)
                chosen.append(output)
            return InferResponse(response_id=request.id or "", model_name=self.name, infer_outputs=chosen,
                                 model_version=self.model_version)

    class VersionedDataPlane(DataPlane):
        """KServe's data plane, with the served MLflow version in the model metadata's versions."""

        async def model_metadata(self, model_name):
            metadata = await super().model_metadata(model_name)
            version = getattr(self.get_model_from_registry(model_name), "model_version", None)
            if version:
                metadata["versions"] = [version]
            return metadata

    async def announce_ready(server):
        while not server.started:
            await asyncio.sleep(0.02)
        logger.info("cold start: %.2f s from process start to serving %s version %s on http://%s:%d",
                    time.time() - started, args.model_name, model.model_version, host, args.http_port)

    def client_error(status):
        async def handler(request, exc):
            logger.warning("%d %s %s: %s", status, request.method, request.url.path, exc)
            return JSONResponse(status_code=status, content={"error": str(exc)})
        return handler

    class BoundRESTServer(RESTServer):
        """KServe's REST server on --host (KServe hard-codes 0.0.0.0)."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.config.host = host

        def _add_exception_handlers(self, app):
            super()._add_exception_handlers(app)
            # KServe logs a traceback for every bad request; one line is enough for the journal.
            app.add_exception_handler(InvalidInput, client_error(400))
            app.add_exception_handler(ModelNotFound, client_error(404))

        async def start(self):
            task = asyncio.get_running_loop().create_task(announce_ready(self._server))
            self._announce_task = task  # pylint: disable=attribute-defined-outside-init  # keep a reference
            await super().start()

    class BoundGRPCServer(GRPCServer):
        """KServe's gRPC server on --host (KServe hard-codes [::])."""

        async def start(self, max_workers):
            from concurrent import futures
            from grpc import aio
            from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
            from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
            from kserve.protocol.grpc.servicer import InferenceServicer
            # pylint: disable=protected-access  # the same construction as GRPCServer.start, another address
            self._server = aio.server(
                futures.ThreadPoolExecutor(max_workers=max_workers),
                interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
                options=[("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                         ("grpc.max_receive_message_length", self._kwargs.get("grpc_max_receive_message_length"))])
            grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
                InferenceServicer(self._data_plane, self._model_repository_extension), self._server)
            address = "%s:%d" % ("[%s]" % host if ":" in host else host, self._port)
            self._server.add_insecure_port(address)
            logger.info("Starting gRPC server on %s with %d workers", address, max_workers)
            await self._server.start()
            await self._server.wait_for_termination()

    kserve.model_server.RESTServer = BoundRESTServer
    kserve.model_server.GRPCServer = BoundGRPCServer

    logger.info("%s: serving %s as %s on %s:%d (gRPC %s), registry %s", PROG, args.model_uri, args.model_name,
                host, args.http_port, args.grpc_port or "off", args.tracking_uri)
    model = DigitsModel(args.model_name)
    try:
        model.load()
    except Exception as exc:  # pylint: disable=broad-except  # one line, and systemd restarts the unit
        print("%s: error: cannot load %s from %s: %s: %s" % (PROG, args.model_uri, args.tracking_uri,
                                                             type(exc).__name__, " ".join(str(exc).split())),
              file=sys.stderr, flush=True)
        return 1
    server = kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port or 8081, workers=1,
                                enable_grpc=args.grpc_port is not None, enable_docs_url=False,
                                enable_latency_logging=not args.no_request_log)
    server.dataplane = VersionedDataPlane(model_registry=server.registered_models)
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
