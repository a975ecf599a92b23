"""The catalogue of metrics: every number and text a sample carries, or ingest derives, once.

Validation, the store's columns, the latest API's fields, the tiers' aggregates, the history's
points and the page's charts all read this list; nothing else names a metric's rules. Adding a
metric is: a line here, a migration for its column, and the agent's collector.

Each metric has
- `block`: `host` (the snapshot row), `gpu` (one row per GPU) or `disk` (one row per device);
- `kind`: `percent` (0..100), `gauge` (a number within `low`..`high`), `integer` (a whole
  number ≥ 0 within its column), `counter` (a total that only grows; rates derive from it),
  `rate` (per second, derived from a counter), `bool`, `text`, `names` (a list of short strings),
  `processes` (a list of GPU processes) or `events` (things that happened since the previous
  sample, each `{"xid": 79, "at": "<ISO time>"}`, kept in a table of their own);
- `derived`: how ingest computes it from what the agent sent (a rate of a counter, the sum or
  maximum over the devices); an agent never sends it;
- `tier`: the aggregates the 1-minute and 1-hour tiers keep (`avg`, `max`, `sum`), empty if none;
- `api`: where /api/metrics/latest/ shows it, `(group, key)` (group "" = top level); `echo`: the
  key of the ingest response's snapshot that shows it;
- `unit` and `title`: how people read it (the page's charts and tables).

The bottleneck labels, which the classifier gives and the tiers, history, report and alerts
count, are named here too (`LABELS`), with the names the page shows them by (`DISPLAY_NAMES`).

Pure Python, no Django: the agent's tests and the benchmarks may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

AVG_MAX = ("avg", "max")
# The largest whole numbers PostgreSQL's columns hold.
MAX_BIGINT = 2**63 - 1
MAX_INTEGER = 2**31 - 1
SQL_TYPES = {
    "percent": "float8",
    "gauge": "float8",
    "rate": "float8",
    "counter": "bigint",
    "text": "text",
    "bool": "boolean",
    "names": "jsonb",
    "processes": "jsonb",
}
# XID errors by number: what NVIDIA's documentation says each means (the common ones).
XID_MEANINGS = {
    13: "graphics engine exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "preemptive cleanup, due to a previous error",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping recorded",
    64: "ECC page retirement or row remapper failure",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
}


@dataclass(frozen=True)
class Metric:
    name: str
    block: str
    kind: str
    unit: str = ""
    title: str = ""
    low: float | None = None
    high: float | None = None
    length: int | None = None  # text: most characters
    # integer and counter: the column's type (bigint, integer, smallint; float8 for a counter of
    # fractions, which an agent sends as a number ≥ 0)
    column: str = "bigint"
    # How ingest derives it (empty: an agent sends it):
    # ("rate", counter) per second since the previous sample; ("delta", counter) the amount since
    # the previous sample; ("busy", milliseconds counter) percent of the time busy;
    # ("sum" | "max", block, metric) over the devices; ("count", block).
    derived: tuple[str, ...] = ()
    # The tiers' aggregates of it per bucket: avg, max, sum; label_sum: a sum per bottleneck label.
    tier: tuple[str, ...] = ()
    # Which tier relations hold its aggregates: 1 those the tiers were made with; a metric tiered
    # later goes to a later part (continuous aggregates take no new columns), see tiers.py.
    tier_part: int = 1
    # Whether the history's points show it (a fleet total such as a sum of GPUs is for reports).
    history: bool = True
    api: tuple[str, str] | None = None
    # The key of the ingest response's `snapshot` that echoes it (the contract's three figures).
    echo: str | None = None

    @property
    def sql(self) -> str:
        return self.column if self.kind in ("integer", "counter") else SQL_TYPES[self.kind]

    @property
    def stored(self) -> bool:
        """A column of its block's table (events have a table of their own)."""
        return self.kind != "events"

    @property
    def whole(self) -> bool:
        """Sent and stored as a whole number."""
        return self.kind in ("integer", "counter") and self.column != "float8"

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        """The valid range of what an agent sends (None: unbounded on that side)."""
        if self.kind == "percent":
            return 0.0, 100.0
        if self.kind in ("integer", "counter"):
            top = {"integer": MAX_INTEGER, "smallint": 2**15 - 1, "float8": None}.get(self.column, MAX_BIGINT)
            return 0, top
        return self.low, self.high


