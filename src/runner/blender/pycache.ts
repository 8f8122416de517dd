// Blender's Python bytecode cache, one per Blender binary in the node's data directory.
//
// Debian's Blender ships its scripts without .pyc files and sets sys.dont_write_bytecode, so every
// start compiles some 200 modules (its start-up scripts and add-ons, the standard library modules
// they and prep.py use) from source: about 0.3 s of the ~1 s a task's Blender takes to start on this
// 2-core machine, paid again by every task. The node builds the bytecode once, after Blender passed
// its self-test (pycache.py), into <dataDir>/cache/blender-pyc/<app>/<binary>/pyc, and the phases
// of an app self-tested as Blender run with PYTHONPYCACHEPREFIX naming it.
//
// That variable is all that changes: a Blender built on the system's Python (Debian's) reads the
// PYTHON* variables anyway (its sys.path, user site and flags are the same with the cache as without:
// test/runner/pycache.test.ts). A Blender with its own bundled Python ignores them without
// --python-use-system-env, which would also let the node's PYTHONPATH in: there the build says the
// prefix was ignored, and tasks start Blender as before. A .pyc records its source's mtime and size,
// so a changed source (a Python update) is compiled again, never run from stale bytecode. The cache is
// built under a temporary name and renamed whole once Blender said it wrote every module: a node
// stopped during the build leaves no half cache behind (the next start removes the remains). After a
// power cut a file may be empty: Python finds no magic number in it and compiles that module again.

import { createHash } from 'node:crypto'
import { mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from '@libp2p/interface'
import { runPhase } from '../execute.ts'

const SCRIPT = fileURLToPath(new URL('./pycache.py', import.meta.url))
const PREP = fileURLToPath(new URL('./prep.py', import.meta.url))
const READY = 'openfarm-ready'
const BUILD_TIMEOUT_MS = 120_000
const LINE_RE = /^OPENFARM-PYCACHE (\d+) (\d+)$/

export class PyCacheError extends Error {
  static override readonly name = 'PyCacheError'
  override readonly name = 'PyCacheError'
}

/** Where a node keeps its bytecode caches: <root>/<app>/ holds the cache of that app's Blender binary. */
export const pyCacheRoot = (dataDir: string): string => join(dataDir, 'cache', 'blender-pyc')

/** What a Blender phase's environment gets (added to the node's own) to read the cache at `dir`. */
export const pyCacheEnv = (dir: string): Record<string, string> => ({ PYTHONPYCACHEPREFIX: dir })

export interface EnsurePyCacheOptions {
  /** The Blender binary (its absolute path). */
  readonly blender: string
  /** Names the binary: its path, size, modification time and version (as the self-test cache keys it). */
  readonly key: string
  /** The app's directory under pyCacheRoot(dataDir), holding nothing else. */
  readonly root: string
  readonly log: Logger
  readonly signal?: AbortSignal
}

/**
 * The cache of this Blender binary (the PYTHONPYCACHEPREFIX of its phases): the one built before, or
 * one built now (a Blender run of ~1.5 s). Removes what else `root` holds: the caches of other
 * binaries (an older Blender) and the remains of an interrupted build. Throws PyCacheError, saying
 * why, when Blender could not build it.
 */
export async function ensurePyCache(opts: EnsurePyCacheOptions): Promise<string> {
  const name = createHash('sha256').update(opts.key).digest('hex').slice(0, 16)
  const dir = join(opts.root, name)
  await mkdir(opts.root, { recursive: true })
  for (const entry of await readdir(opts.root)) {
    if (entry !== name) await rm(join(opts.root, entry), { recursive: true, force: true })
  }
  // the prefix Blender wrote under, inside the directory renamed whole
  const prefix = join(dir, 'pyc')
  if (await exists(join(dir, READY))) return prefix
  await rm(dir, { recursive: true, force: true })
  const tmp = join(opts.root, `${name}.building`)
  await rm(tmp, { recursive: true, force: true })
  await mkdir(join(tmp, 'tmp'), { recursive: true })
  let counted: { written: number; failed: number } | null = null
  const last: string[] = []
  const r = await runPhase(
    // as a task starts it (its owner's preferences and add-ons too), less the scene
    [opts.blender, '-b', '-Y', '--python-exit-code', '1', '--python', PREP, '--python', SCRIPT],
    {
      cwd: tmp,
      env: { ...pyCacheEnv(join(tmp, 'pyc')), TMPDIR: join(tmp, 'tmp') },
      signal: opts.signal ?? new AbortController().signal,
      timeoutMs: BUILD_TIMEOUT_MS,
      killGraceMs: 1000,
      onLine: (_stream, line) => {
        const m = LINE_RE.exec(line)
        if (m !== null) counted = { written: Number(m[1]), failed: Number(m[2]) }
        else if (line.trim() !== '' && last.push(line.trim()) > 3) last.shift()
      },
    },
  )
  const done = counted as { written: number; failed: number } | null
  if (!r.ok || done === null || done.written === 0) {
    await rm(tmp, { recursive: true, force: true })
    const why = r.ok ? (done === null ? 'it did not say what it wrote' : 'it wrote no module') : r.reason
    throw new PyCacheError(`Blender could not build its bytecode cache: ${why}${tail(last)}`)
  }
  await rm(join(tmp, 'tmp'), { recursive: true, force: true })
  await writeFile(join(tmp, READY), `${opts.key}\n${done.written} modules\n`)
  await rename(tmp, dir)
  opts.log(
    'Blender bytecode cache: %d modules in %s%s',
    done.written,
    dir,
    done.failed > 0 ? ` (${done.failed} could not be compiled)` : '',
  )
  return prefix
}

/**
 * The cache a node built under `root` (an app's directory under pyCacheRoot), if any: for a Blender
 * started beside the node, not by it (`openfarm submit` reading a scene). A cache of another binary
 * is only slower: each .pyc is checked against its source.
 */
export async function findPyCache(root: string): Promise<string | undefined> {
  for (const entry of await readdir(root).catch(() => [] as string[])) {
    if (await exists(join(root, entry, READY))) return join(root, entry, 'pyc')
  }
  return undefined
}

const tail = (lines: readonly string[]) => (lines.length === 0 ? '' : ` (${lines.join(' / ').slice(0, 300)})`)

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  )
