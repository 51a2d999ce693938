"""PynvmlBackend over a fake pynvml module: right functions, ids (not indices), byref placement, error mapping."""
import ctypes
import types

import pytest

from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import backend as nb
from ansible_collections.aihow.hyperscaler.plugins.module_utils.gpu.nvml import factory as nvml_factory


class FakeNVMLError(Exception):
    def __init__(self, value):
        super().__init__("NVML error %d" % value)
        self.value = value


class Struct:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def make_fake(calls, fail=None):
    """A pynvml-shaped namespace that records calls; ``fail`` maps function name -> error code."""
    m = types.SimpleNamespace()
    m.NVMLError = FakeNVMLError
    m.NVML_DEVICE_MIG_ENABLE, m.NVML_DEVICE_MIG_DISABLE = 1, 0
    m.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED = 0
    m.c_uint = ctypes.c_uint
    m.byref = ctypes.byref

    class Placement(ctypes.Structure):
        _fields_ = [("start", ctypes.c_uint), ("size", ctypes.c_uint)]

    m.c_nvmlGpuInstancePlacement_t = Placement
    m.c_nvmlGpuInstance_t = ctypes.c_void_p
    m.c_nvmlComputeInstance_t = ctypes.c_void_p

    def rec(name, result=None, effect=None):
        def fn(*args):
            calls.append((name, args))
            if fail and name in fail:
                raise FakeNVMLError(fail[name])
            return effect(*args) if effect else result
        setattr(m, name, fn)

    rec("nvmlInit")
    rec("nvmlShutdown")
    rec("nvmlDeviceGetCount", 1)
    rec("nvmlDeviceGetHandleByIndex", "dev0")
    rec("nvmlDeviceGetName", b"NVIDIA A100-SXM4-80GB")
    rec("nvmlDeviceGetUUID", "GPU-1234")
    rec("nvmlDeviceGetPciInfo", Struct(busId=b"00000000:65:00.0", pciDeviceId=0x20B210DE, pciSubSystemId=0x147F10DE))
    rec("nvmlDeviceGetMemoryInfo", Struct(total=80 * 2 ** 30, used=2 ** 30, free=79 * 2 ** 30))
    rec("nvmlDeviceGetMigMode", [0, 1])
    rec("nvmlDeviceSetMigMode", 19)  # activation status: in use
    rec("nvmlDeviceGetGpuInstanceProfileInfo", Struct(id=9, sliceCount=3, instanceCount=2, memorySizeMB=40192,
                                                      multiprocessorCount=42, copyEngineCount=3))
    gi_info = Struct(id=2, profileId=9, placement=Struct(start=0, size=4))
    rec("nvmlGpuInstanceGetInfo", gi_info)
    rec("nvmlDeviceCreateGpuInstanceWithPlacement", "gi-handle")
    rec("nvmlDeviceCreateGpuInstance", "gi-handle")
    rec("nvmlDeviceGetGpuInstanceById", "gi-handle")
    rec("nvmlGpuInstanceDestroy")
    rec("nvmlDeviceGetGpuInstanceRemainingCapacity", 1)

    def placements(dev, pid, array, count):
        count._obj.value = 2  # byref(c_uint)
        if array is not None:
            array[0].start, array[0].size = 0, 4
            array[1].start, array[1].size = 4, 4
    rec("nvmlDeviceGetGpuInstancePossiblePlacements", effect=placements)

    def instances(dev, pid, array, count):
        count._obj.value = 1
        array[0] = 1234
    rec("nvmlDeviceGetGpuInstances", effect=instances)
    rec("nvmlGpuInstanceGetComputeInstanceProfileInfo", Struct(id=2, sliceCount=3, instanceCount=1,
                                                               multiprocessorCount=42))
    rec("nvmlGpuInstanceCreateComputeInstance", "ci-handle")
    rec("nvmlComputeInstanceGetInfo", Struct(id=0, profileId=2, placement=Struct(start=0, size=3)))
    rec("nvmlGpuInstanceGetComputeInstanceById", "ci-handle")
    rec("nvmlComputeInstanceDestroy")
    rec("nvmlDeviceGetMaxMigDeviceCount", 2)

    def mig_handle(dev, i):
        if i == 1:
            raise FakeNVMLError(nb.ERR_NOT_FOUND)
        return "mig0"
    rec("nvmlDeviceGetMigDeviceHandleByIndex", effect=mig_handle)
    rec("nvmlDeviceGetGpuInstanceId", 2)
    rec("nvmlDeviceGetComputeInstanceId", 0)
    rec("nvmlDeviceGetComputeRunningProcesses", [Struct(pid=10, gpuInstanceId=2), Struct(pid=11, gpuInstanceId=5)])
    rec("nvmlDeviceGetGraphicsRunningProcesses", [])
    return m