def _m(name: str, block: str, kind: str, **extra) -> Metric:
    return Metric(name, block, kind, **extra)


def host(name: str, kind: str, **extra) -> Metric:
    return _m(name, "host", kind, **extra)


def gpu(name: str, kind: str, **extra) -> Metric:
    return _m(name, "gpu", kind, **extra)


def disk(name: str, kind: str, **extra) -> Metric:
    return _m(name, "disk", kind, **extra)


GAUGE_0 = {"low": 0.0}  # a number ≥ 0 without an upper bound

METRICS: tuple[Metric, ...] = (
    # --- host: what the agent sends --------------------------------------------------------
    host(
        "cpu_usage_percent",
        "percent",
        unit="%",
        title="CPU usage",
        tier=AVG_MAX,
        api=("cpu", "usage_percent"),
        echo="cpu_usage_percent",
    ),
    host("cpu_user_percent", "percent", unit="%", title="CPU user", api=("cpu", "user_percent")),
    host("cpu_system_percent", "percent", unit="%", title="CPU system", api=("cpu", "system_percent")),
    host("cpu_iowait_percent", "percent", unit="%", title="I/O wait", tier=AVG_MAX, api=("cpu", "iowait_percent")),
    host("cpu_load_1", "gauge", title="Load 1 min", **GAUGE_0, api=("cpu", "load_1")),
    host("cpu_load_5", "gauge", title="Load 5 min", **GAUGE_0, api=("cpu", "load_5")),
    host("cpu_load_15", "gauge", title="Load 15 min", **GAUGE_0, api=("cpu", "load_15")),
    host("cpu_frequency_mhz", "gauge", unit="MHz", title="CPU frequency", **GAUGE_0, api=("cpu", "frequency_mhz")),
    host("cpu_count_logical", "integer", title="Logical CPUs", column="integer", api=("cpu", "count_logical")),
    host("cpu_count_physical", "integer", title="Physical CPUs", column="integer", api=("cpu", "count_physical")),
    host("memory_total_bytes", "integer", unit="B", title="Memory", api=("memory", "total_bytes")),
    host("memory_used_bytes", "integer", unit="B", title="Memory used", api=("memory", "used_bytes")),
    host("memory_available_bytes", "integer", unit="B", title="Memory available", api=("memory", "available_bytes")),
    host("memory_percent", "percent", unit="%", title="Memory", tier=AVG_MAX, api=("memory", "percent")),
    host("swap_total_bytes", "integer", unit="B", title="Swap", api=("memory", "swap_total_bytes")),
    host("swap_used_bytes", "integer", unit="B", title="Swap used", api=("memory", "swap_used_bytes")),
    host("swap_percent", "percent", unit="%", title="Swap", tier=AVG_MAX, api=("memory", "swap_percent")),
    host("network_rx_bytes_total", "counter", unit="B", title="Received", api=("network", "rx_bytes_total")),
    host("network_tx_bytes_total", "counter", unit="B", title="Sent", api=("network", "tx_bytes_total")),
    host("process_count", "integer", title="Processes", column="integer", api=("", "process_count")),
    # --- host: derived by ingest -----------------------------------------------------------
    host(
        "disk_read_bps",
        "rate",
        unit="B/s",
        title="Disk read",
        derived=("sum", "disk", "read_bps"),
        tier=AVG_MAX,
        api=("disk", "read_bps"),
    ),
    host(
        "disk_write_bps",
        "rate",
        unit="B/s",
        title="Disk write",
        derived=("sum", "disk", "write_bps"),
        tier=AVG_MAX,
        api=("disk", "write_bps"),
    ),
    host(
        "disk_util_percent",
        "percent",
        unit="%",
        title="Busiest disk",
        derived=("max", "disk", "util_percent"),
        tier=AVG_MAX,
        api=("disk", "util_percent"),
        echo="disk_util_percent",
    ),
    # The tiers sum the GPUs of every sample (GPU samples per bucket): the fleet report's
    # GPU-hours. Per bottleneck label, the label tiers sum it (a label row carries its snapshot's).
    host(
        "gpu_count",
        "integer",
        title="GPUs",
        column="smallint",
        derived=("count", "gpu"),
        tier=("sum",),
        tier_part=2,
        history=False,
    ),
    host(
        "gpu_top_util_percent",
        "percent",
        unit="%",
        title="Busiest GPU",
        derived=("max", "gpu", "utilization_gpu_percent"),
        tier=AVG_MAX,
        api=("gpu", "top_util_percent"),
        echo="top_gpu_util_percent",
    ),
    # Sums over the sample's GPUs, summed again by the tiers: the fleet report reads them instead of
    # one row per GPU.
    host(
        "gpu_util_total_percent",
        "gauge",
        unit="%",
        title="GPU utilization, all GPUs",
        **GAUGE_0,
        derived=("sum", "gpu", "utilization_gpu_percent"),
        tier=("sum",),
        tier_part=2,
        history=False,
    ),
    host(
        "gpu_energy_joules",
        "gauge",
        unit="J",
        title="GPU energy, all GPUs",
        **GAUGE_0,
        derived=("sum", "gpu", "energy_joules"),
        tier=("sum",),
        tier_part=2,
        history=False,
    ),
    host(
        "network_rx_bps",
        "rate",
        unit="B/s",
        title="Received",
        derived=("rate", "network_rx_bytes_total"),
        tier=AVG_MAX,
        api=("network", "rx_bps"),
    ),
    host(
        "network_tx_bps",
        "rate",
        unit="B/s",
        title="Sent",
        derived=("rate", "network_tx_bytes_total"),
        tier=AVG_MAX,
        api=("network", "tx_bps"),
    ),
    # --- per GPU ---------------------------------------------------------------------------
    gpu("name", "text", length=200, title="Name"),
    gpu("uuid", "text", length=100, title="UUID"),
    gpu("utilization_gpu_percent", "percent", unit="%", title="GPU utilization", tier=AVG_MAX),
    gpu("utilization_memory_percent", "percent", unit="%", title="Memory bandwidth"),
    gpu("memory_total_bytes", "integer", unit="B", title="GPU memory"),
    gpu("memory_used_bytes", "integer", unit="B", title="GPU memory used"),
    gpu("memory_percent", "percent", unit="%", title="GPU memory", tier=AVG_MAX),
    gpu("temperature_c", "gauge", unit="°C", title="Temperature", low=-100.0, high=250.0, tier=AVG_MAX),
    gpu("power_w", "gauge", unit="W", title="Power", **GAUGE_0, tier=AVG_MAX),
    gpu("power_limit_w", "gauge", unit="W", title="Power limit", **GAUGE_0),
    gpu("fan_percent", "percent", unit="%", title="Fan"),
    gpu("sm_clock_mhz", "gauge", unit="MHz", title="SM clock", **GAUGE_0),
    gpu("sm_clock_max_mhz", "gauge", unit="MHz", title="SM clock max", **GAUGE_0),
    gpu("memory_clock_mhz", "gauge", unit="MHz", title="Memory clock", **GAUGE_0),
    gpu("memory_clock_max_mhz", "gauge", unit="MHz", title="Memory clock max", **GAUGE_0),
    gpu("throttle_reasons", "names", title="Throttle reasons"),
    gpu("ecc_errors_corrected", "counter", title="ECC errors corrected"),
    gpu("ecc_errors_uncorrected", "counter", title="ECC errors uncorrected"),
    gpu("processes", "processes", title="Processes"),
    # Host-to-device traffic (rx) shows a GPU starved by data loading; NVML samples it over 20 ms.
    gpu("pcie_rx_bytes_per_s", "gauge", unit="B/s", title="PCIe to GPU", **GAUGE_0, tier=AVG_MAX, tier_part=2),
    gpu("pcie_tx_bytes_per_s", "gauge", unit="B/s", title="PCIe from GPU", **GAUGE_0, tier=AVG_MAX, tier_part=2),
    gpu("encoder_util_percent", "percent", unit="%", title="Video encoder"),
    gpu("decoder_util_percent", "percent", unit="%", title="Video decoder"),
    # Null where NVML has no MIG for the GPU; instances are counted, their use needs DCGM.
    gpu("mig_mode", "bool", title="MIG mode"),
    gpu("mig_instances", "integer", title="MIG instances", column="integer"),
    # NVML's total energy since the driver loaded (millijoules there, joules here).
    gpu("energy_joules_total", "counter", unit="J", title="Energy used", column="float8"),
    # The XID errors NVML reported since the previous sample.
    gpu("xid_errors", "events", title="XID errors"),
    # --- per GPU: derived by ingest --------------------------------------------------------
    # Average power over the interval (power_w is NVML's instantaneous reading).
    gpu(
        "energy_w",
        "rate",
        unit="W",
        title="Average power",
        derived=("rate", "energy_joules_total"),
        tier=AVG_MAX,
        tier_part=2,
    ),
    # Joules since the previous sample: the tiers sum it into a period's energy.
    gpu(
        "energy_joules",
        "gauge",
        unit="J",
        title="Energy",
        derived=("delta", "energy_joules_total"),
        tier=("sum",),
        tier_part=2,
    ),
    # --- per disk --------------------------------------------------------------------------
    disk("read_bytes_total", "counter", unit="B", title="Read"),
    disk("write_bytes_total", "counter", unit="B", title="Written"),
    disk("read_count_total", "counter", title="Reads"),
    disk("write_count_total", "counter", title="Writes"),
    disk("busy_time_ms_total", "counter", unit="ms", title="Busy time"),
    disk("read_bps", "rate", unit="B/s", title="Read", derived=("rate", "read_bytes_total"), tier=AVG_MAX),
    disk("write_bps", "rate", unit="B/s", title="Write", derived=("rate", "write_bytes_total"), tier=AVG_MAX),
    disk("read_iops", "rate", unit="1/s", title="Read IOPS", derived=("rate", "read_count_total")),
    disk("write_iops", "rate", unit="1/s", title="Write IOPS", derived=("rate", "write_count_total")),
    disk(
        "util_percent", "percent", unit="%", title="Utilization", derived=("busy", "busy_time_ms_total"), tier=AVG_MAX
    ),
)
BY_NAME = {(m.block, m.name): m for m in METRICS}
# The device key of each block with one row per device, and its column type.
DEVICE_KEYS = {"gpu": ("gpu_index", "smallint"), "disk": ("device", "text")}


