# OpenFarm's self-test scene: Blender's factory startup scene (a cube, a camera, a light) made tiny,
#   blender -b --factory-startup -Y --python-exit-code 1 --python selftest.py -o ... -f 1 -- --cycles-device CPU [--gpu]
# Cycles at 32x18, 4 samples, no denoising; with --gpu, Cycles renders on the GPU the device option names.
# Prints 'OPENFARM-DEVICES <json>': the GPU devices Cycles sees, per backend; and
# 'OPENFARM-FEATURES <json>': what this build can do that a scene may need (oidn: OpenImageDenoise).

import json
import sys

import bpy

args = sys.argv[sys.argv.index('--') + 1:] if '--' in sys.argv else []
scene = bpy.context.scene
scene.render.engine = 'CYCLES'
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 32, 18, 100
scene.cycles.samples = 4
scene.cycles.use_denoising = False
scene.cycles.device = 'GPU' if '--gpu' in args else 'CPU'

devices = []
prefs = bpy.context.preferences.addons['cycles'].preferences
for backend in ('CUDA', 'OPTIX', 'HIP'):
    try:
        found = prefs.get_devices_for_type(backend)
    except (TypeError, ValueError, AttributeError):
        continue
    for d in found:
        if d.type == backend:
            devices.append({'type': backend, 'name': d.name})
print('OPENFARM-DEVICES ' + json.dumps(devices), flush=True)

try:
    import _cycles
    oidn = bool(getattr(_cycles, 'with_openimagedenoise', False))
except ImportError:
    oidn = False
print('OPENFARM-FEATURES ' + json.dumps({'oidn': oidn}), flush=True)
