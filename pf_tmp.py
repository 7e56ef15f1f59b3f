import numpy as np, tvm, time
from compiler.targets import get_target, set_runtime_threads
import compiler.winograd as wg
t = get_target("host", 1); set_runtime_threads(1)
spec = wg.ConvSpec(1, 32, 360, 640, 32, 3, 3, (1,1,1,1), act="relu")
rng = np.random.default_rng(0)
ws = wg.WinogradSchedule(4, 16, 2, 8)
lib = tvm.tirx.build(wg.winograd_primfunc(spec, ws).with_attr("global_symbol","wino"), target=t.tvm_target())
lib.export_library("/tmp/wino_pf.so")
m = tvm.runtime.load_module("/tmp/wino_pf.so")
args = [tvm.runtime.tensor(a, tvm.cpu()) for a in [rng.random((1,32,360,640),dtype=np.float32), rng.random((36,4,32,8),dtype=np.float32), rng.random(32,dtype=np.float32), np.zeros(spec.out_shape, np.float32)]]
f = m["wino"]
f(*args)
t0=time.time()
for _ in range(60): f(*args)
print((time.time()-t0)/60*1e3, "ms")