@pytest.fixture
def fake(monkeypatch):
    calls = []
    module = make_fake(calls)
    monkeypatch.setattr(nb, "PYNVML_LOADER", lambda: module)
    return nb.PynvmlBackend(), calls


def named(calls, name):
    return [args for n, args in calls if n == name]


def test_create_with_placement_passes_id_and_byref_struct(fake):
    backend, calls = fake
    gi = backend.create_gpu_instance(0, 9, (4, 4))
    (args,) = named(calls, "nvmlDeviceCreateGpuInstanceWithPlacement")
    assert args[0] == "dev0" and args[1] == 9
    assert type(args[2]).__name__ == "CArgObject"  # ctypes.byref(...)
    assert (args[2]._obj.start, args[2]._obj.size) == (4, 4)
    assert gi == nb.GpuInstance(2, 9, 0, 4)
    backend.create_gpu_instance(0, 19)
    assert named(calls, "nvmlDeviceCreateGpuInstance") == [("dev0", 19)]


def test_profile_info_uses_index_but_returns_real_id(fake):
    backend, calls = fake
    info = backend.gi_profile_info(0, 2)
    assert named(calls, "nvmlDeviceGetGpuInstanceProfileInfo") == [("dev0", 2)]
    assert info.id == 9 and info.nvml_index == 2 and info.instance_count == 2


def test_set_mig_mode_returns_activation_status(fake):
    backend, calls = fake
    assert backend.set_mig_mode(0, True) == 19
    assert named(calls, "nvmlDeviceSetMigMode") == [("dev0", 1)]
    assert backend.mig_mode(0) == (0, 1)


def test_device_facts(fake):
    backend, _unused = fake
    assert backend.device_count() == 1
    assert backend.name(0) == "NVIDIA A100-SXM4-80GB"
    assert backend.pci_info(0) == {"bus_id": "0000:65:00.0", "device_id": 0x20B210DE, "subsystem_id": 0x147F10DE}
    assert backend.index_by_pci_bus_id("65:00.0") == 0
    assert backend.memory(0) == {"total_mb": 81920, "used_mb": 1024, "free_mb": 80896}
    with pytest.raises(nb.NotFound):
        backend.index_by_pci_bus_id("0000:99:00.0")


def test_lists_placements_capacity_and_instances(fake):
    backend, calls = fake
    assert backend.gi_possible_placements(0, 9) == [(0, 4), (4, 4)]
    first, second = named(calls, "nvmlDeviceGetGpuInstancePossiblePlacements")
    assert first[1] == 9 and first[2] is None  # count query first
    assert backend.gi_remaining_capacity(0, 9) == 1
    assert backend.gpu_instances(0, 9) == [nb.GpuInstance(2, 9, 0, 4)]
    assert named(calls, "nvmlDeviceGetGpuInstances")[0][1] == 9


