"""Place-recognition benchmarks: one :class:`Benchmark` interface, one reader per format.

Torch-free: devices read benchmarks to validate artifacts.
"""

from boq_edge.data.aligned import parse_frame_range, read_aligned
from boq_edge.data.benchmark import Benchmark, BenchmarkFormatError
from boq_edge.data.detect import FORMATS, detect_format
from boq_edge.data.openvprlab import read_openvprlab
from boq_edge.data.read import read_benchmark, reader_options
from boq_edge.data.vpr_bench import read_vpr_bench
from boq_edge.data.vpr_folder import read_vpr_folder

__all__ = [
    "FORMATS",
    "Benchmark",
    "BenchmarkFormatError",
    "detect_format",
    "parse_frame_range",
    "read_aligned",
    "read_benchmark",
    "read_openvprlab",
    "read_vpr_bench",
    "read_vpr_folder",
    "reader_options",
]