def block(name: str, *, derived: bool | None = None, tiered: bool | None = None) -> tuple[Metric, ...]:
    """The metrics of one block in catalogue order, optionally only sent/derived or tiered ones."""
    return tuple(
        m
        for m in METRICS
        if m.block == name
        and (derived is None or bool(m.derived) == derived)
        and (tiered is None or bool(m.tier) == tiered)
    )


def counters(block_name: str) -> tuple[str, ...]:
    """The totals of a block that rates derive from."""
    return tuple(m.name for m in block(block_name) if m.kind == "counter")


def columns(block_name: str, *, derived: bool | None = None) -> tuple[Metric, ...]:
    """The metrics of a block that are columns of its table."""
    return tuple(m for m in block(block_name, derived=derived) if m.stored)


def names(metrics) -> tuple[str, ...]:
    return tuple(m.name for m in metrics)


def metric(block_name: str, name: str) -> Metric:
    return BY_NAME[(block_name, name)]


# --- workloads ---------------------------------------------------------------------------
# What a GPU process's workload is, by who made it: a Slurm job, a Kubernetes pod, a container
# (Docker, containerd, podman), or, outside all of them, the process's own process group. Each GPU
# process an agent sends may carry one (`processes[].workload`); ingest keeps them as time ranges
# (monitoring/workloads/).
WORKLOAD_KINDS = ("slurm", "kubernetes", "container", "process")


# --- the bottleneck labels ----------------------------------------------------------------
# What the classifier says holds a server back, in the order the page and the report list them,
# each with the name the page shows it by.
DISPLAY_NAMES = {
    "gpu-bound": "GPU-bound",
    "cpu-bound": "CPU-bound",
    "io-bound": "I/O-bound",
    "memory-bound": "Memory-bound",
    "gpu-throttled": "GPU throttled",
    "gpu-idle-held": "GPU idle, memory held",
    "idle": "Idle",
    "balanced": "Balanced",
}
LABELS = tuple(DISPLAY_NAMES)


def title_for(label: str) -> str:
    """The APIs' `title` of a label, as the contract writes it (`gpu-bound` -> `Gpu Bound`); people
    read DISPLAY_NAMES."""
    return label.replace("-", " ").title()
