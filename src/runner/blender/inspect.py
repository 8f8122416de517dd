# Reads a scene's render settings and every external file it needs, for OpenFarm's submit:
#   blender -b --factory-startup <file> -Y --python-exit-code 1 --python inspect.py -- <out.json>
# Writes the JSON to <out.json> (see SceneInfo in inspect.ts for the fields).

import glob
import json
import os
import re
import sys

import bpy

scene = bpy.context.scene
render = scene.render
deps = {}
notes = []


def absolute(path, library=None):
    return os.path.normpath(bpy.path.abspath(path, library=library))


def add(kind, written, path, note=None):
    if path in deps:
        return
    dep = {'kind': kind, 'written': written, 'absolute': path, 'exists': os.path.isfile(path)}
    if note:
        dep['note'] = note
    deps[path] = dep


def add_sequence(kind, written, path, what):
    # 'shot_0001.png' -> every 'shot_<digits>.png' next to it: what the sequence can use.
    directory, name = os.path.split(path)
    m = re.match(r'^(.*?)(\d+)(\.[^.]*)?$', name)
    if m is None:
        add(kind, written, path)
        return
    head, tail = m.group(1), m.group(3) or ''
    found = sorted(
        f for f in glob.glob(os.path.join(glob.escape(directory), glob.escape(head) + '*' + glob.escape(tail)))
        if re.fullmatch(re.escape(head) + r'\d+' + re.escape(tail), os.path.basename(f))
    )
    if not found:
        add(kind, written, path, f'{what}: no file matching {head}<digits>{tail} found')
        return
    for f in found:
        add(kind, written, f, f'{what}: {len(found)} files matching {head}<digits>{tail}')


def images():
    for img in bpy.data.images:
        if img.packed_file is not None or img.source in ('GENERATED', 'VIEWER') or not img.filepath:
            continue
        path = absolute(img.filepath, img.library)
        if img.source == 'TILED':
            if '<UDIM>' in path:
                for tile in img.tiles:
                    add('image', img.filepath, path.replace('<UDIM>', str(tile.number)), f'UDIM tile {tile.number}')
            else:
                add('image', img.filepath, path, 'UDIM image without a <UDIM> token: only this tile is listed')
                notes.append(f'image {img.name}: UDIM tiles other than {os.path.basename(path)} are not listed')
        elif img.source == 'SEQUENCE':
            add_sequence('image', img.filepath, path, 'image sequence')
        else:
            add('image', img.filepath, path)


def libraries():
    for lib in bpy.data.libraries:
        if lib.packed_file is not None:
            continue
        note = None if lib.parent is None else f'linked by {lib.parent.filepath}'
        add('library', lib.filepath, absolute(lib.filepath, lib.parent), note)


def simple(kind, blocks):
    for block in blocks:
        path = getattr(block, 'filepath', '')
        if not path or path == '<builtin>' or getattr(block, 'packed_file', None) is not None:
            continue
        full = absolute(path, block.library)
        if getattr(block, 'source', None) == 'SEQUENCE' or getattr(block, 'is_sequence', False):
            add_sequence(kind, path, full, f'{kind} sequence')
        else:
            add(kind, path, full)


def strips():
    editor = scene.sequence_editor
    if editor is None:
        return
    for strip in editor.sequences_all:
        if strip.type == 'IMAGE':
            for element in strip.elements:
                path = os.path.join(strip.directory, element.filename)
                add('strip', path, absolute(path, scene.library))
        elif strip.type == 'MOVIE':
            add('strip', strip.filepath, absolute(strip.filepath, scene.library))


def caches():
    # Simulation caches on disk are directories of many files: named, not listed file by file.
    for obj in scene.objects:
        for mod in obj.modifiers:
            settings = getattr(mod, 'domain_settings', None)
            if mod.type == 'FLUID' and settings is not None and settings.cache_directory:
                d = absolute(settings.cache_directory, obj.library)
                notes.append(f'object {obj.name}: fluid cache directory {d} is not listed file by file')
            if mod.type == 'OCEAN' and getattr(mod, 'use_bake', False) and mod.filepath:
                notes.append(f'object {obj.name}: ocean cache {absolute(mod.filepath, obj.library)} is not listed')


def has_oidn():
    try:
        import _cycles
        return bool(getattr(_cycles, 'with_openimagedenoise', False))
    except ImportError:
        return False


images()
libraries()
simple('sound', bpy.data.sounds)
simple('font', bpy.data.fonts)
simple('movieclip', bpy.data.movieclips)
simple('cache', bpy.data.cache_files)
simple('volume', bpy.data.volumes)
strips()
caches()
# Anything else Blender knows of (point caches, texts, ...): kind 'other'.
for p in bpy.utils.blend_paths(absolute=True, packed=False, local=False):
    path = os.path.normpath(p)
    tokens = '<UDIM>' in path or '<UVTILE>' in path  # listed tile by tile above
    if path not in deps and not tokens and os.path.basename(path) and not os.path.isdir(path):
        add('other', p, path)

engine = render.engine
samples = None
denoise = False
denoise_oidn = False
if engine == 'CYCLES':
    samples = scene.cycles.samples
    denoise = bool(scene.cycles.use_denoising)
    # a denoiser this build does not know reads as '' (OpenImageDenoise on a build without it)
    denoise_oidn = denoise and scene.cycles.denoiser in ('', 'OPENIMAGEDENOISE')
elif engine == 'BLENDER_EEVEE':
    samples = scene.eevee.taa_render_samples
if scene.use_nodes and scene.node_tree is not None:
    if any(n.bl_idname == 'CompositorNodeDenoise' and not n.mute for n in scene.node_tree.nodes):
        notes.append('the compositor has a Denoise node (it needs OpenImageDenoise)')
# a scene without a camera of its own may still get one from a timeline marker as frames change
camera = scene.camera
if camera is None:
    camera = next((m.camera for m in scene.timeline_markers if m.camera is not None), None)
if camera is None:
    notes.append('the scene has no camera: Blender cannot render it')

info = {
    'blenderVersion': bpy.app.version_string,
    'file': bpy.data.filepath,
    'scene': scene.name,
    'frameStart': scene.frame_start,
    'frameEnd': scene.frame_end,
    'frameStep': scene.frame_step,
    'fps': render.fps / render.fps_base,
    'resolutionX': render.resolution_x,
    'resolutionY': render.resolution_y,
    'resolutionPercentage': render.resolution_percentage,
    'engine': engine,
    'samples': samples,
    'denoise': denoise,
    'denoiseWithOidn': denoise_oidn,
    'hasOpenImageDenoise': has_oidn(),
    'output': render.filepath,
    'fileFormat': render.image_settings.file_format,
    'framePath': render.frame_path(frame=scene.frame_start),
    'camera': camera.name if camera is not None else None,
    'dependencies': sorted(deps.values(), key=lambda d: (d['kind'], d['absolute'])),
    'notes': notes,
}
with open(sys.argv[sys.argv.index('--') + 1], 'w', encoding='utf-8') as f:
    json.dump(info, f)
