"""Device profiles as data (DESIGN §7): one TOML file per target, validated on load.

A profile says what the device is (CPU, ISA, RAM, memory bandwidth, peak FLOP/s), how to run on it
(cores to pin, threads, the GGUF / ONNX quant presets it prefers, the width alignment its kernels
like) and how to reach it (`[access]`: local, ssh or adb). Every top-level field is required and
no unknown key is accepted: a typo in a device file is a DeviceError naming the file and the key,
not a silently ignored setting.

A field may be the string "auto" only in a profile whose access is `local`: it is then read from
this machine (devices/local_probe.py) — that is how `local.toml` describes "whatever I run on".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from edgeprune.base.errors import DeviceError, ExportError
from edgeprune.shape.quant_presets import GGUF_QUANTS, ONNX_PRESETS, canonical_gguf, onnx_preset

ACCESS_KINDS = ("local", "ssh", "adb")
AUTO = "auto"
# Fields that `local_probe` can fill in when a local profile says "auto".
PROBED_FIELDS = ("cpu", "cores", "threads", "isa", "ram_gb", "bandwidth_gbs", "peak_gflops")


@dataclass(frozen=True)
class Access:
    """How to reach the device. Only the fields of `kind` are meaningful."""

    kind: str  # "local" | "ssh" | "adb"
    # ssh
    host: str = ""  # hostname or IP (the CLI's --host user@h overrides)
    user: str = ""  # login user ("" = ssh's default: the current user / ~/.ssh/config)
    port: int = 22  # sshd port
    key: str = ""  # private key file passed as `ssh -i` ("" = ssh's default keys / agent)
    known_hosts: str = ""  # UserKnownHostsFile to use ("" = accept-new into the user's file)
    python: str = "python3"  # interpreter on the device for our runner (needs llama_cpp / onnxruntime)
    # ssh and adb
    remote_dir: str = ""  # scratch directory on the device; a per-run subfolder is made and removed
    llama_bench: str = "llama-bench"  # llama.cpp's bench binary on the device (PATH name or path)
    # adb
    serial: str = ""  # `adb -s SERIAL` ("" = the only attached device)


@dataclass(frozen=True)
class DeviceProfile:
    """One target device. Loaded from devices/<name>.toml by `load_device`."""

    name: str  # registry key; equals the file's stem
    description: str  # one line for `edgeprune devices`
    cpu: str  # CPU / SoC model
    cores: tuple[int, ...]  # logical CPU indices to run on (big cores only on phones)
    threads: int  # worker threads (llama.cpp -t, onnxruntime intra-op)
    isa: tuple[str, ...]  # SIMD features: neon, dotprod, i8mm, sve2, avx2, avx512, avx512_vnni, ...
    ram_gb: float  # physical memory
    bandwidth_gbs: float  # theoretical DRAM bandwidth, GB/s (1e9 B/s): the roofline's denominator
    efficiency: float  # η prior: fraction of bandwidth decode reaches (ARM 0.4-0.6, x86/Apple 0.6-0.8)
    peak_gflops: float  # FP32 FMA peak of `cores` (GFLOP/s): the prefill roofline
    gguf_quants: tuple[str, ...]  # llama.cpp ftype names it prefers, best first (Q4_0, Q4_K_M, Q8_0)
    onnx_quants: tuple[str, ...]  # ONNX preset names it prefers (edgeprune/shape/quant_presets.py)
    align: int  # width alignment its kernels want (heads/FFN rounded to a multiple of this)
    access: Access = field(default_factory=lambda: Access("local"))
    source: str = ""  # file it was loaded from (not a TOML key)
    measured: tuple[str, ...] = ()  # fields read/measured from this machine (not a TOML key)

    @property
    def cpu_mask(self) -> str:
        """Hex affinity mask of `cores` (taskset / llama-bench -C), e.g. cores 4-7 -> '0xf0'."""
        return hex(sum(1 << c for c in self.cores))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_REQUIRED = [f.name for f in dataclasses.fields(DeviceProfile) if f.name not in ("source", "measured")]
_ACCESS_KEYS = {f.name for f in dataclasses.fields(Access)}
_ACCESS_FOR = {  # keys allowed per access kind (besides "kind")
    "local": set(),
    "ssh": {"host", "user", "port", "key", "known_hosts", "python", "remote_dir", "llama_bench"},
    "adb": {"serial", "remote_dir", "llama_bench"},
}


def access_keys(kind: str) -> set[str]:
    """The [access] keys meaningful for an access kind (besides `kind`)."""
    return set(_ACCESS_FOR[kind])


def profile_from_mapping(data: Mapping[str, Any], source: str,
                         probe: Optional[Any] = None) -> DeviceProfile:
    """Validate a parsed TOML mapping into a DeviceProfile; every problem is reported at once.

    `probe` is a zero-argument callable returning a dict of PROBED_FIELDS for this machine; it is
    called only when a local profile has "auto" fields (it measures bandwidth: not free).
    """
    problems: list[str] = []
    unknown = sorted(set(data) - set(_REQUIRED))
    if unknown:
        problems.append(f"unknown key(s) {unknown} (known: {_REQUIRED})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        problems.append(f"missing key(s) {missing}")
    if problems:
        raise DeviceError(f"{source}: " + "; ".join(problems))

    access = _access(data["access"], source)
    values = {k: data[k] for k in _REQUIRED if k != "access"}
    auto = [k for k, v in values.items() if v == AUTO]
    bad_auto = [k for k in auto if k not in PROBED_FIELDS]
    if bad_auto:
        raise DeviceError(f"{source}: key(s) {bad_auto} cannot be 'auto' (only {list(PROBED_FIELDS)})")
    if auto and access.kind != "local":
        raise DeviceError(f"{source}: 'auto' fields {auto} need access kind 'local' "
                          f"(a remote device cannot be probed from here); give values")
    if auto:
        if probe is None:
            from edgeprune.devices.local_probe import probe_local as probe
        found = probe()
        values.update({k: found[k] for k in auto})

    problems = list(_field_problems(values))
    if problems:
        raise DeviceError(f"{source}: " + "; ".join(problems))
    return DeviceProfile(
        name=values["name"], description=values["description"], cpu=values["cpu"],
        cores=tuple(int(c) for c in values["cores"]), threads=int(values["threads"]),
        isa=tuple(values["isa"]), ram_gb=float(values["ram_gb"]),
        bandwidth_gbs=float(values["bandwidth_gbs"]), efficiency=float(values["efficiency"]),
        peak_gflops=float(values["peak_gflops"]),
        gguf_quants=tuple(canonical_gguf(q) for q in values["gguf_quants"]),  # canonical spelling
        onnx_quants=tuple(onnx_preset(q).name for q in values["onnx_quants"]),
        align=int(values["align"]), access=access, source=source, measured=tuple(auto),
    )


def _access(raw: Any, source: str) -> Access:
    if not isinstance(raw, Mapping):
        raise DeviceError(f"{source}: key 'access' must be a table like [access] kind = \"local\"")
    kind = raw.get("kind")
    if kind not in ACCESS_KINDS:
        raise DeviceError(f"{source}: access.kind={kind!r} must be one of {ACCESS_KINDS}")
    allowed = _ACCESS_FOR[kind] | {"kind"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise DeviceError(f"{source}: unknown key(s) {['access.' + k for k in unknown]} for access kind "
                          f"{kind!r} (allowed: {sorted(allowed)})")
    types = {f.name: f.type for f in dataclasses.fields(Access)}
    for k, v in raw.items():
        want = int if types[k] == "int" else str
        if not isinstance(v, want) or isinstance(v, bool):
            raise DeviceError(f"{source}: access.{k}={v!r} must be {want.__name__}")
    if kind == "ssh" and not raw.get("remote_dir"):
        raise DeviceError(f"{source}: access.remote_dir is required for ssh (a scratch dir on the device)")
    _check_remote_values(raw, source)
    acc = Access(**raw)
    if kind == "adb" and not acc.remote_dir:
        acc = dataclasses.replace(acc, remote_dir="/data/local/tmp/edgeprune")
    return acc


def _check_remote_values(raw: Mapping[str, Any], source: str) -> None:
    """Values that end up in ssh / adb argument lists: strict, so a device file cannot smuggle in
    an option (host = "-Fevil.cfg" would run that file's ProxyCommand here)."""
    from edgeprune.base.errors import RemoteError
    import edgeprune.devices.remote_values as rv

    checks = {"host": rv.check_host, "user": rv.check_user, "port": rv.check_port, "serial": rv.check_serial,
              "remote_dir": rv.check_remote_path, "python": lambda v, w: rv.check_program(v, w),
              "llama_bench": lambda v, w: rv.check_program(v, w), "key": rv.check_local_file,
              "known_hosts": rv.check_local_file}
    for k, v in raw.items():
        if k in checks and not (k in ("host", "remote_dir") and v == ""):
            try:
                checks[k](v, f"access.{k}")
            except RemoteError as e:
                raise DeviceError(f"{source}: {e}") from None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _field_problems(v: Mapping[str, Any]):
    """Every invalid value, each naming its key (torchtune style: all at once)."""
    for k in ("name", "description", "cpu"):
        if not isinstance(v[k], str) or not v[k]:
            yield f"{k}={v[k]!r} must be a non-empty string"
    cores = v["cores"]
    if not (isinstance(cores, list | tuple) and cores and all(isinstance(c, int) and c >= 0 for c in cores)):
        yield f"cores={cores!r} must be a non-empty list of CPU indices >= 0"
    elif len(set(cores)) != len(cores):
        yield f"cores={cores!r} has duplicates"
    if not (isinstance(v["threads"], int) and v["threads"] > 0):
        yield f"threads={v['threads']!r} must be a positive integer"
    for k in ("isa", "gguf_quants", "onnx_quants"):
        if not _is_str_list(v[k]):
            yield f"{k}={v[k]!r} must be a list of strings"
    for k in ("ram_gb", "bandwidth_gbs", "peak_gflops"):
        if not (_is_num(v[k]) and v[k] > 0):
            yield f"{k}={v[k]!r} must be a positive number"
    if not (_is_num(v["efficiency"]) and 0 < v["efficiency"] <= 1):
        yield f"efficiency={v['efficiency']!r} must be in (0, 1] (fraction of bandwidth reached)"
    if not (isinstance(v["align"], int) and v["align"] > 0):
        yield f"align={v['align']!r} must be a positive integer"
    # the same check export applies (edgeprune/shape/quant_presets.py): a profile cannot ask for a type
    # export refuses, such as an importance-matrix IQ2 type
    if _is_str_list(v["gguf_quants"]):
        bad = [q for q in v["gguf_quants"] if not _passes(canonical_gguf, q)]
        if bad:
            yield f"gguf_quants has unknown or unsupported llama.cpp ftype(s) {bad}; known: {list(GGUF_QUANTS)}"
    if _is_str_list(v["onnx_quants"]):
        bad = [q for q in v["onnx_quants"] if not _passes(onnx_preset, q)]
        if bad:
            yield f"onnx_quants has unknown preset(s) {bad}; known: {list(ONNX_PRESETS)}"


def _is_str_list(x: Any) -> bool:
    return isinstance(x, list | tuple) and all(isinstance(s, str) for s in x)


def _passes(check: Callable[[str], Any], name: str) -> bool:
    """Whether a quant preset `check` accepts `name` (a profile lists every bad name at once
    rather than stopping at the first ExportError)."""
    try:
        check(name)
    except ExportError:
        return False
    return True


def load_profile_file(path: Path, probe: Optional[Any] = None) -> DeviceProfile:
    """Parse and validate one device file; its `name` must equal the file stem."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeviceError(f"device file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise DeviceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DeviceError(f"device file {path} cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise DeviceError(f"{path}: not valid TOML: {e}") from None
    prof = profile_from_mapping(data, str(path), probe=probe)
    if prof.name != path.stem:
        raise DeviceError(f"{path}: name={prof.name!r} must equal the file name {path.stem!r}")
    return prof
