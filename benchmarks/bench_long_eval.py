"""Evaluate a VRNN (z = 32) on MuseData's test split (124 sequences up to 4273 steps) with a bound.

    python benchmarks/bench_long_eval.py fivo 128 [DATA_ROOT]      # or: iwae 128

Prints wall time and peak resident memory; shows that full-length evaluation of the longest
music sequences fits in memory (sequences are batched by the bound's memory budget, and the
FIVO filter streams over time).
"""
import time, resource, torch, pyro, sys
torch.manual_seed(0)
from pyrosequence import VRNN
from pyrosequence.data import load_split
from pyrosequence.inference import evaluate
data = load_split("muse", "test", sys.argv[3] if len(sys.argv) > 3 else "../shared/data")
m = VRNN(88, 32, likelihood="bernoulli"); m.init_from_data(data.x, data.lengths)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024
pyro.enable_validation(False)
t0=time.time(); r = evaluate(m, data.x, data.lengths, bound=sys.argv[1], num_particles=int(sys.argv[2])); t=time.time()-t0
print(sys.argv[1], sys.argv[2], "seqs", len(data), "max len", int(data.lengths.max()), "steps", data.total_steps, f"time {t:.1f}s", f"rss before {before:.0f} MiB peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MiB", "per step", round(r.per_timestep,3))