def test_compute_instances_and_destroy(fake):
    backend, calls = fake
    assert backend.ci_profile_info(0, 2, 2).id == 2
    assert named(calls, "nvmlDeviceGetGpuInstanceById")[0] == ("dev0", 2)
    assert named(calls, "nvmlGpuInstanceGetComputeInstanceProfileInfo")[0] == ("gi-handle", 2, 0)
    ci = backend.create_compute_instance(0, 2, 2)
    assert ci == nb.ComputeInstance(2, 0, 2, 0, 3)
    backend.destroy_compute_instance(0, 2, 0)
    assert named(calls, "nvmlGpuInstanceGetComputeInstanceById")[-1] == ("gi-handle", 0)
    assert named(calls, "nvmlComputeInstanceDestroy") == [("ci-handle",)]
    backend.destroy_gpu_instance(0, 2)
    assert named(calls, "nvmlGpuInstanceDestroy") == [("gi-handle",)]


def test_mig_devices_skip_empty_slots_and_processes_filter_by_gi(fake):
    backend, _unused = fake
    assert backend.mig_devices(0) == [nb.MigDevice("GPU-1234", 2, 0)]
    assert backend.processes(0) == [10, 11]
    assert backend.processes(0, gi_id=2) == [10]


@pytest.mark.parametrize("code,cls", [(3, nb.NotSupported), (19, nb.InUse), (23, nb.InsufficientResources),
                                      (4, nb.NoPermission), (2, nb.InvalidArgument), (16, nb.ResetRequired),
                                      (999, nb.NvmlError), (12, nb.NvmlUnavailable)])
def test_error_mapping(monkeypatch, code, cls):
    calls = []
    module = make_fake(calls, fail={"nvmlDeviceCreateGpuInstanceWithPlacement": code})
    monkeypatch.setattr(nb, "PYNVML_LOADER", lambda: module)
    with pytest.raises(cls) as err:
        nb.PynvmlBackend().create_gpu_instance(0, 9, (0, 4))
    assert err.value.code == code and err.value.op == "DeviceCreateGpuInstanceWithPlacement"


def test_reset_refuses_busy_gpu_and_runs_nvidia_smi(fake, monkeypatch):
    backend, _unused = fake
    ran = []
    monkeypatch.setattr(nb, "RESET_RUNNER", lambda bus: ran.append(bus) or (0, ""))
    with pytest.raises(nb.InUse):
        backend.reset(0)
    assert ran == []
    backend.nvml.nvmlDeviceGetComputeRunningProcesses = lambda dev: []
    backend.reset(0)
    assert ran == ["0000:65:00.0"]
    monkeypatch.setattr(nb, "RESET_RUNNER", lambda bus: (1, "boom"))
    with pytest.raises(nb.NvmlError):
        backend.reset(0)


def test_missing_pynvml_is_unavailable(monkeypatch):
    monkeypatch.setattr(nb, "PYNVML_LOADER", lambda: None)
    with pytest.raises(nb.NvmlUnavailable):
        nb.PynvmlBackend().init()


def test_real_pynvml_module_shape():
    """The real nvidia-ml-py exposes what the backend calls (no GPU needed to check names)."""
    import pynvml
    for name in ("nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlDeviceGetGpuInstancePossiblePlacements",
                 "nvmlGpuInstanceGetComputeInstanceById", "nvmlDeviceGetMigDeviceHandleByIndex",
                 "c_nvmlGpuInstancePlacement_t", "NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED"):
        assert hasattr(pynvml, name), name
    assert pynvml.NVMLError_InUse(19).value == nb.ERR_IN_USE
    assert pynvml.NVMLError_InsufficientResources(23).value == nb.ERR_INSUFFICIENT_RESOURCES


def test_make_backend():
    assert isinstance(nvml_factory.make_backend("nvml"), nb.PynvmlBackend)
    with pytest.raises(nb.NvmlError):
        nvml_factory.make_backend("simulator")
    with pytest.raises(nb.NvmlError):
        nvml_factory.make_backend("bogus")
