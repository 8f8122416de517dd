# OpenFarm's preparation of a scene before Blender renders it, run by the render phase as
#   OPENFARM_CYCLES_DEVICE=CPU OPENFARM_DENOISE=keep ... \
#     blender -b <scene> -Y ... --python prep.py -s F -e L -a
# after the .blend has loaded and before the frames render. Options, from the environment (an
# argument after '--' would make Cycles import argparse and build its parser at every start, some
# 25 ms of CPU per task; an unset or empty variable takes the default):
#   OPENFARM_CYCLES_DEVICE CPU|CUDA|OPTIX|HIP  the Cycles device, as Blender's --cycles-device sets it
#                                         (default: as the scene and preferences say)
#   OPENFARM_DENOISE keep|off|require     keep (default): denoise as the scene says, but turn it off
#                                         with a warning where this Blender cannot (no
#                                         OpenImageDenoise); off: turn it off; require: refuse to
#                                         render without it
#   OPENFARM_REMAP FILE                   JSON {"<absolute path as the .blend references it>": "<new
#                                         absolute path>"} (files, or directories for everything under
#                                         them); a missing FILE means nothing to remap
#   OPENFARM_BORDER MINX,MAXX,MINY,MAXY|none
#                                         render only this border (a tile), NOT cropped: the image
#                                         keeps the frame's size (outside the border is empty), so
#                                         Blender's dither, which depends on a pixel's place in the
#                                         image, is the full frame's and the stitch crops it exactly;
#                                         none (default): the whole frame
# Every message is one line starting 'OpenFarm'; a refusal is an 'Error: OpenFarm: ...' line and exit 1.
# It imports nothing it can do without (filecmp would bring shutil, bz2 and lzma along).

import json
import os
import sys

import bpy


def say(msg):
    print(f'OpenFarm: {msg}', flush=True)


def warn(msg):
    print(f'OpenFarm warning: {msg}', flush=True)


def refuse(msg):
    print(f'Error: OpenFarm: {msg}', flush=True)
    sys.stdout.flush()
    sys.exit(1)


def options():
    after = sys.argv[sys.argv.index('--') + 1:] if '--' in sys.argv else []
    old = [a for a in after if a.startswith('--openfarm-')]
    if old:
        # an app config written for an earlier prep.py: refused, never silently ignored
        refuse(f'{old[0]} is no longer read: prep.py takes its options from OPENFARM_* variables')
    opts = {'cycles_device': None, 'denoise': 'keep', 'remap': None, 'border': None}
    for name in opts:
        value = os.environ.get('OPENFARM_' + name.upper(), '')
        if value != '':
            opts[name] = value
    return opts


def device(name):
    if name is None:
        return
    if name not in ('CPU', 'CUDA', 'OPTIX', 'HIP'):
        refuse(f'unknown Cycles device {name!r} (CPU, CUDA, OPTIX or HIP)')
    # what Blender's own --cycles-device does (cycles/engine.py), read when the render starts
    try:
        import _cycles
    except ImportError:
        if name != 'CPU':
            warn(f'this Blender has no Cycles: the device {name} does not apply')
        return
    _cycles.set_device_override(name)


def same_bytes(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def has_oidn():
    try:
        import _cycles
        return bool(getattr(_cycles, 'with_openimagedenoise', False))
    except ImportError:
        return False


def denoise(scene, mode):
    if scene.render.engine != 'CYCLES':
        return
    on = bool(scene.cycles.use_denoising)
    if mode not in ('keep', 'off', 'require'):
        refuse(f'unknown denoise mode {mode!r} (keep, off or require)')
    if not on:
        if mode == 'require':
            refuse('the job requires denoising but the scene has it off')
        return
    if mode == 'off':
        scene.cycles.use_denoising = False
        say('denoising turned off, as the job asks')
        return
    # A denoiser value this build does not know reads as '' (OpenImageDenoise on a build without it).
    denoiser = scene.cycles.denoiser
    if denoiser in ('', 'OPENIMAGEDENOISE') and not has_oidn():
        if mode == 'require':
            refuse('the scene denoises with OpenImageDenoise, which this Blender was built without')
        scene.cycles.use_denoising = False
        warn('denoising turned off: this Blender was built without OpenImageDenoise '
             '(the frames will be noisier than the scene asks)')


def norm(path):
    return os.path.normpath(path) if path else path


def remap_target(table, path):
    # The file itself, else its nearest remapped parent directory.
    if path in table:
        return table[path]
    parent = path
    while True:
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up
        if parent in table:
            return os.path.join(table[parent], os.path.relpath(path, parent))


def remap(file):
    if file is None or not os.path.exists(file):
        return
    with open(file, encoding='utf-8') as f:
        raw = json.load(f)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        refuse(f'{file} must map paths to paths')
    table = {norm(k): norm(v) for k, v in raw.items()}
    done = 0
    # Libraries first (parents before children), so their own data comes from the new place.
    libs = sorted(bpy.data.libraries, key=lambda lib: depth(lib))
    for lib in libs:
        old = norm(bpy.path.abspath(lib.filepath, library=lib.parent))
        new = remap_target(table, old)
        if new is not None and new != old:
            lib.filepath = new
            # Blender just loaded it from `old`: if that file is still there with the very bytes of
            # the copy (the submitting machine, a drive mounted at the same path), loading it again
            # changes nothing and costs a whole library read.
            if not (os.path.isfile(old) and same_bytes(old, new)):
                lib.reload()
            done += 1
    for kind in ('images', 'sounds', 'movieclips', 'fonts', 'cache_files', 'volumes'):
        for block in getattr(bpy.data, kind):
            path = getattr(block, 'filepath', '')
            if not path or path == '<builtin>' or getattr(block, 'packed_file', None) is not None:
                continue
            old = norm(bpy.path.abspath(path, library=block.library))
            new = remap_target(table, old)
            if new is None or new == old:
                continue
            try:
                block.filepath = new  # linked data too: Blender 3.4 lets Python set it in memory
                done += 1
            except (AttributeError, TypeError, RuntimeError) as err:
                warn(f'cannot remap {old} of {kind[:-1]} {block.name}: {err}')
    say(f'remapped {done} path(s)')


def depth(lib):
    n = 0
    while lib.parent is not None:
        lib, n = lib.parent, n + 1
    return n


def border(scene, text):
    if text is None or text == 'none':
        return
    try:
        min_x, max_x, min_y, max_y = (float(v) for v in text.split(','))
    except ValueError:
        refuse(f'bad border {text!r} (want MINX,MAXX,MINY,MAXY)')
    if not (0 <= min_x < max_x <= 1 and 0 <= min_y < max_y <= 1):
        refuse(f'bad border {text!r} (each in 0..1, min below max)')
    r = scene.render
    r.use_border = True
    r.use_crop_to_border = False
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = min_x, max_x, min_y, max_y
    say(f'rendering the tile {text} of the frame')


def main():
    opts = options()
    device(opts['cycles_device'])
    scene = bpy.context.scene
    remap(opts['remap'])
    denoise(scene, opts['denoise'])
    border(scene, opts['border'])
    # A retry in the same directory must overwrite, never skip a frame it finds there.
    scene.render.use_overwrite = True
    scene.render.use_placeholder = False


main()
