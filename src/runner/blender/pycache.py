# OpenFarm's Python bytecode cache for Blender, built once per Blender binary by the node (pycache.ts):
#   PYTHONPYCACHEPREFIX=<empty cache directory> \
#   blender -b -Y --python-exit-code 1 --python prep.py --python pycache.py
# Run after prep.py, when every module a render task imports before its first frame is loaded
# (Blender's start-up scripts, the add-ons its owner's preferences enable, the standard library
# modules they and prep.py use), it writes each one's bytecode under the prefix, where a Blender
# started with the same variable reads it instead of compiling the module's source (Blender sets
# sys.dont_write_bytecode, and Debian ships its scripts without .pyc files). Each .pyc records its
# source's mtime and size: Python compiles a changed source again rather than use a stale .pyc.
# Prints 'OPENFARM-PYCACHE <modules written> <failures>'; exits 1 (--python-exit-code) when this
# Blender ignores PYTHONPYCACHEPREFIX (one with its own Python reads no PYTHON* variable).

import importlib.util
import py_compile
import sys

if not sys.pycache_prefix:
    raise SystemExit('OpenFarm: this Blender ignores PYTHONPYCACHEPREFIX (its Python reads no PYTHON* variable)')

written = 0
failed = 0
for name, module in sorted(sys.modules.items()):
    source = getattr(module, '__file__', None)
    if not isinstance(source, str) or not source.endswith('.py'):
        continue
    try:
        # cache_from_source honours sys.pycache_prefix; py_compile writes the file atomically
        py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True)
        written += 1
    except (py_compile.PyCompileError, OSError, ValueError) as err:
        failed += 1
        print(f'OpenFarm warning: no bytecode for {name}: {err}', flush=True)
print(f'OPENFARM-PYCACHE {written} {failed}', flush=True)
